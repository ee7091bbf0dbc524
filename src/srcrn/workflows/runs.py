"""The data, training and evaluation commands end to end (``prepare``, ``split``, ``segment
train|eval``, ``classify train|eval|sweep``, ``reproduce``): settings resolved, the output folder
claimed by the rule the command's schema declares, the work done. The CLI parses and prints."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from srcrn.commands import (
    ClassifyEvalSettings,
    PrepareSettings,
    ReproduceCommandSettings,
    SegmentEvalSettings,
    SplitSettings,
    SweepSettings,
    TrainCommandSettings,
)
from srcrn.outputs import claim_output
from srcrn.settings import ClassifyTrainSettings, SegmentTrainSettings, load_settings

log = logging.getLogger(__name__)


def run_settings(schema: Any, command: TrainCommandSettings, flags: dict[str, Any]) -> Any:
    """A training's settings: --config (or, resuming, the run's own config.yaml), then the flags."""
    config = command.config
    if command.resume and config is None and (command.out / "config.yaml").is_file():
        config = command.out / "config.yaml"  # resume with the settings the run started with
    return load_settings(schema, config, flags=flags)


def run_inputs(data: Path, settings: Any) -> dict[str, str | Path | None]:
    """A run's inputs, which its folder may never be, hold or lie in: the data folder, extra
    images, metadata, stack members."""
    inputs: dict[str, str | Path | None] = {"--data": data}
    inputs |= {f"--{key}": getattr(settings, key, None) for key in ("extra", "metadata")}
    return inputs | {f"member {m}": m for m in getattr(settings, "members", [])}


def split_subset(split_file: Path | None, subset: str, data: Path) -> list[str] | None:
    """Ids of ``subset`` in a run's split.csv (or None: every image), each one in ``data``."""
    if split_file is None:
        return None
    from srcrn.data.isic import IsicDataset
    from srcrn.data.splits import split_ids

    return split_ids(split_file, subset, known=IsicDataset.from_dir(data).ids)


def rounded(metrics: dict) -> dict:
    """Metrics as a log line shows them (floats to 4 places)."""
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in metrics.items()}


def prepare_command(data: Path, given: PrepareSettings) -> Any:
    """``srcrn prepare``: the data read and checked, its cache built (or continued)."""
    from srcrn.data.cache import prepare as prepare_cache
    from srcrn.data.isic import IsicDataset

    dataset = IsicDataset.from_dir(data, require_masks=given.require_masks, require_labels=given.require_labels)
    if not dataset.has_masks:
        with_masks = sum(s.mask_path is not None for s in dataset)
        log.info("note: %d of %d images have masks; masks are not cached", with_masks, len(dataset))
    # The cache stages itself and is reused when its fingerprint matches (a rerun continues it).
    with claim_output(given.out, PrepareSettings.output_rule, {"data folder": data}):
        return prepare_cache(dataset, given.image_size, given.out, workers=given.workers)


def split_command(data: Path, given: SplitSettings) -> tuple[Any, Path]:
    """``srcrn split``: the split training would use, and where it was written."""
    from srcrn.data.isic import IsicDataset
    from srcrn.data.splits import make_split

    chosen = make_split(IsicDataset.from_dir(data), given.split, seed=given.seed, val_fraction=given.val_fraction)
    for note in chosen.notes:
        log.info("note: %s", note)
    with claim_output(given.out, SplitSettings.output_rule, {"data folder": data}) as staging:
        path = chosen.save(staging)
    return chosen, given.out / path.name


def segment_train_command(command: TrainCommandSettings, flags: dict[str, Any]) -> dict:
    """``srcrn segment train``: its summary (empty when interrupted)."""
    from srcrn.workflows.segment import train_segmenter

    settings = run_settings(SegmentTrainSettings, command, flags)
    with claim_output(command.out, SegmentTrainSettings.output_rule, run_inputs(command.data, settings),
                      resume=command.resume):  # fmt: skip
        return train_segmenter(settings, command.data, command.out, resume=command.resume, progress=command.progress)


def segment_eval_command(given: SegmentEvalSettings) -> Any:
    """``srcrn segment eval``: masks at the original size, scored, written (staged) into --out."""
    from srcrn.workflows.segment import evaluate_segmenter

    inputs = {"--data": given.data, "--model": given.model}
    with claim_output(given.out, SegmentEvalSettings.output_rule, inputs) as staging:
        return evaluate_segmenter(
            given.model,
            given.data,
            staging,
            ids=split_subset(given.split_file, given.subset, given.data),
            tta=given.tta,
            keep_largest=given.keep_largest,
            batch_size=given.batch_size,
            cache=given.cache,
            progress=given.progress,
        )


def classify_train_command(command: TrainCommandSettings, flags: dict[str, Any]) -> tuple[dict, ClassifyTrainSettings]:
    """``srcrn classify train``: its summary (empty when interrupted) and settings."""
    from srcrn.workflows.classify import train_classifier

    settings = run_settings(ClassifyTrainSettings, command, flags)
    with claim_output(command.out, ClassifyTrainSettings.output_rule, run_inputs(command.data, settings),
                      resume=command.resume):  # fmt: skip
        summary = train_classifier(
            settings, command.data, command.out, resume=command.resume, progress=command.progress
        )
    return summary, settings


def classify_eval_command(given: ClassifyEvalSettings) -> Any:
    """``srcrn classify eval``: probabilities and figures written (staged) into --out."""
    from srcrn.workflows.classify import evaluate_classifier_checkpoint

    inputs = {"--data": given.data, "--model": given.model, "--metadata": given.metadata}
    with claim_output(given.out, ClassifyEvalSettings.output_rule, inputs) as staging:
        return evaluate_classifier_checkpoint(
            given.model,
            given.data,
            staging,
            ids=split_subset(given.split_file, given.subset, given.data),
            segmenter=str(given.segmenter) if given.segmenter else None,
            cache=given.cache,
            target_sensitivity=given.target_sensitivity,
            calibrate=given.calibrate,
            progress=given.progress,
            metadata=given.metadata,
        )


def classify_sweep_command(command: SweepSettings, flags: dict[str, Any]) -> Any:
    """``srcrn classify sweep``: one run per batch size; the table."""
    from srcrn.workflows.classify import batch_size_sweep

    settings = load_settings(ClassifyTrainSettings, command.config, flags=flags)
    with claim_output(command.out, SweepSettings.output_rule, run_inputs(command.data, settings)):
        return batch_size_sweep(settings, command.data, command.out, command.batch_sizes, progress=command.progress)


def reproduce_command(given: ReproduceCommandSettings) -> Path:
    """``srcrn reproduce``: the paper's experiments (resumable: a rerun skips the finished runs); the report."""
    from srcrn.sample import sample_dir
    from srcrn.workflows.reproduce import load_reproduce_config, reproduce

    settings = load_reproduce_config(given.config)
    inputs = {"--data": given.data, "--extra": given.extra, "--config": given.config}
    with claim_output(given.out, ReproduceCommandSettings.output_rule, inputs):
        return reproduce(
            settings,
            given.data or sample_dir(),
            given.out,
            extra=given.extra,
            config_path=given.config,
            progress=given.progress,
        )
