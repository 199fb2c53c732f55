"""A PACS spoken to over DICOMweb (QIDO-RS, WADO-RS, STOW-RS) through ``dicomweb-client``.

:class:`Pacs` finds fundus photographs (instances of the photo SOP classes, optionally only
one modality), retrieves one as a pydicom Dataset, and stores result objects back, checking the
STOW-RS answer so that a refused instance is an error, not silence.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from retinascreen.data.dicom_headers import PHOTO_CLASSES
from retinascreen.errors import RetinascreenError


class PacsError(RetinascreenError):
    """The PACS could not be reached, or refused a request."""

    status = 502


@dataclass(frozen=True)
class InstanceRef:
    """Where one instance lives in the PACS."""

    study_uid: str
    series_uid: str
    sop_uid: str
    sop_class_uid: str | None = None


def _value(attributes: dict[str, Any], tag: str) -> str | None:
    values = attributes.get(tag, {}).get("Value") or []
    return str(values[0]) if values else None


class Pacs:
    """DICOMweb client of one PACS (``url``: its DICOMweb root, e.g. ``http://pacs/dicom-web``)."""

    def __init__(self, url: str, *, timeout: float = 60.0) -> None:
        import requests
        from dicomweb_client.api import DICOMwebClient

        if not url.startswith(("http://", "https://")):
            raise RetinascreenError(f"PACS URL must start with http:// or https://, not {url!r}")
        self.url = url.rstrip("/")
        session = requests.Session()
        session.request = _with_timeout(session.request, timeout)  # type: ignore[method-assign]
        self._client = DICOMwebClient(self.url, session=session)

    def _call(self, what: str, function: Any, *args: Any, **kwargs: Any) -> Any:
        import requests

        try:
            return function(*args, **kwargs)
        except requests.RequestException as exc:
            raise PacsError(f"PACS {self.url}: {what} failed ({exc})") from None

    def find_photos(
        self, modality: str | None = "OP", patient_id: str | None = None
    ) -> list[InstanceRef]:
        """Every fundus photograph in the PACS (QIDO-RS), of one patient if ``patient_id``."""
        filters = {"Modality": modality} if modality else {}
        if patient_id:
            filters["PatientID"] = patient_id
        found: list[InstanceRef] = []
        offset = 0
        while True:
            page = self._call(
                "searching for photographs (QIDO-RS)",
                self._client.search_for_instances,
                search_filters=filters,
                fields=["SOPClassUID", "StudyDate"],
                offset=offset,
                limit=500,
            )
            for item in page:
                ref = InstanceRef(
                    study_uid=_value(item, "0020000D") or "",
                    series_uid=_value(item, "0020000E") or "",
                    sop_uid=_value(item, "00080018") or "",
                    sop_class_uid=_value(item, "00080016"),
                )
                if ref.sop_uid and (
                    ref.sop_class_uid in PHOTO_CLASSES or ref.sop_class_uid is None
                ):
                    found.append(ref)
            if len(page) < 500:
                return found
            offset += len(page)

    def retrieve(self, ref: InstanceRef) -> Any:
        """The instance as a pydicom Dataset (WADO-RS)."""
        return self._call(
            f"retrieving {ref.sop_uid} (WADO-RS)",
            self._client.retrieve_instance,
            ref.study_uid,
            ref.series_uid,
            ref.sop_uid,
        )

    def store(self, datasets: list[Any]) -> list[str]:
        """Store ``datasets`` (STOW-RS); returns their SOP Instance UIDs. PacsError if refused."""
        if not datasets:
            return []
        answer = self._call("storing results (STOW-RS)", self._client.store_instances, datasets)
        failed = answer.get("FailedSOPSequence") if answer is not None else None
        if failed:
            reasons = ", ".join(str(item.get("FailureReason", "?")) for item in failed)
            raise PacsError(f"PACS {self.url} refused {len(failed)} object(s) (reasons {reasons})")
        return [str(ds.SOPInstanceUID) for ds in datasets]

    def instances(self, study_uid: str, modality: str | None = None) -> list[InstanceRef]:
        """The instances of one study (QIDO-RS), e.g. to read back what was stored."""
        filters = {"Modality": modality} if modality else {}
        page = self._call(
            "searching the study (QIDO-RS)",
            self._client.search_for_instances,
            study_instance_uid=study_uid,
            search_filters=filters,
            fields=["SOPClassUID"],
        )
        return [
            InstanceRef(
                _value(i, "0020000D") or "",
                _value(i, "0020000E") or "",
                _value(i, "00080018") or "",
                _value(i, "00080016"),
            )
            for i in page
        ]


def _with_timeout(request: Any, timeout: float) -> Any:
    def call(*args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("timeout", timeout)
        return request(*args, **kwargs)

    return call
