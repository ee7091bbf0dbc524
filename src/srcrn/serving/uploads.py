"""Reading an upload of ``srcrn serve``: the body within its size limit, read deadline and
minimum rate (a slow client is answered 408 and holds nothing), then the multipart form kept in
memory (never on disk), its image files and their clinical context. Torch-free."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any

from fastapi import Request
from starlette.formparsers import MultiPartException, MultiPartParser

from srcrn.data.images import declared_pixels
from srcrn.data.metadata import CLINICAL_FIELDS, ClinicalContext
from srcrn.errors import DataError
from srcrn.serving.settings import ServeSettings

CLINICAL_FORM_FIELDS = CLINICAL_FIELDS  # optional form fields beside the image
SCALE_FIELD = "mm_per_pixel"  # optional too: the image's scale, for measurements in mm
IMAGE_FIELD = "image"


class InMemoryParser(MultiPartParser):
    """Starlette's multipart parser, with uploads kept in memory: its spooled files move to a
    temporary file on disk past 1 MB, and an upload must never touch the disk. The body is
    already bounded by ``max_upload_bytes`` when this runs."""

    spool_max_size = 1 << 62


class Refused(Exception):
    """An upload answered with ``status`` and one line, ``message`` (and ``headers``)."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        """An answer of ``status`` with ``message`` (and ``headers``)."""
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


def upload_name(filename: str | None) -> str:
    """The upload's file name for messages: the base name only, printable, bounded."""
    name = Path((filename or "upload").replace("\\", "/")).name or "upload"
    return "".join(c if c.isprintable() else "?" for c in name)[:100]


GRACE_SECONDS = 5.0  # before the upload rate is judged (a connection's slow start)


async def read_body(request: Request, settings: ServeSettings) -> bytes:
    """The whole body, within the size limit, the deadline and the minimum rate."""
    limit = settings.max_upload_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise Refused(413, f"upload of {int(declared):,} bytes exceeds the limit of {limit:,} bytes")
    started = time.monotonic()
    chunks, size = [], 0

    async def receive() -> None:
        nonlocal size
        async for chunk in request.stream():  # a body without (or lying about) its length
            size += len(chunk)
            if size > limit:
                raise Refused(413, f"upload exceeds the limit of {limit:,} bytes")
            chunks.append(chunk)
            elapsed = time.monotonic() - started
            if elapsed > GRACE_SECONDS and size / elapsed < settings.min_upload_rate:
                raise Refused(408, f"upload too slow ({size / elapsed:,.0f} bytes/s); send it again")

    try:
        await asyncio.wait_for(receive(), timeout=settings.read_timeout_seconds)
    except TimeoutError:
        raise Refused(
            408, f"upload not complete within {settings.read_timeout_seconds:g} s ({size:,} bytes arrived)"
        ) from None
    return b"".join(chunks)


async def image_parts(
    request: Request, body: bytes, images: tuple[str, ...] = (IMAGE_FIELD,), max_pixels: int | None = None
) -> list[tuple[bytes, str, ClinicalContext]]:
    """The upload's image files (one per field of ``images``), each with its context: the
    clinical fields, shared, and the scale (``mm_per_pixel``, or ``<field>_mm_per_pixel`` for
    two images). An image whose header declares more than ``max_pixels`` is refused (413)
    before anything decodes it."""
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise Refused(415, f"send the image as multipart/form-data in the field '{images[0]}'")

    async def stream() -> AsyncGenerator[bytes, None]:
        yield body

    try:
        form = await InMemoryParser(request.headers, stream(), max_files=4, max_fields=16).parse()
    except MultiPartException as error:
        raise Refused(400, f"malformed multipart upload ({error.message})") from None
    try:
        scales = {field: SCALE_FIELD if len(images) == 1 else f"{field}_{SCALE_FIELD}" for field in images}
        given = {field: form.get(field) for field in (*CLINICAL_FORM_FIELDS, *scales.values())}
        if any(not isinstance(v, (str, type(None))) for v in given.values()):
            raise Refused(400, f"the fields {', '.join(given)} are text, not files")
        parts = []
        for field in images:
            part = form.get(field)
            if part is None or isinstance(part, str):
                fields = ", ".join(sorted(form.keys())) or "none"
                raise Refused(400, f"no file in the field '{field}' (fields sent: {fields})")
            clinical = {name: given[name] for name in CLINICAL_FORM_FIELDS}
            try:
                context = ClinicalContext.of(**clinical, pixel_spacing_mm=given[scales[field]])  # type: ignore[arg-type]
            except DataError as error:
                raise Refused(422, str(error)) from None
            content, name = await part.read(), upload_name(part.filename)
            size = declared_pixels(content) if max_pixels is not None else None
            if size is not None and max_pixels is not None and size[0] * size[1] > max_pixels:
                raise Refused(
                    413,
                    f"{name}: declares {size[0]}x{size[1]} = {size[0] * size[1]:,} pixels, over this service's "
                    f"limit of {max_pixels:,} (--max-pixels)",
                )
            parts.append((content, name, context))
        return parts
    finally:
        await form.close()


def multipart_schema(required: list[str], properties: dict[str, Any]) -> dict[str, Any]:
    """OpenAPI's request body of a multipart upload (FastAPI cannot infer it: we parse it ourselves)."""
    schema = {"type": "object", "required": required, "properties": properties}
    return {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": schema}}}}
