"""``srcrn predict`` over many files: a bad file is reported and skipped, a killed job resumes
where it stopped, and N machines split an archive without a coordinator.

- Each batch's outputs (mask, overlay) are written atomically, then its records are appended
  to ``predictions.partial.jsonl`` (one JSON object a line, flushed and fsynced). ``--resume``
  reads that journal (a line cut short by a kill is dropped) or a finished run's
  ``predictions.json``, skips the images recorded there whose outputs exist, and predicts the
  rest. ``predictions.csv``/``.json`` are written
  (atomically) from all records at the end, and the journal is then removed.
- ``--shard K/N`` keeps the images whose id hashes to K-1 modulo N: deterministic on every
  machine whatever the listing order, disjoint, and together complete.
- ``merge_predictions`` joins the shards' tables.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable
from dataclasses import asdict, fields
from pathlib import Path

import pandas as pd

from srcrn.answers.results import TABLE_NAMES, PipelineResult, Prediction
from srcrn.atomic import atomic_path, json_text, parse_json, read_json, remove_leftovers
from srcrn.console import progress
from srcrn.data.images import IMAGE_SUFFIXES
from srcrn.data.metadata import NO_CONTEXT, ClinicalContext, check_scale, read_metadata
from srcrn.dicom.objects import Patient
from srcrn.errors import ConfigError, DataError, SrcrnError
from srcrn.inference.jobs import find_images, image_id, in_shard, job_identity, model_identity
from srcrn.inference.pipeline import Pipeline

JOURNAL = "predictions.partial.jsonl"
TABLES = ("predictions.csv", "predictions.json")
# What predict writes into its --out (a folder of the user's may hold other things beside them).
OUTPUT_NAMES = (*TABLES, "masks", "overlays", "explanations", "reports", "dicom", JOURNAL)
log = logging.getLogger(__name__)


def _read_finished(out: Path, identity: dict) -> dict[str, Prediction]:
    """The records of an earlier run (a finished one's ``predictions.json``, a killed one's
    journal) whose outputs are all there; a journal line cut short by a kill is dropped. An
    earlier run of other models or settings is refused."""
    records: list[object] = []
    jobs: list[object] = []
    finished = out / "predictions.json"
    if finished.is_file():
        try:
            payload = read_json(finished)
            records += payload.get("predictions", [])
            jobs.append(payload.get("job"))
        except (json.JSONDecodeError, UnicodeDecodeError, AttributeError, TypeError):
            pass  # unreadable: its images are predicted again
    if (out / JOURNAL).is_file():
        for line in (out / JOURNAL).read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                record = parse_json(line)
            except json.JSONDecodeError:
                continue  # cut short by the kill
            if isinstance(record, dict) and set(record) == {"job"}:
                jobs.append(record["job"])
            else:
                records.append(record)
    for job in jobs:
        if job is not None and job != identity:
            changed = sorted(k for k in identity if job.get(k) != identity[k]) if isinstance(job, dict) else ["all"]
            raise ConfigError(
                f"{out}: holds predictions of other models or settings ({', '.join(changed)} differ); "
                "use another --out, or run without --resume to predict everything again"
            )
    done: dict[str, Prediction] = {}
    names = {TABLE_NAMES.get(f.name, f.name) for f in fields(Prediction)}
    for record in records:
        if not isinstance(record, dict) or set(record) != names:
            continue
        prediction = Prediction.from_record(record)
        paths = (prediction.mask, prediction.overlay, prediction.explanation)
        if not all(isinstance(p, str) for p in paths):
            continue  # a damaged record: that image is predicted again
        outputs = [Path(p) for p in paths if p]
        inside = all(out.resolve() in p.resolve().parents for p in outputs)  # never a file elsewhere
        if inside and all(p.is_file() for p in outputs):
            done[prediction.image_id] = prediction
    return done


def _line(prediction: Prediction) -> str:
    return json_text(prediction.to_record(), indent=None) + "\n"


def _append(journal, results: list[Prediction]) -> None:
    journal.write("".join(_line(result) for result in results))
    journal.flush()
    os.fsync(journal.fileno())  # the records survive a kill (and a power cut) once appended


_SHOWN_UNMATCHED = 10  # warnings of images without a metadata row, one per image, up to this many


def _matched_contexts(
    contexts: dict[str, ClinicalContext], ids: list[str], metadata: Path
) -> dict[str, ClinicalContext]:
    """``contexts`` keyed by the images' own ids: a row's id matches an image's whatever its case
    and with or without the image's extension; each image without a row is a warning, and a
    summary line says how many were matched (metadata silently unused misleads)."""
    by_key = {Path(key).stem.lower() if Path(key).suffix.lower() in IMAGE_SUFFIXES else key.lower(): c
              for key, c in contexts.items()}  # fmt: skip
    matched = {i: by_key[i.lower()] for i in ids if i.lower() in by_key}
    missing = [i for i in ids if i not in matched]
    for unmatched in missing[:_SHOWN_UNMATCHED]:
        log.warning("%s: no row for image %s: it is predicted without clinical context", metadata, unmatched)
    if missing:
        more = f" ({len(missing) - _SHOWN_UNMATCHED} more not listed)" if len(missing) > _SHOWN_UNMATCHED else ""
        log.warning(
            "%s: %d of %d images have a row; %d without one%s (ids are file names without extension, e.g. %s)",
            metadata, len(matched), len(ids), len(missing), more, ids[0] if ids else "ISIC_0000000",
        )  # fmt: skip
    return matched


def predict_images(
    pipeline: Pipeline,
    inputs: list[Path],
    out: Path,
    *,
    batch_size: int = 8,
    show_progress: bool = True,
    overlays: bool = True,
    resume: bool = False,
    shard: tuple[int, int] | None = None,
    metadata: Path | None = None,
    mm_per_pixel: float | None = None,
    report: bool = False,
    dicom: bool = False,
    patient: Patient | None = None,
) -> tuple[list[Prediction], list[tuple[str, str]]]:
    """Every image of ``inputs`` (of ``shard``, if given) in batches; a bad file is reported
    and skipped, the rest go on. With ``resume``, images a killed run finished are kept.
    ``metadata`` (a CSV) gives images their clinical context and scale by id; read before
    anything runs. ``mm_per_pixel`` is the scale of every image without one of its own; with
    ``report``, each image also gets its one-page PDF report; with ``dicom``, its SEG and SR
    (and, for a non-DICOM image, the Secondary Capture they refer to, in a study of ``patient``,
    else anonymous) in ``dicom/``."""
    contexts = read_metadata(metadata) if metadata is not None else {}
    if mm_per_pixel is not None:
        check_scale(mm_per_pixel, "--mm-per-pixel")
    clinical = any(c.given() for c in contexts.values())
    if clinical and not pipeline.classifier.clinical_fields:
        log.warning("%s: this model takes no clinical context; its age, sex and site are not used", metadata)
    out.mkdir(parents=True, exist_ok=True)
    for folder in (
        out,
        out / "masks",
        out / "overlays",
        out / "explanations",
        out / "reports",
        out / "dicom",
    ):  # a killed run's
        remove_leftovers(folder)
    paths, errors = find_images(inputs)
    seen: dict[str, Path] = {}
    readable = []
    for path in paths:
        if shard is not None and not in_shard(image_id(path), shard):
            continue
        if image_id(path) in seen and seen[image_id(path)].resolve() == path.resolve():
            continue  # the same file named twice (e.g. alone and through its folder)
        if image_id(path) in seen:
            errors.append((str(path), f"same image id as {seen[image_id(path)]}: its outputs would be overwritten"))
            continue
        seen[image_id(path)] = path
        readable.append(path)
    if metadata is not None:
        contexts = _matched_contexts(contexts, [image_id(p) for p in readable], metadata)
    identity = job_identity(pipeline)
    if shard is not None:  # another shard's folder is another job's (merge compares the rest)
        identity["shard"] = f"{shard[0]}/{shard[1]}"
    if contexts:  # the same images with other metadata (context, scale) are another job
        identity["metadata"] = hashlib.sha256(Path(metadata).read_bytes()).hexdigest()  # type: ignore[arg-type]
    if mm_per_pixel is not None:
        identity["mm_per_pixel"] = mm_per_pixel
    if report:  # a run with reports is not completed by one without
        identity["report"] = True
    if dicom:
        identity["dicom"] = True
        if patient is not None and patient != Patient():  # other patient fields: another job's objects
            identity["patient"] = asdict(patient)
    done = _read_finished(out, identity) if resume else {}
    if done:
        log.info("%s: resuming: %d of %d images were predicted before", out, len(done), len(readable))
    results: list[Prediction] = [done[image_id(p)] for p in readable if image_id(p) in done]
    todo = [p for p in readable if image_id(p) not in done]
    starts = range(0, len(todo), batch_size)
    # Kept records first (a rewrite of the journal, so that a torn line or a record of an image
    # no longer asked for does not survive), then one append per finished batch.
    with atomic_path(out / JOURNAL) as temporary:
        kept = "".join(_line(r) for r in results)
        temporary.write_text(json.dumps({"job": identity}) + "\n" + kept, encoding="utf-8")
    with open(out / JOURNAL, "a", encoding="utf-8") as journal:
        # Overlapped (Pipeline.predict_stream): batch k+1 is decoded and batch k-1's files are
        # written while the networks run on batch k; a batch is journaled once its files exist.
        stream = pipeline.predict_stream(
            todo,
            image_ids=[image_id(p) for p in todo],
            batch_size=batch_size,
            then=_saver(pipeline, out, overlays=overlays, report=report, dicom=dicom, patient=patient),
            contexts=[contexts.get(image_id(p), NO_CONTEXT).with_scale(mm_per_pixel) for p in todo],
        )
        for start, outcomes in zip(progress(starts, len(starts), "predict", show_progress), stream):
            finished: list[Prediction] = []
            for path, outcome in zip(todo[start : start + batch_size], outcomes):
                if isinstance(outcome, DataError):
                    errors.append((str(outcome.path), outcome.problem))
                elif isinstance(outcome, SrcrnError):
                    errors.append((str(path), str(outcome)))
                else:
                    if metadata is not None and image_id(path) not in contexts:  # the warning travels with the row
                        unmatched = f"no row in {Path(metadata).name}: predicted without clinical context"
                        outcome.warnings = "; ".join(w for w in (outcome.warnings, unmatched) if w)
                    finished.append(outcome)
            _append(journal, finished)
            results += finished
    for source, problem in errors:
        log.warning("skipped %s: %s", source, problem)
    order = {image_id(p): i for i, p in enumerate(readable)}
    results.sort(key=lambda r: order[r.image_id])
    write_predictions(results, errors, out, identity)
    (out / JOURNAL).unlink(missing_ok=True)
    return results, errors


def _saver(
    pipeline: Pipeline, out: Path, *, overlays: bool, report: bool, dicom: bool, patient: Patient | None = None
) -> Callable[[PipelineResult], Prediction]:
    """What is written of each answer: its files, and with ``dicom`` its DICOM objects."""
    if not dicom:
        return lambda r: r.save(out, overlay=overlays, report=report)
    from srcrn.dicom.objects import study_objects

    model = model_identity(pipeline)  # the files' digests, already read for the job's identity

    def save(result: PipelineResult) -> Prediction:
        study_objects(result, result.source, model, patient or Patient()).write(out / "dicom", result.image_id)
        return result.save(out, overlay=overlays, report=report)

    return save


def write_predictions(
    results: list[Prediction], errors: list[tuple[str, str]], out: Path, job: dict | None = None
) -> None:
    """predictions.csv and predictions.json of ``results`` and the skipped inputs, atomically."""
    _write_tables([r.to_record() for r in results], [{"source": s, "problem": p} for s, p in errors], out, job)


def _write_tables(records: list[dict], errors: list[dict], out: Path, job: dict | None) -> None:
    """``predictions.csv`` (one row an image, measurements as columns) and ``predictions.json``."""
    rows = [{k: v for k, v in r.items() if k != "measurements"} | (r.get("measurements") or {}) for r in records]
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "predictions.csv") as temporary:
        pd.DataFrame(rows).to_csv(temporary, index=False)
    with atomic_path(out / "predictions.json") as temporary:
        temporary.write_text(json_text({"predictions": records, "errors": errors, "job": job}))


def merge_predictions(folders: list[Path], out: Path, *, partial: bool = False) -> tuple[int, int]:
    """One ``predictions.csv``/``.json`` from the output folders of ``predict --shard`` runs
    (the masks and overlays stay where they are: the tables point to them). An image in two
    folders, a folder without its tables, or (unless ``partial``) shards that do not cover the
    whole job are refused. Returns (predictions, errors)."""
    predictions: list[dict] = []
    errors: list[dict] = []
    where: dict[str, Path] = {}
    jobs: dict[str, Path] = {}  # the job identity of each shard: one table must not mix models
    shards: dict[str, Path] = {}
    for folder in folders:
        table = folder / "predictions.json"
        if not table.is_file():
            raise DataError(table, "not found: an unfinished shard? (rerun it with --resume)")
        try:
            payload = read_json(table)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise DataError(table, "not valid JSON") from None
        records = payload.get("predictions") if isinstance(payload, dict) else None
        if not isinstance(records, list) or not all(isinstance(r, dict) and "image_id" in r for r in records):
            raise DataError(table, "not a predictions table of 'srcrn predict' (no list of predictions)")
        job = payload.get("job")
        if isinstance(job, dict) and "shard" in job:
            job = dict(job)
            shard = str(job.pop("shard"))
            if shard in shards:
                raise DataError(table, f"shard {shard} is also in {shards[shard]}")
            shards[shard] = table
        if job is not None:
            jobs.setdefault(json.dumps(job, sort_keys=True), table)
            if len(jobs) > 1:
                raise DataError(table, f"predicted with other models or settings than {next(iter(jobs.values()))}")
        for record in records:
            image_id = record["image_id"]
            if image_id in where:
                raise DataError(table, f"image '{image_id}' is also in {where[image_id]}: overlapping shards")
            where[image_id] = folder
            predictions.append(record)
        errors += payload.get("errors", [])
    if shards:
        counts = {s.split("/")[1] for s in shards}
        total = int(next(iter(counts))) if len(counts) == 1 else 0
        missing = [f"{k}/{total}" for k in range(1, total + 1) if f"{k}/{total}" not in shards]
        if len(counts) > 1:
            raise DataError(folders[0], f"shards of different splits ({', '.join(sorted(shards))})")
        if missing and not partial:
            raise DataError(
                folders[0],
                f"the shards do not cover the job: {', '.join(missing)} missing (pass --partial to join them)",
            )
        if missing:
            log.warning("%s: partial table: shard(s) %s missing", out, ", ".join(missing))
    _write_tables(predictions, errors, out, parse_json(next(iter(jobs))) if jobs else None)
    return len(predictions), len(errors)
