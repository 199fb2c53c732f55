"""Migration 0006 (the intake ledger of ``pacs pull`` and ``watch``) on SQLite and PostgreSQL:
up, down, up over a ledger ``create_all`` made before it existed, and autogenerate agrees."""

from __future__ import annotations

from sqlalchemy import inspect, text


def _migrate(url: str, revision: str, *, down: bool = False) -> None:
    from alembic import command

    from retinascreen.web.db import alembic_config, make_engine

    engine = make_engine(url, create=True, foreign_keys=False)  # as db.upgrade migrates
    try:
        with engine.begin() as conn:
            config = alembic_config(url)
            config.attributes["connection"] = conn
            (command.downgrade if down else command.upgrade)(config, revision)
    finally:
        engine.dispose()


def _autogenerate_diff(engine) -> list:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from retinascreen.web.models import Base

    with engine.connect() as conn:
        return compare_metadata(MigrationContext.configure(conn), Base.metadata)


def test_the_ledger_migrates_up_and_down_and_autogenerate_proposes_no_drop(
    tmp_path, web_database_url
):
    from retinascreen.web.db import make_engine, upgrade

    (tmp_path / "instance").mkdir(exist_ok=True)
    _migrate(web_database_url, "0005_visits")
    engine = make_engine(web_database_url)
    try:
        assert "intake_files" not in inspect(engine).get_table_names()
        upgrade(engine)
        assert "intake_files" in inspect(engine).get_table_names()
        unique = inspect(engine).get_unique_constraints("intake_files")
        assert [sorted(u["column_names"]) for u in unique] == [["key", "source"]]
        assert _autogenerate_diff(engine) == []  # no drop of the ledger, nothing else either

        with engine.begin() as conn:  # a photo taken in; the way back drops only the ledger
            conn.execute(
                text(
                    "INSERT INTO intake_files (source, key, sha256, name, state, created) "
                    "VALUES ('watch', 'k', 'k', 'P1_left.png', 'screened', '2026-12-07')"
                )
            )
        _migrate(web_database_url, "0005_visits", down=True)
        tables = set(inspect(engine).get_table_names())
        assert "intake_files" not in tables and {"visits", "screenings"} <= tables
        upgrade(engine)
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM intake_files")).scalar() == 0
    finally:
        engine.dispose()


def test_a_ledger_made_before_the_migration_is_kept(tmp_path, web_database_url):
    """Issue 26's integrations created the table themselves: 0006 adopts it, rows and all."""
    from retinascreen.web.db import make_engine, schema_revision, upgrade
    from retinascreen.web.intake_models import IntakeFile

    (tmp_path / "instance").mkdir(exist_ok=True)
    _migrate(web_database_url, "0005_visits")
    engine = make_engine(web_database_url)
    try:
        IntakeFile.__table__.create(engine)  # what create_all did on first use
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO intake_files (source, key, sha256, name, state, created) "
                    "VALUES ('pacs', '1.2.3', 'h', '1.2.3.dcm', 'screened', '2026-12-07')"
                )
            )
        upgrade(engine)
        current, head = schema_revision(engine)
        assert current == head
        with engine.connect() as conn:
            assert conn.execute(text("SELECT key FROM intake_files")).scalars().all() == ["1.2.3"]
    finally:
        engine.dispose()
