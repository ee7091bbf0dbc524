"""One settings schema: every field is a flag of its command, every flag a field; files, flags
and recipes are validated by it with one line naming where a bad value came from."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer.main

from helpers import cli_error
from srcrn import commands
from srcrn.cli import app
from srcrn.errors import ConfigError
from srcrn.serving.settings import ServeSettings
from srcrn.settings import (
    RECIPES,
    ClassifyTrainSettings,
    ReproduceSettings,
    SegmentTrainSettings,
    flag_name,
    load_settings,
)


def _flags(*path: str) -> set[str]:
    command = typer.main.get_command(app)
    for name in path:
        command = command.commands[name]  # type: ignore[attr-defined]
    return {option for parameter in command.params for option in parameter.opts if option.startswith("--")}


def _every_command(group=None, path=()) -> list[tuple[str, ...]]:
    group = group or typer.main.get_command(app)
    found = []
    for name, command in group.commands.items():  # type: ignore[attr-defined]
        if hasattr(command, "commands"):
            found += _every_command(command, (*path, name))
        else:
            found.append((*path, name))
    return found


SCHEMAS = {
    ("prepare",): [commands.PrepareSettings],
    ("split",): [commands.SplitSettings],
    ("segment", "train"): [SegmentTrainSettings, commands.TrainCommandSettings],
    ("segment", "eval"): [commands.SegmentEvalSettings],
    ("classify", "train"): [ClassifyTrainSettings, commands.TrainCommandSettings],
    ("classify", "cv"): [ClassifyTrainSettings, commands.CrossValidationSettings],
    ("classify", "eval"): [commands.ClassifyEvalSettings],
    ("classify", "sweep"): [ClassifyTrainSettings, commands.SweepSettings],
    ("predict",): [commands.PredictSettings],
    ("merge-predictions",): [commands.MergeSettings],
    ("serve",): [ServeSettings, commands.ModelSettings],
    ("dicom", "serve"): [commands.DicomServeSettings],
    ("export", "onnx"): [commands.ExportSettings],
    ("compare",): [commands.CompareSettings],
    ("model-card",): [commands.ModelCardSettings],
    ("reproduce",): [commands.ReproduceCommandSettings],
    ("demo",): [commands.DemoSettings],
}


def test_the_schema_test_covers_every_command():
    assert sorted(_every_command()) == sorted(SCHEMAS)


@pytest.mark.parametrize(("path", "schemas"), SCHEMAS.items(), ids=[" ".join(p) for p in SCHEMAS])
def test_every_field_has_a_flag_and_every_flag_a_field(path, schemas):
    fields = {flag_name(name) for schema in schemas for name in schema.model_fields}
    flags = _flags(*path) - {"--help"}
    assert flags == fields, flags ^ fields


# The one name kept with two meanings: ../shared/DESIGN.md fixes both spellings.
TWO_MEANINGS = {"model": "classify train/cv --model cnn|features|ensemble (the kind to train); "
                         "elsewhere --model FILE (the model to use)"}  # fmt: skip


def test_one_flag_name_means_one_thing_across_commands():
    """A flag of two commands is the same field (same type and choices) in both."""
    import types
    import typing

    def kind(part) -> str:
        if typing.get_origin(part) is typing.Literal:
            return "a name"  # its choices may differ by stage (Adam for stage 1, SGD for stage 2)
        return "text" if part in (str, Path) else getattr(part, "__name__", str(part))

    def meaning(annotation) -> tuple[str, ...]:  # optional here and required there is one meaning
        union = typing.get_origin(annotation) in (typing.Union, types.UnionType)
        parts = typing.get_args(annotation) if union else (annotation,)
        return tuple(sorted(kind(p) for p in parts if p is not type(None)))

    seen: dict[str, tuple[str, ...]] = {}
    for schemas in SCHEMAS.values():
        for schema in schemas:
            for name, field in schema.model_fields.items():
                if name in TWO_MEANINGS:
                    continue
                assert seen.setdefault(name, meaning(field.annotation)) == meaning(field.annotation), name


def test_renamed_flags_still_work_for_one_release_and_say_so(sample, tmp_path, capsys):
    from helpers import run_cli

    run_cli("prepare", str(sample), "--out", str(tmp_path / "cache"), "--size", "32", "--workers", "1")
    said = capsys.readouterr().err
    assert "prepare --size is deprecated: say --image-size" in said and "prepared 40 images at 32x32" in said
    run_cli("split", str(sample), "--out", str(tmp_path / "split"), "--method=official")
    assert "split --method is deprecated: say --split" in capsys.readouterr().err
    assert (tmp_path / "split" / "split.csv").is_file()
    message = cli_error(capsys, "predict", "x.jpg", "--out", str(tmp_path / "p"), "--precision", "bf16", "--model",
                        str(tmp_path / "no-bundle"))  # fmt: skip
    assert "--dtype: for --engine torch" in message  # --precision bf16 arrived as --dtype bf16


def test_batch_sizes_are_read_as_the_flag_has_always_spelt_them():
    given = {"out": "o", "data": "d"}
    assert commands.command_settings(commands.SweepSettings, given | {"batch_sizes": ["4,8", "16"]}).batch_sizes == [
        4,
        8,
        16,
    ]
    assert commands.command_settings(commands.SweepSettings, given).batch_sizes == [4, 8, 16, 32, 64]


def test_a_bad_command_flag_is_one_line_naming_it(tmp_path, capsys):
    assert cli_error(capsys, "classify", "eval", "--model", "m", "--data", "d", "--out", "o", "--calibrate", "isotonic") \
        == "error: --calibrate: Input should be 'temperature' or 'platt' (given 'isotonic')"  # fmt: skip
    assert cli_error(capsys, "classify", "sweep", "--data", "d", "--out", "o", "--batch-sizes", "4,x") \
        .startswith("error: --batch-sizes: ")  # fmt: skip
    assert cli_error(capsys, "segment", "eval", "--data", "d", "--out", "o") == "error: --model: Field required"


def test_yaml_numbers_written_as_text_are_read_as_numbers(tmp_path):
    # PyYAML reads 1e-3 (no dot) as a string: the schema turns it into the number it means.
    (tmp_path / "c.yaml").write_text("lr: 1e-3\nweight_decay: 5e-4\nepochs: '3'\n")
    settings = load_settings(SegmentTrainSettings, tmp_path / "c.yaml")
    assert settings.lr == 1e-3 and isinstance(settings.lr, float) and settings.epochs == 3


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "lr: fast\n",
            r"c.yaml: lr: Input should be a valid number, unable to parse string as a number \(given 'fast'\)",
        ),
        ("optimizer: sgd\n", r"c.yaml: optimizer: Input should be 'adam' or 'adamw' \(given 'sgd'\)"),
        ("batch_size: 0\n", r"c.yaml: batch_size: Input should be greater than or equal to 1 \(given 0\)"),
        (
            "image_size: 100\n",
            r"c.yaml: image_size: SRCRN needs sides that are multiples of 32 \(e.g. 128 or 192x256\) \(given 100\)",
        ),
        ("epoch: 3\n", r"c.yaml: epoch: unknown setting; known: image_size, epochs, "),
        ("- 1\n", r"c.yaml: expected a mapping of settings"),
        ("lr: [\n", r"c.yaml: not valid YAML"),
    ],
)
def test_a_bad_file_value_is_one_line_naming_file_key_value_and_allowed(tmp_path, text, message):
    (tmp_path / "c.yaml").write_text(text)
    with pytest.raises(ConfigError, match=message) as caught:
        load_settings(SegmentTrainSettings, tmp_path / "c.yaml")
    assert "\n" not in str(caught.value)


def test_a_bad_flag_is_named_and_flags_override_files(tmp_path):
    (tmp_path / "c.yaml").write_text("optimizer: adamw\n")
    assert load_settings(SegmentTrainSettings, tmp_path / "c.yaml", flags={"optimizer": "adam"}).optimizer == "adam"
    with pytest.raises(ConfigError, match=r"^--optimizer: Input should be 'adam' or 'adamw' \(given 'sgd'\)$"):
        load_settings(SegmentTrainSettings, tmp_path / "c.yaml", flags={"optimizer": "sgd"})
    with pytest.raises(ConfigError, match=r"^balance 'extra' needs extra"):
        load_settings(ClassifyTrainSettings, flags={"balance": "extra"})


def test_recipes_are_validated_by_the_schema_too():
    for schema, recipes in RECIPES.items():
        for name in recipes:
            settings = load_settings(schema, recipe=name)
            assert all(getattr(settings, key) == value for key, value in recipes[name].items())


def test_the_classifier_command_has_the_trainer_settings_of_the_segmenter():
    # Drift between commands is impossible: both inherit the same RunSettings.
    assert {"precision", "num_nodes", "strategy", "devices", "time_budget"} <= set(ClassifyTrainSettings.model_fields)
    assert {"--precision", "--num-nodes"} <= _flags("classify", "train")


def test_reproduce_sections_are_validated(tmp_path):
    (tmp_path / "r.yaml").write_text("precision: bf16-mixed\nnum_workers: 2\nsegmentation:\n  strides: [8, 12]\n")
    with pytest.raises(ConfigError, match=r"r.yaml: segmentation.strides.1: Input should be 8, 16 or 32 \(given 12\)"):
        load_settings(ReproduceSettings, tmp_path / "r.yaml")
    (tmp_path / "r.yaml").write_text("precision: bf16-mixed\nnum_workers: 2\n")
    settings = load_settings(ReproduceSettings, tmp_path / "r.yaml")
    assert settings.precision == "bf16-mixed" and settings.segmentation.strides == [32, 16, 8]
    assert ReproduceSettings().segmentation.strides is not settings.segmentation.strides  # no shared defaults


def test_time_budgets_are_parsed_in_one_place():
    from srcrn.settings import parse_time_budget
    from srcrn.training.runner import max_time

    assert parse_time_budget("25m") == {"seconds": 1500} and parse_time_budget("1.5h") == {"seconds": 5400}
    assert parse_time_budget("90") == {"seconds": 90} and parse_time_budget("00:01:00:00") == "00:01:00:00"
    assert parse_time_budget(None) is None
    assert max_time("2h") == {"seconds": 7200}
    with pytest.raises(ConfigError, match=r"time budget 'soon': use e.g. 25m"):
        max_time("soon")
    with pytest.raises(ConfigError, match=r"--time-budget: use e.g. 25m, 90s, 2h or DD:HH:MM:SS \(given '2 h'\)"):
        load_settings(SegmentTrainSettings, flags={"time_budget": "2 h"})


def test_serve_settings_come_from_defaults_the_environment_and_flags():
    from srcrn.serving.settings import serve_settings

    assert serve_settings({}, {}).port == 8000 and serve_settings({}, {}).max_upload_bytes == 30 * 1024 * 1024
    env = {"SRCRN_PORT": "9001", "SRCRN_API_KEY": "s3cret", "SRCRN_WARM_UP": "false", "HOME": "/root"}
    settings = serve_settings({"port": None, "queue": 3}, env)  # None: the flag was not given
    assert (settings.port, settings.api_key, settings.warm_up, settings.queue) == (9001, "s3cret", False, 3)
    assert serve_settings({"port": 9002}, env).port == 9002  # a flag wins
    with pytest.raises(ConfigError, match=r"^environment SRCRN_PORT: port: Input should be less than or equal"):
        serve_settings({}, {"SRCRN_PORT": "70000"})
    with pytest.raises(ConfigError, match=r"^--max-batch: Input should be greater than or equal to 1"):
        serve_settings({"max_batch": 0}, {})


def test_every_command_that_writes_declares_its_output_rule_and_the_names_agree_with_the_writers():
    from srcrn.bundle.schema import BUNDLE_FILE
    from srcrn.data.cache import MANIFEST
    from srcrn.inference.batch import JOURNAL, OUTPUT_NAMES, TABLES
    from srcrn.training.runner import RUN_FILE
    from srcrn.workflows.cross_validation import DATA_FILE

    # The schema that declares each command's rule: the command's own, or for cv and sweep theirs
    # (ClassifyTrainSettings, their first schema, is classify train's); serve and model-card write nothing.
    owner = {("classify", "cv"): commands.CrossValidationSettings, ("classify", "sweep"): commands.SweepSettings}
    writing = {path: owner.get(path, schemas[0]) for path, schemas in SCHEMAS.items()}
    del writing[("serve",)], writing[("model-card",)]
    assert {path: schema.output_rule.command for path, schema in writing.items()} == {p: " ".join(p) for p in writing}
    assert commands.PredictSettings.output_rule.writes == OUTPUT_NAMES
    assert JOURNAL in commands.PredictSettings.output_rule.adopt
    assert commands.MergeSettings.output_rule.writes == TABLES
    assert SegmentTrainSettings.output_rule.adopt == ClassifyTrainSettings.output_rule.adopt == (RUN_FILE,)
    assert DATA_FILE in commands.CrossValidationSettings.output_rule.adopt
    assert commands.ExportSettings.output_rule.adopt == (BUNDLE_FILE,)
    assert commands.PrepareSettings.output_rule.adopt == (MANIFEST,)
    assert ServeSettings.output_rule is None and commands.ModelCardSettings.output_rule is None
