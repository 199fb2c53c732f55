"""Account identity and lifecycle: ids never reused, sessions and tokens bound to a random
per-account id, usernames unique regardless of case, disabled and deleted accounts.

- ``users.public_id``: random, unique; session cookies and API tokens name it (not ``id``).
- ``api_tokens.user_public_id``: the owner's ``public_id`` when the token was made; tokens whose
  account no longer exists (deleted in SQL outside the app) are removed.
- ``users`` becomes AUTOINCREMENT on SQLite (PostgreSQL sequences never reuse ids anyway), and
  the counter starts above every id still named anywhere, so a new account never inherits rows
  of one deleted in SQL.
- ``users.username_key`` (NFKC + case-fold, unique). Existing names that clash (``alice`` and
  ``ALICE``): the oldest account keeps its name; each later one is renamed ``<name>-<id>`` and
  an ``account_renamed`` audit event records the old name (the administrator tells the user).
- ``users.disabled`` / ``users.deleted``: when an administrator disabled or closed the account.

SQLite rebuilds ``users``; :func:`retinascreen.web.db.upgrade` runs migrations with foreign
keys off, as SQLite requires for a table rebuild (otherwise dropping the old table would
cascade to every screening).

Revision ID: 0004_account_identity
Revises: 0003_segmentation_overlays
Create Date: 2026-12-07
"""

from __future__ import annotations

import logging
import secrets
import unicodedata
from datetime import UTC, datetime
from typing import Literal

import sqlalchemy as sa
from alembic import op

revision = "0004_account_identity"
down_revision = "0003_segmentation_overlays"
branch_labels = None
depends_on = None

log = logging.getLogger("alembic.runtime.migration")

users = sa.table(
    "users",
    sa.column("id", sa.Integer),
    sa.column("username", sa.String),
    sa.column("username_key", sa.String),
    sa.column("public_id", sa.String),
)
tokens = sa.table(
    "api_tokens",
    sa.column("id", sa.Integer),
    sa.column("user_id", sa.Integer),
    sa.column("user_public_id", sa.String),
)
audit = sa.table(
    "audit_events",
    sa.column("created", sa.DateTime(timezone=True)),
    sa.column("event", sa.String),
    sa.column("username", sa.String),
    sa.column("user_id", sa.Integer),
    sa.column("detail", sa.Text),
)


def _key(username: str) -> str:
    # A frozen copy of models.username_key (a migration must not change when the app does).
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", username).casefold())


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    table_kwargs = {"sqlite_autoincrement": True} if sqlite else {}
    recreate: Literal["always", "auto"] = "always" if sqlite else "auto"
    with op.batch_alter_table("users", recreate=recreate, table_kwargs=table_kwargs) as batch:
        batch.add_column(sa.Column("public_id", sa.String(32), nullable=True))
        batch.add_column(sa.Column("username_key", sa.String(255), nullable=True))
        batch.add_column(sa.Column("disabled", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("deleted", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("api_tokens") as batch:
        batch.add_column(sa.Column("user_public_id", sa.String(32), nullable=True))

    _fill_users()
    connection = op.get_bind()
    owner = sa.select(users.c.public_id).where(users.c.id == tokens.c.user_id)
    connection.execute(tokens.update().values(user_public_id=owner.scalar_subquery()))
    connection.execute(tokens.delete().where(tokens.c.user_public_id.is_(None)))  # orphans

    with op.batch_alter_table("users", table_kwargs=table_kwargs) as batch:
        batch.alter_column("public_id", existing_type=sa.String(32), nullable=False)
        batch.alter_column("username_key", existing_type=sa.String(255), nullable=False)
        batch.create_index("ix_users_public_id", ["public_id"], unique=True)
        batch.create_index("ix_users_username_key", ["username_key"], unique=True)
    with op.batch_alter_table("api_tokens") as batch:
        batch.alter_column("user_public_id", existing_type=sa.String(32), nullable=False)
    if sqlite:  # after the last rebuild of users (a rebuild resets the counter)
        _start_ids_above_every_reference()


def _fill_users() -> None:
    """A public id and a name key for every account; later case-clashing names are renamed."""
    connection = op.get_bind()
    rows = connection.execute(sa.select(users.c.id, users.c.username).order_by(users.c.id)).all()
    taken = {_key(name) for _, name in rows}
    seen: set[str] = set()
    for user_id, name in rows:
        key = _key(name)
        new_name = name
        if key in seen:
            suffix = f"-{user_id}"
            new_name = name[: 64 - len(suffix)] + suffix
            while _key(new_name) in taken:
                suffix += "x"
                new_name = name[: 64 - len(suffix)] + suffix
            key = _key(new_name)
            taken.add(key)
            log.warning("account %r renamed %r: an older account has the same name", name, new_name)
            connection.execute(
                audit.insert().values(
                    created=datetime.now(UTC),
                    event="account_renamed",
                    username=new_name,
                    user_id=user_id,
                    detail=f"was {name!r}: an older account has the same name regardless of case",
                )
            )
        seen.add(key)
        connection.execute(
            users.update()
            .where(users.c.id == user_id)
            .values(username=new_name, username_key=key, public_id=secrets.token_hex(16))
        )


def _start_ids_above_every_reference() -> None:
    """SQLite: the next account id is above every user id any row still names (AUTOINCREMENT
    remembers the highest id in ``sqlite_sequence``; rows of accounts deleted in SQL count)."""
    connection = op.get_bind()
    highest = connection.scalar(
        sa.text(
            "SELECT max(m) FROM ("
            " SELECT max(id) AS m FROM users"
            " UNION ALL SELECT max(user_id) FROM screenings"
            " UNION ALL SELECT max(user_id) FROM api_tokens"
            " UNION ALL SELECT max(user_id) FROM audit_events"
            " UNION ALL SELECT max(used_by) FROM invites)"
        )
    )
    if highest is None:
        return
    connection.execute(sa.text("DELETE FROM sqlite_sequence WHERE name = 'users'"))
    connection.execute(
        sa.text("INSERT INTO sqlite_sequence (name, seq) VALUES ('users', :seq)"),
        {"seq": int(highest)},
    )


def downgrade() -> None:
    with op.batch_alter_table("api_tokens") as batch:
        batch.drop_column("user_public_id")
    with op.batch_alter_table("users") as batch:
        batch.drop_index("ix_users_username_key")
        batch.drop_index("ix_users_public_id")
        batch.drop_column("deleted")
        batch.drop_column("disabled")
        batch.drop_column("username_key")
        batch.drop_column("public_id")
