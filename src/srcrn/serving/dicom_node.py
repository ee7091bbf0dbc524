"""``srcrn dicom serve``: a DICOM node (issue 34). It answers C-ECHO, receives C-STORE of
dermoscopic photographs, predicts each, and sends the answer's SEG and SR to a configured
destination (a PACS).

pynetdicom does the networking. What srcrn adds is the spool, so that nothing is lost:

* ``incoming/``: a received image, written atomically before C-STORE answers success; a worker
  thread predicts it (one at a time, as ``serve`` admits one prediction per core) and removes it;
* ``outgoing/<image SOP UID>/``: the SEG and SR of an answer, until the destination has stored
  them; a destination that is down leaves them there, retried every ``retry_seconds``, and also
  after a restart (the spool is read on start);
* ``failed/``: an image srcrn cannot read, with ``<name>.txt`` saying why.

Only the photographs' storage classes (and Verification) are negotiated, so a CT or any other
object is refused at association ("no presentation context"); a C-STORE beyond the queue's
``max_pending`` images is refused with status 0xA700 (out of resources), not dropped.
"""

from __future__ import annotations

import logging
import os
import queue
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from srcrn.atomic import atomic_path
from srcrn.commands import DicomServeSettings
from srcrn.data.dicom import PHOTOGRAPHS
from srcrn.dicom.objects import study_objects
from srcrn.errors import ConfigError, SrcrnError
from srcrn.inference.jobs import model_identity

log = logging.getLogger(__name__)

SUCCESS, OUT_OF_RESOURCES, CANNOT_UNDERSTAND = 0x0000, 0xA700, 0xC000
VERIFICATION = "1.2.840.10008.1.1"  # the Verification SOP class: C-ECHO


@dataclass(frozen=True)
class Destination:
    """Where SEGs and SRs go: ``HOST:PORT:AET``."""

    host: str
    port: int
    ae_title: str

    @classmethod
    def parse(cls, text: str) -> Destination:
        """``HOST:PORT:AET`` (the AE title 1-16 characters), else one error line."""
        host, _, rest = text.rpartition(":")
        host, _, port = host.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536 or not 0 < len(rest) <= 16:
            raise ConfigError(f"--forward {text!r}: expected HOST:PORT:AET, e.g. pacs.local:104:ORTHANC")
        return cls(host, int(port), rest)


class DicomNode:
    """The node: a pynetdicom AE serving storage, a worker that predicts, a sender that forwards."""

    def __init__(
        self,
        pipeline: Any,
        spool: Path,
        *,
        ae_title: str = "SRCRN",
        forward: Destination | None = None,
        retry_seconds: float = 30.0,
        max_pending: int = 64,
        max_pixels: int = 40_000_000,
    ):
        """A node over ``pipeline`` with its spool folder (created; what an earlier run left is resumed)."""
        self.pipeline, self.spool, self.ae_title, self.forward = pipeline, Path(spool), ae_title, forward
        self.retry_seconds, self.max_pixels = retry_seconds, max_pixels
        self.model = model_identity(pipeline)
        for part in ("incoming", "outgoing", "failed"):
            (self.spool / part).mkdir(parents=True, exist_ok=True)
        self.pending: queue.Queue[Path] = queue.Queue(maxsize=max_pending)
        for left in sorted((self.spool / "incoming").glob("*.dcm")):  # received before a restart
            if not left.name.startswith("."):  # not a write cut short (atomic writes' temporaries)
                self.pending.put_nowait(left)
        self._stop = threading.Event()
        self._send_now = threading.Event()
        self._threads: list[threading.Thread] = []
        self._server: Any = None

    # -- receiving --------------------------------------------------------------------------
    def _on_echo(self, event: Any) -> int:
        return SUCCESS

    def _on_store(self, event: Any) -> int:
        try:
            dataset = event.dataset
            dataset.file_meta = event.file_meta
            uid = str(dataset.SOPInstanceUID)
        except Exception as error:  # a malformed dataset: refused, the association goes on
            log.warning("C-STORE from %s: cannot read the dataset (%s)", event.assoc.requestor.ae_title, error)
            return CANNOT_UNDERSTAND
        pixels = int(dataset.get("Rows", 0) or 0) * int(dataset.get("Columns", 0) or 0)
        if pixels > self.max_pixels:  # refused before it is stored or decoded (as serve's --max-pixels)
            log.warning("C-STORE of %s refused: %d pixels, over the limit of %d", uid, pixels, self.max_pixels)
            return OUT_OF_RESOURCES
        if self.pending.full():
            log.warning("C-STORE of %s refused: %d images waiting", uid, self.pending.qsize())
            return OUT_OF_RESOURCES
        path = self.spool / "incoming" / f"{_safe(uid)}.dcm"
        with atomic_path(path) as temporary:
            dataset.save_as(temporary, enforce_file_format=True)
        self.pending.put_nowait(path)
        return SUCCESS

    # -- predicting -------------------------------------------------------------------------
    def _predict_loop(self) -> None:
        while not self._stop.is_set():
            try:
                path = self.pending.get(timeout=0.2)
            except queue.Empty:
                continue
            self.process(path)

    def process(self, path: Path) -> None:
        """Predict one received image, spool its SEG and SR, remove it (or move it to failed/).
        The answer's folder appears in outgoing/ whole (written aside, then renamed): the sender
        never sees half of it."""
        try:
            result = self.pipeline.predict(path)
            objects = study_objects(result, path, self.model)
            partial = self.spool / "outgoing" / f".partial-{path.stem}"
            shutil.rmtree(partial, ignore_errors=True)
            objects.write(partial, "srcrn")
            answer = self.spool / "outgoing" / path.stem
            shutil.rmtree(answer, ignore_errors=True)  # the same image sent again: its newer answer replaces ours
            os.replace(partial, answer)
        except Exception as error:
            problem = str(error) if isinstance(error, SrcrnError) else f"{type(error).__name__}: {error}"
            log.warning("%s: not predicted: %s", path.name, problem)
            shutil.move(path, self.spool / "failed" / path.name)
            (self.spool / "failed" / f"{path.name}.txt").write_text(f"{problem}\n", encoding="utf-8")
            return
        path.unlink(missing_ok=True)
        log.info("%s: P(melanoma) %.3f (%s); SEG and SR spooled", path.stem, result.probability, result.decision)
        self._send_now.set()

    # -- forwarding -------------------------------------------------------------------------
    def _send_loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.send_spooled()
            except Exception as error:
                log.warning("sending the spooled answers failed (%s: %s): retried", type(error).__name__, error)
            self._send_now.wait(self.retry_seconds)
            self._send_now.clear()

    def send_spooled(self) -> int:
        """Send every spooled answer to the destination; those sent are removed. Returns how many
        objects were sent (0 when there is no destination or it is down: they stay for a retry)."""
        if self.forward is None:
            return 0
        folders = sorted(p for p in (self.spool / "outgoing").iterdir() if p.is_dir() and not p.name.startswith("."))
        files = [f for folder in folders for f in sorted(folder.glob("*.dcm")) if not f.name.startswith(".")]
        if not files:
            return 0
        import pydicom

        sent = 0
        assoc = self._client().associate(self.forward.host, self.forward.port, ae_title=self.forward.ae_title)
        if not assoc.is_established:
            log.warning("%s:%d (%s) does not answer: %d objects kept in %s for a retry",
                        self.forward.host, self.forward.port, self.forward.ae_title, len(files), self.spool / "outgoing")  # fmt: skip
            return 0
        try:
            for file in files:
                status = assoc.send_c_store(pydicom.dcmread(file))
                if status and status.get("Status", 0xFFFF) in (0x0000, 0xB000, 0xB007, 0xB006):
                    file.unlink()
                    sent += 1
                else:
                    log.warning("%s: the destination refused it (status %s): kept for a retry", file, status)
                    break
        finally:
            assoc.release()
        for folder in folders:
            if not any(folder.iterdir()):
                folder.rmdir()
        return sent

    def _client(self) -> Any:
        from pydicom.uid import ComprehensiveSRStorage, SecondaryCaptureImageStorage, SegmentationStorage
        from pynetdicom import AE

        client = AE(ae_title=self.ae_title)
        for sop_class in (SegmentationStorage, ComprehensiveSRStorage, SecondaryCaptureImageStorage):
            client.add_requested_context(sop_class)
        return client

    # -- running ----------------------------------------------------------------------------
    def start(self, host: str, port: int) -> None:
        """Listen on ``host:port`` (in the background) and start the worker and the sender."""
        from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, evt

        server = AE(ae_title=self.ae_title)
        server.add_supported_context(VERIFICATION)
        for sop_class in PHOTOGRAPHS:
            server.add_supported_context(sop_class, ALL_TRANSFER_SYNTAXES)
        handlers: list[Any] = [(evt.EVT_C_ECHO, self._on_echo), (evt.EVT_C_STORE, self._on_store)]
        try:
            self._server = server.start_server((host, port), block=False, evt_handlers=handlers)
        except OSError as error:
            raise SrcrnError(f"--port {port}: {host}:{port} is in use or cannot be bound ({error.strerror})") from None
        for target in (self._predict_loop, self._send_loop):
            thread = threading.Thread(target=target, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        """Stop listening and let the threads end (what is spooled stays for the next start)."""
        self._stop.set()
        self._send_now.set()
        if self._server is not None:
            self._server.shutdown()
        for thread in self._threads:
            thread.join(timeout=10)

    def serve_forever(self, host: str, port: int) -> None:
        """``start``, then wait until interrupted."""
        self.start(host, port)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()


def _safe(uid: str) -> str:
    """A UID as a file name (a UID holds digits and dots only; anything else is dropped)."""
    return "".join(c for c in uid if c.isdigit() or c == ".")[:64] or "unnamed"


def run_node(given: DicomServeSettings, load: Callable[[], Any]) -> None:
    """``srcrn dicom serve``: the spool claimed as the node's output folder (another command's
    folder refused; what an earlier run left there taken up again), the pipeline that ``load``
    gives, the node serving until interrupted."""
    from srcrn.outputs import claim_output
    from srcrn.serving.run import check_port

    forward = Destination.parse(given.forward) if given.forward else None
    check_port(given.host, given.port)
    with claim_output(given.spool, DicomServeSettings.output_rule, {"--model": given.model}):
        node = DicomNode(load(), given.spool, ae_title=given.ae_title, forward=forward,
                         retry_seconds=given.retry_seconds, max_pending=given.max_pending,
                         max_pixels=given.max_pixels)  # fmt: skip
        log.info("DICOM node %s on %s:%d%s", given.ae_title, given.host, given.port,
                 f", answers to {given.forward}" if forward else ", answers kept in the spool")  # fmt: skip
        node.serve_forever(given.host, given.port)
