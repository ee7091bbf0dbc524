"""Helpers shared by the tests (importable: ``from helpers import ...``)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image


def write_image(path: Path, size=(64, 48), seed=0, mode="RGB") -> Path:
    rng = np.random.default_rng(seed)
    array = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(array).convert(mode).save(path)
    return path


def run_cli(*args: str) -> None:
    """``srcrn ARGS`` in-process; it must exit successfully."""
    from srcrn.cli import main

    with pytest.raises(SystemExit) as done:
        main(list(args))
    assert done.value.code in (0, None), done.value.code


def small_segmentation_config(tmp_path: Path, **changes):
    """Stage-1 settings for tests: 64 px, batch 4, one epoch of two steps, a private cache."""
    from srcrn.settings import SegmentTrainSettings, load_settings

    settings: dict[str, Any] = dict(
        image_size=64, batch_size=4, epochs=1, steps_per_epoch=2, eval_batch_size=8, cache=str(tmp_path / "cache")
    )
    settings.update(changes)
    return load_settings(SegmentTrainSettings, **settings)


def small_classification_config(tmp_path: Path, **changes):
    """Stage-2 settings for tests: 64 px, batch 8, one epoch, a private cache."""
    from srcrn.settings import ClassifyTrainSettings, load_settings

    settings: dict[str, Any] = dict(image_size=64, batch_size=8, epochs=1, cache=str(tmp_path / "cache"))
    settings.update(changes)
    return load_settings(ClassifyTrainSettings, **settings)


def cli_error(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    """``srcrn ARGS`` in-process; it must fail with exit status 2 and print exactly one
    ``error:`` line, which is returned."""
    from srcrn.cli import main

    capsys.readouterr()
    with pytest.raises(SystemExit) as done:
        main(list(args))
    assert done.value.code == 2, args
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, (args, errors)
    return errors[0]


def segment_eval(model: str | Path, data: Path, out: Path, cache: Path, *extra: str) -> None:
    """``srcrn segment eval`` of ``model`` on ``data`` into ``out`` (private cache, no progress)."""
    run_cli("segment", "eval", "--model", str(model), "--data", str(data), "--out", str(out),
            "--cache", str(cache), "--no-progress", *extra)  # fmt: skip


def png_claiming(width, height):
    """A tiny PNG whose header claims ``width`` x ``height`` (a decompression bomb's shape,
    without the gigabytes)."""
    import io
    import struct
    import zlib

    buffer = io.BytesIO()
    Image.new("L", (8, 8)).save(buffer, format="PNG")
    content = bytearray(buffer.getvalue())
    header = struct.pack(">II", width, height) + bytes(content[24:29])
    content[16:29] = header
    content[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + header))
    return bytes(content)


# The first lines of a script for a fresh interpreter where importing torch fails, as in an install
# without srcrn[train] (a finder refuses it; scipy looks torch up in sys.modules, so it is not put
# there as None).
NO_TORCH = (
    "import importlib.abc, sys\n"
    "class NoTorch(importlib.abc.MetaPathFinder):\n"
    "    def find_spec(self, name, path=None, target=None):\n"
    "        if name.split('.')[0] == 'torch':\n"
    "            raise ImportError('torch is blocked in this test')\n"
    "sys.meta_path.insert(0, NoTorch())\n"
)


def code_running_skops(path: Path, marker: Path) -> Path:
    """A skops file shaped as a srcrn feature model whose loading, when its types are trusted by
    prefix ("numpy."), runs code: numpy's test helper ``runstring`` called with a statement that
    writes ``marker`` (through skops's ConstructorFromReduceNode)."""
    import json
    import zipfile

    def text(value: str, ident: int) -> dict:
        return {"__class__": "str", "__module__": "builtins", "__loader__": "JsonNode",
                "content": json.dumps(value), "is_json": True, "__id__": ident}  # fmt: skip

    def listed(items: list, ident: int) -> dict:
        return {"__class__": "list", "__module__": "builtins", "__loader__": "ListNode", "content": items,
                "__id__": ident}  # fmt: skip

    key = {"__class__": "str", "__module__": "builtins", "__loader__": "TypeNode", "__id__": 7}
    empty = {"__class__": "dict", "__module__": "builtins", "__loader__": "DictNode", "content": {},
             "key_types": listed([], 6), "__id__": 3}  # fmt: skip
    statement = f"open({str(marker)!r}, 'w').write('code ran')"
    arguments = {"__class__": "tuple", "__module__": "builtins", "__loader__": "TupleNode",
                 "content": [text(statement, 2), empty], "__id__": 4}  # fmt: skip
    call = {"__class__": "runstring", "__module__": "numpy.testing._private.utils",
            "__loader__": "ConstructorFromReduceNode", "content": arguments, "__id__": 5}  # fmt: skip
    schema = {"__class__": "dict", "__module__": "builtins", "__loader__": "DictNode",
              "content": {"format": text("srcrn-feature-model", 1), "estimator": call},
              "key_types": listed([key, key], 8), "__id__": 9, "protocol": 2, "_skops_version": "0.16.0"}  # fmt: skip
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("schema.json", json.dumps(schema))
    return path


@contextlib.contextmanager
def serve_process(*options: str) -> Iterator[tuple[str, Any]]:
    """``srcrn serve OPTIONS`` on a free port as a child process: its URL once it is ready, and the child."""
    import json
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "srcrn", "serve", *options, "--port", str(port)]
    child = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert child.poll() is None, child.stderr.read() if child.stderr else ""
            try:
                with urllib.request.urlopen(f"{url}/api/v1/ready", timeout=2) as answer:
                    if json.load(answer)["status"] == "ready":
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "srcrn serve never became ready"
            time.sleep(0.2)
        yield url, child
    finally:
        child.terminate()
        child.wait(30)
