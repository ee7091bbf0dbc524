"""``srcrn reproduce``: the paper's experiments from one YAML config, and an honest report.

Table 1 (segmentation, SRCRN strides 32/16/8), Table 2 (class balancing: none / augment /
extra), Table 3 (batch sizes), their figures, and ``report.md`` + ``report.html`` with the
data used, every setting, seeds, wall times, software versions, a 95 % bootstrap interval
for every measured number, and a leakage check. Each experiment writes its own
``metrics.json``; one found finished is skipped, so an interrupted run resumes.
"""

from __future__ import annotations

import dataclasses
import json
import platform
import shutil
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from srcrn import __version__
from srcrn.console import console
from srcrn.errors import ConfigError

EXPERIMENTS = ("segmentation", "balancing", "batch_size")

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
PUBLISHED_BALANCING = [("augment, training accuracy", 0.919),
                       ("extra: ISIC 2018 melanoma segmented by SRCRN, training accuracy", 0.995)]
PUBLISHED_CLASSIFICATION = [("SRCRN + ResNet-50, batch 32", 0.939, 0.973),
                            ("ISIC 2017 1st (accuracy; melanoma AUC)", 0.872, 0.874)]


BASELINE_NAMES = {"unet": "smp U-Net (ResNet-50)", "fpn": "smp FPN (ResNet-50)"}


@dataclass
class SegmentationPart:
    strides: list[int] = field(default_factory=lambda: [32, 16, 8])
    image_size: int = 128
    epochs: int = 100
    steps_per_epoch: int | None = 300
    batch_size: int = 8
    time_budget: str | None = None
    recipe: str = "paper"  # srcrn segment train --recipe, for every row of Table 1
    # Measured baseline rows (smp, ResNet-50 encoder, no pretrained weights), same recipe and budget.
    baselines: list[str] = field(default_factory=list)


@dataclass
class ClassificationPart:
    input: str = "crop"
    weights: str = "srcrn"  # srcrn = the stride-8 run's encoder; or imagenet | none | PATH
    balances: list[str] = field(default_factory=lambda: ["none", "augment", "extra"])
    augment: str = "mix"
    image_size: int = 128
    batch_size: int = 32
    batch_sizes: list[int] = field(default_factory=lambda: [4, 8, 16, 32, 64])
    sweep_balance: str = "augment"
    epochs: int = 100
    time_budget: str | None = None


@dataclass
class ReproduceConfig:
    experiments: list[str] = field(default_factory=lambda: list(EXPERIMENTS))
    split: str = "official"
    seed: int = 0
    bootstrap: int = 1000
    accelerator: str = "auto"
    devices: str = "auto"
    segmentation: SegmentationPart = field(default_factory=SegmentationPart)
    classification: ClassificationPart = field(default_factory=ClassificationPart)


def _build(cls, values: dict, where: str):
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(f"{where}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(known)}")
    built = {}
    for name, value in values.items():
        nested = {"segmentation": SegmentationPart, "classification": ClassificationPart}.get(name)
        if nested is not None and cls is ReproduceConfig:
            if not isinstance(value, dict):
                raise ConfigError(f"{where}: '{name}' must be a mapping of settings")
            value = _build(nested, value, f"{where} > {name}")
        built[name] = value
    return cls(**built)


def load_reproduce_config(path: str | Path) -> ReproduceConfig:
    from srcrn.training.config import read_settings_file

    path = Path(path)
    values = read_settings_file(path)
    config = _build(ReproduceConfig, values, str(path))
    wrong = sorted(set(config.experiments) - set(EXPERIMENTS))
    if wrong:
        raise ConfigError(f"{path}: unknown experiment(s) {', '.join(wrong)}; choose from {', '.join(EXPERIMENTS)}")
    return config


def bootstrap_mean_ci(values: np.ndarray, samples: int, seed: int = 0) -> tuple[float, float]:
    """95 % interval of the mean of per-image values, resampling images."""
    values = np.asarray(values, dtype=float)
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), (samples, len(values)))].mean(axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def _classification_cis(per_image: pd.DataFrame, threshold: float, samples: int, seed: int = 0) -> dict:
    """Bootstrap intervals of accuracy, sensitivity and specificity at ``threshold``."""
    truth = per_image["truth"].to_numpy(int)
    decided = (per_image["melanoma"].to_numpy(float) > threshold).astype(int)
    rng = np.random.default_rng(seed)
    draws = {"accuracy": [], "sensitivity": [], "specificity": []}
    for _ in range(samples):
        rows = rng.integers(0, len(truth), len(truth))
        t, d = truth[rows], decided[rows]
        draws["accuracy"].append((t == d).mean())
        if (t == 1).any():
            draws["sensitivity"].append(d[t == 1].mean())
        if (t == 0).any():
            draws["specificity"].append(1 - d[t == 0].mean())
    return {k: (float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))) for k, v in draws.items() if v}


def _json(path: Path) -> dict:
    return json.loads(path.read_text())


def _segmentation_run(config: ReproduceConfig, data: Path, out: Path, stride: int, progress: bool,
                      arch: str = "srcrn") -> dict:
    """Train (or resume, or reuse) one SRCRN variant, or a baseline ``arch``, and evaluate it on
    the validation split."""
    from srcrn.data.cache import default_cache_dir
    from srcrn.data.isic import IsicDataset
    from srcrn.data.splits import Split
    from srcrn.evaluation.segmentation import evaluate_segmentation
    from srcrn.training.config import SegmentationConfig
    from srcrn.training.segmentation import load_segmenter, train_segmentation

    from srcrn.training.config import load_config

    run = out / "segmentation" / (f"stride-{stride}" if arch == "srcrn" else arch)
    evaluation = run / "eval"
    if not (evaluation / "metrics.json").is_file():
        part = config.segmentation
        settings = load_config(SegmentationConfig, recipe=part.recipe, arch=arch, stride=stride,
                               image_size=part.image_size, epochs=part.epochs, steps_per_epoch=part.steps_per_epoch,
                               batch_size=part.batch_size, time_budget=part.time_budget, split=config.split,
                               seed=config.seed, accelerator=config.accelerator, devices=config.devices)
        if not (run / "summary.json").is_file():
            console.print(f"Table 1: training {arch} stride {stride} in {run}" if arch == "srcrn"
                          else f"Table 1: training baseline {arch} in {run}")
            train_segmentation(settings, data, run, resume=(run / "checkpoints" / "last.ckpt").is_file(),
                               progress=progress)
        summary = _json(run / "summary.json")
        evaluate_segmentation(load_segmenter(summary["best_checkpoint"]).model, IsicDataset.from_dir(data), evaluation,
                              image_size=part.image_size, ids=Split.load(run).val, tta=settings.tta,
                              cache=default_cache_dir(data, part.image_size), show_progress=progress)
    return {"run": run, "summary": _json(run / "summary.json"), "metrics": _json(evaluation / "metrics.json"),
            "per_image": pd.read_csv(evaluation / "per_image.csv")}


def _classification_run(config: ReproduceConfig, data: Path, extra: Path | None, run: Path, segmenter: str,
                        progress: bool, **changes) -> dict:
    from srcrn.training.sweep import train_and_evaluate

    done = train_and_evaluate(classification_settings(config, segmenter, extra, **changes), data, run,
                              progress=progress)
    return {"run": run, **done, "per_image": pd.read_csv(run / "eval" / "per_image.csv")}


def classification_settings(config: ReproduceConfig, segmenter: str, extra: Path | None, **changes):
    from srcrn.training.config import ClassificationConfig

    part = config.classification
    weights = f"srcrn:{segmenter}" if part.weights == "srcrn" else part.weights
    settings = ClassificationConfig(weights=weights, segmenter=segmenter, input=part.input, augment=part.augment,
                                    image_size=part.image_size, batch_size=part.batch_size, epochs=part.epochs,
                                    time_budget=part.time_budget, split=config.split, seed=config.seed,
                                    extra=str(extra) if extra else None, accelerator=config.accelerator,
                                    devices=config.devices)
    return dataclasses.replace(settings, **changes)


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
        extra_data = prepare(IsicDataset.from_dir(extra), image_size, default_cache_dir(extra, image_size),
                             show_progress=False)
        sets["extra"] = set(extra_data.ids)
        hashes.update({f"extra:{i}": h for i, h in zip(extra_data.ids, pixel_hashes(np.asarray(extra_data.images)))})
    result = {"sets": {k: len(v) for k, v in sets.items()}, "dropped_near_duplicates": len(split.dropped),
              "overlaps": []}
    names = list(sets)
    for i, first in enumerate(names):
        for second in names[i + 1:]:
            shared_ids = sets[first] & sets[second]
            key = (lambda s, n: hashes[f"extra:{n}"] if s == "extra" else hashes[n])
            shared_pixels = {key(first, n) for n in sets[first]} & {key(second, n) for n in sets[second]}
            result["overlaps"].append({"between": f"{first} / {second}", "shared_ids": len(shared_ids),
                                       "shared_pixel_contents": len(shared_pixels)})
    result["clean"] = all(o["shared_ids"] == 0 and o["shared_pixel_contents"] == 0 for o in result["overlaps"]
                          if "extra" not in o["between"])
    return result


def _versions() -> dict:
    import lightning
    import torch
    import torchvision

    return {"srcrn": __version__, "python": platform.python_version(), "torch": torch.__version__,
            "torchvision": torchvision.__version__, "lightning": lightning.__version__, "numpy": np.__version__,
            "pandas": pd.__version__, "platform": platform.platform()}


def _data_summary(data: Path, split_run: Path) -> dict:
    from srcrn.data.isic import IsicDataset
    from srcrn.data.splits import Split

    dataset = IsicDataset.from_dir(data)
    split = Split.load(split_run)
    labels = dict(zip(dataset.ids, dataset.melanoma()))
    counts = {name: {"images": len(ids), "melanoma": int(np.nansum([labels[i] for i in ids])),
                     "benign": int(len(ids) - np.nansum([labels[i] for i in ids]))}
              for name, ids in (("train", split.train), ("validation", split.val), ("dropped", split.dropped))}
    sources = dataset.sources["source"].value_counts().to_dict() if dataset.sources is not None else {}
    return {"folder": str(data.resolve()), "images": len(dataset), "split": split.method, "counts": counts,
            "sources": sources, "notes": split.notes}


def reproduce(config: ReproduceConfig, data: str | Path, out: str | Path, *, extra: str | Path | None = None,
              config_path: str | Path | None = None, progress: bool = True) -> Path:
    data, out = Path(data), Path(out)
    extra = Path(extra) if extra else None
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(yaml.safe_dump(dataclasses.asdict(config), sort_keys=False))
    results: dict[str, Any] = {"segmentation": {}, "baselines": {}, "balancing": {}, "batch_size": {}, "notes": []}

    strides = config.segmentation.strides if "segmentation" in config.experiments else []
    if 8 not in strides and {"balancing", "batch_size"} & set(config.experiments):
        strides = [*strides, 8]  # the classifier needs the stride-8 segmenter
    for stride in strides:
        results["segmentation"][stride] = _segmentation_run(config, data, out, stride, progress)
    if "segmentation" in config.experiments:
        for arch in config.segmentation.baselines:
            results["baselines"][arch] = _segmentation_run(config, data, out, 8, progress, arch=arch)
    segmenter = results["segmentation"][8]["summary"]["best_checkpoint"] if 8 in results["segmentation"] else None

    if "balancing" in config.experiments:
        for balance in config.classification.balances:
            if balance == "extra" and extra is None:
                results["notes"].append("balance 'extra' skipped: no --extra folder was given")
                continue
            run = out / "classification" / f"balance-{balance}"
            results["balancing"][balance] = _classification_run(config, data, extra, run, segmenter, progress,
                                                                balance=balance)
    if "batch_size" in config.experiments:
        for batch_size in config.classification.batch_sizes:
            run = out / "classification" / f"batch-{batch_size}"
            results["batch_size"][batch_size] = _classification_run(config, data, extra, run, segmenter,
                                                                    progress, batch_size=batch_size,
                                                                    balance=config.classification.sweep_balance)
    split_run = out / "segmentation" / "stride-8"
    results["data"] = _data_summary(data, split_run)
    results["leakage"] = leakage_check(data, extra, split_run, config.classification.image_size)
    return write_report(config, results, out, config_path)


def _f(value: float | None, digits: int = 3) -> str:
    return "—" if value is None or (isinstance(value, float) and np.isnan(value)) else f"{value:.{digits}f}"


def _with_ci(value: float, ci: tuple[float, float]) -> str:
    return f"{_f(value)} ({_f(ci[0])}-{_f(ci[1])})"


def _figure(source: Path, out: Path, name: str) -> Path | None:
    if not source.is_file():
        return None
    target = out / "figures" / name
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    return target


def write_report(config: ReproduceConfig, results: dict, out: Path, config_path=None) -> Path:
    """``report.md`` and ``report.html`` (figures embedded) from the experiments' results."""
    samples, blocks = config.bootstrap, []
    add = blocks.append
    add(("h1", "srcrn reproduction report"))
    add(("p", f"srcrn {__version__}; config {config_path or out / 'config.yaml'}; seed {config.seed}; split "
              f"'{config.split}'. Measured numbers are ours, on the validation split below, with 95 % bootstrap "
              f"intervals ({samples} resamplings of the images). Published numbers are the paper's, on the ISIC "
              "2017 test set: a different set of images, so a comparison, not a replication."))
    data = results["data"]
    add(("h2", "Data"))
    add(("table", ["subset", "images", "melanoma", "benign"],
         [[name, c["images"], c["melanoma"], c["benign"]] for name, c in data["counts"].items()]))
    add(("p", f"Folder {data['folder']}: {data['images']} images; sources: "
              + (", ".join(f"{k} {v}" for k, v in data["sources"].items()) or "not stated")
              + ". " + " ".join(data["notes"])))
    leakage = results["leakage"]
    add(("h2", "Leakage check"))
    add(("table", ["between", "shared ids", "shared pixel contents"],
         [[o["between"], o["shared_ids"], o["shared_pixel_contents"]] for o in leakage["overlaps"]]))
    add(("p", ("No image id and no identical pixel content is shared between training and validation. "
               if leakage["clean"] else "LEAKAGE: training and validation share images (see the table). ")
              + f"{leakage['dropped_near_duplicates']} near-duplicates of validation images were dropped from "
                "training. Extra images sharing an id or pixels with the main data are dropped before training "
                "(counts in the balancing runs' notes)."))

    if results["segmentation"]:
        add(("h2", "Table 1: segmentation"))
        measured = [(f"SRCRN stride {stride}", run) for stride, run in sorted(results["segmentation"].items(),
                                                                              reverse=True)]
        measured += [(f"{BASELINE_NAMES.get(arch, arch)}, same recipe", run)
                     for arch, run in results.get("baselines", {}).items()]
        rows = []
        for name, run in measured:
            m, per_image = run["metrics"], run["per_image"]
            rows.append([f"{name} (measured)"] + [
                _with_ci(m[k], bootstrap_mean_ci(per_image[k], samples, config.seed)) for k in ("accuracy", "dice", "jaccard")]
                + [f"{run['summary']['epochs']} ({run['summary']['wall_seconds']:.0f} s)"])
        rows += [[f"{name} (published)", _f(a), _f(d), _f(j), "—"] for name, a, d, j in PUBLISHED_SEGMENTATION]
        add(("table", ["method", "accuracy", "Dice", "Jaccard", "epochs (wall)"], rows))
        for stride, run in sorted(results["segmentation"].items(), reverse=True):
            figure = _figure(run["run"] / "curves.png", out, f"segmentation-stride{stride}-curves.png")
            if figure:
                add(("img", figure, f"Fig. 4-like: training curves, stride {stride}"))
        if 8 in results["segmentation"]:
            figure = _figure(results["segmentation"][8]["run"] / "eval" / "overlays.png", out, "segmentation-overlays.png")
            if figure:
                add(("img", figure, "Fig. 5-like: best, middling and worst validation cases, stride 8"))

    def classification_rows(runs: dict, label) -> list:
        rows = []
        for key, run in runs.items():
            m = run["metrics"]
            cis = _classification_cis(run["per_image"], m["threshold"], samples, config.seed)
            rows.append([label(key), _with_ci(m["accuracy"], cis["accuracy"]),
                         _with_ci(m["auc"], (m["auc_ci95_low"], m["auc_ci95_high"])),
                         _with_ci(m["sensitivity"], cis.get("sensitivity", (np.nan, np.nan))),
                         _with_ci(m["specificity"], cis.get("specificity", (np.nan, np.nan))),
                         f"{run['summary']['epochs']} ({run['summary']['seconds_per_epoch']:.0f} s/epoch)"])
        return rows

    header = ["run", "accuracy", "AUC", "sensitivity", "specificity", "epochs (time)"]
    if results["balancing"]:
        add(("h2", "Table 2: class balancing"))
        rows = classification_rows(results["balancing"], lambda b: f"balance {b} (measured)")
        rows += [[f"{name} (published)", _f(acc), "—", "—", "—", "—"] for name, acc in PUBLISHED_BALANCING]
        add(("table", header, rows))
        for balance, run in results["balancing"].items():
            for name, caption in (("curves.png", "Fig. 6-like: classifier curves"), ("eval/roc.png", "ROC")):
                figure = _figure(run["run"] / name, out, f"balance-{balance}-{Path(name).name}")
                if figure:
                    add(("img", figure, f"{caption}, balance {balance}"))
    if results["batch_size"]:
        add(("h2", "Table 3: batch size"))
        rows = classification_rows(results["batch_size"], lambda b: f"batch {b} (measured)")
        rows += [[f"{name} (published)", _f(acc), _f(auc), "—", "—", "—"] for name, acc, auc in PUBLISHED_CLASSIFICATION]
        add(("table", header, rows))
        for batch_size, run in results["batch_size"].items():
            figure = _figure(run["run"] / "curves.png", out, f"batch-{batch_size}-curves.png")
            if figure:
                add(("img", figure, f"Fig. 6-like: classifier curves, batch {batch_size}"))
    if results["notes"]:
        add(("h2", "Notes"))
        add(("p", " ".join(results["notes"])))
    add(("h2", "Settings and software"))
    add(("pre", yaml.safe_dump(dataclasses.asdict(config), sort_keys=False)))
    add(("table", ["package", "version"], [[k, v] for k, v in _versions().items()]))
    (out / "report.md").write_text(_markdown(blocks, out))
    (out / "report.html").write_text(_html(blocks))
    (out / "results.json").write_text(json.dumps(_numbers(results), indent=2))
    return out / "report.md"


def _numbers(results: dict) -> dict:
    """The measured metrics behind the tables, by experiment (what the report's tables show)."""
    return {part: {str(k): run["metrics"] for k, run in results.get(part, {}).items()}
            for part in ("segmentation", "baselines", "balancing", "batch_size")}


def _markdown(blocks: list, out: Path) -> str:
    lines = []
    for block in blocks:
        kind = block[0]
        if kind == "h1":
            lines += [f"# {block[1]}", ""]
        elif kind == "h2":
            lines += [f"## {block[1]}", ""]
        elif kind == "p":
            lines += [block[1], ""]
        elif kind == "pre":
            lines += ["```yaml", block[1].rstrip(), "```", ""]
        elif kind == "table":
            lines += ["| " + " | ".join(block[1]) + " |", "|" + "---|" * len(block[1])]
            lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in block[2]] + [""]
        elif kind == "img":
            lines += [f"![{block[2]}]({block[1].relative_to(out).as_posix()})", "", f"*{block[2]}*", ""]
    return "\n".join(lines)


def _html(blocks: list) -> str:
    import base64
    import html

    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>srcrn reproduction report</title>",
             "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:3px 8px}img{max-width:100%}</style></head><body>"]
    for block in blocks:
        kind = block[0]
        if kind in ("h1", "h2", "p"):
            parts.append(f"<{kind}>{html.escape(block[1])}</{kind}>")
        elif kind == "pre":
            parts.append(f"<pre>{html.escape(block[1])}</pre>")
        elif kind == "table":
            head = "".join(f"<th>{html.escape(str(c))}</th>" for c in block[1])
            body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in block[2])
            parts.append(f"<table><tr>{head}</tr>{body}</table>")
        elif kind == "img":
            encoded = base64.b64encode(block[1].read_bytes()).decode()
            parts.append(f"<figure><img src='data:image/png;base64,{encoded}'><figcaption>{html.escape(block[2])}"
                         "</figcaption></figure>")
    return "\n".join(parts + ["</body></html>"])
