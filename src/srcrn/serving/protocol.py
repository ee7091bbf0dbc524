"""What uvicorn's HTTP protocol lacks for a service anyone on the network can reach (issue 32):
a deadline for a connection's first request headers, and a cap on open connections.

uvicorn closes an idle keep-alive connection after a request, and the upload reader
(``uploads.read_body``) bounds a body's time; but a client that opens a connection and sends its
first headers a byte at a time is held forever, and 220 such connections used up the process's
file descriptors, after which no one was served. uvicorn has no setting for either, so its h11
protocol is extended here (by subclassing: the protocol class is uvicorn's documented
``http=`` extension point) rather than reimplemented."""

from __future__ import annotations

import asyncio
import json
import logging
import resource
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

from srcrn.errors import ConfigError
from srcrn.serving.settings import ServeSettings

log = logging.getLogger("srcrn.serve")
SPARE_DESCRIPTORS = 64  # for the models' files, logs and the listening socket


def _refusal(status: int, reason: str, detail: str, headers: dict[str, str]) -> bytes:
    body = json.dumps({"detail": detail}).encode()
    lines = [f"HTTP/1.1 {status} {reason}", "Content-Type: application/json", f"Content-Length: {len(body)}",
             "Connection: close", *(f"{k}: {v}" for k, v in headers.items())]  # fmt: skip
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a header deadline and a connection cap (``guarded_protocol``
    sets the limits)."""

    header_seconds: float = 10.0
    max_connections: int = 100
    retry_after: int = 2
    _deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Refuse the connection beyond the cap (503, Retry-After); otherwise start its header deadline."""
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:
            log.warning("%d connections open: a new one refused (503)", len(self.connections) - 1)
            detail = f"busy: {self.max_connections} connections are open; try again shortly"
            transport.write(_refusal(503, "Service Unavailable", detail, {"Retry-After": str(self.retry_after)}))
            transport.close()
            return
        self._deadline = self.loop.call_later(self.header_seconds, self._headers_too_slow)

    def handle_events(self) -> None:
        """uvicorn's handling; once a request's headers are complete, the deadline is over."""
        super().handle_events()
        if self.cycle is not None and self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def connection_lost(self, exc: Exception | None) -> None:
        """uvicorn's, and the deadline cancelled."""
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        super().connection_lost(exc)

    def _headers_too_slow(self) -> None:
        self._deadline = None
        if self.cycle is None and not self.transport.is_closing():
            log.info("a client sent no complete request headers in %g s: connection closed (408)", self.header_seconds)
            detail = f"request headers not complete within {self.header_seconds:g} s"
            self.transport.write(_refusal(408, "Request Timeout", detail, {}))
            self.transport.close()


def guarded_protocol(settings: ServeSettings) -> type[GuardedH11Protocol]:
    """The protocol class for uvicorn's ``http=``, with ``settings``' limits. The connection cap
    must leave file descriptors to spare: the soft limit is raised toward the hard one when it is
    lower, and a cap that still does not fit is refused in one line."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = settings.max_connections + SPARE_DESCRIPTORS
    if soft != resource.RLIM_INFINITY and soft < needed:
        raised = needed if hard == resource.RLIM_INFINITY else min(hard, needed)
        resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
        soft = raised
    if soft != resource.RLIM_INFINITY and soft < needed:
        raise ConfigError(
            f"--max-connections {settings.max_connections}: this process may open {soft} files "
            f"({SPARE_DESCRIPTORS} kept for its own); lower it or raise the limit (ulimit -n)"
        )
    limits: dict[str, Any] = {
        "header_seconds": settings.header_timeout_seconds,
        "max_connections": settings.max_connections,
        "retry_after": settings.retry_after_seconds,
    }
    return type("GuardedH11", (GuardedH11Protocol,), limits)
