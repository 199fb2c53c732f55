"""The intake adapter (``ScreeningSink.store``) stores photos as visits: one visit per patient
and day with each photo's eye and field, the review queue recomputed as photos arrive, bad
photos and patient ids recorded as failed (nothing stored), graders refused as owners."""

from __future__ import annotations

import hashlib
from datetime import date

import pytest
from sqlalchemy import select

from tests.helpers.live_server import PASSWORD, USERNAME
from tests.helpers.web import face_png, fundus_png


def _photo(data: bytes, name: str, patient: str | None, eye: str | None, **extra):
    from retinascreen.web.intake import Photo

    digest = hashlib.sha256(data).hexdigest()
    return Photo(data, name, "watch", digest, digest, patient, eye, date(2026, 3, 2), **extra)


def _visits(sink):
    from retinascreen.web.visit_models import Visit

    with sink.session() as db:
        visits = db.scalars(select(Visit).order_by(Visit.id)).all()
        return [
            (
                v.pseudonym,
                str(v.visit_date),
                [(p.eye, p.field) for p in v.photos],
                [r["eye"] for i in v.queue_items if i.closed is None for r in i.reasons],
            )
            for v in visits
        ]


def test_a_patients_photos_of_one_day_form_one_visit_and_bad_ones_none(sink):
    left = sink.store(_photo(fundus_png(31), "Q1_left.png", "Q1", "left"))
    assert left.state == "screened"
    ((patient, day, photos, queued),) = _visits(sink)
    assert (patient, day, photos) == ("Q1", "2026-03-02", [("left", "macula")])
    assert "right" in queued  # the right eye has no photo yet: queued as ungradable

    right = sink.store(_photo(fundus_png(32), "Q1_right_disc.png", "Q1", "right"))
    header = sink.store(_photo(fundus_png(33), "x.dcm", "Q1", "right", field="Optic disc"))
    ((_, _, photos, queued),) = _visits(sink)
    assert photos == [("left", "macula"), ("right", "disc"), ("right", "disc")]
    assert "right" in queued  # no gradable macula-centred photo of the right eye yet
    assert len({left.screening_id, right.screening_id, header.screening_id}) == 3

    face = sink.store(_photo(face_png(), "Q2_left.png", "Q2", "left"))
    assert face.state == "failed" and "fundus" in (face.error or "")
    assert sink.store(_photo(face_png(), "again.png", "Q2", "left")).id == face.id
    bad_id = sink.store(_photo(fundus_png(34), "b.png", "Q3\x00", "left"))
    assert bad_id.state == "failed" and (bad_id.error or "").startswith("patient id")
    assert [v[0] for v in _visits(sink)] == ["Q1"]  # nothing stored for either

    sink.store(_photo(fundus_png(35), "IMG_9.png", None, None))  # nobody says whose
    sink.store(_photo(fundus_png(36), "IMG_10.png", None, None))
    anonymous = [v for v in _visits(sink) if v[0] is None]
    assert [v[2] for v in anonymous] == [[(None, "macula")], [(None, "macula")]]  # not merged


def test_a_grader_account_cannot_own_intake(tmp_path, web_predictor):
    from retinascreen.errors import ConfigError
    from retinascreen.web.accounts import create_admin, set_role
    from retinascreen.web.intake import ScreeningSink

    instance = tmp_path / "instance"
    create_admin(USERNAME, PASSWORD, instance=instance)
    set_role(USERNAME, "grader", instance=instance)
    with pytest.raises(ConfigError, match="grader"):
        ScreeningSink(USERNAME, instance=instance, predictor=web_predictor)
