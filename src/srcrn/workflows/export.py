"""``srcrn export onnx`` end to end: the output folder claimed, the bundle written (fp32, or
fp32 then int8 with its parity check in a scratch folder), the model card attached. The CLI
parses and prints; this decides."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from srcrn.bundle.export import export_onnx
from srcrn.bundle.schema import attach_card, read_card
from srcrn.commands import ExportSettings
from srcrn.errors import SrcrnError
from srcrn.outputs import claim_output


def export_bundle(given: ExportSettings) -> dict[str, Any] | None:
    """Write the bundle ``given`` asks for into ``given.out``; the int8 parity figures, or None for fp32.

    Raises:
        SrcrnError: int8 without calibration data, a card that cannot be read (both before any
            export), or the output-folder rule's refusal.
    """
    if given.quantize is not None and given.calibration_data is None:
        raise SrcrnError(
            "--quantize int8: needs --calibration-data DATA (images whose ranges calibrate the int8 models)"
        )
    inputs = {
        "--calibration-data": given.calibration_data,
        "--segmenter": given.segmenter,
        "--classifier": given.classifier,
        "--card": given.card,
    }
    description = read_card(given.card) if given.card is not None else None  # refused before minutes of export
    parity = None
    # A bundle folder is wholly the export's: a new export replaces an earlier one (even one of
    # an older srcrn, known by its bundle.json), never a folder of other files.
    with claim_output(given.out, ExportSettings.output_rule, inputs) as staging:
        if given.quantize is None:
            export_onnx(given.segmenter, given.classifier, staging)
        else:
            from srcrn.workflows.quantize import quantize_bundle

            assert given.calibration_data is not None  # refused above
            with tempfile.TemporaryDirectory() as scratch:
                fp32 = export_onnx(given.segmenter, given.classifier, Path(scratch) / "fp32")
                _, parity = quantize_bundle(
                    fp32, staging, given.calibration_data, given.calibration_images, given.parity_images,
                    classifier=given.int8_classifier, ranges=given.int8_ranges, destination=given.out,
                )  # fmt: skip
        if description is not None:
            attach_card(staging, description)
    return parity
