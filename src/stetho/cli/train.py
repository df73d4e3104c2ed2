"""``stetho train``: run an experiment from a YAML config (ours or Hydrogen Torch's)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from stetho.cli._common import cli_errors, resolve_data_dir

console = Console(stderr=True)


def train(
    config: Path = typer.Argument(
        ..., help="YAML config (configs/heartbeat.yaml, or a Hydrogen Torch one)."
    ),
    overrides: list[str] = typer.Argument(None, help="Config overrides: section.key=value ..."),
    data: Path = typer.Option(
        None, "--data", "-d", help="Dataset folder or table (default: the mission set)."
    ),
    out: Path = typer.Option(
        None, "--out", "-o", help="Run folder to create [default: runs/<experiment_name>-<time>]."
    ),
    resume: bool = typer.Option(False, "--resume", help="Continue a killed run in OUT.partial."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Progress bars."),
    nproc: int = typer.Option(
        1,
        "--nproc",
        min=1,
        help="Train in N processes on this machine (DistributedDataParallel via torchrun; "
        "batch_size is per process). Several machines: run torchrun yourself.",
    ),
) -> None:
    """Train and validate (patient-grouped k-fold), then write the run folder."""
    from stetho.config import load_config
    from stetho.training.distributed import env_rank
    from stetho.training.experiment import final_table, run_experiment
    from stetho.workflows.hooks import default_after_run
    from stetho.workflows.tracking import epoch_logger

    with cli_errors():
        cfg = load_config(config, overrides or [])
        if out is None:
            out = Path("runs") / f"{cfg.experiment_name}-{time.strftime('%Y%m%d-%H%M%S')}"
        data_dir = (
            resolve_data_dir(data) if data is not None or not cfg.dataset.train_dataframe else data
        )
        if nproc > 1:
            argv = [str(config), *(overrides or []), "--out", str(out)]
            argv += ["--data", str(data_dir)] if data_dir is not None else []
            argv += ["--resume"] if resume else []
            argv += ["--progress" if progress else "--no-progress"]
            summary = _launch(nproc, argv, out=out)
        else:
            summary = run_experiment(
                cfg,
                out_dir=out,
                data=data_dir,
                resume=resume,
                progress=progress,
                after_run=default_after_run(),
                on_epoch=epoch_logger(cfg, out_dir=out),
            ).summary
    if env_rank() != 0:  # under torchrun, rank 0 reports
        return
    n = summary["pooled"]["n"]
    table = Table(title=f"{out} (pooled out-of-fold, {n} recordings)")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in final_table(summary):
        table.add_row(name, value)
    Console().print(table)
    for w in summary["warnings"]:
        console.print(f"[yellow]warning:[/yellow] {w}")


def _launch(nproc: int, argv: list[str], *, out: Path) -> dict:
    """Run ``stetho train ARGV`` in ``nproc`` processes with torch's launcher (torchrun's
    ``--standalone`` single-node rendezvous) and return the finished run's summary."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    args = get_args_parser().parse_args(
        # --tee 3: every line of each rank's output is shown, prefixed with its rank.
        ["--standalone", f"--nproc-per-node={nproc}", "--tee", "3"]
        + ["--module", "stetho", "train", *argv]
    )
    try:
        run(args)
    except ChildFailedError as exc:
        raise RuntimeError(f"distributed training failed: {exc}") from None
    return json.loads((out / "summary.json").read_text())


def register(app: typer.Typer) -> None:
    app.command("train")(train)
