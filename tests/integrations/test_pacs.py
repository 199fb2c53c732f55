"""A real Orthanc PACS (DICOMweb): pull -> screen -> push -> read back what Orthanc stored."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import numpy as np
import pytest
from pydicom.uid import generate_uid

from tests.helpers.dicom_files import dicom_bytes
from tests.helpers.drawing import draw_fundus

ROOT = Path(__file__).resolve().parents[2]


def _answers(url: str) -> str:
    """'' when ``url`` answers QIDO-RS, else why not."""
    import requests

    try:
        requests.get(f"{url}/studies", timeout=5).raise_for_status()
    except requests.RequestException as exc:
        return f"Orthanc at {url} unreachable ({exc.__class__.__name__})"
    return ""


def _orthanc_url() -> str:
    """The test Orthanc's DICOMweb root: $ORTHANC_URL, else the one .ci/orthanc.sh started (it
    is started here when Debian's orthanc is installed but not running); skip, or fail in CI."""
    import shutil
    import subprocess

    url = os.environ.get("ORTHANC_URL", "")
    if not url:
        tmp = os.environ.get("TMPDIR") or "/tmp"
        written = Path(os.environ.get("ORTHANC_HOME") or Path(tmp) / "retinascreen-orthanc") / "url"
        url = written.read_text().strip() if written.is_file() else ""
    problem = _answers(url) if url else "no Orthanc URL ($ORTHANC_URL or .ci/orthanc.sh's)"
    installed = shutil.which("Orthanc") and Path(PLUGIN).exists()
    if problem and installed and not os.environ.get("ORTHANC_URL"):
        started = subprocess.run(
            ["bash", str(ROOT / ".ci" / "orthanc.sh")], capture_output=True, text=True, timeout=120
        )
        url = started.stdout.strip().splitlines()[-1] if started.returncode == 0 else ""
        problem = _answers(url) if url else f"Orthanc did not start: {started.stderr.strip()}"
    if problem:
        if os.environ.get("CI"):
            pytest.fail(f"{problem}; CI must run .ci/services.sh (or make pacs)")
        pytest.skip(f"{problem}; start one with `make pacs`, or set CI to make this fail")
    return url


PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"


@pytest.fixture
def pacs():
    from retinascreen.serving.pacs import Pacs

    return Pacs(_orthanc_url())


def _photo(patient: str, study: str, eye: str, seed: int):
    import io

    import pydicom

    extra = {
        "PatientID": patient,
        "PatientName": "Test^Photo",
        "StudyInstanceUID": study,
        "SeriesInstanceUID": generate_uid(),
        "StudyDate": "20260105",
        "ImageLaterality": eye[0].upper(),
        "Manufacturer": "TestCam",
    }
    return pydicom.dcmread(io.BytesIO(dicom_bytes(draw_fundus(256, seed=seed), extra=extra)))


def _items(dataset) -> list:
    """Every SR content item under ``dataset``, depth first."""
    out = []
    for item in getattr(dataset, "ContentSequence", []):
        out.append(item)
        out += _items(item)
    return out


def _code(item, keyword: str) -> str | None:
    sequence = getattr(item, keyword, None)
    return str(sequence[0].CodeValue) if sequence else None


def _visit_photos(sink, patient: str) -> set[tuple[str, str]]:
    """(visit day, eye) of each photo of ``patient``'s visits; asserts there is exactly one."""
    from sqlalchemy import select

    from retinascreen.web.visit_models import Patient, Visit

    with sink.session() as db:
        visits = db.scalars(select(Visit).join(Patient).where(Patient.pseudonym == patient)).all()
        assert len(visits) == 1, "a patient's photos of one day form one visit"
        return {(str(visits[0].visit_date), str(p.eye)) for p in visits[0].photos}


def test_pull_screen_push_and_read_back_from_orthanc(pacs, sink):
    from retinascreen.serving.fhir import GRADE_LOINC_ANSWER, GRADE_SNOMED
    from retinascreen.web.pacs_sync import pull, push

    patient, study = f"PACS-{uuid.uuid4().hex[:10]}", generate_uid()
    photos = {
        "left": _photo(patient, study, "left", 1),
        "right": _photo(patient, study, "right", 2),
    }
    pacs.store(list(photos.values()))

    first = pull(pacs, sink, patient_id=patient)
    assert first.found == 2 and len(first.screened) == 2 and not first.failed
    again = pull(pacs, sink, patient_id=patient)  # idempotent: nothing screened twice
    assert again.found == 2 and again.screened == [] and again.skipped == 2
    by_eye = {}
    for row in sink.rows("pacs"):
        screening = sink.screening(row.screening_id)
        assert screening.patient_id == patient  # filled from the header
        by_eye[screening.eye] = (row.sop_uid, screening)
    assert set(by_eye) == {"left", "right"}
    assert by_eye["left"][0] == photos["left"].SOPInstanceUID
    assert _visit_photos(sink, patient) == {("2026-01-05", "left"), ("2026-01-05", "right")}

    pushed = push(pacs, sink)
    assert pushed.studies == 1 and len(pushed.stored) == 5  # SR + 2 SEG + 2 PDF
    assert push(pacs, sink).stored == []  # pushed once only

    stored = {ref.sop_uid: ref for ref in pacs.instances(study)}
    assert set(pushed.stored) <= set(stored)
    objects = [pacs.retrieve(stored[uid]) for uid in pushed.stored]
    kinds = sorted(str(o.Modality) for o in objects)
    assert kinds == ["DOC", "DOC", "SEG", "SEG", "SR"]
    sources = {str(p.SOPInstanceUID): eye for eye, p in photos.items()}

    (sr,) = [o for o in objects if o.Modality == "SR"]
    assert sr.PatientID == patient and sr.StudyInstanceUID == study
    evidence = {
        str(i.ReferencedSOPInstanceUID)
        for s in sr.CurrentRequestedProcedureEvidenceSequence
        for series in s.ReferencedSeriesSequence
        for i in series.ReferencedSOPSequence
    }
    assert evidence == set(sources)
    groups = [i for i in _items(sr) if _code(i, "ConceptNameCodeSequence") == "125007"]
    assert len(groups) == 2  # one measurement group per eye
    for group in groups:
        items = _items(group)
        (image,) = [i for i in items if i.ValueType == "IMAGE"]
        eye = sources[str(image.ReferencedSOPSequence[0].ReferencedSOPInstanceUID)]
        site = next(i for i in items if _code(i, "ConceptNameCodeSequence") == "363698007")
        laterality = _code(site.ContentSequence[0], "ConceptCodeSequence")
        assert laterality == {"left": "7771000", "right": "24028007"}[eye]
        assert _code(site, "ConceptCodeSequence") == "5665001"  # retina
        screening = by_eye[eye][1]
        names = {_code(i, "ConceptNameCodeSequence"): i for i in items if i.ValueType == "CODE"}
        if screening.gradable:
            grade_name = {"left": "71490-7", "right": "71491-5"}[eye]
            expected = (GRADE_SNOMED.get(screening.grade) or GRADE_LOINC_ANSWER[0])[0]
            assert _code(names[grade_name], "ConceptCodeSequence") == expected
        advice = _code(names["121075"], "ConceptCodeSequence")
        assert advice == ("retake" if not screening.gradable else
                          "refer" if screening.referable else "rescreen")  # fmt: skip

    for seg in (o for o in objects if o.Modality == "SEG"):
        (source,) = [
            s for series in seg.ReferencedSeriesSequence for s in series.ReferencedInstanceSequence
        ]
        eye = sources[str(source.ReferencedSOPInstanceUID)]
        assert (seg.Rows, seg.Columns) == (photos[eye].Rows, photos[eye].Columns)
        assert _code(seg.SegmentSequence[0], "SegmentedPropertyTypeCodeSequence") == "59820001"
        mask = np.asarray(seg.pixel_array, bool)
        assert 0 < mask.mean() < 0.5  # vessels, on the photo's grid, not an empty or full map

    for doc in (o for o in objects if o.Modality == "DOC"):
        assert bytes(doc.EncapsulatedDocument).startswith(b"%PDF")
        assert str(doc.SourceInstanceSequence[0].ReferencedSOPInstanceUID) in sources
        assert doc.PatientID == patient and doc.StudyInstanceUID == study
