"""Abuse limits: atomic counters in the database, shared by every worker and process.

A limit is ``(key, limit, window seconds)``. :func:`take` adds one to each key's counter in
ONE transaction with ``INSERT ... ON CONFLICT DO UPDATE ... RETURNING`` (SQLite >= 3.35 and
PostgreSQL alike), so parallel requests cannot all read "4 of 5" and pass together. When any
counter would go over its limit the whole transaction is rolled back: a refused attempt costs
nothing on the other counters, so requests refused for one address do not use up the per-user
allowance (nobody locks a named user out from everywhere by hammering it from one address).

The estimate is a sliding window: this window's count plus the previous window's count scaled
by how much of it still overlaps, so a burst straddling a window boundary gets no second quota.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from flask import current_app
from sqlalchemy import Connection, Engine, text

_UPSERT = text(
    "INSERT INTO rate_counters (key, window_start, count, expires_at) "
    "VALUES (:key, :window_start, 1, :expires_at) "
    "ON CONFLICT (key, window_start) DO UPDATE SET count = rate_counters.count + 1 "
    "RETURNING count"
)
_PREVIOUS = text(
    "SELECT count FROM rate_counters WHERE key = :key AND window_start = :window_start"
)
_RELEASE = text(
    "UPDATE rate_counters SET count = count - 1 "
    "WHERE key = :key AND window_start = :window_start AND count > 0"
)
_SWEEP = text("DELETE FROM rate_counters WHERE expires_at < :now")


@dataclass(frozen=True)
class Limit:
    """At most ``limit`` events per ``window`` seconds for ``key``."""

    key: str
    limit: int
    window: int


@dataclass(frozen=True)
class Refused:
    """Which limit refused, and after how many seconds to retry (the ``Retry-After``)."""

    key: str
    retry_after: int


class Ticket:
    """What :func:`take` counted; :meth:`release` gives the events back (e.g. a good password)."""

    def __init__(self, engine: Engine, taken: list[tuple[str, int]]) -> None:
        self._engine = engine
        self._taken = taken

    def release(self) -> None:
        """Uncount these events (the windows they were counted in)."""
        if not self._taken:
            return
        with self._engine.begin() as connection:
            for key, window_start in self._taken:
                connection.execute(_RELEASE, {"key": key, "window_start": window_start})
        self._taken = []


def _engine() -> Engine:
    return current_app.extensions["retinascreen.engine"]


def _count(connection: Connection, limit: Limit, now: float) -> tuple[int, int, float, int]:
    """Add one to ``limit.key``; returns (window start, count, sliding estimate, retry-after)."""
    window_start = int(now // limit.window) * limit.window
    current = connection.execute(
        _UPSERT,
        {
            "key": limit.key[:200],
            "window_start": window_start,
            "expires_at": window_start + 2 * limit.window,
        },
    ).scalar_one()
    previous = connection.execute(
        _PREVIOUS, {"key": limit.key[:200], "window_start": window_start - limit.window}
    ).scalar()
    elapsed = now - window_start
    estimate = current + (previous or 0) * (1.0 - elapsed / limit.window)
    retry = _retry_after(limit, current - 1, previous or 0, elapsed)
    return window_start, current, estimate, retry


def _retry_after(limit: Limit, before: int, previous: int, elapsed: float) -> int:
    """Seconds until one more event fits, if nothing else is counted meanwhile.

    ``before``: this window's count without the refused event; ``previous``: last window's.
    """
    window, room = limit.window, limit.limit - before - 1
    if room >= 0:  # later in this window, once enough of the previous one has slid out
        at = window * (1.0 - room / previous) if previous else 0.0
        if at <= window:
            return max(1, math.ceil(at - elapsed))
    # in the next window, where this window's count is "previous"
    at = window * (1.0 - (limit.limit - 1) / before) if before else 0.0
    return max(1, math.ceil(window - elapsed + max(0.0, at)))


def take(limits: list[Limit], *, now: float | None = None) -> Ticket | Refused:
    """Count one event against every limit, atomically; all or nothing.

    Returns a :class:`Ticket` when every counter stays within its limit, else :class:`Refused`
    (and nothing is counted).
    """
    now = time.time() if now is None else now
    engine = _engine()
    taken: list[tuple[str, int]] = []
    new_window = False
    with engine.connect() as connection:
        transaction = connection.begin()
        try:
            for limit in limits:  # always the same order: no deadlocks between transactions
                window_start, current, estimate, retry = _count(connection, limit, now)
                new_window = current == 1
                if estimate > limit.limit:
                    transaction.rollback()
                    return Refused(limit.key, retry)
                taken.append((limit.key[:200], window_start))
            if new_window:  # now and then, forget windows that no estimate reads any more
                connection.execute(_SWEEP, {"now": int(now)})
            transaction.commit()
        except BaseException:
            if transaction.is_active:
                transaction.rollback()
            raise
    return Ticket(engine, taken)


def login_limits(ip: str, username: str) -> list[Limit]:
    """Failed sign-ins: per address+user, per address, per user (all addresses), global."""
    config = current_app.config
    window = int(config["LOGIN_FAILURE_WINDOW_SECONDS"])
    name = username[:64]
    return [
        Limit(f"login:ip-user:{ip}:{name}", int(config["LOGIN_FAILURE_LIMIT"]), window),
        Limit(f"login:ip:{ip}", int(config["LOGIN_IP_LIMIT"]), window),
        Limit(f"login:user:{name}", int(config["LOGIN_USER_LIMIT"]), window),
        Limit("login:global", int(config["LOGIN_GLOBAL_LIMIT"]), window),
    ]


def token_limits(user_id: int) -> list[Limit]:
    """API token creation per user per hour."""
    return [Limit(f"token:user:{user_id}", int(current_app.config["TOKEN_CREATE_LIMIT"]), 3600)]


def registration_limits(ip: str) -> list[Limit]:
    """Account creation attempts per address per hour."""
    return [Limit(f"register:ip:{ip}", int(current_app.config["REGISTRATION_IP_LIMIT"]), 3600)]
