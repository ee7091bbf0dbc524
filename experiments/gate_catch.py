"""Issue 33: the input gate's catch table: non-dermoscopic and damaged inputs built from
scikit-image's ``data`` images, synthetic pages and damaged or degraded copies of a sample image,
each predicted with a bundle (default: the shipped one); prints one Markdown row an input.

    python experiments/gate_catch.py [BUNDLE]
"""

from __future__ import annotations

import io
import sys

import numpy as np
from PIL import Image, ImageFilter
from skimage import data

import srcrn
import srcrn.sample

SKIMAGE = ("chelsea", "coffee", "astronaut", "rocket", "hubble_deep_field", "immunohistochemistry", "retina",
           "coins", "camera", "page", "brick", "grass", "gravel", "colorwheel")  # fmt: skip


def png(array: np.ndarray) -> bytes:
    """PNG bytes of an RGB or grey uint8 array."""
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "PNG")
    return buffer.getvalue()


def cases() -> dict[str, bytes]:
    """The inputs, by name: none of them is a dermoscopic image the model can assess."""
    first = sorted((srcrn.sample.sample_dir() / "images").glob("*.jpg"))[0]
    damaged = bytearray(first.read_bytes())
    damaged[800:2000] = bytes(1200)
    built = {
        "white page": png(np.full((300, 400, 3), 255, np.uint8)),
        "black page": png(np.zeros((300, 400, 3), np.uint8)),
        "noise": png(np.random.default_rng(0).integers(0, 256, (300, 400, 3), dtype=np.uint8)),
        "damaged JPEG (a sample, bytes 800-2000 zeroed)": bytes(damaged),
        "greyscale copy of a sample": png(np.asarray(Image.open(first).convert("L"))),
        "blurred copy of a sample (Gaussian, 6 px)": png(
            np.asarray(Image.open(first).filter(ImageFilter.GaussianBlur(6)))
        ),
        "text page (skimage text)": png(data.text()),
    }
    for name in SKIMAGE:
        array = getattr(data, name)()
        built[f"skimage {name}"] = png(np.asarray(array[..., :3] if array.ndim == 3 else array, np.uint8))
    return built


def main() -> None:
    """Predict every case and print the table and the count caught."""
    pipeline = srcrn.Pipeline.from_bundle(sys.argv[1] if len(sys.argv) > 1 else "default")
    figures = pipeline.gate.typicality, pipeline.gate.image_typicality
    print("thresholds: lesion-feature distance "
          + " ; image-feature residual ".join("n/a" if f is None else f"{f.threshold:.1f}" for f in figures))  # fmt: skip
    print("| input | gate | reasons | lesion-feature distance | image-feature residual |")
    print("|---|---|---|---|---|")
    built = cases()
    caught = 0
    for name, given in built.items():
        result = pipeline.predict(given, image_id="case")
        refused = not result.assessment.assessed
        caught += refused
        shown = [result.assessment.figures.get(key) for key in ("typicality", "image_typicality")]
        distances = " | ".join("n/a" if d is None else f"{d:.1f}" for d in shown)
        print(
            f"| {name} | {'caught' if refused else 'missed'} | {', '.join(result.assessment.codes) or '-'} | {distances} |"
        )
    print(f"caught {caught} of {len(built)}")


if __name__ == "__main__":
    main()
