"""Fuzzing the readers of user files (Hypothesis): random bytes and mutations of valid files.
Every outcome is a valid result or the project's own error (one line for the user), never
anything else (no IndexError, KeyError, UnicodeDecodeError... reaching the user)."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from srcrn.bundle.schema import read_manifest
from srcrn.data.images import decode_image
from srcrn.data.isic import read_labels
from srcrn.errors import SrcrnError

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

VALID_LABELS = b"image_id,melanoma,seborrheic_keratosis\nISIC_0000001,0.0,1.0\nISIC_0000002,1,0\n"


@st.composite
def _mutations(draw: st.DrawFn, valid: bytes) -> bytes:
    """Valid bytes with slices replaced, inserted or cut off, or bytes flipped."""
    content = bytearray(valid)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["replace", "cut", "flip", "insert"]))
        at = draw(st.integers(0, max(0, len(content) - 1)))
        if kind == "cut":
            del content[at:]
        elif kind == "flip" and content:
            content[at] ^= draw(st.integers(1, 255))
        elif kind == "insert":
            content[at:at] = draw(st.binary(max_size=16))
        else:
            content[at : at + draw(st.integers(0, 8))] = draw(st.binary(max_size=8))
    return bytes(content)


def _outcome_is_valid_or_ours(call):
    try:
        call()
    except SrcrnError as error:
        assert str(error) and "\n" not in str(error)  # one line for the user


@FUZZ
@given(content=st.one_of(st.binary(max_size=300), _mutations(VALID_LABELS)))
def test_label_csv_reader(tmp_path, content):
    path = tmp_path / "labels.csv"
    path.write_bytes(content)
    _outcome_is_valid_or_ours(lambda: read_labels(path))


def _valid_manifest() -> dict:
    part = {"file": "segmenter.onnx", "image_size": 128, "output": "logits", "tta": False, "keep_largest": False}
    return {
        "format": "srcrn-bundle",
        "version": 3,
        "srcrn_version": "0.1.0",
        "normalization": {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "scale": 1 / 255},
        "segmenter": part,
        "classifier": {
            "file": "classifier.onnx",
            "image_size": 128,
            "output": "logit",
            "input": "crop",
            "margin": 0.1,
            "threshold": 0.5,
        },
    }


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=12,
)


@FUZZ
@given(
    content=st.one_of(
        st.binary(max_size=300),
        _mutations(json.dumps(_valid_manifest()).encode()),
        json_values.map(lambda v: json.dumps(v).encode()),
        st.builds(
            lambda key, value: json.dumps(_valid_manifest() | {key: value}).encode(),
            st.sampled_from(["format", "version", "normalization", "segmenter", "classifier"]),
            json_values,
        ),
    )
)
def test_bundle_manifest_reader(tmp_path, content):
    (tmp_path / "bundle.json").write_bytes(content)
    for name in ("segmenter.onnx", "classifier.onnx"):
        (tmp_path / name).write_bytes(b"stand-in")
    _outcome_is_valid_or_ours(lambda: read_manifest(tmp_path))


def _encoded(format_: str) -> bytes:
    rng = np.random.default_rng(0)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(buffer, format=format_)
    return buffer.getvalue()


@FUZZ
@pytest.mark.parametrize("format_", ["JPEG", "PNG"])
@given(data=st.data())
def test_image_decoder(tmp_path, format_, data):
    content = data.draw(st.one_of(st.binary(max_size=400), _mutations(_encoded(format_))))
    path = tmp_path / f"image.{format_.lower()}"
    path.write_bytes(content)

    def decode():
        image, original = decode_image(path, 32)
        assert image.shape == (32, 32, 3) and image.dtype == np.uint8 and min(original) >= 1

    _outcome_is_valid_or_ours(decode)
