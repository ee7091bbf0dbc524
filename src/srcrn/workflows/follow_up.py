"""``srcrn compare`` end to end: the output folder claimed, both visits predicted, AFTER
registered onto BEFORE, and comparison.json, .png (and with ``report`` .pdf) written. The CLI
parses and prints; this decides."""

from __future__ import annotations

from pathlib import Path

from srcrn.answers.compare import Comparison
from srcrn.answers.rendering import write_png
from srcrn.atomic import clean_json, write_json
from srcrn.commands import CompareSettings, ModelSettings
from srcrn.data.metadata import ClinicalContext
from srcrn.outputs import claim_output
from srcrn.workflows.model_choice import load_pipeline

COMPARE_FILES = CompareSettings.output_rule.writes


def compare_visits(before: Path, after: Path, given: CompareSettings) -> Comparison:
    """The comparison of two visits of one lesion, its files written into ``given.out``."""
    inputs = {"BEFORE": before, "AFTER": after}
    with claim_output(given.out, CompareSettings.output_rule, inputs) as staging:
        pipeline = load_pipeline(ModelSettings(model=given.model), "onnx")
        comparison = pipeline.compare(
            before,
            after,
            before_context=ClinicalContext.of(
                pixel_spacing_mm=given.before_mm_per_pixel, where="--before-mm-per-pixel"
            ),
            after_context=ClinicalContext.of(pixel_spacing_mm=given.after_mm_per_pixel, where="--after-mm-per-pixel"),
        )
        write_json(staging / "comparison.json", clean_json(comparison.to_dict()))
        write_png(staging / "comparison.png", comparison.picture)
        if given.report:
            (staging / "comparison.pdf").write_bytes(comparison.report_pdf())
    return comparison
