"""The app's disc finder and maculopathy rule, loaded once per process.

Config keys: ``DISC_MODEL`` (a disc segmentation model; None = the bundled one) and
``MACULOPATHY`` (a table of :class:`~retinascreen.serving.maculopathy.MaculopathyRule`
settings, e.g. ``{"lesions": ["hard_exudate", "haemorrhage"], "refer": True}``; default: hard
exudates within 1.25 disc diameters of the fovea refer the photo). A model that cannot be loaded is
logged and leaves the anatomy out: it never fails an upload.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any

from flask import current_app

if TYPE_CHECKING:
    from retinascreen.serving.maculopathy import MaculaCheck

log = logging.getLogger(__name__)
_lock = threading.Lock()
_loaded: dict[tuple[str, str, int], MaculaCheck | None] = {}


def get_macula_check(lesions: Any) -> MaculaCheck | None:
    """The check for this app's settings, sharing the already loaded lesion ``Segmenter``."""
    from retinascreen.serving.maculopathy import MaculaCheck, MaculopathyRule

    config = current_app.config
    rule = MaculopathyRule.from_dict(dict(config.get("MACULOPATHY") or {}))
    model = config.get("DISC_MODEL")
    key = (str(model), repr(rule), id(lesions))
    with _lock:
        if key not in _loaded:
            try:
                _loaded[key] = MaculaCheck(
                    rule,
                    disc_model=model,
                    lesion_model=lesions,
                    threads=config.get("MODEL_THREADS"),
                )
            except Exception as exc:  # noqa: BLE001 - the upload goes on without anatomy
                log.warning("no disc/fovea/maculopathy: %s", exc)
                _loaded[key] = None
        return _loaded[key]
