"""The output-folder rule, in one place, for every command that writes an ``--out`` folder.

1. ``--out`` is never an input, never inside an input folder and (for folder inputs) never
   holds one: writing there could replace what the user gave (``refuse_overlap``).
2. A folder srcrn writes is identified by a manifest, ``srcrn-output.json``, written when the
   folder is created: the command that owns it, the srcrn version, the time, and (for staged
   output) the entries the command wrote, the only ones a rerun may replace. A folder is
   trusted by that manifest, never by its name or by the names of the files in it: one that
   belongs to another command is refused, and one without a manifest that already holds files
   is written into only where nothing of the user's would be replaced (or, with ``--resume``,
   adopted as an earlier srcrn version's output of the same command).
3. Output that is more than one file is built in a hidden staging folder inside the target
   (beside the files it replaces) and moved in only when complete (``stage=True``): a failure
   or a kill leaves the folder as it was; a killed command's staging folder is swept later.
4. A command refused before it wrote anything leaves no folder behind.

Training runs, ``predict`` and ``prepare`` are not staged: their run folders are their own
staging (checkpoints, the prediction journal and the cache are written atomically and resumed).
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from srcrn.atomic import read_json
from srcrn.errors import ConfigError

MANIFEST = "srcrn-output.json"
FORMAT = "srcrn-output"
STAGING_PREFIX = ".staging-"
log = logging.getLogger(__name__)


def _resolved(path: str | Path, role: str) -> Path:
    """``path`` resolved, or one line naming it where it is a symbolic-link loop."""
    try:
        return Path(path).resolve()
    except (RuntimeError, OSError) as error:  # Python 3.11 raises RuntimeError for a loop
        raise ConfigError(f"{path}: cannot be resolved ({role}): a symbolic-link loop? ({error})") from None


def refuse_overlap(out: str | Path, inputs: Mapping[str, str | Path | None], *, contains: bool = True) -> None:
    """Refuse an ``out`` that is an input, lies inside an input folder or (with ``contains``)
    holds an input. ``inputs`` maps a flag or role (e.g. ``--data``) to its path; None entries
    are skipped.

    Raises:
        ConfigError: naming ``--out`` and the input it collides with.
    """
    target = _resolved(out, "--out")
    for role, given in inputs.items():
        if given is None:
            continue
        source = _resolved(given, role)
        if target == source:
            raise ConfigError(f"--out {out}: is the {role} {given}; write to another folder")
        if source.is_dir() and source in target.parents:
            raise ConfigError(f"--out {out}: lies inside the {role} {given}; write to another folder")
        if contains and target in source.parents:
            raise ConfigError(f"--out {out}: holds the {role} {given}; write to another folder")


def read_manifest(folder: Path) -> dict | None:
    """The manifest of ``folder`` (None when it has none).

    Raises:
        ConfigError: the manifest exists but is not one srcrn wrote.
    """
    path = folder / MANIFEST
    if not path.is_file():
        return None
    try:
        manifest = read_json(path)
    except (ValueError, UnicodeDecodeError):
        raise ConfigError(f"{path}: not a valid srcrn output manifest (not JSON); choose another --out") from None
    if (
        not isinstance(manifest, dict)
        or manifest.get("format") != FORMAT
        or not isinstance(manifest.get("command"), str)
    ):
        raise ConfigError(f"{path}: not a valid srcrn output manifest; choose another --out")
    entries = manifest.get("entries", [])
    # A rerun removes what ``entries`` names: only plain names of this folder's own entries, or a
    # forged manifest could name ../elsewhere or /an/absolute/path for srcrn to delete.
    unsafe = [e for e in entries if not _plain_name(e)] if isinstance(entries, list) else [entries]
    if unsafe:
        raise ConfigError(
            f"{path}: entries: {unsafe[0]!r} is not the name of an entry of this folder; choose another --out"
        )
    return manifest


def _plain_name(name: object) -> bool:
    """A file or folder name inside one folder: no separator, not '.' or '..', not empty."""
    return (
        isinstance(name, str)
        and name not in ("", ".", "..")
        and "/" not in name
        and "\\" not in name
        and "\0" not in name
        and os.sep not in name
    )


def _visible(folder: Path) -> list[str]:
    """The entries of ``folder`` a user put or srcrn wrote (hidden temporary files aside)."""
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))


def _write_manifest(folder: Path, command: str, adopted: bool = False) -> None:
    from importlib.metadata import PackageNotFoundError, version

    from srcrn.atomic import write_json

    try:  # the installed distribution's (this layer is below the package root and its __version__)
        installed = version("srcrn")
    except PackageNotFoundError:  # a source tree on sys.path, not installed
        installed = "unknown"
    manifest: dict[str, object] = {
        "format": FORMAT,
        "command": command,
        "srcrn_version": installed,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    write_json(folder / MANIFEST, manifest | ({"adopted": True} if adopted else {}))


def _git_commit() -> str | None:
    """The commit of the srcrn checkout this code runs from (None when installed from a wheel)."""
    source = Path(__file__).resolve().parents[2]
    if not (source / ".git").exists():
        return None
    try:
        done = subprocess.run(
            ["git", "-C", str(source), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None if done.returncode == 0 else None


def _digest(path: Path) -> dict[str, object]:
    """What identifies an input: a file's SHA-256; a folder's file count and the SHA-256 of its
    listing (relative names and sizes: cheap for thousands of images, and it changes when one is
    added, removed or rewritten at another size)."""
    if path.is_file():
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        return {"path": str(path), "sha256": digest.hexdigest()}
    if path.is_dir():
        files = sorted(f for f in path.rglob("*") if f.is_file() and not f.name.startswith("."))
        listing = "\n".join(f"{f.relative_to(path)}\t{f.stat().st_size}" for f in files)
        return {"path": str(path), "files": len(files), "listing_sha256": hashlib.sha256(listing.encode()).hexdigest()}
    return {"path": str(path)}


def _record_provenance(folder: Path, inputs: Mapping[str, str | Path | None]) -> None:
    """Record in the manifest what produced the folder: srcrn's commit (in a checkout) and every
    input's identity, so that a result can be traced to its models and data."""
    from srcrn.atomic import write_json

    manifest = read_manifest(folder) or {}
    given = {role: _digest(Path(path)) for role, path in inputs.items() if path is not None}
    write_json(folder / MANIFEST, manifest | {"provenance": {"git_commit": _git_commit(), "inputs": given}})


def _record_entries(folder: Path, entries: list[str]) -> None:
    """Add ``entries`` to what the manifest says the command wrote here (so that a rerun
    replaces those and nothing of anyone else's)."""
    from srcrn.atomic import write_json

    manifest = read_manifest(folder) or {}
    recorded = manifest.get("entries")
    known = set(recorded) if isinstance(recorded, list) else set()
    write_json(folder / MANIFEST, manifest | {"entries": sorted(known | set(entries))})


def _recorded_entries(folder: Path) -> set[str]:
    """The entries the manifest says the command wrote into ``folder`` (none recorded: none)."""
    recorded = (read_manifest(folder) or {}).get("entries")
    return {name for name in recorded if isinstance(name, str)} if isinstance(recorded, list) else set()


# What makes a folder a data folder (data.isic's layouts, official ISIC names included): an image
# folder beside masks or labels. Named here, below the data layer, by their glob patterns.
_IMAGE_FOLDERS = ("images", "ISIC-2017_*_Data", "ISIC2018_Task*_Input")
_TRUTH = ("masks", "labels.csv", "ISIC-2017_*_GroundTruth*", "ISIC2018_Task*_GroundTruth*")


def is_data_folder(folder: Path) -> bool:
    """Whether ``folder`` holds a dataset: an image folder and masks or labels beside it."""

    def has(patterns: tuple[str, ...]) -> bool:
        return any(any(folder.glob(pattern)) for pattern in patterns)

    return has(_IMAGE_FOLDERS) and has(_TRUTH)


def claim(
    out: str | Path,
    command: str,
    *,
    writes: Iterable[str] | None = None,
    adopt: Iterable[str] = (),
    resume: bool = False,
) -> str:
    """Make ``out`` the folder of ``command`` under the rule above; returns how: ``"created"``,
    ``"adopted"`` (an earlier srcrn's output, given a manifest now) or ``"owned"``.

    Args:
        out: the ``--out`` folder.
        command: the command that owns it, e.g. ``"segment eval"``.
        writes: the top-level names the command writes; a folder without a manifest is written
            into when none of them is there. None: such a folder must be empty.
        adopt: names that mark an earlier srcrn version's output of this command (which had no
            manifest); with ``resume`` such a folder is adopted and given a manifest.
        resume: the user asked to continue what is in ``out``.

    Raises:
        ConfigError: ``out`` is a file, belongs to another command, or holds files that are not
            this command's.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out}: is a file, not a folder; choose another --out")
    if not out.is_dir():
        out.mkdir(parents=True)
        _write_manifest(out, command)
        return "created"
    if is_data_folder(out):  # whatever a manifest in it says: a forged one must not unlock ground truth
        raise ConfigError(
            f"{out}: is a data folder (images with masks or labels), never an output; choose another --out"
        )
    manifest = read_manifest(out)
    if manifest is not None:
        if manifest["command"] != command:
            raise ConfigError(
                f"{out}: holds the output of 'srcrn {manifest['command']}' ({MANIFEST}), not of 'srcrn {command}'; "
                "choose another --out"
            )
        return "owned"
    present = _visible(out)
    if not present:
        _write_manifest(out, command)
        return "owned"
    earlier = [name for name in adopt if (out / name).exists()]
    if earlier and resume:
        log.info("%s: an earlier srcrn's output of %s (no %s): adopted", out, command, MANIFEST)
        _write_manifest(out, command, adopted=True)
        return "adopted"
    if earlier:
        raise ConfigError(
            f"{out}: holds the output of an earlier srcrn ({earlier[0]}, no {MANIFEST}); pass --resume to "
            "continue it, or choose another --out"
        )
    if writes is None:
        shown = ", ".join(present[:3]) + (", ..." if len(present) > 3 else "")
        raise ConfigError(
            f"{out}: holds files srcrn {command} did not write ({shown}) and no {MANIFEST}; "
            "choose an empty or new --out"
        )
    taken = [name for name in writes if (out / name).exists()]
    if taken:
        raise ConfigError(
            f"{out / taken[0]}: exists and was not written by srcrn {command} (no {MANIFEST} in {out}); "
            "it is left as it is: choose another --out"
        )
    _write_manifest(out, command)
    return "owned"


def _staged(staging: Path) -> list[Path]:
    """What a command put into its staging folder (its mark aside)."""
    return [entry for entry in staging.iterdir() if entry.name != STAGING_MARK]


def _move_in(staging: Path, out: Path, replace: set[str]) -> None:
    """Each entry of ``staging`` replaces its namesake in ``out`` (a folder as a whole: the
    command's new output supersedes its old, never merges with it); the entries named in
    ``replace`` that the new output lacks are the command's stale ones and go too."""
    new = {entry.name for entry in _staged(staging)}
    for name in sorted(replace - new - {MANIFEST}):
        stale = out / name
        if stale.is_symlink():  # the link goes, never what it points to
            stale.unlink()
        elif stale.is_dir():
            shutil.rmtree(stale)
        elif stale.exists():
            stale.unlink()
    for entry in sorted(_staged(staging)):
        target = out / entry.name
        if entry.is_dir() and target.is_dir():
            old = staging_folder(out)  # swept like any staging folder if a kill comes now
            os.replace(target, old / entry.name)
            os.replace(entry, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(entry, target)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


LOCK = ".srcrn-lock"  # hidden: never an output, never swept


def _lock(out: Path, command: str) -> Any | None:
    """An exclusive lock on ``out`` for this process (``fcntl.flock``, released when the returned
    file is closed or the process dies), holding the holder's pid; a second srcrn writing into the
    same folder is refused in one line instead of both succeeding with tables that do not match
    their masks."""
    import fcntl

    if os.environ.get("LOCAL_RANK", "0") != "0" or os.environ.get("NODE_RANK", "0") != "0":
        # A DDP worker Lightning launched runs the same command into the same folder: the
        # process that launched it (rank 0) holds the folder's lock for the whole run.
        return None
    handle = open(out / LOCK, "a+", encoding="utf-8")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise ConfigError(
            f"{out}: another srcrn ({holder}) is writing into this folder; wait for it to finish or choose another --out"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()}, srcrn {command}")
    handle.flush()
    return handle


STAGING_MARK = ".srcrn-staging"  # in each staging folder: the process and host that made it


def _unlock(out: Path, lock: Any | None) -> None:
    """Release the folder's lock. The lock file goes with the run (outputs hold only what the
    command writes); it is unlinked before it is released, so a later writer makes a new one.
    A DDP worker holds no lock and removes none."""
    if lock is None:
        return
    (out / LOCK).unlink(missing_ok=True)
    lock.close()


def staging_folder(out: Path, prefix: str = STAGING_PREFIX) -> Path:
    """A new hidden staging folder inside ``out``, named after this process (``<prefix><pid>-...``),
    marked with the process and host (what the stale sweep checks before deleting anything)."""
    import socket

    from srcrn.atomic import write_json

    folder = Path(tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-", dir=out))
    write_json(folder / STAGING_MARK, {"pid": os.getpid(), "host": socket.gethostname()})
    return folder


def _stale(folder: Path) -> bool:
    """True for a staging folder of a srcrn process on this host that is gone; a folder without
    the mark (a user's, whatever its name), another host's or a live process's is not stale."""
    import socket

    try:
        mark = read_json(folder / STAGING_MARK)
        pid, host = int(mark["pid"]), str(mark["host"])
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return host == socket.gethostname() and not _alive(pid)


def remove_stale_staging(out: Path, prefix: str = STAGING_PREFIX) -> int:
    """Remove the staging folders of ``staging_folder`` that killed commands left in ``out``
    (their process on this host is gone); any other folder is left alone. Returns how many were removed."""
    removed = 0
    for folder in out.glob(f"{prefix}*") if out.is_dir() else ():
        if folder.is_dir() and not folder.is_symlink() and _stale(folder):
            log.info("removing the staging folder of an interrupted command: %s", folder)
            shutil.rmtree(folder, ignore_errors=True)
            removed += 1
    return removed


@contextmanager
def output_folder(
    out: str | Path,
    command: str,
    inputs: Mapping[str, str | Path | None] | None = None,
    *,
    contains: bool = True,
    writes: Iterable[str] | None = None,
    adopt: Iterable[str] = (),
    resume: bool = False,
    stage: bool = False,
    replace: bool = False,
) -> Iterator[Path]:
    """The rule for one command's ``--out``: checked, claimed, and with ``stage`` a staging
    folder yielded whose entries are moved into ``out`` only when the block succeeds (else
    ``out`` itself is yielded). A failure removes the staging folder, a folder this call
    created that still holds nothing but its manifest, and a manifest this call adopted.

    Args:
        out: the ``--out`` folder.
        command: the command that owns it.
        inputs: flag or role -> path of every input (see ``refuse_overlap``).
        contains: also refuse an ``out`` that holds an input.
        writes: see ``claim``.
        adopt: see ``claim``.
        resume: see ``claim``.
        stage: build the output in a hidden folder inside ``out`` first.
        replace: with ``stage``, the new output replaces all of the command's old one: the
            entries the manifest records as written by it before and the new output lacks
            are removed (e.g. a bundle whose files changed, a stale metrics.json); nothing
            it did not record is.

    Raises:
        ConfigError: the rule refuses ``out``.
    """
    out = Path(out)
    if out.is_symlink() and not out.exists():
        raise ConfigError(f"{out}: a symbolic link to nothing (broken, or a loop); choose another --out")
    refuse_overlap(out, inputs or {}, contains=contains)
    writes = None if writes is None else tuple(writes)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out}: is a file, not a folder; choose another --out")
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        lock = _lock(out, command)
    except BaseException:
        if created and not _visible(out):  # refused: no folder left to block the retry
            shutil.rmtree(out, ignore_errors=True)
        raise
    try:
        how = claim(out, command, writes=writes, adopt=adopt, resume=resume)
    except BaseException:
        _unlock(out, lock)  # a folder srcrn does not own keeps nothing of ours
        if created and not _visible(out):  # refused: no folder left to block the retry
            shutil.rmtree(out, ignore_errors=True)
        raise
    how = "created" if created and how == "owned" else how
    linked = [name for name in writes or () if (out / name).is_symlink()]
    if linked:  # writes never follow a link out of --out (e.g. masks/ pointing at ground truth)
        _unlock(out, lock)
        raise ConfigError(
            f"{out / linked[0]}: is a symbolic link; srcrn never writes through one: remove it or choose another --out"
        )
    remove_stale_staging(out)
    staging = staging_folder(out) if stage else None
    try:
        yield staging if staging is not None else out
        if staging is not None:
            # What goes: only the entries the manifest says this command wrote here before.
            new = sorted(entry.name for entry in _staged(staging))
            _move_in(staging, out, _recorded_entries(out) if replace else set())
            _record_entries(out, new)
        if (out / MANIFEST).is_file():
            _record_provenance(out, inputs or {})
    except BaseException:
        if how == "created" and set(_visible(out)) <= {MANIFEST}:
            shutil.rmtree(out, ignore_errors=True)
        elif how == "adopted":  # e.g. the command refused the folder after all: it claims nothing
            (out / MANIFEST).unlink(missing_ok=True)
        raise
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
        _unlock(out, lock)


class Rule(Protocol):
    """A command's output-folder rule (``settings.OutputRule``, declared with its schema)."""

    def options(self, *, resume: bool | None = None) -> dict[str, Any]:
        """``output_folder``'s keyword arguments."""
        ...


def claim_output(
    out: str | Path,
    rule: Rule | None,
    inputs: Mapping[str, str | Path | None] | None = None,
    *,
    resume: bool | None = None,
) -> AbstractContextManager[Path]:
    """``output_folder`` for ``out`` under the rule a command's schema declares (``resume``: the
    command's --resume, where it has one)."""
    if rule is None:
        raise TypeError("this command's schema declares no output rule")
    return output_folder(out, inputs=inputs, **rule.options(resume=resume))
