"""``pacs pull`` and ``pacs push``: PACS photographs in as visits, results back as DICOM.

Pull: every fundus photograph the PACS has (QIDO-RS) whose SOP Instance UID the intake ledger
has not seen is retrieved (WADO-RS) and screened through :class:`ScreeningSink` (the upload's
path), its patient id, eye and day taken from its header. Pulling twice screens nothing twice.

Push: for each study with screened photographs not yet pushed, one SR of the per-eye findings,
one Segmentation of the vessel map per photograph and the PDF report of each screening as
Encapsulated PDF are stored in that study (STOW-RS); the ledger then records them as pushed.
"""

from __future__ import annotations

import hashlib
import io
import logging
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from retinascreen.data.dicom_headers import headers_of
from retinascreen.serving.pacs import InstanceRef, Pacs
from retinascreen.web.intake import IntakeFile, Photo, ScreeningSink

log = logging.getLogger(__name__)


@dataclass
class PullSummary:
    """What one pull did."""

    found: int = 0
    screened: list[int] = field(default_factory=list)  # screening ids
    failed: list[str] = field(default_factory=list)  # "<sop uid>: <why>"
    skipped: int = 0  # seen before


@dataclass
class PushSummary:
    """What one push stored."""

    studies: int = 0
    stored: list[str] = field(default_factory=list)  # SOP Instance UIDs written


def dataset_bytes(ds: Any) -> bytes:
    """A pydicom Dataset as DICOM Part 10 bytes."""
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def pull(
    pacs: Pacs,
    sink: ScreeningSink,
    *,
    modality: str | None = "OP",
    patient_id: str | None = None,
) -> PullSummary:
    """Screen the PACS's photographs (of ``patient_id`` only, if given) never pulled before."""
    summary = PullSummary()
    for ref in pacs.find_photos(modality, patient_id):
        summary.found += 1
        if sink.seen("pacs", ref.sop_uid) is not None:
            summary.skipped += 1
            continue
        ds = pacs.retrieve(ref)
        data = dataset_bytes(ds)
        headers = headers_of(ds)
        row = sink.store(
            Photo(
                data=data,
                name=f"{ref.sop_uid}.dcm",
                source="pacs",
                key=ref.sop_uid,
                sha256=hashlib.sha256(data).hexdigest(),
                patient_id=headers.patient_id,
                eye=headers.eye,
                visit_date=headers.date,
                study_uid=ref.study_uid,
                series_uid=ref.series_uid,
                sop_uid=ref.sop_uid,
                field=headers.photo_field,
            )
        )
        if row.state == "screened" and row.screening_id is not None:
            summary.screened.append(row.screening_id)
        else:
            summary.failed.append(f"{ref.sop_uid}: {row.error}")
    return summary


def push(pacs: Pacs, sink: ScreeningSink) -> PushSummary:
    """Store the results of every pulled, screened, not yet pushed photograph."""
    studies: dict[str, list[IntakeFile]] = defaultdict(list)
    for row in sink.rows("pacs"):
        if row.state == "screened" and row.pushed is None and row.study_uid:
            studies[row.study_uid].append(row)
    summary = PushSummary()
    for rows in studies.values():
        objects = _study_objects(pacs, sink, rows)
        summary.stored += pacs.store(objects)
        sink.mark_pushed([row.id for row in rows])
        summary.studies += 1
    return summary


def _advice(screening: Any) -> str:
    if not screening.gradable:
        return "retake"
    return "refer" if screening.referable else "rescreen"


def _study_objects(pacs: Pacs, sink: ScreeningSink, rows: list[IntakeFile]) -> list[Any]:
    """SR + one SEG per photo + one Encapsulated PDF per screening, for one study."""
    from retinascreen.serving.dicom_results import EyeFinding, encapsulated_pdf, findings_report
    from retinascreen.web.report import build_report
    from retinascreen.web.results import visit_results

    findings: list[EyeFinding] = []
    objects: list[Any] = []
    model = ""
    for row in rows:
        assert row.screening_id is not None and row.sop_uid and row.series_uid and row.study_uid
        screening = sink.screening(row.screening_id)
        if screening is None:  # deleted in the web app since: nothing to push
            continue
        source = pacs.retrieve(InstanceRef(row.study_uid, row.series_uid, row.sop_uid))
        result = visit_results(screening)
        eye = result.eyes[0]
        findings.append(
            EyeFinding(
                source=source,
                eye=eye.eye,
                grade=eye.grade,
                gradable=eye.gradable,
                maculopathy=eye.maculopathy,
                advice=_advice(screening),
            )
        )
        model = result.model or "retinascreen"
        segmentation = _vessel_object(sink, source, model)
        if segmentation is not None:
            objects.append(segmentation)
        store = sink.app.extensions["retinascreen.photos"]
        pdf = build_report(screening, store, user=sink.username)
        objects.append(encapsulated_pdf(source, pdf, title="Diabetic retinopathy screening report"))
    if findings:
        objects.insert(0, findings_report(findings, model=model))
    return objects


def _vessel_object(sink: ScreeningSink, source: Any, model: str) -> Any:
    """The vessel Segmentation of ``source``, or None without a vessel model or fundus disc."""
    from retinascreen.data.dicom import load_dicom
    from retinascreen.data.images import MAX_PIXELS
    from retinascreen.data.photo import FundusPhoto
    from retinascreen.serving.dicom_results import vessel_segmentation
    from retinascreen.web.segmentation import get_segmenter

    with sink.app.app_context():
        segmenter = get_segmenter("vessels", sink.app)
    if segmenter is None:
        return None
    photo = FundusPhoto.read(
        load_dicom(dataset_bytes(source), str(source.SOPInstanceUID), MAX_PIXELS)
    )
    if photo.disc is None:
        log.warning("%s: no fundus disc, so no vessel map", source.SOPInstanceUID)
        return None
    mask = segmenter.segment(photo).in_photo_frame().masks["vessels"]
    return vessel_segmentation(source, mask, model=segmenter.model_info.name or model)
