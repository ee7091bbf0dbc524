"""The ``srcrn reproduce`` report: the paper's Tables 1-3 beside our measured numbers (with 95 %
bootstrap intervals), the data, the leakage check, figures and settings, rendered by
``reporting.report`` to ``report.md`` and ``report.html``."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from srcrn import __version__
from srcrn.atomic import json_text
from srcrn.reporting.report import Report
from srcrn.settings import ReproduceSettings
from srcrn.stats import Interval, mean_interval, rate_interval

# Published figures (paper Tables 1-3 and text; ISIC 2017 test set). Shown next to ours,
# always marked "published".
PUBLISHED_SEGMENTATION = [
    ("Yading Yuan, CDNN (ISIC 2017 1st)", 0.934, 0.849, 0.765),
    ("Matt Berseth, U-Net (ISIC 2017 2nd)", 0.932, 0.847, 0.762),
    ("U-Net", 0.901, 0.763, 0.616),
    ("SegNet", 0.918, 0.821, 0.696),
    ("FrCN", 0.940, 0.870, 0.771),
    ("SRCRN", 0.950, 0.912, 0.845),
]
PUBLISHED_BALANCING = [
    ("augment, training accuracy", 0.919),
    ("extra: ISIC 2018 melanoma segmented by SRCRN, training accuracy", 0.995),
]
PUBLISHED_CLASSIFICATION = [
    ("SRCRN + ResNet-50, batch 32", 0.939, 0.973),
    ("ISIC 2017 1st (accuracy; melanoma AUC)", 0.872, 0.874),
]
BASELINE_NAMES = {"unet": "smp U-Net (ResNet-50)", "fpn": "smp FPN (ResNet-50)"}


def _f(value: float | None, digits: int = 3) -> str:
    return "—" if value is None or (isinstance(value, float) and np.isnan(value)) else f"{value:.{digits}f}"


def _with_ci(value: float, ci: Interval | tuple[float, float]) -> str:
    low, high = ci.as_tuple() if isinstance(ci, Interval) else ci
    return f"{_f(value)} ({_f(low)}-{_f(high)})"


def _figure(source: Path, out: Path, name: str) -> Path | None:
    if not source.is_file():
        return None
    target = out / "figures" / name
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    return target


def _classification_intervals(per_image: pd.DataFrame, threshold: float, samples: int, seed: int) -> dict:
    """Bootstrap intervals of accuracy, sensitivity and specificity at ``threshold``."""
    truth = per_image["truth"].to_numpy(int)
    decided = (per_image["melanoma"].to_numpy(float) > threshold).astype(int)
    return {
        "accuracy": rate_interval(truth == decided, samples, seed),
        "sensitivity": rate_interval(decided[truth == 1], samples, seed),
        "specificity": rate_interval(1 - decided[truth == 0], samples, seed),
    }


def write_report(
    config: ReproduceSettings,
    results: dict[str, Any],
    out: Path,
    config_path: Path | None = None,
    versions: dict[str, str] | None = None,
) -> Path:
    """``report.md`` and ``report.html`` (figures embedded) and ``results.json`` in ``out``.
    Paths in the report are relative to it: no machine's absolute paths."""
    samples, seed = config.bootstrap, config.seed
    report = Report("srcrn reproduction report")

    def here(path: Path | str) -> str:
        return os.path.relpath(Path(path).resolve(), out.resolve())

    report.paragraph(
        f"srcrn {__version__}; config {here(config_path) if config_path else 'config.yaml'}; seed {seed}; split "
        f"'{config.split}'. Measured numbers are ours, on the validation split below, with 95 % bootstrap intervals "
        f"({samples} resamplings of the images; BCa where it applies, else percentile). Published numbers are the "
        "paper's, on the ISIC 2017 test set: a different set of images, so a comparison, not a replication."
    )
    data = results["data"]
    report.heading("Data")
    report.table(
        ["subset", "images", "melanoma", "benign"],
        [[name, c["images"], c["melanoma"], c["benign"]] for name, c in data["counts"].items()],
    )
    report.paragraph(
        f"Folder {here(data['folder'])}: {data['images']} images; sources: "
        + (", ".join(f"{k} {v}" for k, v in data["sources"].items()) or "not stated")
        + ". "
        + " ".join(data["notes"])
    )
    leakage = results["leakage"]
    report.heading("Leakage check")
    report.table(
        ["between", "shared ids", "shared pixel contents"],
        [[o["between"], o["shared_ids"], o["shared_pixel_contents"]] for o in leakage["overlaps"]],
    )
    report.paragraph(
        (
            "No image id and no identical pixel content is shared between training and validation. "
            if leakage["clean"]
            else "LEAKAGE: training and validation share images (see the table). "
        )
        + f"{leakage['dropped_near_duplicates']} near-duplicates of validation images were dropped from training. "
        "Extra images sharing an id or pixels with the main data are dropped before training (counts in the "
        "balancing runs' notes)."
    )

    if results["segmentation"]:
        report.heading("Table 1: segmentation")
        measured = [
            (f"SRCRN stride {stride}", run) for stride, run in sorted(results["segmentation"].items(), reverse=True)
        ]
        measured += [
            (f"{BASELINE_NAMES.get(arch, arch)}, same recipe", run)
            for arch, run in results.get("baselines", {}).items()
        ]
        rows = []
        for name, run in measured:
            m, per_image = run["metrics"], run["per_image"]
            rows.append(
                [f"{name} (measured)"]
                + [_with_ci(m[k], mean_interval(per_image[k], samples, seed)) for k in ("accuracy", "dice", "jaccard")]
                + [f"{run['summary']['epochs']} ({run['summary']['wall_seconds']:.0f} s)"]
            )
        rows += [[f"{name} (published)", _f(a), _f(d), _f(j), "—"] for name, a, d, j in PUBLISHED_SEGMENTATION]
        report.table(["method", "accuracy", "Dice", "Jaccard", "epochs (wall)"], rows)
        for stride, run in sorted(results["segmentation"].items(), reverse=True):
            figure = _figure(run["run"] / "curves.png", out, f"segmentation-stride{stride}-curves.png")
            if figure:
                report.figure(figure, out, f"Fig. 4-like: training curves, stride {stride}")
        if 8 in results["segmentation"]:
            figure = _figure(
                results["segmentation"][8]["run"] / "eval" / "overlays.png", out, "segmentation-overlays.png"
            )
            if figure:
                report.figure(figure, out, "Fig. 5-like: best, middling and worst validation cases, stride 8")

    def classification_rows(runs: dict, label: Any) -> list:
        rows = []
        for key, run in runs.items():
            m = run["metrics"]
            cis = _classification_intervals(run["per_image"], m["threshold"], samples, seed)
            rows.append(
                [
                    label(key),
                    _with_ci(m["accuracy"], cis["accuracy"]),
                    _with_ci(m["auc"], (m["auc_ci95_low"], m["auc_ci95_high"])),
                    _with_ci(m["sensitivity"], cis["sensitivity"]),
                    _with_ci(m["specificity"], cis["specificity"]),
                    f"{run['summary']['epochs']} ({run['summary']['seconds_per_epoch']:.0f} s/epoch)",
                ]
            )
        return rows

    header = ["run", "accuracy", "AUC", "sensitivity", "specificity", "epochs (time)"]
    if results["balancing"]:
        report.heading("Table 2: class balancing")
        rows = classification_rows(results["balancing"], lambda b: f"balance {b} (measured)")
        rows += [[f"{name} (published)", _f(acc), "—", "—", "—", "—"] for name, acc in PUBLISHED_BALANCING]
        report.table(header, rows)
        for balance, run in results["balancing"].items():
            for name, caption in (("curves.png", "Fig. 6-like: classifier curves"), ("eval/roc.png", "ROC")):
                figure = _figure(run["run"] / name, out, f"balance-{balance}-{Path(name).name}")
                if figure:
                    report.figure(figure, out, f"{caption}, balance {balance}")
    if results["batch_size"]:
        report.heading("Table 3: batch size")
        rows = classification_rows(results["batch_size"], lambda b: f"batch {b} (measured)")
        rows += [
            [f"{name} (published)", _f(acc), _f(auc), "—", "—", "—"] for name, acc, auc in PUBLISHED_CLASSIFICATION
        ]
        report.table(header, rows)
        for batch_size, run in results["batch_size"].items():
            figure = _figure(run["run"] / "curves.png", out, f"batch-{batch_size}-curves.png")
            if figure:
                report.figure(figure, out, f"Fig. 6-like: classifier curves, batch {batch_size}")
    if results["notes"]:
        report.heading("Notes")
        report.paragraph(" ".join(results["notes"]))
    report.heading("Settings and software")
    report.settings(yaml.safe_dump(config.to_dict(), sort_keys=False))
    report.table(["package", "version"], [[k, v] for k, v in (versions or {}).items()])
    path = report.write(out)
    (out / "results.json").write_text(json_text(_numbers(results)))
    return path


def _numbers(results: dict) -> dict:
    """The measured metrics behind the tables, by experiment (what the report's tables show)."""
    return {
        part: {str(k): run["metrics"] for k, run in results.get(part, {}).items()}
        for part in ("segmentation", "baselines", "balancing", "batch_size")
    }
