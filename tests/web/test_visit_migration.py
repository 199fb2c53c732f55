"""Migration 0005 (visits) on SQLite and PostgreSQL: existing screenings become one-photo
visits, administrators become the admin role, and the way back keeps every screening."""

from __future__ import annotations

from sqlalchemy import inspect, select, text


def _at_0004(url: str) -> None:
    """A database at the revision before visits, with three screenings of two patients."""
    from alembic import command

    from retinascreen.web.db import alembic_config, make_engine

    engine = make_engine(url, create=True, foreign_keys=False)
    try:
        with engine.begin() as conn:
            config = alembic_config(url)
            config.attributes["connection"] = conn
            command.upgrade(config, "0004_account_identity")
            for uid, name, admin in ((1, "chief", True), (2, "nurse", False)):
                conn.execute(
                    text(
                        "INSERT INTO users (id, public_id, username, username_key, password_hash,"
                        " is_admin, created, session_version) VALUES (:id, :pid, :name, :name,"
                        " 'x', :admin, '2026-01-01 00:00:00', 0)"
                    ),
                    {"id": uid, "pid": f"{uid:032d}", "name": name, "admin": admin},
                )
            for sid, patient, day in ((1, "P-1", "03"), (2, "P-1", "04"), (3, None, "05")):
                conn.execute(
                    text(
                        "INSERT INTO screenings (id, user_id, created, patient_id, eye, grade, "
                        "referable, referable_probability, gradable, synthetic, result_json, "
                        "photo_name, model_name, model_version, model_sha256) VALUES (:id, 2, "
                        ":created, :patient, 'left', 0, false, 0.1, true, false, '{}', 'p.png', "
                        "'m', '1', 'h')"
                    ),
                    {"id": sid, "patient": patient, "created": f"2026-02-{day} 10:00:00"},
                )
    finally:
        engine.dispose()


def test_screenings_become_one_photo_visits_and_back(tmp_path, web_database_url):
    from alembic import command
    from sqlalchemy.orm import Session

    from retinascreen.web.db import alembic_config, make_engine, upgrade
    from retinascreen.web.models import Screening, User
    from retinascreen.web.visit_models import Visit

    (tmp_path / "instance").mkdir(exist_ok=True)
    _at_0004(web_database_url)
    engine = make_engine(web_database_url)
    try:
        upgrade(engine)
        with Session(engine) as db:
            photos = db.scalars(select(Screening).order_by(Screening.id)).all()
            visits = {v.id: v for v in db.scalars(select(Visit))}
            assert len(visits) == 3 and len({p.visit_id for p in photos}) == 3
            got = [
                (visits[p.visit_id].pseudonym, str(visits[p.visit_id].visit_date)) for p in photos
            ]
            assert got == [("P-1", "2026-02-03"), ("P-1", "2026-02-04"), (None, "2026-02-05")]
            assert all(v.migrated and len(v.public_id) == 32 for v in visits.values())
            assert {v.patient_id for v in visits.values() if v.patient_id} == {
                visits[photos[0].visit_id].patient_id
            }  # one patient row for P-1
            roles = {u.username: u.role for u in db.scalars(select(User))}
            assert roles == {"chief": "admin", "nurse": "clinic"}

        back = make_engine(web_database_url, foreign_keys=False)  # as db.upgrade migrates
        with back.begin() as conn:  # the way back
            config = alembic_config(web_database_url)
            config.attributes["connection"] = conn
            command.downgrade(config, "0004_account_identity")
        back.dispose()
        tables = set(inspect(engine).get_table_names())
        assert not {"visits", "patients", "reviews", "review_items"} & tables
        with engine.connect() as conn:
            kept = conn.execute(text("SELECT id, patient_id FROM screenings ORDER BY id")).all()
        assert [tuple(r) for r in kept] == [(1, "P-1"), (2, "P-1"), (3, None)]
        upgrade(engine)  # and forward again
        with Session(engine) as db:
            assert len(db.scalars(select(Visit)).all()) == 3
    finally:
        engine.dispose()
