"""Screening results as DICOM objects a PACS stores beside the photographs (written with highdicom).

- :func:`findings_report`: a Comprehensive 3D SR (TID 1500 Measurement Report) with one TID 1501
  group per eye: finding site retina with the eye's laterality, the DR grade, maculopathy,
  gradability and recommendation as coded qualitative evaluations, and a reference to the
  source photograph. Codes as in :mod:`retinascreen.serving.fhir`; the ICDR grade, gradability
  and the recommendation, which have no standard code, use the private scheme ``99RSCREEN``.
- :func:`vessel_segmentation`: a binary DICOM Segmentation of the vessel map, on the source
  photograph's pixel grid, referencing it.
- :func:`encapsulated_pdf`: the PDF report as Encapsulated PDF in the photograph's study.

Every object joins the source photograph's study (its patient and study attributes are copied
from the source, as DICOM requires of derived objects) in a new series of its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np

from retinascreen.serving.fhir import (
    ABSENT,
    GRADE_CODE,
    GRADE_LOINC_ANSWER,
    GRADE_SNOMED,
    MACULOPATHY,
    PRESENT,
)
from retinascreen.version import __version__

PRIVATE = "99RSCREEN"
MANUFACTURER = "retinascreen"
ENCAPSULATED_PDF = "1.2.840.10008.5.1.4.1.1.104.1"
RETINA = ("5665001", "Retina")
LATERALITY = {"left": ("7771000", "Left"), "right": ("24028007", "Right")}
GRADABLE = {True: ("gradable", "Gradable photograph"), False: ("ungradable", "Ungradable")}
ADVICE = {
    "refer": "Refer to an ophthalmologist",
    "rescreen": "Rescreen at the usual interval",
    "retake": "Retake the photograph",
}


@dataclass(frozen=True)
class EyeFinding:
    """One source photograph's results, as the SR reports them."""

    source: Any  # the photograph's pydicom Dataset (header is enough)
    eye: str | None
    grade: int | None
    gradable: bool
    maculopathy: bool | None
    advice: str  # a key of ADVICE


def _code(value: str, scheme: str, meaning: str) -> Any:
    from highdicom.sr import CodedConcept

    return CodedConcept(value=value, scheme_designator=scheme, meaning=meaning[:64])


def _sct(pair: tuple[str, str]) -> Any:
    return _code(pair[0], "SCT", pair[1])


def _grade_value(grade: int) -> Any:
    if grade in GRADE_SNOMED:
        return _sct(GRADE_SNOMED[grade])
    value, meaning = GRADE_LOINC_ANSWER[grade]
    return _code(value, "LN", meaning)


def findings_report(findings: list[EyeFinding], *, model: str, series_number: int = 901) -> Any:
    """A Comprehensive 3D SR of one study's findings (each eye a TID 1501 group)."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    device = hd.sr.DeviceObserverIdentifyingAttributes(
        uid=hd.UID(), name="retinascreen", manufacturer_name=MANUFACTURER, model_name=model[:64]
    )
    context = hd.sr.ObservationContext(
        observer_device_context=hd.sr.ObserverContext(
            observer_type=codes.DCM.Device, observer_identifying_attributes=device
        )
    )
    groups = []
    for i, finding in enumerate(findings, start=1):
        evaluations = [
            hd.sr.QualitativeEvaluation(
                _code("gradability", PRIVATE, "Photograph gradability"),
                _code(*_pair(GRADABLE[finding.gradable])),
            )
        ]
        if finding.gradable and finding.grade is not None:
            name = GRADE_CODE.get(finding.eye or "", ("icdr-grade", "DR severity level"))
            scheme = "LN" if finding.eye in GRADE_CODE else PRIVATE
            evaluations.append(
                hd.sr.QualitativeEvaluation(
                    _code(name[0], scheme, name[1]), _grade_value(finding.grade)
                )
            )
            evaluations.append(
                hd.sr.QualitativeEvaluation(
                    _code(f"icdr-{finding.grade}", PRIVATE, "ICDR grade"),
                    _code(f"icdr-{finding.grade}", PRIVATE, f"ICDR grade {finding.grade}"),
                )
            )
        if finding.maculopathy is not None:
            evaluations.append(
                hd.sr.QualitativeEvaluation(
                    _sct(MACULOPATHY), _sct(PRESENT if finding.maculopathy else ABSENT)
                )
            )
        evaluations.append(
            hd.sr.QualitativeEvaluation(
                _code("121075", "DCM", "Recommendation"),
                _code(finding.advice, PRIVATE, ADVICE[finding.advice]),
            )
        )
        site = hd.sr.FindingSite(
            anatomic_location=_sct(RETINA),
            laterality=_sct(LATERALITY[finding.eye]) if finding.eye in LATERALITY else None,
        )
        groups.append(
            hd.sr.MeasurementsAndQualitativeEvaluations(
                tracking_identifier=hd.sr.TrackingIdentifier(
                    uid=hd.UID(), identifier=f"{finding.eye or 'unknown'} eye, photo {i}"
                ),
                finding_type=_code("4855003", "SCT", "Retinopathy due to diabetes mellitus"),
                finding_sites=[site],
                qualitative_evaluations=evaluations,
                source_images=[
                    hd.sr.SourceImageForMeasurementGroup.from_source_image(finding.source)
                ],
            )
        )
    report = hd.sr.MeasurementReport(
        observation_context=context,
        procedure_reported=_code("screening", PRIVATE, "Diabetic retinopathy screening"),
        imaging_measurements=groups,
    )
    sources = [with_type2_attributes(f.source) for f in findings]
    return hd.sr.Comprehensive3DSR(
        evidence=sources,
        content=report,
        series_number=series_number,
        series_instance_uid=hd.UID(),
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer=MANUFACTURER,
        series_description="retinascreen findings",
        is_complete=True,
        is_final=False,  # "unverified": nobody has signed the automated result
    )


def _pair(pair: tuple[str, str]) -> tuple[str, str, str]:
    return pair[0], PRIVATE, pair[1]


def with_type2_attributes(source: Any) -> Any:
    """A copy of ``source`` with the attributes DICOM requires present: the patient and study
    ones (empty where the camera left them out; highdicom copies them into derived objects) and
    Number of Frames, which the multi-frame ophthalmic photography IODs require."""
    import copy

    from retinascreen.data.dicom_headers import (
        OPHTHALMIC_PHOTO_8BIT,
        OPHTHALMIC_PHOTO_16BIT,
        WIDE_FIELD,
    )

    ds = copy.copy(source)
    for keyword in _PATIENT_STUDY:
        if keyword not in ds and keyword != "IssuerOfPatientID":
            setattr(ds, keyword, "")
    multiframe = (OPHTHALMIC_PHOTO_8BIT, OPHTHALMIC_PHOTO_16BIT, WIDE_FIELD)
    if "NumberOfFrames" not in ds and str(ds.get("SOPClassUID", "")) in multiframe:
        ds.NumberOfFrames = 1
    return ds


def vessel_segmentation(
    source: Any, mask: np.ndarray, *, model: str, series_number: int = 902
) -> Any:
    """A binary DICOM Segmentation of ``mask`` (bool, the photo's rows x columns) on ``source``."""
    import highdicom as hd

    if mask.shape != (int(source.Rows), int(source.Columns)):
        raise ValueError(
            f"the vessel mask is {mask.shape[1]}x{mask.shape[0]}, the photograph "
            f"{source.Columns}x{source.Rows}"
        )
    from pydicom.sr.codedict import codes

    algorithm = hd.AlgorithmIdentificationSequence(
        name="retinascreen vessels",
        version=__version__,
        family=codes.cid7162.ArtificialIntelligence,
    )
    laterality = source.get("ImageLaterality") or source.get("Laterality")
    regions = [_sct(RETINA)]
    description = hd.seg.SegmentDescription(
        segment_number=1,
        segment_label="retinal vessels",
        segmented_property_category=_code("91723000", "SCT", "Anatomical Structure"),
        segmented_property_type=_code("59820001", "SCT", "Blood vessel"),
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=algorithm,
        anatomic_regions=regions,
    )
    # highdicom reads the pixel measures of a multi-frame source from its shared functional
    # groups, which the (non-enhanced) ophthalmic photography IODs do not have: lend it the
    # photo's own spacing, or a nominal one that is removed again below (as highdicom does for
    # a single-frame source without spacing).
    lent = with_type2_attributes(source)
    spacing = source.get("PixelSpacing")
    if "SharedFunctionalGroupsSequence" not in lent:
        from pydicom.dataset import Dataset

        measures, group = Dataset(), Dataset()
        measures.PixelSpacing = list(spacing) if spacing else [1.0, 1.0]
        group.PixelMeasuresSequence = [measures]
        lent.SharedFunctionalGroupsSequence = [group]
    seg = hd.seg.Segmentation(
        source_images=[lent],
        pixel_array=mask.astype(np.uint8)[None],
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[description],
        series_instance_uid=hd.UID(),
        series_number=series_number,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer=MANUFACTURER,
        manufacturer_model_name=model[:64],
        software_versions=__version__,
        device_serial_number="0",
        series_description="retinascreen vessel map",
        omit_empty_frames=False,
    )
    if not spacing and "SharedFunctionalGroupsSequence" in seg:
        shared = seg.SharedFunctionalGroupsSequence[0]
        if "PixelMeasuresSequence" in shared:
            del shared.PixelMeasuresSequence
    if laterality and "ImageLaterality" not in seg:
        seg.ImageLaterality = laterality
    return seg


_PATIENT_STUDY = (
    "PatientName",
    "PatientID",
    "IssuerOfPatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyInstanceUID",
    "StudyDate",
    "StudyTime",
    "StudyID",
    "AccessionNumber",
    "ReferringPhysicianName",
)


def encapsulated_pdf(source: Any, pdf: bytes, *, title: str, series_number: int = 903) -> Any:
    """The PDF report as an Encapsulated PDF instance in ``source``'s study."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid

    if not pdf.startswith(b"%PDF"):
        raise ValueError("not a PDF document")
    now = datetime.now()
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    for keyword in _PATIENT_STUDY:
        setattr(ds, keyword, source.get(keyword, ""))
    ds.SOPClassUID = ENCAPSULATED_PDF
    ds.SOPInstanceUID = generate_uid()
    ds.Modality = "DOC"
    ds.SeriesInstanceUID = generate_uid()
    ds.SeriesNumber = series_number
    ds.SeriesDescription = "retinascreen report"
    ds.Manufacturer = MANUFACTURER
    ds.ConversionType = "SYN"
    ds.InstanceNumber = 1
    ds.ContentDate, ds.ContentTime = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
    ds.AcquisitionDateTime = now.strftime("%Y%m%d%H%M%S")
    ds.BurnedInAnnotation = "YES"
    ds.DocumentTitle = title[:64]
    ds.ConceptNameCodeSequence = []
    ds.MIMETypeOfEncapsulatedDocument = "application/pdf"
    reference = Dataset()
    reference.ReferencedSOPClassUID = source.SOPClassUID
    reference.ReferencedSOPInstanceUID = source.SOPInstanceUID
    ds.SourceInstanceSequence = [reference]
    ds.EncapsulatedDocument = pdf + (b"\0" if len(pdf) % 2 else b"")
    ds.EncapsulatedDocumentLength = len(pdf)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(ENCAPSULATED_PDF)
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    # Round-trip through Part 10 bytes: a FileDataset keeps its preamble and DICM prefix when
    # dicomweb-client writes it for STOW-RS (a bare Dataset is sent without them).
    import io

    import pydicom

    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return pydicom.dcmread(io.BytesIO(buffer.getvalue()))
