"""The Python API (``srcrn.Pipeline``) and ``srcrn serve``: every endpoint, answers equal to the
API's on the same bytes, each bad upload a documented 4xx with a message (and the next good
request still works), tokens, and load shedding."""

from __future__ import annotations

import base64
import io
import threading
import time

import numpy as np
import pytest
from PIL import Image

import srcrn
from helpers import cli_error, png_claiming

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def pipeline(tiny_bundle):
    return srcrn.Pipeline.from_bundle(tiny_bundle)


@pytest.fixture(scope="module")
def photo(sample):
    return sorted((sample / "images").glob("*.jpg"))[0]


def _client(pipeline, **settings):
    from fastapi.testclient import TestClient

    from srcrn.serving.app import ServeSettings, create_app

    client = TestClient(create_app(pipeline, ServeSettings(**settings)), base_url="http://127.0.0.1")
    client.__enter__()  # runs the lifespan: the warm-up prediction
    deadline = time.monotonic() + 60
    while client.get("/api/v1/ready").status_code != 200:
        assert time.monotonic() < deadline, "the service never became ready"
        time.sleep(0.05)
    return client


@pytest.fixture(scope="module")
def client(pipeline):
    client = _client(pipeline)
    yield client
    client.__exit__(None, None, None)


def _upload(client, content, name="lesion.jpg", field="image", headers=None):
    return client.post("/api/v1/predict", files={field: (name, content, "application/octet-stream")}, headers=headers)


# --- the Python API --------------------------------------------------------------------------


def test_every_kind_of_image_gives_the_same_answer(pipeline, photo):
    by_path = pipeline.predict(photo)
    assert isinstance(by_path, srcrn.PipelineResult) and isinstance(by_path.measurements, srcrn.LesionMeasurements)
    with Image.open(photo) as image:
        assert by_path.mask.shape == (image.height, image.width) and by_path.mask.dtype == bool
        array = np.asarray(image.convert("RGB"))
        others = [pipeline.predict(photo.read_bytes()), pipeline.predict(image), pipeline.predict(array)]
    for other in others[:2]:  # the same file's bytes and Pillow image: the same decoding
        assert other.probability == pytest.approx(by_path.probability, abs=1e-6)
        assert np.array_equal(other.mask, by_path.mask)
    # An array is already decoded at full size (no reduced-scale JPEG decoding): nearly equal.
    assert others[2].probability == pytest.approx(by_path.probability, abs=0.05)
    assert others[2].mask.shape == by_path.mask.shape
    assert by_path.decision == ("melanoma" if by_path.probability > by_path.threshold else "benign")


def test_predict_many_equals_one_by_one_and_save_writes_what_predict_writes(pipeline, sample, tmp_path):
    from helpers import run_cli

    images = sorted((sample / "images").glob("*.jpg"))[:3]
    many = pipeline.predict_many(images, batch_size=2)
    for image, result in zip(images, many):
        single = pipeline.predict(image)
        assert result.image_id == image.stem and result.probability == pytest.approx(single.probability, abs=1e-6)
    saved = many[0].save(tmp_path / "api")
    run_cli("predict", str(images[0]), "--engine", "onnx", "--model", str(pipeline_bundle(pipeline)),
            "--out", str(tmp_path / "cli"), "--no-progress")  # fmt: skip
    for kind, name in (("masks", "_segmentation.png"), ("overlays", "_overlay.png")):
        api = np.asarray(Image.open(tmp_path / "api" / kind / f"{images[0].stem}{name}"))
        cli = np.asarray(Image.open(tmp_path / "cli" / kind / f"{images[0].stem}{name}"))
        assert np.array_equal(api, cli), kind
    assert saved.probability == many[0].probability


def pipeline_bundle(pipeline):
    from pathlib import Path

    return Path(pipeline.segmenter.source).parent


def test_a_bad_image_raises_the_projects_error_naming_it(pipeline):
    with pytest.raises(srcrn.DataError, match=r"^upload\.jpg: cannot read image"):
        pipeline.predict(b"not an image", image_id="upload.jpg")
    with pytest.raises(srcrn.DataError, match="expected an HxWx3 uint8 array"):
        pipeline.predict(np.zeros((64, 64, 3), np.float32))


# --- the service -----------------------------------------------------------------------------


def test_health_ready_model_card_and_docs(client, tiny_bundle):
    assert client.get("/api/v1/health").json() == {"status": "ok", "auth": "none"}
    assert client.get("/api/v1/ready").json()["status"] == "ready"
    card = client.get("/api/v1/model").json()
    manifest = __import__("json").loads((tiny_bundle / "bundle.json").read_text())
    assert card["engine"] == "onnx" and card["classifier"]["threshold"] == manifest["classifier"]["threshold"]
    assert card["segmenter"]["image_size"] == 64 and card["classifier"]["input"] == "crop"
    assert card["classifier"]["training"]["n_train"] > 0  # from the classifier's run summary
    schema = client.get("/openapi.json").json()
    body = schema["paths"]["/api/v1/predict"]["post"]["requestBody"]["content"]
    assert "image" in body["multipart/form-data"]["schema"]["properties"]
    docs = client.get("/docs")
    assert docs.status_code == 200 and "swagger-ui-bundle.js" in docs.text and "cdn.jsdelivr" not in docs.text
    script = next(part.split('"')[0] for part in docs.text.split('src="')[1:] if "swagger-ui-bundle" in part)
    assert client.get(script).status_code == 200  # served by the app itself
    page = client.get("/")
    assert page.status_code == 200 and "/static/app.js" in page.text and "http" not in page.text.split("<body>")[1]


def test_the_openapi_document_types_every_answer_and_real_answers_match_it(client, photo):
    """Every endpoint's answer and refusals are typed in /openapi.json, and what the service
    really sends validates against those models with no field undocumented."""
    from srcrn.serving.schemas import CompareAnswer, ErrorAnswer, HealthAnswer, PredictAnswer, ReadyAnswer

    paths = client.get("/openapi.json").json()["paths"]
    for path, method, model in [("predict", "post", "PredictAnswer"), ("compare", "post", "CompareAnswer"),
                                ("ready", "get", "ReadyAnswer"), ("health", "get", "HealthAnswer")]:  # fmt: skip
        responses = paths[f"/api/v1/{path}"][method]["responses"]
        assert responses["200"]["content"]["application/json"]["schema"]["$ref"].endswith(model), path
    for path, kind in [("report", "application/pdf"), ("dicom", "application/zip")]:
        assert kind in paths[f"/api/v1/{path}"]["post"]["responses"]["200"]["content"]
    assert paths["/api/v1/predict"]["post"]["responses"]["422"]["content"]["application/json"]["schema"][
        "$ref"
    ].endswith("ErrorAnswer")
    compare_form = paths["/api/v1/compare"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert {"before", "after", "before_mm_per_pixel", "after_mm_per_pixel", "age", "sex", "site"} <= set(
        compare_form["properties"]
    )
    HealthAnswer.model_validate(client.get("/api/v1/health").json())
    ReadyAnswer.model_validate(client.get("/api/v1/ready").json())
    PredictAnswer.model_validate(_upload(client, photo.read_bytes(), name=photo.name).json())
    content = photo.read_bytes()
    compared = client.post("/api/v1/compare", files={"before": ("a.jpg", content), "after": ("b.jpg", content)})
    CompareAnswer.model_validate(compared.json())
    ErrorAnswer.model_validate(_upload(client, b"not an image").json())


def test_the_answer_equals_the_api_on_the_same_bytes(client, pipeline, photo):
    response = _upload(client, photo.read_bytes(), name=photo.name)
    assert response.status_code == 200, response.text
    answer = response.json()
    expected = pipeline.predict(photo.read_bytes(), image_id=photo.stem)
    assert answer["probability"] == pytest.approx(expected.probability, abs=1e-9)
    assert answer["decision"] == expected.decision and answer["threshold"] == expected.threshold
    assert (answer["width"], answer["height"]) == (expected.width, expected.height)
    assert answer["measurements"]["area_pixels"] == expected.measurements.area_pixels
    mask = np.asarray(Image.open(io.BytesIO(base64.b64decode(answer["mask_png"]))))
    assert np.array_equal(mask > 0, expected.mask)
    overlay = Image.open(io.BytesIO(base64.b64decode(answer["overlay_png"])))
    assert overlay.format == "PNG" and overlay.size == (expected.width, expected.height)  # under 1024 px: as is
    assert np.array_equal(np.asarray(overlay), expected.overlay(caption=False))
    assert answer["model"]["engine"] == "onnx" and set(answer["timings_ms"]) == {"upload", "predict", "encode", "total"}
    assert "mask_png" not in client.post("/api/v1/predict?images=false", files={"image": photo.read_bytes()}).json()


def _bad_uploads(photo):
    content = photo.read_bytes()
    tiny = io.BytesIO()
    Image.new("RGB", (1, 1)).save(tiny, format="PNG")
    return {
        "not an image": (dict(content=b"hello, not a picture"), 422, "cannot read image"),
        "truncated JPEG": (dict(content=content[: len(content) // 3]), 422, "truncated"),
        "30000x30000 PNG bomb": (dict(content=png_claiming(30000, 30000), name="bomb.png"), 422, "absurd image size"),
        "zero bytes": (dict(content=b""), 422, "empty file"),
        "1x1 image": (dict(content=tiny.getvalue(), name="dot.png"), 422, "too small"),
        "wrong field name": (dict(content=content, field="file"), 400, "no file in the field 'image'"),
    }


@pytest.mark.parametrize(
    "case", ["not an image", "truncated JPEG", "30000x30000 PNG bomb", "zero bytes", "1x1 image", "wrong field name"]
)
def test_each_bad_upload_is_a_4xx_with_a_message_and_the_service_goes_on(client, photo, case):
    upload, status, text = _bad_uploads(photo)[case]
    response = _upload(client, **upload)
    assert response.status_code == status and text in response.json()["detail"], response.text
    if status == 422:  # the message names the upload
        assert response.json()["detail"].startswith(upload.get("name", "lesion.jpg"))
    assert _upload(client, photo.read_bytes()).status_code == 200


def test_too_large_not_multipart_and_tokens(pipeline, photo):
    client = _client(pipeline, max_upload_mb=10_000 / 2**20, api_key="s3cret")
    try:
        good = {"Authorization": "Bearer s3cret"}
        assert client.get("/api/v1/health").json()["auth"] == "bearer"  # probes need no token
        assert _upload(client, photo.read_bytes()).status_code == 401
        assert _upload(client, photo.read_bytes(), headers={"Authorization": "Bearer guess"}).status_code == 401
        assert client.get("/api/v1/model").status_code == 401
        large = _upload(client, b"x" * 20_000, headers=good)
        assert large.status_code == 413 and "exceeds the limit of 10,000 bytes" in large.json()["detail"]
        raw = client.post("/api/v1/predict", content=b"raw bytes", headers=good | {"Content-Type": "image/jpeg"})
        assert raw.status_code == 415 and "multipart/form-data" in raw.json()["detail"]
        small = io.BytesIO()
        Image.open(photo).resize((64, 48)).save(small, format="JPEG")
        assert _upload(client, small.getvalue(), headers=good).status_code == 200
    finally:
        client.__exit__(None, None, None)


def _declaring(width: int, height: int) -> bytes:
    """A small PNG whose header declares width x height (its data is a 1x1 image's: never decoded)."""
    import struct
    import zlib

    buffer = io.BytesIO()
    Image.new("RGB", (1, 1)).save(buffer, format="PNG")
    png = bytearray(buffer.getvalue())
    header = b"IHDR" + struct.pack(">II", width, height) + bytes(png[24:29])  # depth, colour, methods kept
    png[12:29] = header
    png[29:33] = struct.pack(">I", zlib.crc32(header))
    return bytes(png)


def test_an_image_declaring_too_many_pixels_is_refused_before_it_is_decoded(pipeline, photo):
    client = _client(pipeline, max_pixels=2_000_000)
    try:
        bombs = [_upload(client, _declaring(12_000, 12_000), name=f"bomb{i}.png") for i in range(4)]
        for answer in bombs:  # 144 megapixels each: 432 MB apiece, had they been decoded
            assert answer.status_code == 413, answer.text
            assert (
                "declares 12000x12000 = 144,000,000 pixels, over this service's limit of 2,000,000"
                in answer.json()["detail"]
            )
        # Decoded, they would have failed later (422: the data holds one pixel), not been refused up front.
        assert _upload(client, photo.read_bytes()).status_code == 200  # a real photograph still passes
    finally:
        client.__exit__(None, None, None)


class _Held:
    """A pipeline whose predictions wait until released: the service's queue fills up."""

    def __init__(self, pipeline):
        self.pipeline, self.card, self.release = pipeline, pipeline.card, threading.Event()

    def predict(self, image, image_id=None):
        if image_id != "warm-up":
            self.release.wait(30)
        return self.pipeline.predict(image, image_id=image_id)

    def predict_many(self, images, **options):
        if options.get("image_ids"):  # not the warm-up
            self.release.wait(30)
        return self.pipeline.predict_many(images, **options)

    def predict_stream(self, images, **options):
        if options.get("image_ids"):  # not the warm-up
            self.release.wait(30)
        return self.pipeline.predict_stream(images, **options)

    predict_each = srcrn.Pipeline.predict_each  # the real one, over the held predict_stream


def test_beyond_the_queue_requests_get_503_with_retry_after(pipeline, photo):
    held = _Held(pipeline)
    client = _client(held, concurrency=1, max_batch=1, queue=1)
    try:
        answers: list[int] = []
        first = [threading.Thread(target=lambda: answers.append(_upload(client, photo.read_bytes()).status_code))
                 for _ in range(2)]  # fmt: skip
        for thread in first:
            thread.start()
        deadline = time.monotonic() + 30
        while client.get("/api/v1/ready").json()["busy"] < 2:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        shed = _upload(client, photo.read_bytes())
        assert shed.status_code == 503 and shed.headers["Retry-After"] == "2" and "busy" in shed.json()["detail"]
        held.release.set()
        for thread in first:
            thread.join(60)
        assert answers == [200, 200]
    finally:
        held.release.set()
        client.__exit__(None, None, None)


def test_concurrent_requests_are_batched_and_each_gets_its_own_answer(pipeline, sample):
    images = sorted((sample / "images").glob("*.jpg"))[:6]
    held = _Held(pipeline)
    client = _client(held, max_batch=4)
    sizes: list[int] = []
    original = held.predict_stream

    def counted(batch, **options):
        sizes.append(len(batch))
        return original(batch, **options)

    held.predict_stream = counted
    try:
        answers: dict[str, dict] = {}

        def send(path):
            answers[path.stem] = _upload(client, path.read_bytes(), name=path.name).json()

        threads = [threading.Thread(target=send, args=(path,)) for path in images]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 30
        while client.get("/api/v1/ready").json()["busy"] < len(images):  # all arrived, one batch held
            assert time.monotonic() < deadline
            time.sleep(0.02)
        held.release.set()
        for thread in threads:
            thread.join(60)
        # The first request alone (held), then those that waited meanwhile, in batches of at most 4.
        assert sum(sizes) == 6 and max(sizes) > 1 and max(sizes) <= 4, sizes
        for path in images:
            expected = pipeline.predict(path)
            assert answers[path.stem]["probability"] == pytest.approx(expected.probability, abs=1e-5)
            assert answers[path.stem]["image_id"] == path.stem
    finally:
        held.release.set()
        client.__exit__(None, None, None)


def test_serve_without_a_model_is_one_line(capsys, monkeypatch, tmp_path):
    from srcrn.bundle import default

    monkeypatch.setattr(default, "default_bundle_dir", lambda: tmp_path / "none")  # a srcrn that ships none
    message = cli_error(capsys, "serve")
    assert "ships no default model yet" in message and "--model BUNDLE" in message
    assert "needs a bundle folder" in cli_error(capsys, "serve", "--segmenter", "x.ckpt")


def test_a_port_in_use_is_one_line(capsys, tiny_bundle):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        message = cli_error(capsys, "serve", "--model", str(tiny_bundle), "--port", str(port))
    assert f"--port {port}: 127.0.0.1:{port} is in use" in message


def _serving(pipeline, **settings):
    """A real uvicorn server in a thread (TestClient cannot send a byte now and then)."""
    import socket

    import uvicorn

    from srcrn.serving.app import ServeSettings, create_app

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    from srcrn.serving.protocol import guarded_protocol

    given = ServeSettings(**settings)
    config = uvicorn.Config(create_app(pipeline, given), host="127.0.0.1", port=port, log_level="warning",
                            http=guarded_protocol(given))  # fmt: skip
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    import httpx

    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/v1/ready", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, "the service never became ready"
        time.sleep(0.1)
    return server, thread, port


def test_slow_headers_are_cut_off_and_connections_past_the_cap_are_refused_with_retry_after(pipeline):
    import socket

    import httpx

    server, thread, port = _serving(pipeline, header_timeout_seconds=1.0, max_connections=4, retry_after_seconds=3)
    try:
        slow = socket.create_connection(("127.0.0.1", port))
        slow.sendall(b"GET /api/v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # the headers never end
        slow.settimeout(5)
        started = time.monotonic()
        answer = slow.recv(4096)
        assert answer.startswith(b"HTTP/1.1 408") and time.monotonic() - started < 4, answer
        assert slow.recv(4096) == b""  # and closed
        slow.close()
        idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(4)]  # the cap, held open
        extra = socket.create_connection(("127.0.0.1", port))
        extra.settimeout(5)
        refused = extra.recv(4096)
        assert refused.startswith(b"HTTP/1.1 503") and b"Retry-After: 3" in refused, refused
        for connection in [*idle, extra]:
            connection.close()
        time.sleep(0.3)
        assert httpx.get(f"http://127.0.0.1:{port}/api/v1/health", timeout=5).status_code == 200  # served again
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def test_slow_uploads_hold_no_slot_and_are_dropped_with_408(pipeline, photo, caplog):
    import logging
    import socket

    import httpx

    server, thread, port = _serving(pipeline, concurrency=1, max_batch=1, queue=1, read_timeout_seconds=4)
    head = (
        b"POST /api/v1/predict HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: multipart/form-data; boundary=xyz\r\nContent-Length: 100000\r\n\r\n--xyz\r\n"
    )
    slow = []
    try:
        with caplog.at_level(logging.INFO, logger="srcrn.serving.app"):
            for _ in range(16):  # more than every admission slot (2) and the queue together
                client = socket.create_connection(("127.0.0.1", port), timeout=30)
                client.sendall(head)
                slow.append(client)
            started = time.monotonic()
            answer = httpx.post(f"http://127.0.0.1:{port}/api/v1/predict", timeout=30,
                                files={"image": (photo.name, photo.read_bytes(), "image/jpeg")})  # fmt: skip
            assert answer.status_code == 200 and time.monotonic() - started < 10
            for client in slow[:15]:  # past the read deadline each is answered 408
                assert client.recv(200).startswith(b"HTTP/1.1 408")
            slow[15].close()  # one that vanishes mid-upload is an INFO line, not an internal error
            time.sleep(0.5)
            again = httpx.post(f"http://127.0.0.1:{port}/api/v1/predict", timeout=30,
                               files={"image": ("x" * 300 + ".jpg", photo.read_bytes(), "image/jpeg")})  # fmt: skip
            assert again.status_code == 200, again.text  # a 300-byte file name is fine too
        assert "internal error" not in caplog.text
    finally:
        for client in slow:
            client.close()
        server.should_exit = True
        thread.join(30)


def test_file_like_objects_and_unnamed_images_get_their_own_ids(pipeline, photo, sample, tmp_path):
    import io

    other = sorted((sample / "images").glob("*.jpg"))[1]
    with open(photo, "rb") as handle:
        from_file = pipeline.predict(handle)
    from_buffer = pipeline.predict(io.BytesIO(photo.read_bytes()))
    assert from_file.probability == pytest.approx(pipeline.predict(photo).probability, abs=1e-9)
    assert from_buffer.image_id == from_file.image_id  # the same content, the same id
    second = pipeline.predict(other.read_bytes())
    assert second.image_id != from_buffer.image_id and second.image_id.startswith("image-")
    from_buffer.save(tmp_path)
    second.save(tmp_path)
    assert len(list((tmp_path / "masks").glob("*.png"))) == 2  # never one saved over the other
    with pytest.raises(srcrn.DataError, match="unsupported input type int"):
        pipeline.predict(42)


def test_the_version(capsys):
    from srcrn.cli import main

    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code in (0, None) and capsys.readouterr().out.strip() == f"srcrn {srcrn.__version__}"


def test_a_foreign_host_and_a_cross_site_form_post_are_refused(client, photo):
    """Issue 32: a foreign Host (DNS rebinding) is 400; a POST whose Origin is another site (a
    form there needs no preflight) is 403; the page's own origin is answered."""
    content = photo.read_bytes()
    assert client.get("/api/v1/health", headers={"host": "attacker.example"}).status_code == 400
    refused = _upload(client, content, headers={"origin": "http://attacker.example"})
    assert refused.status_code == 403 and "cross-site request refused" in refused.json()["detail"]
    assert _upload(client, content, headers={"origin": "http://127.0.0.1"}).status_code == 200
    assert _upload(client, content).status_code == 200  # no Origin: not a browser's cross-site form


def test_the_hosts_answered_follow_the_address_listened_on():
    from srcrn.serving.settings import ServeSettings

    assert "localhost" in ServeSettings().hosts() and "attacker.example" not in ServeSettings().hosts()
    assert ServeSettings(host="0.0.0.0").hosts() == ["*"]
    assert ServeSettings(host="0.0.0.0", allowed_hosts=["derm.clinic.example"]).hosts() == ["derm.clinic.example"]


@pytest.mark.slow
def test_four_decompression_bombs_at_once_keep_the_service_under_1_5_gb():
    """Real bombs (PNGs of 144 megapixels of zeros, 140 KB each: 432 MB apiece decoded), four at
    once to ``srcrn serve`` with the shipped model and its default pixel limit: each a 413, and the process's peak
    resident memory (VmHWM) stays under 1.5 GB (issue 32: 5.4 GB before the limit)."""
    from concurrent.futures import ThreadPoolExecutor
    from pathlib import Path

    import httpx

    from helpers import serve_process

    buffer = io.BytesIO()
    Image.new("L", (12_000, 12_000)).save(buffer, format="PNG", compress_level=9)
    bomb = buffer.getvalue()
    assert len(bomb) < 500_000
    with serve_process() as (url, child):

        def send(index: int) -> httpx.Response:
            files = {"image": (f"bomb{index}.png", bomb, "image/png")}
            return httpx.post(f"{url}/api/v1/predict", files=files, timeout=120)

        with ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(send, range(4)))
        status = Path(f"/proc/{child.pid}/status").read_text()
    assert [a.status_code for a in answers] == [413] * 4, [a.text for a in answers]
    peak_kb = int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:")))
    print(f"srcrn serve peak RSS with four 144-megapixel bombs: {peak_kb / 1024:.0f} MB")
    assert peak_kb < 1.5 * 1024 * 1024
