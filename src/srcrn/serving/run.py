"""``srcrn serve`` run: the port checked before the models load, the service started by uvicorn."""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable

from srcrn.errors import SrcrnError
from srcrn.inference.pipeline import Pipeline
from srcrn.serving.settings import ServeSettings

log = logging.getLogger("srcrn.serve")
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def check_port(host: str, port: int) -> None:
    """Refuse, in one line, a port that is taken or cannot be bound (uvicorn or pynetdicom would
    abort after the models loaded)."""
    try:
        with socket.create_server((host, port)):
            pass
    except OSError as error:
        raise SrcrnError(f"--port {port}: {host}:{port} is in use or cannot be bound ({error.strerror})") from None


def run_service(load: Callable[[], Pipeline], settings: ServeSettings) -> None:
    """Serve the pipeline that ``load`` gives (called once the port is known to be free)."""
    import uvicorn

    from srcrn.serving.app import create_app, limit_malloc_arenas
    from srcrn.serving.protocol import guarded_protocol

    limit_malloc_arenas()
    host, port = settings.host, settings.port
    check_port(host, port)
    pipeline = load()
    if host not in LOOPBACK and not settings.api_key:
        log.warning("listening on %s without --api-key: anyone who reaches this address can use the service", host)
    log.info("serving on http://%s:%d (page /, API docs /docs)", host, port)
    app = create_app(pipeline, settings)
    http = guarded_protocol(settings)  # header deadline and connection cap (uvicorn has neither)
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False, http=http)
