"""The DICOM node (``srcrn dicom serve``, issue 34): C-ECHO, C-STORE of a dermoscopic photograph
answered with its SEG and SR at the destination; an unsupported SOP class refused at
association; a malformed association survived; a destination that is down leaves the answer
in the spool until it is back. Last, the real thing: a throw-away Orthanc (Debian's package)
receives the image with dcmtk's storescu and srcrn's SEG and SR from the node, found through
its REST API."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from test_dicom import _dciodvfy_errors, _named, _rgb, _sample, dicom_photo

pynetdicom = pytest.importorskip("pynetdicom", reason="srcrn[dicom] not installed")
pydicom = pytest.importorskip("pydicom")


def _free_ports(count: int) -> list[int]:
    """``count`` distinct free loopback ports (held open together while chosen: a port closed
    and asked for again may come back the same)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _free_port() -> int:
    return _free_ports(1)[0]


class Receiver:
    """A storage SCP standing for a PACS: keeps what it is sent."""

    def __init__(self, port: int):
        from pynetdicom import AE, AllStoragePresentationContexts, evt

        self.port, self.received = port, []
        ae = AE(ae_title="PACS")
        ae.supported_contexts = AllStoragePresentationContexts

        def store(event):
            dataset = event.dataset
            dataset.file_meta = event.file_meta
            self.received.append(dataset)
            return 0x0000

        self.server = ae.start_server(("127.0.0.1", port), block=False, evt_handlers=[(evt.EVT_C_STORE, store)])

    def stop(self):
        self.server.shutdown()


def _wait(condition, seconds=60.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return False


def _store(port: int, path: Path, ae_title: str = "SRCRN"):
    """C-STORE ``path`` to the node; (status or None, association established)."""
    from pynetdicom import AE

    dataset = pydicom.dcmread(path)
    client = AE(ae_title="MODALITY")
    client.add_requested_context(dataset.SOPClassUID)
    assoc = client.associate("127.0.0.1", port, ae_title=ae_title)
    if not assoc.is_established:
        return None, False
    try:
        status = assoc.send_c_store(dataset)
        return status, True
    finally:
        assoc.release()


@pytest.fixture(scope="module")
def pipeline():
    from srcrn import Pipeline

    return Pipeline.default()


def _node(pipeline, spool, forward_port, retry=0.5, port=None):
    from srcrn.serving.dicom_node import Destination, DicomNode

    node = DicomNode(pipeline, spool, forward=Destination("127.0.0.1", forward_port, "PACS"), retry_seconds=retry)
    port = port or next(p for p in _free_ports(2) if p != forward_port)
    node.start("127.0.0.1", port)
    return node, port


def test_the_node_answers_echo_and_a_stored_photograph_with_its_seg_and_sr(tmp_path, pipeline):
    from pynetdicom import AE
    from pynetdicom.sop_class import CTImageStorage, Verification

    receive, port = _free_ports(2)
    receiver = Receiver(receive)
    node, port = _node(pipeline, tmp_path / "spool", receiver.port, port=port)
    try:
        client = AE(ae_title="MODALITY")
        client.add_requested_context(Verification)
        assoc = client.associate("127.0.0.1", port, ae_title="SRCRN")
        assert assoc.is_established and assoc.send_c_echo().Status == 0x0000
        assoc.release()
        # A malformed association (bytes that are no A-ASSOCIATE-RQ) does not stop the node.
        with socket.create_connection(("127.0.0.1", port)) as raw:
            raw.sendall(b"\x01\x00garbage" * 20)
        image = dicom_photo(tmp_path / "photo.dcm", _rgb(_sample()), PixelSpacing=[0.02, 0.02])
        status, _ = _store(port, image)
        assert status.Status == 0x0000
        assert _wait(lambda: len(receiver.received) == 2), receiver.received
        source = pydicom.dcmread(image)
        kinds = {d.Modality: d for d in receiver.received}
        assert set(kinds) == {"SEG", "SR"}
        assert all(d.StudyInstanceUID == source.StudyInstanceUID for d in receiver.received)
        seg_ref = kinds["SEG"].ReferencedSeriesSequence[0].ReferencedInstanceSequence[0].ReferencedSOPInstanceUID
        assert seg_ref == source.SOPInstanceUID
        (probability,) = _named(kinds["SR"], "P-MEL")
        expected = pipeline.predict(image).probability
        assert float(probability.MeasuredValueSequence[0].NumericValue) == pytest.approx(expected, abs=1e-6)
        assert not any((tmp_path / "spool" / "outgoing").iterdir())  # sent: nothing left
        if shutil.which("dciodvfy"):  # what the PACS received passes the IOD checker
            for modality, dataset in kinds.items():
                dataset.save_as(tmp_path / f"received-{modality}.dcm", enforce_file_format=True)
                assert _dciodvfy_errors(tmp_path / f"received-{modality}.dcm") == [], modality
        # An image over the node's pixel limit is refused (out of resources), never stored.
        node.max_pixels = 1_000_000
        big = dicom_photo(tmp_path / "big.dcm", np.zeros((1200, 1000, 3), np.uint8))
        status, _ = _store(port, big)
        assert status.Status == 0xA700 and not list((tmp_path / "spool" / "incoming").iterdir())
        node.max_pixels = 40_000_000
        # A CT is not a photograph: no presentation context for it, the association refused.
        client = AE(ae_title="MODALITY")
        client.add_requested_context(CTImageStorage)
        assert not client.associate("127.0.0.1", port, ae_title="SRCRN").is_established
        client.add_requested_context(Verification)  # the node still answers
        assoc = client.associate("127.0.0.1", port, ae_title="SRCRN")
        assert assoc.send_c_echo().Status == 0x0000
        assoc.release()
    finally:
        node.stop()
        receiver.stop()


def test_answers_wait_in_the_spool_while_the_destination_is_down(tmp_path, pipeline):
    destination, port = _free_ports(2)  # nobody listens at the destination yet
    node, port = _node(pipeline, tmp_path / "spool", destination, retry=0.5, port=port)
    try:
        status, _ = _store(port, dicom_photo(tmp_path / "photo.dcm", _rgb(_sample())))
        assert status.Status == 0x0000
        outgoing = tmp_path / "spool" / "outgoing"
        assert _wait(lambda: len(list(outgoing.glob("*/*.dcm"))) == 2)
        time.sleep(1.5)  # retries meanwhile fail: the answer stays
        assert len(list(outgoing.glob("*/*.dcm"))) == 2
        receiver = Receiver(destination)
        try:
            assert _wait(lambda: len(receiver.received) == 2)
            assert _wait(lambda: not list(outgoing.glob("*/*.dcm")))
        finally:
            receiver.stop()
    finally:
        node.stop()


def test_the_sender_takes_only_whole_answers(tmp_path, pipeline):
    """An answer being written (atomic writes' hidden temporaries, a folder still being filled)
    is neither sent nor a reason for the sender to stop."""
    from srcrn.serving.dicom_node import Destination, DicomNode

    receive = _free_port()
    receiver = Receiver(receive)
    try:
        node = DicomNode(pipeline, tmp_path / "spool", forward=Destination("127.0.0.1", receive, "PACS"))
        outgoing = tmp_path / "spool" / "outgoing"
        whole = outgoing / "1.2.3"
        for path in (whole / "srcrn_image.dcm", whole / ".srcrn_seg.dcm.tmp1.dcm",  # a write in progress
                     outgoing / ".partial-1.2.4" / "srcrn_seg.dcm"):  # an answer in progress  # fmt: skip
            dataset = pydicom.dcmread(dicom_photo(path, _rgb(_sample())))
            dataset.SOPClassUID = dataset.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"  # SC
            dataset.save_as(path)
        assert node.send_spooled() == 1
        assert len(receiver.received) == 1 and (outgoing / ".partial-1.2.4" / "srcrn_seg.dcm").exists()
    finally:
        receiver.stop()


def test_an_unreadable_image_goes_to_failed_with_the_reason(tmp_path, pipeline):
    from srcrn.serving.dicom_node import DicomNode

    node = DicomNode(pipeline, tmp_path / "spool")
    bad = dicom_photo(tmp_path / "spool" / "incoming" / "1.2.3.dcm", _rgb(_sample()))
    dataset = pydicom.dcmread(bad)
    dataset.NumberOfFrames = 2
    dataset.save_as(bad)
    node.process(bad)
    assert not bad.exists()
    reason = (tmp_path / "spool" / "failed" / "1.2.3.dcm.txt").read_text()
    assert "multi-frame DICOM object (2 frames)" in reason


def _orthanc(tmp_path: Path, dicom_port: int, http_port: int, node_port: int):
    config = {
        "Name": "srcrn-test", "StorageDirectory": str(tmp_path / "db"), "IndexDirectory": str(tmp_path / "db"),
        "DicomAet": "ORTHANC", "DicomPort": dicom_port, "HttpPort": http_port, "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False, "DicomModalities": {"srcrn": ["SRCRN", "127.0.0.1", node_port]},
        "DicomCheckCalledAet": False, "Plugins": [], "UnknownSopClassAccepted": True,
    }  # fmt: skip
    (tmp_path / "orthanc.json").write_text(json.dumps(config))
    log = open(tmp_path / "orthanc.log", "w")
    return subprocess.Popen(["Orthanc", str(tmp_path / "orthanc.json")], stdout=log, stderr=subprocess.STDOUT)


def _rest(http_port: int, path: str):
    with urllib.request.urlopen(f"http://127.0.0.1:{http_port}{path}", timeout=10) as answer:
        return json.loads(answer.read())


def _dcmtk(tool: str) -> str | None:
    """dcmtk's ``tool`` on PATH, not the same-named script pynetdicom installs into the venv (with
    the venv activated that one comes first, and it takes other options)."""
    venv = Path(sys.executable).parent.resolve()
    path = os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep) if p and Path(p).resolve() != venv)
    return shutil.which(tool, path=path)


STORESCU = _dcmtk("storescu")


@pytest.mark.skipif(
    shutil.which("Orthanc") is None or STORESCU is None,
    reason="Orthanc or dcmtk's storescu not installed (Debian's orthanc, dcmtk): no PACS to test against",
)
def test_a_real_orthanc_receives_the_image_and_srcrns_seg_and_sr(tmp_path, pipeline):
    dicom_port, http_port, node_port = _free_ports(3)
    node, node_port = _node(pipeline, tmp_path / "spool", dicom_port, port=node_port)
    node.forward = type(node.forward)("127.0.0.1", dicom_port, "ORTHANC")
    orthanc = _orthanc(tmp_path, dicom_port, http_port, node_port)
    try:
        assert _wait(lambda: _answers(http_port), 30), (tmp_path / "orthanc.log").read_text()[-2000:]
        image = dicom_photo(tmp_path / "photo.dcm", _rgb(_sample()))
        for port, aet in ((dicom_port, "ORTHANC"), (node_port, "SRCRN")):  # the PACS's copy, then srcrn's
            done = subprocess.run([STORESCU, "-R", "-aec", aet, "127.0.0.1", str(port), str(image)], capture_output=True,
                                  text=True, timeout=60)  # fmt: skip
            assert done.returncode == 0, done.stderr
        assert _wait(lambda: len(_rest(http_port, "/instances")) == 3, 90), (
            sorted(str(p.relative_to(tmp_path)) for p in (tmp_path / "spool").rglob("*")),
            (tmp_path / "orthanc.log").read_text()[-2000:],
        )
        (study,) = _rest(http_port, "/studies")
        tags = [_rest(http_port, f"/instances/{i}/simplified-tags") for i in _rest(http_port, "/instances")]
        by_modality = {t["Modality"]: t for t in tags}
        assert set(by_modality) == {"DMS", "SEG", "SR"}
        source_uid = pydicom.dcmread(image).SOPInstanceUID
        assert all(t["StudyInstanceUID"] == pydicom.dcmread(image).StudyInstanceUID for t in tags), study
        seg = by_modality["SEG"]["ReferencedSeriesSequence"][0]["ReferencedInstanceSequence"][0]
        assert seg["ReferencedSOPInstanceUID"] == source_uid
        evidence = by_modality["SR"]["CurrentRequestedProcedureEvidenceSequence"][0]["ReferencedSeriesSequence"]
        referenced = {i["ReferencedSOPInstanceUID"] for s in evidence for i in s["ReferencedSOPSequence"]}
        assert referenced == {source_uid, by_modality["SEG"]["SOPInstanceUID"]}
    finally:
        node.stop()
        orthanc.terminate()
        orthanc.wait(timeout=30)


def _answers(http_port: int) -> bool:
    try:
        _rest(http_port, "/system")
        return True
    except OSError:
        return False


def test_the_spool_is_the_nodes_output_folder(tmp_path, capsys, monkeypatch):
    from helpers import cli_error, run_cli
    from srcrn.serving import dicom_node

    out = tmp_path / "predicted"
    run_cli("predict", str(_sample()), "--out", str(out), "--no-overlays", "--no-progress")
    line = cli_error(capsys, "dicom", "serve", "--spool", str(out), "--port", str(_free_port()))
    assert str(out) in line and "predict" in line, line
    assert cli_error(capsys, "dicom", "serve", "--forward", "pacs:104") == (
        "error: --forward 'pacs:104': expected HOST:PORT:AET, e.g. pacs.local:104:ORTHANC"
    )
    # A free spool is claimed, and the node then listens (stopped here at once).
    started = []
    monkeypatch.setattr(dicom_node.DicomNode, "serve_forever", lambda self, host, port: started.append((host, port)))
    port = _free_port()
    run_cli("dicom", "serve", "--spool", str(tmp_path / "spool"), "--port", str(port))
    assert started == [("127.0.0.1", port)]
    assert json.loads((tmp_path / "spool" / "srcrn-output.json").read_text())["command"] == "dicom serve"
