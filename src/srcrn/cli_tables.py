"""What the commands print: results as rich tables and summary lines (the CLI parses and calls;
this turns the answers into text). No logic beyond formatting."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.table import Table

SHOWN_ROWS = 20  # predict's table: the first rows; all are in predictions.csv


def prediction_table(results: list[Any], errors: list[tuple[str, str]]) -> Table:
    """``srcrn predict``'s table: image, probability, answer (the verdict band where the model has
    bands, else the decision; "not assessable" from the input gate, without a number), diameter, flags.

    Args:
        results: the ``Prediction`` records written.
        errors: the (input, problem) pairs skipped.

    Returns:
        The table (its caption says when rows are left out).
    """
    table = Table(title=f"{len(results)} images predicted, {len(errors)} skipped")
    for column in ("image", "melanoma", "answer", "diameter", "flags"):
        table.add_column(column, no_wrap=column == "image")
    for r in results[:SHOWN_ROWS]:
        m = r.measurements
        marks = (("empty", m["empty_mask"]), ("border", m["touches_border"]), ("pieces", m.get("fragments", 0) > 1))
        flags = " ".join(f for f, on in marks if on)
        mm = m.get("longest_diameter_mm")
        diameter = f"{mm:.1f} mm" if mm is not None else f"{m['longest_diameter_pixels']:.0f} px"
        assessed = r.status == "assessed"
        answer = (r.band or r.decision) if assessed else r.decision
        table.add_row(r.image_id, f"{r.probability:.3f}" if assessed else "-", answer, diameter, flags)
    if len(results) > SHOWN_ROWS:
        table.caption = f"first {SHOWN_ROWS} of {len(results)}: all are in predictions.csv"
    return table


def demo_tables(result: Any, shipped: bool) -> list[Table]:
    """``srcrn demo``'s two tables: stage-1 (and stage-2) metrics, then one row per image.

    Args:
        result: the ``DemoResult``.
        shipped: whether the shipped model answered (else a toy pair trained just now).

    Returns:
        The metrics table and the per-image table.
    """
    metrics = result.metrics
    held_out = "embedded" if shipped else "held-out"
    title = "the shipped model" if shipped else "SRCRN-8s (trained just now)"
    scores = Table(title=f"stage 1: {title} on {metrics['n_images']} {held_out} sample images")
    for column in ("metric", "value"):
        scores.add_column(column)
    for name in ("jaccard", "dice", "accuracy", "sensitivity", "specificity", "threshold_jaccard"):
        scores.add_row(name, f"{metrics[name]:.3f}")
    if result.classification is not None:
        c = result.classification
        scores.add_row("melanoma AUC", f"{c['auc']:.3f} (95 % CI {c['auc_ci95_low']:.3f}-{c['auc_ci95_high']:.3f})")
        scores.add_row(
            f"at threshold {c['threshold']:.3f}",
            f"sensitivity {c['sensitivity']:.3f} ({c['tp']}/{c['tp'] + c['fn']}), "
            f"specificity {c['specificity']:.3f} ({c['tn']}/{c['tn'] + c['fp']})",
        )
    images = Table(title=f"stage 1 + 2 on the {held_out} images")
    for column in ("image", "truth", "P(melanoma)", "decision", "diameter px", "Jaccard"):
        images.add_column(column)
    for r in result.predictions:
        images.add_row(
            r.image_id,
            result.truth[r.image_id],
            f"{r.probability:.3f}",
            r.decision,
            f"{r.measurements['longest_diameter_pixels']:.0f}",
            f"{result.jaccard[r.image_id]:.3f}",
        )
    return [scores, images]


def comparison_lines(comparison: Any) -> list[tuple[str, str]]:
    """``srcrn compare``'s summary as (level, line) pairs: the registration, the changes.

    Args:
        comparison: the ``Comparison``.

    Returns:
        ``("warning", ...)`` for an unreliable registration, else ``("info", ...)`` lines.
    """
    r = comparison.registration
    if not r.reliable:
        return [("warning", f"registration unreliable: {'; '.join(r.problems)}; no change figures given")]
    mm = comparison.diameter_change_mm
    return [
        (
            "info",
            f"registered: rotation {r.rotation_degrees:.1f} deg, scale x{r.scale:.3f}"
            f"{', mirrored' if r.mirrored else ''}, {r.inliers} of {r.matches} points agree",
        ),
        (
            "info",
            f"area {comparison.area_change_percent:+.1f} %, longest diameter "
            f"{comparison.diameter_change_percent:+.1f} %"
            f"{f' ({mm:+.2f} mm)' if mm is not None else ' (no scale for both: no mm)'}; colours appeared: "
            f"{', '.join(comparison.colours_appeared) or 'none'}, vanished: "
            f"{', '.join(comparison.colours_vanished) or 'none'}",
        ),
    ]


def cv_lines(result: dict[str, Any], folds: int, out: Path) -> list[str]:
    """``srcrn classify cv``'s summary: the out-of-fold AUC, the validation AUC and calibration,
    and the threshold chosen, each with its interval where it has one."""
    oof = result["oof"]
    per_fold = ", ".join(f"{a:.3f}" for a in result["per_fold_auc"])
    lines = [
        f"out-of-fold AUC {oof['auc']:.4f} (95 % CI {oof['auc_ci95_low']:.4f}-{oof['auc_ci95_high']:.4f}) "
        f"over {folds} folds (per fold {per_fold})"
    ]
    if "val" in result:
        val = result["val"]
        lines.append(
            f"validation AUC {val['auc']:.4f} (95 % CI {val['auc_ci95_low']:.4f}-{val['auc_ci95_high']:.4f}); "
            f"ECE {val['ece_raw']:.4f} -> {val['ece_calibrated']:.4f} calibrated ({result['calibration']['method']}); "
            f"{out / 'cv.json'}"
        )
    if "threshold" in result and "val" in result["threshold"]:
        chosen = result["threshold"]
        lines.append(
            f"threshold {chosen['value']:.4f} (out-of-fold sensitivity {chosen['oof']['sensitivity']:.3f}); on the "
            f"validation split: sensitivity {chosen['val']['sensitivity']:.3f}, specificity {chosen['val']['specificity']:.3f}"
        )
    return lines


def demo_notice(shipped: bool) -> str:
    """What ``srcrn demo`` says last of what it ran (rich markup)."""
    if shipped:
        return ("[bold yellow]Research software, not a diagnosis.[/] 40 images give wide intervals; the model's "
                "validation figures and limits: srcrn model-card.")  # fmt: skip
    return ("[bold yellow]This is a smoke run:[/] a few minutes of CPU training on a 40-image sample, "
            "not a clinical model. Train on full ISIC data for real use.")  # fmt: skip
