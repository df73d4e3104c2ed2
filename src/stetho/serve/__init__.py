"""The real-time service: HTTP scoring, WebSocket streaming with alerts, and a web page.

``stetho serve RUN_DIR|PIPE_DIR`` runs :func:`create_app` under uvicorn; see
``docs/serving.md`` for the endpoints and the streaming protocol.
"""

from stetho.serve.app import create_app
from stetho.serve.settings import ServeSettings

__all__ = ["ServeSettings", "create_app"]
