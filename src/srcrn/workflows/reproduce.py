"""``srcrn reproduce``: the paper's experiments from one YAML config, and an honest report.

Table 1 (segmentation, SRCRN strides 32/16/8), Table 2 (class balancing: none / augment /
extra), Table 3 (batch sizes), their figures, and ``report.md`` + ``report.html`` with the
data used, every setting, seeds, wall times, software versions, a 95 % bootstrap interval
for every measured number, and a leakage check. Each experiment writes its own
``metrics.json``; one found finished is skipped, so an interrupted run resumes.
"""

from __future__ import annotations

import logging
import platform
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from srcrn import __version__
from srcrn.atomic import read_json
from srcrn.reporting.reproduce_report import write_report
from srcrn.settings import ClassifyTrainSettings, ReproduceSettings, SegmentTrainSettings, load_settings

log = logging.getLogger(__name__)


def load_reproduce_config(path: str | Path) -> ReproduceSettings:
    """The reproduction settings in the YAML file at ``path``, validated (one error line naming the file and key)."""
    return load_settings(ReproduceSettings, path)


def _json(path: Path) -> dict:
    return read_json(path)


def _shared(config: ReproduceSettings) -> dict[str, Any]:
    """The settings every run of a reproduction shares (a section may override them)."""
    names = ("split", "seed", "accelerator", "devices", "precision", "num_workers")
    return {name: getattr(config, name) for name in names}


def segmentation_settings(config: ReproduceSettings, stride: int, arch: str = "srcrn") -> SegmentTrainSettings:
    """The ``segment train`` settings of one segmentation run of a reproduction: the shared
    settings, then the section's overrides, then the run's architecture and stride."""
    return load_settings(SegmentTrainSettings, **(_shared(config) | config.segmentation.training()
                                                    | {"arch": arch, "stride": stride}))  # fmt: skip


def _segmentation_run(
    config: ReproduceSettings, data: Path, out: Path, stride: int, progress: bool, arch: str = "srcrn"
) -> dict:
    """Train (or resume, or reuse) one SRCRN variant, or a baseline ``arch``, and evaluate it on
    the validation split."""
    from srcrn.data.splits import Split
    from srcrn.workflows.segment import evaluate_segmenter, train_segmenter

    run = out / "segmentation" / (f"stride-{stride}" if arch == "srcrn" else arch)
    evaluation = run / "eval"
    if not (evaluation / "metrics.json").is_file():
        settings = segmentation_settings(config, stride, arch)
        if not (run / "summary.json").is_file():
            log.info(
                "Table 1: training %s in %s", f"{arch} stride {stride}" if arch == "srcrn" else f"baseline {arch}", run
            )
            train_segmenter(settings, data, run, resume=(run / "config.yaml").is_file(), progress=progress)
        summary = _json(run / "summary.json")
        evaluate_segmenter(summary["best_checkpoint"], data, evaluation, ids=Split.load(run).val, progress=progress)
    return {
        "run": run,
        "summary": _json(run / "summary.json"),
        "metrics": _json(evaluation / "metrics.json"),
        "per_image": pd.read_csv(evaluation / "per_image.csv"),
    }


def _classification_run(
    config: ReproduceSettings, data: Path, extra: Path | None, run: Path, segmenter: str, progress: bool, **changes: Any
) -> dict:
    from srcrn.workflows.classify import train_and_evaluate

    done = train_and_evaluate(
        classification_settings(config, segmenter, extra, **changes), data, run, progress=progress
    )
    return {"run": run, **done, "per_image": pd.read_csv(run / "eval" / "per_image.csv")}


def classification_settings(
    config: ReproduceSettings, segmenter: str, extra: Path | None, **changes: Any
) -> ClassifyTrainSettings:
    """The ``classify train`` settings of one classification run of a reproduction: the shared settings, the section's overrides, the stride-8 segmenter and ``changes``."""
    part = config.classification
    weights = f"srcrn:{segmenter}" if part.weights == "srcrn" else part.weights
    fixed = {"weights": weights, "segmenter": segmenter, "extra": str(extra) if extra else None}
    return load_settings(ClassifyTrainSettings, **(_shared(config) | part.training() | fixed | changes))


def leakage_check(data: Path, extra: Path | None, split_run: Path, image_size: int) -> dict:
    """Ids and pixel contents shared between train, validation and extra data."""
    from srcrn.data.cache import default_cache_dir, prepare
    from srcrn.data.isic import IsicDataset
    from srcrn.data.splits import Split
    from srcrn.training.balance import pixel_hashes

    split = Split.load(split_run)
    prepared = prepare(IsicDataset.from_dir(data), image_size, default_cache_dir(data, image_size), show_progress=False)
    hashes = dict(zip(prepared.ids, pixel_hashes(np.asarray(prepared.images))))
    sets = {"train": set(split.train), "validation": set(split.val)}
    if extra is not None:
        extra_data = prepare(
            IsicDataset.from_dir(extra), image_size, default_cache_dir(extra, image_size), show_progress=False
        )
        sets["extra"] = set(extra_data.ids)
        hashes.update({f"extra:{i}": h for i, h in zip(extra_data.ids, pixel_hashes(np.asarray(extra_data.images)))})

    def key(subset: str, image_id: str) -> str:
        return hashes[f"extra:{image_id}"] if subset == "extra" else hashes[image_id]

    overlaps: list[dict[str, Any]] = []
    names = list(sets)
    for i, first in enumerate(names):
        for second in names[i + 1 :]:
            shared_ids = sets[first] & sets[second]
            shared_pixels = {key(first, n) for n in sets[first]} & {key(second, n) for n in sets[second]}
            overlaps.append(
                {
                    "between": f"{first} / {second}",
                    "shared_ids": len(shared_ids),
                    "shared_pixel_contents": len(shared_pixels),
                }
            )
    clean = all(
        o["shared_ids"] == 0 and o["shared_pixel_contents"] == 0 for o in overlaps if "extra" not in o["between"]
    )
    return {
        "sets": {k: len(v) for k, v in sets.items()},
        "dropped_near_duplicates": len(split.dropped),
        "overlaps": overlaps,
        "clean": clean,
    }


def _versions() -> dict:
    import lightning
    import torch
    import torchvision

    return {
        "srcrn": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "lightning": lightning.__version__,
        "numpy": np.__version__,
        "pandas": pd.__version__,
        "platform": platform.platform(),
    }


def _data_summary(data: Path, split_run: Path) -> dict:
    from srcrn.data.isic import IsicDataset
    from srcrn.data.splits import Split

    dataset = IsicDataset.from_dir(data)
    split = Split.load(split_run)
    labels = dict(zip(dataset.ids, dataset.melanoma()))
    counts = {
        name: {
            "images": len(ids),
            "melanoma": int(np.nansum([labels[i] for i in ids])),
            "benign": int(len(ids) - np.nansum([labels[i] for i in ids])),
        }
        for name, ids in (("train", split.train), ("validation", split.val), ("dropped", split.dropped))
    }
    sources = dataset.sources["source"].value_counts().to_dict() if dataset.sources is not None else {}
    return {
        "folder": data,
        "images": len(dataset),
        "split": split.method,
        "counts": counts,
        "sources": sources,
        "notes": split.notes,
    }


def reproduce(
    config: ReproduceSettings,
    data: str | Path,
    out: str | Path,
    *,
    extra: str | Path | None = None,
    config_path: str | Path | None = None,
    progress: bool = True,
) -> Path:
    """``srcrn reproduce``: the configured experiments (each skipped when finished, so a rerun resumes), then report.md and report.html in ``out``.

    Returns:
        The path of report.md.
    """
    data, out = Path(data), Path(out)
    extra = Path(extra) if extra else None
    out.mkdir(parents=True, exist_ok=True)
    config.save(out / "config.yaml")
    results: dict[str, Any] = {"segmentation": {}, "baselines": {}, "balancing": {}, "batch_size": {}}
    notes: list[str] = []
    results["notes"] = notes

    strides = config.segmentation.strides if "segmentation" in config.experiments else []
    if 8 not in strides and {"balancing", "batch_size"} & set(config.experiments):
        strides = [*strides, 8]  # the classifier needs the stride-8 segmenter
    for stride in strides:
        results["segmentation"][stride] = _segmentation_run(config, data, out, stride, progress)
    if "segmentation" in config.experiments:
        for arch in config.segmentation.baselines:
            results["baselines"][arch] = _segmentation_run(config, data, out, 8, progress, arch=arch)
    segmenter = str(results["segmentation"][8]["summary"]["best_checkpoint"]) if 8 in results["segmentation"] else ""

    if "balancing" in config.experiments:
        for balance in config.classification.balances:
            if balance == "extra" and extra is None:
                notes.append("balance 'extra' skipped: no --extra folder was given")
                continue
            run = out / "classification" / f"balance-{balance}"
            results["balancing"][balance] = _classification_run(
                config, data, extra, run, segmenter, progress, balance=balance
            )
    if "batch_size" in config.experiments:
        for batch_size in config.classification.batch_sizes:
            run = out / "classification" / f"batch-{batch_size}"
            results["batch_size"][batch_size] = _classification_run(
                config,
                data,
                extra,
                run,
                segmenter,
                progress,
                batch_size=batch_size,
                balance=config.classification.sweep_balance,
            )
    split_run = out / "segmentation" / "stride-8"
    results["data"] = _data_summary(data, split_run)
    results["leakage"] = leakage_check(data, extra, split_run, config.classification.training()["image_size"])
    return write_report(config, results, out, Path(config_path) if config_path else None, _versions())
