"""``stetho serve``: the HTTP and WebSocket service with its web page (FastAPI + uvicorn)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import typer

from stetho.cli.common import cli_errors
from stetho.cli.extras import require_extra

logger = logging.getLogger(__name__)


def serve(
    model: Path = typer.Argument(
        None,
        help="A finished run folder, an exported scoring pipeline folder or a ready model "
        "stetho:NAME (see stetho models; default: $STETHO_MODEL_PATH).",
        show_default=False,
    ),
    host: str = typer.Option(None, "--host", help="Address to bind (default: 127.0.0.1)."),
    port: int = typer.Option(None, "--port", help="Port to bind (default: 8000)."),
    api_key: str = typer.Option(
        None,
        "--api-key",
        help="Require this key in X-API-Key on /v1/* (prefer $STETHO_API_KEY: flags show "
        "in the process list).",
    ),
    max_upload_bytes: int = typer.Option(
        None, "--max-upload-bytes", help="Largest upload (default: 20000000)."
    ),
    max_duration_s: float = typer.Option(
        None, "--max-duration", help="Longest recording in seconds (default: 120)."
    ),
    alert_threshold: float = typer.Option(
        None,
        "--alert-threshold",
        help="Abnormal probability that counts towards an alert "
        "(default: the run's prediction.probability_threshold).",
    ),
    alert_windows: int = typer.Option(
        None, "--alert-windows", help="Consecutive windows that raise an alert (default: 3)."
    ),
    webhook_url: str = typer.Option(None, "--webhook-url", help="POST alerts here as JSON."),
    workers: int = typer.Option(
        None, "--workers", help="Recordings scored at once (threads; default: 2)."
    ),
    torch_threads: int = typer.Option(
        None, "--torch-threads", help="Threads per scoring call (default: 1)."
    ),
    log_level: str = typer.Option("info", "--log-level", help="uvicorn's log level."),
) -> None:
    """Serve a model: GET /health, POST /v1/predict, WS /v1/stream, the web page at /.

    Every option can also come from a STETHO_<OPTION> environment variable (STETHO_MODEL_PATH,
    STETHO_API_KEY, ...); flags win over the environment.
    """
    # uvicorn and fastapi are core dependencies; an install that predates that lacks them.
    require_extra("uvicorn", "serve", "stetho serve")
    import uvicorn
    from pydantic import ValidationError

    from stetho.serve import ServeSettings, create_app

    flags: dict[str, Any] = {
        "model_path": model,
        "host": host,
        "port": port,
        "api_key": api_key,
        "max_upload_bytes": max_upload_bytes,
        "max_duration_s": max_duration_s,
        "alert_threshold": alert_threshold,
        "alert_windows": alert_windows,
        "webhook_url": webhook_url,
        "workers": workers,
        "torch_threads": torch_threads,
    }
    with cli_errors():
        try:
            settings = ServeSettings(**{k: v for k, v in flags.items() if v is not None})
        except ValidationError as exc:
            problems = "; ".join(
                "no model: give RUN_DIR, PIPE_DIR or stetho:NAME, or set STETHO_MODEL_PATH"
                if e["type"] == "missing" and e["loc"] == ("model_path",)
                else f"{'.'.join(str(p) for p in e['loc']) or 'settings'}: {e['msg']}"
                for e in exc.errors()
            )
            raise ValueError(f"invalid serve settings: {problems}") from None
        app = create_app(settings)
    logger.info("stetho serve on http://%s:%d", settings.host, settings.port)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level=log_level)


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
