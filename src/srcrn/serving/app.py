"""``srcrn serve``: the two-stage pipeline as a REST service and a web page (FastAPI).

Endpoints under ``/api/v1``: ``predict`` (JSON: mask, measurements, probability, decision and
what they mean), ``report`` (the same upload, a one-page PDF), ``compare`` (two visits of one
lesion), ``model`` (the model card), ``health`` and ``ready``; ``/`` is the page, ``/docs``
and ``/redoc`` the API's reference (offline).

Safe defaults for a clinic network, each one a setting of ``ServeSettings``:

- uploads are read into memory (never written to disk, never logged) and refused beyond
  ``max_upload_bytes`` (413) before they are parsed;
- a bearer token, when one is set, is required by the prediction and model endpoints (401);
- requests waiting together are predicted as one batch (up to ``max_batch``: the networks run
  faster per image in batches; a lone request is never held back to wait for others);
- at most ``concurrency`` batches run at once and ``queue`` more requests wait; beyond that a
  request is answered 503 with ``Retry-After`` at once, instead of piling up in memory;
- a bad image is a 422 with one line naming it, and the service goes on.

The service keeps no state between requests, so replicas behind any load balancer scale it.
torch-free with a bundle (the ONNX engine): ``pip install 'srcrn[serve]'`` is enough.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import re
import secrets
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import ClientDisconnect

from srcrn import __version__
from srcrn.answers.compare import compare as compare_results
from srcrn.answers.readings import card_summary
from srcrn.answers.rendering import encode_png
from srcrn.atomic import clean_json
from srcrn.data.metadata import (
    AGE_RANGE,
    SCALE_RANGE,
    SEXES,
    SITES,
    TORSO_UNSPECIFIED,
    ClinicalContext,
)
from srcrn.errors import DataError, SrcrnError
from srcrn.inference.jobs import model_identity
from srcrn.inference.pipeline import Pipeline
from srcrn.serving.admission import Admission, Batcher
from srcrn.serving.schemas import CompareAnswer, HealthAnswer, PredictAnswer, ReadyAnswer, documented
from srcrn.serving.settings import ServeSettings
from srcrn.serving.uploads import (
    IMAGE_FIELD,
    SCALE_FIELD,
    Refused,
    image_parts,
    multipart_schema,
    read_body,
)

API = "/api/v1"
COMPARE_FIELDS = ("before", "after")  # /compare: two visits of one lesion
log = logging.getLogger(__name__)


# What an upload may be answered instead of its answer (see the endpoints' descriptions).
UPLOAD_REFUSALS = (400, 401, 408, 413, 415, 422, 503)


def _attachment(content: bytes, media_type: str, filename: str) -> Response:
    """A file answer, its name made safe for the Content-Disposition header."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", filename)[:120]
    return Response(content, media_type=media_type, headers={"Content-Disposition": f'attachment; filename="{safe}"'})


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": message}, status_code=status, headers=headers)


def _b64(content: bytes) -> str:
    return base64.b64encode(content).decode("ascii")


def limit_malloc_arenas(arenas: int = 2) -> bool:
    """Cap glibc's malloc arenas (as ``MALLOC_ARENA_MAX`` would) before the worker threads start:
    by default every thread that allocates may get an arena of its own that keeps its freed
    memory: under load the server's resident memory grew by 18 % and 33 % in two runs of
    benchmarks/serve.py, by 8 % and 11 % with two arenas. No library exposes ``mallopt``; ctypes
    does. Returns
    whether the cap applies (glibc only)."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        return bool(ctypes.CDLL(name).mallopt(-8, arenas))  # -8: M_ARENA_MAX in glibc's malloc.h
    except (OSError, AttributeError):
        return False


def create_app(pipeline: Pipeline, settings: ServeSettings | None = None) -> FastAPI:
    """The service around one loaded pipeline (the models stay in memory; requests share them)."""
    settings = settings or ServeSettings()
    admission = Admission(settings)
    batcher = Batcher(pipeline, settings)
    ready = threading.Event()
    model = {
        "srcrn_version": __version__,
        "engine": pipeline.card.engine if pipeline.card else None,
        "segmenter": pipeline.card.segmenter.source if pipeline.card else None,
        "classifier": pipeline.card.classifier.source if pipeline.card else None,
    }

    def warm_up() -> None:
        # The first prediction pays for lazy initialisation (ONNX Runtime's, PyTorch's) and a
        # full batch grows the runtimes' memory arenas to their working size; a replica says it
        # is ready only after it, so a load balancer sends it no request to wait.
        try:
            if settings.warm_up:
                grey = np.full((256, 256, 3), 128, np.uint8)
                pipeline.predict(grey, image_id="warm-up")
                pipeline.predict_many([grey] * settings.max_batch, batch_size=settings.max_batch)
        except Exception:
            log.exception("warm-up prediction failed")
            return
        ready.set()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        thread = threading.Thread(target=warm_up, name="srcrn-warm-up", daemon=True)
        thread.start()
        batcher.start()
        yield
        await batcher.stop()

    # FastAPIOffline (fastapi-offline): /docs and /redoc from files in the package, not a CDN, so
    # the API page works on a clinic network without internet.
    app = FastAPIOffline(
        title="srcrn",
        version=__version__,
        description="Melanoma detection in dermoscopic images: lesion mask, measurements and melanoma "
        "probability. A research tool to assist review, not a diagnosis.",
        lifespan=lifespan,
    )

    # DNS rebinding: a page of another site whose name was pointed at this address sends its own
    # name as Host; only the names the service is reached by are answered (Starlette's middleware).
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=settings.hosts())

    @app.middleware("http")
    async def same_origin(request: Request, call_next: Any) -> Response:
        # A form on another site can POST multipart to this service without a preflight (a
        # "simple" request), with the user's network position; browsers name that site in Origin.
        origin = request.headers.get("origin")
        if request.method not in ("GET", "HEAD", "OPTIONS") and origin and origin != "null":
            if urlsplit(origin).netloc != request.headers.get("host", ""):
                return _error(403, "cross-site request refused: the page that sent it is not this service's")
        return await call_next(request)

    def authorised(request: Request) -> bool:
        if not settings.api_key:
            return True
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and secrets.compare_digest(token.encode(), settings.api_key.encode())

    unauthorised = {"WWW-Authenticate": "Bearer"}

    @app.exception_handler(Exception)
    async def unexpected(_: Request, error: Exception) -> JSONResponse:
        log.error("internal error: %s", type(error).__name__)  # no request content in the log
        return _error(500, "internal error; the request was not stored")

    @app.get(f"{API}/health", summary="Liveness: the process answers", responses=documented(HealthAnswer))
    async def health() -> dict[str, Any]:
        return {"status": "ok", "auth": "bearer" if settings.api_key else "none"}

    @app.get(
        f"{API}/ready",
        summary="Readiness: models loaded and warmed up",
        responses=documented(ReadyAnswer, 503),
    )
    async def is_ready() -> Response:
        if not ready.is_set():
            return _error(503, "models are warming up", {"Retry-After": str(settings.retry_after_seconds)})
        return JSONResponse({"status": "ready", "busy": admission.admitted, "capacity": admission.capacity})

    @app.get(f"{API}/model", summary="Model card: versions, training data, validation, threshold")
    async def model_card(request: Request) -> Response:
        if not authorised(request):
            return _error(401, "missing or wrong bearer token", unauthorised)
        card = pipeline.card.to_dict() if pipeline.card else {}
        return JSONResponse(clean_json(card | card_summary(pipeline.card)))

    # The multipart body of /predict and /report: the image and the optional context fields.
    clinical_fields = {  # the form's clinical fields, shared by /predict, /report, /dicom and /compare
        "age": {
            "type": "number",
            "minimum": AGE_RANGE[0],
            "maximum": AGE_RANGE[1],
            "description": "patient's approximate age in years (optional)",
        },
        "sex": {"type": "string", "enum": list(SEXES), "description": "optional"},
        "site": {
            "type": "string",
            "enum": [*SITES, TORSO_UNSPECIFIED],
            "description": "the lesion's body site, ISIC's anatomic sites (optional)",
        },
    }
    upload_body = multipart_schema(
        [IMAGE_FIELD],
        {
            IMAGE_FIELD: {"type": "string", "format": "binary"},
            **clinical_fields,
            SCALE_FIELD: {
                "type": "number",
                "minimum": SCALE_RANGE[0],
                "maximum": SCALE_RANGE[1],
                "description": "the image's scale in mm per pixel (optional): measurements also in mm and mm²",
            },
        },
    )

    async def answer(
        request: Request, encode: Callable[..., Any], images: tuple[str, ...] = (IMAGE_FIELD,)
    ) -> Response | tuple[list[Any], list[str], Any, list[float]]:
        """An upload's images through the pipeline, then ``encode`` of their answers (and of the
        uploaded files' bytes); a refusal comes back as the Response."""
        arrived = time.perf_counter()
        if not authorised(request):
            return _error(401, "missing or wrong bearer token", unauthorised)
        if not ready.is_set():
            return _error(503, "models are warming up", {"Retry-After": str(settings.retry_after_seconds)})
        try:
            body = await read_body(request, settings)
        except Refused as refused:
            return _error(refused.status, refused.message, refused.headers)
        except ClientDisconnect:  # the client went away mid-upload: nobody to answer
            log.info("a client disconnected during its upload")
            return Response(status_code=400)
        if not admission.enter():
            return _error(503, "busy: try again shortly", {"Retry-After": str(settings.retry_after_seconds)})
        try:
            parts = await image_parts(request, body, images, settings.max_pixels)
            del body
            started = time.perf_counter()

            async def one(content: bytes, name: str, context: ClinicalContext) -> Any:
                try:
                    return await batcher.predict(content, Path(name).stem, context)
                except DataError as error:  # named by the upload's file name, not the id
                    raise Refused(422, f"{name}: {error.problem}") from None
                except SrcrnError as error:
                    raise Refused(422, str(error)) from None

            # Queued together, a comparison's two images are predicted in one batch.
            results = list(await asyncio.gather(*(one(*part) for part in parts)))
            predicted = time.perf_counter()
            encoded = await run_in_threadpool(encode, results, [content for content, _, _ in parts])
        except Refused as refused:
            return _error(refused.status, refused.message, refused.headers)
        finally:
            admission.leave()
        return results, [name for _, name, _ in parts], encoded, [arrived, started, predicted, time.perf_counter()]

    @app.post(
        f"{API}/predict",
        summary="Mask, measurements and melanoma probability of one dermoscopic image",
        description=f"multipart/form-data with the image file in the field '{IMAGE_FIELD}' and, optionally, "
        "the clinical context in the fields age, sex and site (used by models that take it; the answer's "
        "`clinical.used` says which fields the model used). The mask "
        "(0/255, original size) and the overlay (the contour on the image, longer side at most 1024 px) come back as base64 PNG in the JSON. Errors: 400 no "
        "image field, 401 token, 413 too large, 415 not multipart, 422 not a usable image or clinical value, 503 busy "
        "(Retry-After).",
        openapi_extra=upload_body,
        responses=documented(PredictAnswer, *UPLOAD_REFUSALS),
    )
    async def predict(request: Request, images: bool = True) -> Response:
        answered = await answer(request, lambda results, _: _encode(results[0], images))
        if isinstance(answered, Response):
            return answered
        (result,), (name,), encoded, (arrived, started, predicted, finished) = answered
        payload = result.to_dict() | {
            "filename": name,
            "model": model,
            "timings_ms": {
                "upload": round((started - arrived) * 1000, 1),
                "predict": round((predicted - started) * 1000, 1),  # waiting for the batch included
                "encode": round((finished - predicted) * 1000, 1),
                "total": round((finished - arrived) * 1000, 1),
            },
        }
        return JSONResponse(clean_json(payload | encoded))

    @app.post(
        f"{API}/report",
        summary="A one-page PDF report of one dermoscopic image",
        description="The same upload as /predict; the answer is the report (application/pdf): image and overlay, "
        "verdict and what it means, measurements (in mm with mm_per_pixel), the model card's short form, date, "
        "the image's SHA-256 and the research-software notice. Errors as /predict.",
        openapi_extra=upload_body,
        response_class=Response,
        responses=documented({"content": {"application/pdf": {}}, "description": "the report"}, *UPLOAD_REFUSALS),
    )
    async def report(request: Request) -> Response:
        answered = await answer(request, lambda results, _: results[0].report_pdf())
        if isinstance(answered, Response):
            return answered
        (result,), _, pdf, _ = answered
        return _attachment(pdf, "application/pdf", f"{result.image_id}_report.pdf")

    dicom_model: list[str] = []  # the models' identity in the DICOM objects, computed on first use

    @app.post(
        f"{API}/dicom",
        summary="The answer as DICOM: the mask as a SEG and the findings as an SR (TID 1500)",
        description="The same upload as /predict (a DICOM photograph, or a JPEG/PNG); the answer is a ZIP "
        "(application/zip) of seg.dcm and sr.dcm in the image's study and, for a JPEG/PNG, image.dcm: the "
        "Secondary Capture they refer to. A DICOM header's scale, age, sex and site are used where the form "
        "gives none. Errors as /predict; 501 without srcrn[dicom].",
        openapi_extra=upload_body,
        response_class=Response,
        responses=documented(
            {"content": {"application/zip": {}}, "description": "seg.dcm, sr.dcm (and image.dcm)"},
            *UPLOAD_REFUSALS,
            501,
        ),
    )
    async def dicom(request: Request) -> Response:
        try:
            import highdicom  # noqa: F401  (srcrn.dicom.objects needs it only when building)

            from srcrn.dicom.objects import study_zip
        except ModuleNotFoundError:
            return _error(501, "DICOM output needs srcrn[dicom] (highdicom) on the server")
        if not dicom_model:  # the models' digests, read once per process
            dicom_model.append(await run_in_threadpool(model_identity, pipeline))
        answered = await answer(request, lambda results, contents: study_zip(results[0], contents[0], dicom_model[0]))
        if isinstance(answered, Response):
            return answered
        (result,), _, archive, _ = answered
        return _attachment(archive, "application/zip", f"{result.image_id}_dicom.zip")

    @app.post(
        f"{API}/compare",
        summary="Two visits of one lesion compared (follow-up)",
        description="multipart/form-data with the earlier image in 'before' and the later in 'after', optionally "
        "before_mm_per_pixel / after_mm_per_pixel (changes in mm with both) and the clinical fields. The answer: "
        "the registration (rotation, scale, mirrored, matching points, reliable, problems), the changes in area, "
        "diameter, ABCD components, colours and probability (null when the registration is unreliable), and "
        "the picture (both contours | change map: green grown, red shrunk, yellow colour changed) as base64 PNG.",
        openapi_extra=multipart_schema(
            list(COMPARE_FIELDS),
            {
                                **{f: {"type": "string", "format": "binary"} for f in COMPARE_FIELDS},
                                **{
                                    f"{f}_{SCALE_FIELD}": {"type": "number", "minimum": SCALE_RANGE[0],
                                                           "maximum": SCALE_RANGE[1]}
                                    for f in COMPARE_FIELDS
                                },
                                **clinical_fields,
                            },
        ),
        responses=documented(CompareAnswer, *UPLOAD_REFUSALS),
    )  # fmt: skip
    async def compare(request: Request) -> Response:
        def compared(results: list[Any], _: list[bytes]) -> dict[str, Any]:
            comparison = compare_results(*results)
            return comparison.to_dict() | {"picture_png": _b64(encode_png(comparison.picture))}

        answered = await answer(request, compared, COMPARE_FIELDS)
        if isinstance(answered, Response):
            return answered
        _, names, payload, _ = answered
        return JSONResponse(clean_json(payload | {"filenames": names}))

    static = resources.files("srcrn.serving") / "static"

    @app.get("/", include_in_schema=False)
    async def page() -> HTMLResponse:
        return HTMLResponse((static / "index.html").read_text(encoding="utf-8"))

    app.mount("/static", StaticFiles(directory=str(static)), name="static")
    return app


def _encode(result: Any, images: bool) -> dict[str, str | None]:
    if not images:
        return {}
    explanation = result.explanation()
    return {
        "mask_png": _b64(result.mask_png()),
        # No caption band (the decision is in the JSON): the working size, not enlarged, which
        # keeps PNG encoding, the largest per-request cost after the networks, small.
        "overlay_png": _b64(result.overlay_png(caption=False)),
        "explanation_png": _b64(encode_png(explanation)) if explanation is not None else None,
    }
