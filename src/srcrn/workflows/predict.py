"""``srcrn predict`` end to end: the inputs and the output folder checked and claimed (not
staged: the journal and atomic files are predict's staging, so a killed run resumes), the
pipeline loaded, every image predicted; a run that predicts nothing is an error. The CLI parses
and prints; this decides."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from srcrn.commands import MergeSettings, PredictSettings
from srcrn.dicom.objects import Patient
from srcrn.errors import SrcrnError
from srcrn.inference.batch import merge_predictions, predict_images
from srcrn.inference.jobs import parse_shard
from srcrn.outputs import claim_output, refuse_overlap
from srcrn.workflows.model_choice import load_pipeline

log = logging.getLogger(__name__)


def predict_inputs(inputs: list[Path], given: PredictSettings) -> tuple[list[Any], list[tuple[str, str]]]:
    """The ``Prediction`` records written and the (input, problem) pairs skipped.

    Raises:
        SrcrnError: the output-folder rule refuses ``given.out``, or nothing was predicted.
    """
    out = given.out
    part = parse_shard(given.shard) if given.shard is not None else None
    # An input folder's own masks/ or overlays/ must never be written over (files: only themselves).
    folders: dict[str, Path | None] = {f"input {p}": p for p in inputs if p.is_dir()}
    refuse_overlap(out, {f"input {p}": p for p in inputs if not p.is_dir()}, contains=False)
    claimed = claim_output(
        out, PredictSettings.output_rule, folders | {"--metadata": given.metadata}, resume=given.resume
    )
    with claimed:
        pipeline = load_pipeline(given, given.engine, workers=given.workers)
        if not given.spread:
            pipeline.spread_angles = ()
        results, errors = predict_images(
            pipeline,
            inputs,
            out,
            batch_size=given.batch_size,
            show_progress=given.progress,
            overlays=given.overlays,
            resume=given.resume,
            shard=part,
            metadata=given.metadata,
            mm_per_pixel=given.mm_per_pixel,
            report=given.report,
            dicom=given.dicom,
            patient=Patient(given.patient_id or "", given.patient_name or "", given.patient_birth_date or ""),
        )
    if not results and part is not None and not errors:
        log.warning("%s: shard %s holds none of the images (empty tables written)", out, given.shard)
    elif not results:  # a run that produced nothing must not look like a success
        raise SrcrnError(
            f"{out / 'predictions.json'}: nothing predicted: {len(errors)} input(s) refused, first "
            f"{errors[0][0]}: {errors[0][1]}"
            if errors
            else f"{', '.join(map(str, inputs))}: nothing predicted: no image files found"
        )
    return results, errors


def merge_command(folders: list[Path], given: MergeSettings) -> tuple[int, int]:
    """``srcrn merge-predictions``: the shards' tables joined (staged) into --out, which may hold
    no shard's own table; (predictions, skipped inputs)."""
    shards = {f"shard {f}": f for f in folders}
    with claim_output(given.out, MergeSettings.output_rule, shards) as staging:
        return merge_predictions(folders, staging, partial=given.partial)
