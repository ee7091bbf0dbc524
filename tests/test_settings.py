"""One settings schema: every field is a flag of its command, every flag a field; files, flags
and recipes are validated by it with one line naming where a bad value came from."""

from __future__ import annotations

import pytest
import typer.main

from srcrn.cli import app
from srcrn.errors import ConfigError
from srcrn.settings import (
    RECIPES,
    ClassifyTrainSettings,
    ReproduceSettings,
    SegmentTrainSettings,
    flag_name,
    load_settings,
)

# Flags of a training command that are not settings of the run: where, what, and how to run it.
NOT_SETTINGS = {"--data", "--out", "--config", "--resume", "--progress", "--help"}


def _flags(*path: str) -> set[str]:
    command = typer.main.get_command(app)
    for name in path:
        command = command.commands[name]  # type: ignore[attr-defined]
    return {option for parameter in command.params for option in parameter.opts}


@pytest.mark.parametrize(
    ("path", "schema"), [(("segment", "train"), SegmentTrainSettings), (("classify", "train"), ClassifyTrainSettings)]
)
def test_every_field_has_a_flag_and_every_flag_a_field(path, schema):
    flags = _flags(*path) - NOT_SETTINGS
    fields = {flag_name(name) for name in schema.model_fields}
    assert flags == fields, flags ^ fields


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
        ("image_size: 100\n", r"c.yaml: image_size: SRCRN needs a multiple of 32 \(e.g. 128\) \(given 100\)"),
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
