"""``srcrn serve``'s settings, declared once (pydantic): the command's flags are generated from
them (``cli_schema``), each may also come from the environment as ``SRCRN_<NAME>`` (for
containers: ``SRCRN_PORT=9000``, ``SRCRN_API_KEY=...``), and the app reads them. Flags win over
the environment, the environment over the defaults. No FastAPI here: the CLI builds its flags
without importing the service."""

from __future__ import annotations

import os
from typing import Any

from pydantic import Field, field_validator

from srcrn.settings import Settings, validate

ENV_PREFIX = "SRCRN_"


class ServeSettings(Settings):
    """``srcrn serve``'s settings: address, access, upload limits, admission queue, read deadline."""

    host: str = Field("127.0.0.1", description="address to listen on; 127.0.0.1 keeps the service on this machine")
    port: int = Field(8000, ge=1, le=65535, description="port to listen on")
    api_key: str | None = Field(None, description="bearer token required by predict, report, compare and model")
    allowed_hosts: list[str] = Field(
        default_factory=list,
        description="Host headers answered (default: the address listened on, with localhost for a loopback one; "
        "'*' for any); others get 400, which stops DNS rebinding",
    )
    max_upload_mb: float = Field(30.0, gt=0, description="largest upload accepted (413 beyond)")
    max_pixels: int = Field(
        40_000_000,
        ge=1_000_000,
        description="pixels an image may declare (a dermoscope's largest is ~30 MP); read from its header before "
        "anything is decoded, 413 beyond: a small file declaring a huge image costs no memory",
    )
    concurrency: int = Field(1, ge=1, description="batches predicted at once (one batch already uses every core)")
    max_batch: int = Field(8, ge=1, description="waiting requests predicted together, at most")
    queue: int = Field(8, ge=0, description="requests that may wait; beyond them 503 + Retry-After")
    retry_after_seconds: int = Field(2, ge=0, description="the Retry-After of a 503")
    # An upload must arrive within this many seconds, and after its first few seconds at no less
    # than min_upload_rate bytes/s: a client that sends a byte now and then is answered 408 and
    # holds nothing (admission counts a request only once its body is in).
    read_timeout_seconds: float = Field(60.0, gt=0, description="an upload must be complete within it (408)")
    header_timeout_seconds: float = Field(
        10.0, gt=0, description="a new connection's request headers must be complete within it (408, closed)"
    )
    max_connections: int = Field(
        100, ge=1, description="open connections at most; beyond them 503 + Retry-After (idle ones count)"
    )
    min_upload_rate: float = Field(10_000.0, ge=0, description="bytes/s an upload must keep after 5 s (408)")
    warm_up: bool = Field(True, description="one prediction before /ready says ready")

    @field_validator("api_key")
    @classmethod
    def _a_key_is_not_empty(cls, key: str | None) -> str | None:
        if key is not None and not key.strip():
            raise ValueError("an empty key would start an open server: give a key, or leave the option out")
        return key

    def hosts(self) -> list[str]:
        """The Host headers the service answers."""
        if self.allowed_hosts:
            return self.allowed_hosts
        if self.host in ("127.0.0.1", "localhost", "::1"):
            return ["127.0.0.1", "localhost", "::1", "[::1]"]
        return ["*"] if self.host in ("0.0.0.0", "::") else [self.host]

    @property
    def max_upload_bytes(self) -> int:
        """The upload limit in bytes."""
        return int(self.max_upload_mb * 1024 * 1024)


def serve_settings(flags: dict[str, Any] | None = None, environ: dict[str, str] | None = None) -> ServeSettings:
    """Defaults, then ``SRCRN_<NAME>`` variables of ``environ`` (the process's by default), then
    the flags given; a bad value is one line naming the flag or the variable."""
    environ = dict(os.environ) if environ is None else environ
    values: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for name in ServeSettings.model_fields:
        variable = ENV_PREFIX + name.upper()
        if variable in environ:
            values[name], origin[name] = environ[variable], f"environment {variable}"
    for name, value in (flags or {}).items():
        if value is not None:
            values[name], origin[name] = value, "--" + name.replace("_", "-")
    return validate(ServeSettings, values, origin)
