"""The input gate (issue 33): a blank page, a damaged file, a greyscale copy, a blurred copy and
an image unlike the training images are 'not assessable', with reasons and no verdict, on the
API and in predict's tables; intact sample images pass; the gate's figures are what they say."""

from __future__ import annotations

import io
import json
import shutil

import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageFilter

import srcrn
from helpers import cli_error, run_cli
from srcrn.answers.gate import ASSESSED, NOT_ASSESSABLE, Gate, Typicality, assess, sharpness
from srcrn.data.images import ImageFile, jpeg_damage


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "PNG")
    return buffer.getvalue()


def _damaged(path) -> bytes:
    data = bytearray(path.read_bytes())
    data[800:2000] = bytes(1200)  # the middle of the entropy-coded data overwritten
    return bytes(data)


def test_libjpeg_reports_a_damaged_file_and_nothing_for_intact_ones(sample):
    images = sorted((sample / "images").glob("*.jpg"))
    assert all(jpeg_damage(ImageFile(path)) is None for path in images)
    assert jpeg_damage(ImageFile(_damaged(images[0]))) == "Corrupt JPEG data: premature end of data segment"
    assert jpeg_damage(ImageFile(_png(np.zeros((64, 64, 3), np.uint8)))) is None  # not a JPEG


def test_the_gate_refuses_what_cannot_be_assessed_and_passes_a_lesion(sample):
    gate = Gate()
    image = np.asarray(Image.open(sorted((sample / "images").glob("*.jpg"))[0]).convert("RGB"))
    lesion = np.zeros(image.shape[:2], bool)
    lesion[60:120, 80:160] = True
    assert assess(gate, image, lesion).status == ASSESSED
    white = np.full_like(image, 255)
    refused = assess(gate, white, lesion)
    assert refused.status == NOT_ASSESSABLE and {"blank", "greyscale"} <= set(refused.codes)
    blurred = np.asarray(Image.fromarray(image).filter(ImageFilter.GaussianBlur(6)))
    assert sharpness(blurred) < gate.sharpness < sharpness(image)
    assert assess(gate, blurred, lesion).codes == ["out of focus"]
    assert assess(gate, image, np.zeros_like(lesion)).codes == ["no lesion"]
    assert assess(gate, image, np.ones_like(lesion)).codes == ["fills the frame"]
    assert assess(gate, image, lesion, mode="L").codes == ["greyscale"]
    assert assess(gate, image, lesion, mode="CMYK").warnings == ["colour converted from CMYK to RGB"]
    assert assess(gate, image, lesion, damage="Corrupt JPEG data").codes == ["damaged"]


def test_the_typicality_distance_is_the_mahalanobis_distance():
    """With every principal axis kept, the distance is the Mahalanobis distance of the standardised
    features (scikit-learn's EmpiricalCovariance as the independent reference)."""
    from sklearn.covariance import EmpiricalCovariance
    from sklearn.decomposition import PCA

    rng = np.random.default_rng(0)
    train = rng.normal(size=(400, 5)) @ rng.normal(size=(5, 5)) + 3
    center, spread = train.mean(0), train.std(0)
    standard = (train - center) / spread
    pca = PCA(5).fit(standard)
    typicality = Typicality(names=list("abcde"), center=center.tolist(), spread=spread.tolist(),
                            components=pca.components_.tolist(), scales=np.sqrt(pca.explained_variance_).tolist(),
                            threshold=3.0)  # fmt: skip
    probe = rng.normal(size=(7, 5)) * 2 + 3
    reference = np.sqrt(
        EmpiricalCovariance().fit(standard).mahalanobis((probe - center) / spread) * 399 / 400
    )  # PCA: 1/(n-1)
    assert typicality.distance(probe, list("abcde")) == pytest.approx(reference, rel=1e-6)
    shuffled = probe[:, ::-1]
    assert typicality.distance(shuffled, list("edcba")) == pytest.approx(reference, rel=1e-6)  # by name
    assert np.isnan(typicality.distance(probe[:, :4], list("abcd"))).all()  # a column missing: no figure


def test_the_residual_is_the_distance_from_the_principal_subspace_and_refuses_alone(sample):
    """``measure="residual"``: what the components leave unexplained (scikit-learn's PCA
    reconstruction as the reference); beyond its threshold the gate says not dermoscopic and
    names the image features, while an older gate's typicality (no measure) stays Mahalanobis."""
    from sklearn.decomposition import PCA

    rng = np.random.default_rng(0)
    train = rng.normal(size=(300, 2)) @ rng.normal(size=(2, 6)) + rng.normal(scale=0.01, size=(300, 6))
    center, spread = train.mean(0), train.std(0)
    pca = PCA(2).fit((train - center) / spread)
    names = [f"cnn_{i}" for i in range(6)]
    residual = Typicality(names=names, center=center.tolist(), spread=spread.tolist(),
                          components=pca.components_.tolist(), scales=np.sqrt(pca.explained_variance_).tolist(),
                          threshold=1.0, measure="residual")  # fmt: skip
    probe = rng.normal(size=(5, 6)) * 3
    standard = (probe - center) / spread
    rebuilt = pca.inverse_transform(pca.transform(standard)) - pca.mean_  # the standardised training mean is 0
    assert residual.distance(probe, names) == pytest.approx(np.linalg.norm(standard - rebuilt, axis=1), rel=1e-6)
    # Six standard deviations along the first axis: far by Mahalanobis, on the subspace by residual.
    on_plane = (center + spread * 6 * np.sqrt(pca.explained_variance_[0]) * pca.components_[0])[None]
    assert residual.distance(on_plane, names) == pytest.approx([0.0], abs=1e-9)
    assert residual.model_copy(update={"measure": "mahalanobis"}).distance(on_plane, names) == pytest.approx([6.0])
    assert Typicality.model_validate(residual.model_dump(exclude={"measure"})).measure == "mahalanobis"
    gate = Gate(image_typicality=residual)
    image = np.asarray(Image.open(sorted((sample / "images").glob("*.jpg"))[0]).convert("RGB"))
    lesion = np.zeros(image.shape[:2], bool)
    lesion[60:120, 80:160] = True
    assert assess(gate, image, lesion, image_typicality=0.5).assessed
    refused = assess(gate, image, lesion, image_typicality=2.0)
    assert refused.codes == ["not dermoscopic"] and "image features' distance 2.0 > 1.0" in refused.reasons[0]
    assert Gate(image_typicality=residual).shown()["not_dermoscopic_image_distance"] == 1.0


@pytest.mark.slow
def test_a_blank_page_and_a_damaged_jpeg_get_no_verdict_anywhere(tiny_bundle, sample, tmp_path, capsys):
    images = sorted((sample / "images").glob("*.jpg"))
    pipeline = srcrn.Pipeline.from_bundle(tiny_bundle)
    for given in (_png(np.full((300, 400, 3), 255, np.uint8)), _damaged(images[0])):
        result = pipeline.predict(given)
        assert result.assessment.status == NOT_ASSESSABLE and result.decision == NOT_ASSESSABLE
        answer = result.to_dict()
        assert answer["status"] == NOT_ASSESSABLE and answer["probability_readable"] is False and answer["reasons"]
        assert "benign" not in result.meaning.lower() and "excision" not in result.meaning.lower()
        assert result.caption.startswith("Not assessable")
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "white.png").write_bytes(_png(np.full((300, 400, 3), 255, np.uint8)))
    (folder / "broken.jpg").write_bytes(_damaged(images[0]))
    shutil.copy(images[1], folder / images[1].name)
    run_cli("predict", str(folder), "--model", str(tiny_bundle), "--out", str(tmp_path / "out"), "--no-progress")
    table = pd.read_csv(tmp_path / "out" / "predictions.csv").set_index("image_id")
    assert table.loc["white", "status"] == table.loc["broken", "status"] == NOT_ASSESSABLE
    assert table.loc["white", "decision"] == NOT_ASSESSABLE and "blank" in table.loc["white", "reasons"]
    assert "damaged" in table.loc["broken", "reasons"]
    records = {r["image_id"]: r for r in json.loads((tmp_path / "out" / "predictions.json").read_text())["predictions"]}
    assert records["broken"]["decision"] == NOT_ASSESSABLE
    # The tiny model may find no lesion in the good image: whichever answer, it is a consistent one.
    good = records[images[1].stem]
    assert (good["status"] == ASSESSED) == (good["decision"] in ("melanoma", "benign")) == (not good["reasons"])


@pytest.mark.slow
def test_a_bundle_with_a_bad_gate_is_refused_in_one_line(tiny_bundle, tmp_path, capsys):
    from srcrn.bundle.schema import attach_gate

    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, bundle)
    attach_gate(bundle, {"sharpness": "sharp"})
    message = cli_error(capsys, "model-card", "--model", str(bundle))
    assert "bundle.json's gate is not valid (sharpness: " in message


def test_verdict_bands_split_at_their_thresholds_and_only_high_speaks_of_biopsy():
    from srcrn.answers.bands import HIGH, INTERMEDIATE, LOW, BandFigure, Bands

    bands = Bands(low_below=0.05, high_above=0.3, sensitivity=0.95, specificity=0.9,
                  validation={HIGH: BandFigure(images=30, melanomas=18, share=0.6, ci95=[0.42, 0.75])})  # fmt: skip
    assert [bands.band(p) for p in (0.0, 0.05, 0.0501, 0.3, 0.31, 1.0)] == [
        LOW,
        LOW,
        INTERMEDIATE,
        INTERMEDIATE,
        HIGH,
        HIGH,
    ]
    assert "biopsy" in bands.said(HIGH) and "18 of 30" in bands.said(HIGH) and "60 %" in bands.said(HIGH)
    assert "biopsy" not in bands.said(INTERMEDIATE) + bands.said(LOW)
    with pytest.raises(ValueError, match="low_below must not lie above high_above"):
        Bands(low_below=0.5, high_above=0.3, sensitivity=0.95, specificity=0.9)


@pytest.mark.slow
def test_a_bundle_with_bands_answers_in_bands_everywhere(tiny_bundle, sample, tmp_path, capsys):
    from srcrn.bundle.schema import attach_bands, attach_gate

    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, bundle)
    # A gate that passes any colour image, so the tiny model's answer is assessed and banded.
    attach_gate(bundle, {"blank_std": 0, "sharpness": 0, "lesion_min_share": 0, "lesion_max_share": 1})
    attach_bands(bundle, {"low_below": 0.0, "high_above": 0.0, "sensitivity": 0.95, "specificity": 0.9})
    image = sorted((sample / "images").glob("*.jpg"))[1]
    result = srcrn.Pipeline.from_bundle(bundle).predict(image)
    assert result.assessment.assessed  # every probability is above 0: the high band
    assert result.band == "high" and result.meaning.startswith("High: consider excision")
    assert result.to_dict()["band"] == "high"
    run_cli("predict", str(image), "--model", str(bundle), "--out", str(tmp_path / "out"), "--no-progress")
    row = pd.read_csv(tmp_path / "out" / "predictions.csv").iloc[0]
    assert row["status"] == ASSESSED and row["band"] == "high"
    attach_gate(bundle, {"lesion_min_share": 0.99})  # now not assessable: in no band
    run_cli("predict", str(image), "--model", str(bundle), "--out", str(tmp_path / "out2"), "--no-progress")
    row = pd.read_csv(tmp_path / "out2" / "predictions.csv").iloc[0]
    assert row["status"] == NOT_ASSESSABLE and pd.isna(row["band"])
    attach_bands(bundle, {"low_below": 0.5, "high_above": 0.1, "sensitivity": 0.95, "specificity": 0.9})
    assert "bundle.json's bands is not valid" in cli_error(capsys, "model-card", "--model", str(bundle))


@pytest.mark.slow
def test_a_bundles_cnn_says_its_pooled_features_as_the_checkpoint_does(tiny_bundle, tiny_classifier, sample):
    """The exported CNN's second output (``features``) is the network's pooled backbone features:
    both engines give the same, for a stack too (its CNN member's); a feature model has none."""
    from srcrn.stage2.cnn import CnnModel
    from srcrn.stage2.registry import load_melanoma_model

    pipeline = srcrn.Pipeline.from_bundle(tiny_bundle)
    _, inputs = pipeline.model_inputs(sorted((sample / "images").glob("*.jpg"))[:3])
    exported = pipeline.classifier.image_features(inputs)
    eager = load_melanoma_model(tiny_classifier).image_features(inputs)
    assert isinstance(pipeline.classifier, CnnModel) and exported.shape == (3, 2048)  # ResNet-50's pooled width
    assert np.allclose(exported, eager, rtol=1e-3, atol=1e-4)
    assert np.ptp(exported, axis=0).max() > 0  # three images, three different feature vectors
    # The logits are the same network's: the head applied to those features.
    assert np.allclose(
        pipeline.classifier.logits(inputs, tta=False),
        load_melanoma_model(tiny_classifier).logits(inputs, tta=False),
        atol=1e-4,
    )
