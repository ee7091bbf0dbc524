"""Clinical context (age, sex, body site) as a stage-2 input, and the one stage-2 model
interface: metadata readers, the feature model with clinical columns, the stack as a model,
the registry's recognition by content, bundle v5 of every kind, and scoring parity between
classify eval, predict (both engines) and the Python API."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier

from helpers import NO_TORCH, cli_error, run_cli
from srcrn.data.metadata import (
    NO_CONTEXT,
    SITES,
    ClinicalContext,
    clinical_feature_names,
    clinical_features,
    read_metadata,
)
from srcrn.errors import ConfigError, DataError
from srcrn.stage2.feature_model import FeatureModel
from srcrn.stage2.registry import kind_of, load_melanoma_model, write_stack
from srcrn.stage2.spec import Calibration, probabilities
from srcrn.stage2.stack import StackModel

# --- reading metadata ------------------------------------------------------------------

FORMS = {
    "isic2019": "image,age_approx,anatom_site_general,lesion_id,sex\n"
    "a,55,anterior torso,,female\nb,,,,\nc,30,HEAD/NECK,HAM_1,male\n",
    "isic2020": "image_name,patient_id,sex,age_approx,anatom_site_general_challenge,diagnosis\n"
    "a,P1,female,55,anterior torso,nevus\nb,P2,unknown,,,unknown\nc,P3,male,30,head/neck,melanoma\n",
    "archive": "isic_id,attribution,copyright_license,age_approx,anatom_site_general,sex\n"
    "a,x,CC-0,55,anterior torso,female\nb,x,CC-0,,,\nc,x,CC-BY,30,head/neck,male\n",
}


@pytest.mark.parametrize("form", sorted(FORMS))
def test_the_isic_metadata_forms_read_alike(form, tmp_path):
    path = tmp_path / "metadata.csv"
    path.write_text(FORMS[form])
    contexts = read_metadata(path)
    assert contexts == {
        "a": ClinicalContext(55.0, "female", "anterior torso"),
        "b": NO_CONTEXT,
        "c": ClinicalContext(30.0, "male", "head/neck"),
    }


def test_the_isic_2017_form_has_age_and_sex_only(tmp_path):
    path = tmp_path / "m.csv"
    path.write_text("image_id,age_approximate,sex\nISIC_1,unknown,female\nISIC_2,45,unknown\n")
    assert read_metadata(path) == {"ISIC_1": ClinicalContext(None, "female"), "ISIC_2": ClinicalContext(45.0)}


@pytest.mark.parametrize(
    "text, problem",
    [
        ("image,age_approx,sex\na,150,male\n", "line 2: age_approx: 150 is outside 0-120 years"),
        ("image,age_approx,sex\na,old,male\n", "line 2: age_approx: 'old' is not an age in years"),
        ("image,age_approx,sex\na,40,other\n", "line 2: sex: unknown value 'other'"),
        ("image,anatom_site_general\na,elbow\n", "line 2: anatom_site_general: unknown body site 'elbow'"),
        ("image,sex\na,male\nb,male\na,female\n", "line 4: a appears twice"),
        ("image,sex\nzzz,male\n", "line 2: unknown image id 'zzz'"),
        ("id,label\na,1\n", "unexpected columns id,label"),
        ("", "not a readable CSV file"),
    ],
)
def test_bad_metadata_is_one_line_naming_the_file_and_line(text, problem, tmp_path):
    path = tmp_path / "metadata.csv"
    path.write_text(text)
    with pytest.raises(DataError) as raised:
        read_metadata(path, ids=["a", "b"])
    message = str(raised.value)
    assert message.startswith(str(path)) and problem in message and "\n" not in message


def test_clinical_columns_encode_every_field_and_leave_unknowns_missing():
    contexts = [
        ClinicalContext(40.0, "male", "posterior torso"),
        ClinicalContext(None, "female", "torso"),  # ISIC 2020's unsided torso
        NO_CONTEXT,
    ]
    names = clinical_feature_names(["age", "sex", "site"])
    table = clinical_features(contexts, ["age", "sex", "site"])
    assert table.shape == (3, 2 + len(SITES) + 1) and len(names) == table.shape[1]
    row = dict(zip(names, table[0]))
    assert row["clinical_age"] == 40 and row["clinical_sex_male"] == 1
    assert row["clinical_site_posterior_torso"] == 1 and row["clinical_site_any_torso"] == 1
    assert sum(v for k, v in row.items() if k.startswith("clinical_site_") and k != "clinical_site_any_torso") == 1
    second = dict(zip(names, table[1]))
    assert np.isnan(second["clinical_age"]) and second["clinical_sex_male"] == 0
    assert np.isnan(second["clinical_site_anterior_torso"]) and second["clinical_site_any_torso"] == 1
    assert second["clinical_site_head_neck"] == 0
    assert np.isnan(table[2]).all()
    assert clinical_features(contexts, ["age"]).shape == (3, 1)


def test_values_given_by_code_are_validated_like_a_files():
    assert ClinicalContext.of("62", "M", "Lower_Extremity") == ClinicalContext(62.0, "male", "lower extremity")
    assert ClinicalContext.of("", None, "unknown") == NO_CONTEXT
    with pytest.raises(DataError, match="age: 130 is outside"):
        ClinicalContext.of(130)
    with pytest.raises(DataError, match="site: unknown body site 'knee'"):
        ClinicalContext.of(site="knee")


def test_clinical_settings_accept_lists_and_refuse_the_cnn():
    from srcrn.settings import ClassifyTrainSettings, load_settings

    settings = load_settings(ClassifyTrainSettings, flags={"model": "features", "clinical": ["age,sex", "site"]})
    assert settings.clinical == ["age", "sex", "site"]
    assert load_settings(ClassifyTrainSettings, model="features", clinical="all").clinical == ["age", "sex", "site"]
    with pytest.raises(ConfigError, match=r"clinical\.0: Input should be 'age', 'sex' or 'site' \(given 'weight'\)"):
        load_settings(ClassifyTrainSettings, model="features", clinical=["weight"])
    with pytest.raises(ConfigError, match="the CNN takes images only"):
        load_settings(ClassifyTrainSettings, clinical=["age"])
    with pytest.raises(ConfigError, match="without lesion features needs clinical fields"):
        load_settings(ClassifyTrainSettings, model="features", lesion_features=False)


# --- the feature model with clinical context ------------------------------------------------


def _clinical_model(tmp_path, fields=("age", "sex", "site"), lesion=False):
    """A booster that learnt melanoma = age over 50 (and nothing else)."""
    rng = np.random.default_rng(0)
    ages = rng.integers(5, 90, 200).astype(float)
    contexts = [ClinicalContext(a, rng.choice(["male", "female"]), rng.choice(SITES)) for a in ages]
    labels = (ages > 50).astype(int)
    table = clinical_features(contexts, list(fields))
    estimator = HistGradientBoostingClassifier(max_iter=30, min_samples_leaf=5).fit(table, labels)
    settings = {"image_size": 64, "input": "crop", "margin": 0.1, "clinical": list(fields), "lesion_features": lesion}
    model = FeatureModel(estimator, clinical_feature_names(list(fields)), settings)
    model.save(tmp_path / "clinical.skops")
    return FeatureModel.load(tmp_path / "clinical.skops")


def test_a_clinical_model_scores_images_with_and_without_context(tmp_path):
    model = _clinical_model(tmp_path)
    assert model.kind == "features" and model.clinical_fields == ("age", "sex", "site") and not model.needs_masks
    inputs = np.zeros((3, 64, 64, 3), np.uint8)
    contexts = [ClinicalContext(80, "male", "anterior torso"), ClinicalContext(20), None]
    logits = model.logits(inputs, None, contexts)
    assert logits[0] > 0 > logits[1]  # it reads the age
    assert np.isfinite(logits[2])  # an image without metadata is still scored
    assert np.allclose(model.logits(inputs, None, None), logits[2])  # none given = all unknown
    with pytest.raises(ConfigError, match="2 clinical contexts for 3 images"):
        model.logits(inputs, None, contexts[:2])


# --- the registry and the stack ------------------------------------------------------------


def test_the_registry_recognises_models_by_content_not_name(tmp_path, tiny_classifier):
    renamed = tmp_path / "weights.bin"
    shutil.copy(tiny_classifier, renamed)
    assert kind_of(renamed) == "cnn"
    model = _clinical_model(tmp_path)
    odd = tmp_path / "booster.ckpt"  # a skops file under a checkpoint's name
    shutil.copy(model.source, odd)
    assert kind_of(odd) == "features" and load_melanoma_model(odd).kind == "features"
    junk = tmp_path / "junk.skops"
    junk.write_bytes(b"not a model")
    with pytest.raises(ConfigError, match=r"junk\.skops: not a stage-2 model"):
        load_melanoma_model(junk)


def test_a_stack_is_the_combination_of_its_members_and_round_trips(tmp_path, tiny_classifier):
    clinical = _clinical_model(tmp_path)
    folder = write_stack(tmp_path / "stack", [tiny_classifier, clinical.source], [0.7, -1.3], 0.25, ["a", "b"])
    stack = load_melanoma_model(folder)
    assert (
        isinstance(stack, StackModel)
        and stack.kind == "stack"
        and [m.kind for m in stack.members]
        == [
            "cnn",
            "features",
        ]
    )
    assert stack.clinical_fields == ("age", "sex", "site") and not stack.needs_masks
    inputs = np.random.default_rng(1).integers(0, 256, (4, 64, 64, 3), dtype=np.uint8)
    contexts = [ClinicalContext(70), ClinicalContext(20), None, ClinicalContext(50, "female")]
    cnn = load_melanoma_model(tiny_classifier).logits(inputs)
    features = clinical.logits(inputs, None, contexts)
    expected = 0.25 + 0.7 * cnn + -1.3 * features
    assert np.allclose(stack.logits(inputs, None, contexts), expected)
    assert np.allclose(probabilities(stack, inputs, None, contexts), 1 / (1 + np.exp(-expected)))
    stack.store_extras(threshold=0.3, target_sensitivity=0.95)
    again = load_melanoma_model(folder / "stack.json")
    assert again.spec.threshold == 0.3 and again.spec.calibration == Calibration("stacker")
    # Members that see other inputs cannot be stacked (each image is cut once for all).
    other = FeatureModel(clinical.estimator, clinical.names, clinical.settings | {"margin": 0.3})
    other.save(tmp_path / "other.skops")
    with pytest.raises(ConfigError, match="stack members must see the same input"):
        write_stack(tmp_path / "bad", [tiny_classifier, tmp_path / "other.skops"], [1, 1], 0, ["a", "b"])
        load_melanoma_model(tmp_path / "bad")


# --- bundle v5 of every kind, and scoring parity ----------------------------------------------


@pytest.fixture(scope="module")
def stage2_models(tmp_path_factory, sample, tiny_segmenter, tiny_classifier):
    """A features + clinical model trained on the sample (with its metadata.csv) and a stack
    of it with the tiny CNN, through the CLI."""
    root = tmp_path_factory.mktemp("stage2-models")
    cache = str(root / "cache")
    common = ["--data", str(sample), "--segmenter", tiny_segmenter, "--image-size", "64", "--input", "crop",
              "--margin", "0.1", "--cache", cache, "--no-progress"]  # fmt: skip
    run_cli("classify", "cv", "--out", str(root / "cv-features"), "--folds", "2", "--model", "features",
            "--clinical", "all", *common)  # fmt: skip
    run_cli("classify", "cv", "--out", str(root / "cv-cnn"), "--folds", "2", "--weights", "none",
            "--epochs", "1", "--batch-size", "8", "--select", "last", *common)  # fmt: skip
    run_cli("classify", "train", "--model", "ensemble", "--members", str(root / "cv-cnn"),
            "--members", str(root / "cv-features"), "--data", str(sample), "--out", str(root / "stack"))  # fmt: skip
    features = json.loads((root / "cv-features" / "cv.json").read_text())["val"]["model"]
    cnn = json.loads((root / "cv-cnn" / "cv.json").read_text())["val"]["model"]
    return {"root": root, "cache": cache, "features": features, "cnn": cnn, "stack": str(root / "stack" / "model")}


@pytest.mark.slow
def test_a_stack_stores_the_threshold_chosen_on_its_out_of_fold_scores(stage2_models, sample):
    from srcrn.evaluation.classification import threshold_for_sensitivity

    root = stage2_models["root"]
    out = root / "stack-0.9"
    run_cli("classify", "train", "--model", "ensemble", "--members", str(root / "cv-cnn"), "--members",
            str(root / "cv-features"), "--data", str(sample), "--out", str(out), "--stack-sensitivity", "0.9")  # fmt: skip
    chosen = json.loads((out / "cv.json").read_text())["threshold"]
    oof = pd.read_csv(out / "oof.csv", float_precision="round_trip")  # pandas' fast parser can miss by an ulp
    assert chosen["value"] == threshold_for_sensitivity(oof["truth"].to_numpy(), oof["melanoma"].to_numpy(), 0.9)
    assert chosen["oof"]["sensitivity"] >= 0.9 and chosen["target_sensitivity"] == 0.9
    assert set(chosen["val"]) >= {"sensitivity", "specificity", "tp", "fn"}
    stack = load_melanoma_model(out / "model")
    assert stack.spec.threshold == chosen["value"] and stack.spec.target_sensitivity == 0.9
    assert load_melanoma_model(stage2_models["stack"]).spec.threshold == 0.5  # none asked for: none stored


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["cnn", "features", "stack"])
def test_every_kind_scores_alike_in_eval_predict_both_engines_and_the_api(
    kind, stage2_models, sample, tiny_segmenter, tmp_path
):
    import srcrn

    model_path, cache = stage2_models[kind], stage2_models["cache"]
    model = load_melanoma_model(model_path)
    assert model.kind == kind and ("age" in model.clinical_fields) == (kind != "cnn")
    evaluation = tmp_path / "eval"
    run_cli("classify", "eval", "--model", model_path, "--data", str(sample), "--out", str(evaluation),
            "--segmenter", tiny_segmenter, "--cache", cache, "--no-progress")  # fmt: skip
    evaluated = pd.read_csv(evaluation / "predictions.csv").set_index("image_id")["melanoma"]
    images = sorted((sample / "images").glob("*.jpg"))[:6]
    metadata = str(sample / "metadata.csv")
    # A checkpoint's eval scores the model on the lesion as given: predict's single reading
    # (--no-spread; its default answer is the mean over three turns, tests/test_spread.py).
    run_cli("predict", *map(str, images), "--segmenter", tiny_segmenter, "--classifier", model_path,
            "--metadata", metadata, "--out", str(tmp_path / "torch"), "--no-spread", "--no-progress")  # fmt: skip
    bundle = tmp_path / "bundle"
    run_cli("export", "onnx", "--segmenter", tiny_segmenter, "--classifier", model_path, "--out", str(bundle))
    manifest = json.loads((bundle / "bundle.json").read_text())
    assert manifest["version"] == 5 and manifest["classifier"]["kind"] == kind
    assert manifest["classifier"]["clinical"] == ([] if kind == "cnn" else ["age", "sex", "site"])
    run_cli("predict", *map(str, images), "--engine", "onnx", "--model", str(bundle), "--metadata", metadata,
            "--out", str(tmp_path / "onnx"), "--no-spread", "--no-progress")  # fmt: skip
    for engine in ("torch", "onnx"):
        predicted = pd.read_csv(tmp_path / engine / "predictions.csv").set_index("image_id")
        assert len(predicted) == len(images)
        difference = np.abs(predicted["melanoma"] - evaluated.loc[predicted.index])
        # The same inputs through the same models: equal up to float32 batch effects of the CNN.
        assert difference.max() < (1e-6 if engine == "torch" else 1e-4), (engine, difference.max())
        assert set(predicted["clinical"].fillna("")) <= {"", "age sex site", "age sex", "age site", "age"}
    # The Python API: the same image with its context gives the same probability; without it, another.
    contexts = read_metadata(metadata)
    first = images[0]
    pipeline = srcrn.Pipeline.from_bundle(bundle)
    pipeline.spread_angles = ()  # the lesion as given, as the checkpoint's eval scored it
    if kind == "features":  # a v4 bundle kept the skops file itself: still read, by its content
        from srcrn.bundle.schema import file_sha256

        old = tmp_path / "bundle-v4"
        shutil.copytree(bundle, old)
        entry = json.loads((old / "bundle.json").read_text())
        (old / entry["classifier"]["file"]).unlink()
        shutil.copyfile(model_path, old / "classifier.bin")  # no suffix says what it is
        entry["version"] = 4
        entry["classifier"].update(file="classifier.bin", sha256=file_sha256(old / "classifier.bin"))
        (old / "bundle.json").write_text(json.dumps(entry))
        then = srcrn.Pipeline.from_bundle(old)
        then.spread_angles = ()
        assert then.predict(images[0]).probability == pytest.approx(pipeline.predict(images[0]).probability, abs=1e-9)
    # The input gate's ImageNet figure reads a CNN's pooled features (a stack's CNN member's).
    _, crops = pipeline.model_inputs(images[:2])
    features = pipeline.classifier.image_features(crops)
    assert (features is None) == (kind == "features") and (features is None or features.shape[0] == 2)
    given = contexts[first.stem]
    with_context = pipeline.predict(first, age=given.age, sex=given.sex, site=given.site)
    assert with_context.probability == pytest.approx(evaluated[first.stem], abs=1e-4)
    assert with_context.to_dict()["clinical"]["used"] == ([] if kind == "cnn" else given.given())
    other_age = 5.0 if (given.age or 0) > 40 else 85.0
    changed = pipeline.predict(first, age=other_age, sex=given.sex, site=given.site)
    assert changed.to_dict()["clinical"]["given"]["age"] != given.age
    assert changed.to_dict()["clinical"]["given"]["age"] == other_age  # the value given is the value scored
    # The model reads what it is given: the age it was handed decides its clinical column.
    if kind != "cnn":
        from srcrn.stage2.feature_model import FeatureModel

        features = model if isinstance(model, FeatureModel) else model.members[1]
        inputs = np.zeros((1, 64, 64, 3), np.uint8)
        table, names = features.columns(inputs, np.ones((1, 64, 64), bool), [ClinicalContext(other_age)])
        assert table[0, names.index("clinical_age")] == other_age
    assert pipeline.predict(first).to_dict()["clinical"]["used"] == []  # nothing given, nothing used
    assert pipeline.card.classifier.kind == kind
    assert bool(pipeline.card.classifier.clinical_fields) == (kind != "cnn")


@pytest.mark.slow
def test_the_stack_file_holds_its_members_and_cv_figures(stage2_models):
    stack = stage2_models["root"] / "stack"
    summary = json.loads((stack / "summary.json").read_text())
    assert summary["model_checkpoint"] == str(stack / "model")
    manifest = json.loads((stack / "model" / "stack.json").read_text())
    assert [m["kind"] for m in manifest["members"]] == ["cnn", "features"]
    for member in manifest["members"]:
        assert (stack / "model" / member["file"]).is_file()  # copies: the stack needs no cv folder
    assert json.loads((stack / "cv.json").read_text())["weights"] == manifest["weights"]


@pytest.mark.slow
def test_a_stack_bundle_predicts_without_torch(stage2_models, sample, tiny_segmenter, tmp_path):
    bundle = tmp_path / "bundle"
    run_cli("export", "onnx", "--segmenter", tiny_segmenter, "--classifier", stage2_models["stack"], "--out",
            str(bundle))  # fmt: skip
    images = sorted((sample / "images").glob("*.jpg"))[:3]
    # A fresh interpreter where importing torch fails (a finder refuses it; scipy looks torch up in
    # sys.modules, so it is not put there as None): the stack's CNN and its feature model's trees
    # run in ONNX Runtime, the lesion features in NumPy/scikit-image.
    script = (
        NO_TORCH + "import srcrn\n"
        f"pipeline = srcrn.Pipeline.from_bundle({str(bundle)!r})\n"
        f"result = pipeline.predict({str(images[0])!r}, age=70, sex='male', site='head/neck')\n"
        "assert not [m for m in sys.modules if m.split('.')[0] == 'torch'], 'torch was imported'\n"
        "print(result.probability, pipeline.card.classifier.kind)\n"
    )
    finished = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr[-2000:]
    probability, kind = finished.stdout.split()
    assert 0 < float(probability) < 1 and kind == "stack"


def test_clinical_training_without_metadata_is_one_line(isic_copy, tiny_segmenter, capsys, tmp_path):
    (isic_copy / "metadata.csv").unlink()
    message = cli_error(capsys, "classify", "train", "--model", "features", "--clinical", "age", "--data",
                        str(isic_copy), "--segmenter", tiny_segmenter, "--image-size", "64", "--input", "crop",
                        "--out", str(tmp_path / "run"), "--cache", str(tmp_path / "cache"), "--no-progress")  # fmt: skip
    assert "metadata.csv: no clinical metadata for this data folder; pass --metadata FILE" in message


@pytest.mark.slow
def test_the_service_takes_clinical_fields_and_refuses_bad_ones(stage2_models, sample, tiny_segmenter, tmp_path):
    import time

    from fastapi.testclient import TestClient

    import srcrn
    from srcrn.serving.app import ServeSettings, create_app

    bundle = tmp_path / "bundle"
    run_cli("export", "onnx", "--segmenter", tiny_segmenter, "--classifier", stage2_models["features"], "--out",
            str(bundle))  # fmt: skip
    pipeline = srcrn.Pipeline.from_bundle(bundle)
    photo = sorted((sample / "images").glob("*.jpg"))[0]
    expected = pipeline.predict(photo, age=75, sex="male", site="head/neck")
    with TestClient(create_app(pipeline, ServeSettings()), base_url="http://127.0.0.1") as client:
        deadline = time.monotonic() + 60
        while client.get("/api/v1/ready").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        files = {"image": (photo.name, photo.read_bytes(), "image/jpeg")}
        answer = client.post("/api/v1/predict", files=files, data={"age": "75", "sex": "male", "site": "head/neck"})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["probability"] == pytest.approx(expected.probability, abs=1e-9)
        assert body["clinical"] == {"given": {"age": 75.0, "sex": "male", "site": "head/neck"},
                                    "used": ["age", "sex", "site"], "from_dicom_header": []}  # fmt: skip
        bare = client.post("/api/v1/predict", files=files).json()
        assert bare["clinical"]["used"] == [] and bare["probability"] == pytest.approx(
            pipeline.predict(photo).probability, abs=1e-9
        )
        refused = client.post("/api/v1/predict", files=files, data={"age": "200"})
        assert refused.status_code == 422 and "age: 200 is outside 0-120 years" in refused.json()["detail"]
        refused = client.post("/api/v1/predict", files=files, data={"site": "elbow"})
        assert refused.status_code == 422 and "unknown body site 'elbow'" in refused.json()["detail"]
        schema = client.get("/openapi.json").json()
        properties = schema["paths"]["/api/v1/predict"]["post"]["requestBody"]["content"]["multipart/form-data"]
        assert {"image", "age", "sex", "site"} <= set(properties["schema"]["properties"])


@pytest.mark.slow
def test_a_bundle_of_format_v3_still_loads_as_a_cnn(tiny_bundle, sample, tmp_path):
    import srcrn

    old = tmp_path / "v3"
    shutil.copytree(tiny_bundle, old)
    manifest = json.loads((old / "bundle.json").read_text())
    for key in ("kind", "clinical", "members", "weights", "intercept"):
        manifest["classifier"].pop(key, None)
    manifest["version"] = 3
    (old / "bundle.json").write_text(json.dumps(manifest))
    photo = sorted((sample / "images").glob("*.jpg"))[0]
    then, now = srcrn.Pipeline.from_bundle(old), srcrn.Pipeline.from_bundle(tiny_bundle)
    assert then.classifier.kind == "cnn" and then.card.classifier.clinical_fields == []
    assert then.predict(photo).probability == pytest.approx(now.predict(photo).probability, abs=1e-9)


@pytest.mark.slow
def test_a_stack_bundle_missing_a_member_is_one_line(stage2_models, tiny_segmenter, tmp_path, capsys):
    bundle = tmp_path / "bundle"
    run_cli("export", "onnx", "--segmenter", tiny_segmenter, "--classifier", stage2_models["stack"], "--out",
            str(bundle))  # fmt: skip
    (bundle / "classifier-member-1.onnx").unlink()
    photo = tmp_path / "x.jpg"
    photo.write_bytes(b"")
    message = cli_error(capsys, "predict", str(photo), "--engine", "onnx", "--model", str(bundle), "--out",
                        str(tmp_path / "out"))  # fmt: skip
    assert f"{bundle / 'classifier-member-1.onnx'}: model file of the bundle is missing" in message


@pytest.mark.slow
def test_a_stack_refuses_members_of_other_data(stage2_models, isic_copy, tmp_path, capsys):
    root = stage2_models["root"]
    labels = (isic_copy / "labels.csv").read_text().splitlines()
    first = labels[1].split(",")
    labels[1] = ",".join([first[0], "0.0" if first[1] == "1.0" else "1.0", first[2]])
    (isic_copy / "labels.csv").write_text("\n".join(labels) + "\n")
    message = cli_error(capsys, "classify", "train", "--model", "ensemble", "--members", str(root / "cv-cnn"),
                        "--members", str(root / "cv-features"), "--data", str(isic_copy), "--out",
                        str(tmp_path / "stack"))  # fmt: skip
    assert "data.json: the member was cross-validated on other data than --data" in message
    assert not (tmp_path / "stack").exists()


@pytest.mark.slow
def test_a_model_file_that_would_run_code_is_refused_before_it_loads(tmp_path, capsys, tiny_segmenter, sample):
    from helpers import cli_error, code_running_skops

    marker = tmp_path / "marker"
    crafted = code_running_skops(tmp_path / "rce.skops", marker)
    refused = "refused: it names types a srcrn feature model never holds: numpy.testing._private.utils.runstring"
    with pytest.raises(ConfigError, match=refused):
        load_melanoma_model(crafted)
    image = str(sorted((sample / "images").glob("*.jpg"))[0])
    for command in (
        ["predict", image, "--segmenter", tiny_segmenter, "--classifier", str(crafted), "--out", str(tmp_path / "p")],
        ["classify", "eval", "--model", str(crafted), "--data", str(sample), "--out", str(tmp_path / "e")],
        ["export", "onnx", "--segmenter", tiny_segmenter, "--classifier", str(crafted), "--out", str(tmp_path / "b")],
    ):
        assert refused in cli_error(capsys, *command)
    assert not marker.exists()


@pytest.mark.slow
def test_a_bundle_file_without_its_sha256_is_refused_before_anything_loads(tiny_bundle, tmp_path, capsys):
    from helpers import cli_error
    from srcrn.bundle.schema import read_manifest

    for part in ("segmenter", "classifier"):
        edited = tmp_path / part
        shutil.copytree(tiny_bundle, edited)
        manifest = json.loads((edited / "bundle.json").read_text())
        del manifest[part]["sha256"]
        (edited / "bundle.json").write_text(json.dumps(manifest))
        expected = f"names {part}.onnx without its SHA-256"
        with pytest.raises(ConfigError, match=expected):
            read_manifest(edited)
        assert expected in cli_error(capsys, "model-card", "--model", str(edited))
