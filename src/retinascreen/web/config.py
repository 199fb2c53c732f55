"""Configuration of the web application: defaults, environment overrides and database URLs."""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path
from typing import Any

DEFAULT_MAX_UPLOAD_BYTES = 32 * 1024 * 1024
"""Largest request body accepted (a fundus photo is a few MB; DICOM a little more)."""


def normalise_database_url(url: str) -> str:
    """Use the psycopg 3 driver for PostgreSQL URLs (``postgresql://`` -> ``postgresql+psycopg://``)."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def default_instance_path() -> Path:
    """``$RETINASCREEN_INSTANCE`` or ``./instance`` (database, photos and secret key live there)."""
    return Path(os.environ.get("RETINASCREEN_INSTANCE") or "instance").resolve()


def database_url(config: dict[str, Any], instance_path: Path) -> str:
    """The configured URL, else ``$DATABASE_URL``, else SQLite in the instance folder."""
    url = config.get("DATABASE_URL") or os.environ.get("DATABASE_URL")
    if not url:
        url = f"sqlite:///{instance_path / 'retinascreen.db'}"
    return normalise_database_url(url)


def load_secret_key(instance_path: Path) -> str:
    """``$RETINASCREEN_SECRET_KEY``, else a random key kept in ``instance/secret_key``.

    The key is created once with O_EXCL, so gunicorn workers started together share it and
    sessions survive a restart.
    """
    env_key = os.environ.get("RETINASCREEN_SECRET_KEY")
    if env_key:
        return env_key
    path = instance_path / "secret_key"
    instance_path.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        for _ in range(50):
            key = path.read_text().strip()
            if key:
                return key
            time.sleep(0.02)  # another process is writing it right now
        raise
    key = secrets.token_hex(32)
    with os.fdopen(fd, "w") as handle:
        handle.write(key)
    return key


REGISTRATION_MODES = ("open", "invite", "admin")
"""``REGISTRATION``: anyone may register / only with an invite / only ``retinascreen admin``."""


def _env(name: str, default: Any) -> Any:
    """``$RETINASCREEN_<name>`` converted to the type of ``default``, else ``default``."""
    raw = os.environ.get(f"RETINASCREEN_{name}")
    if raw is None or raw == "":
        return default
    if isinstance(default, bool):
        return raw.strip().lower() in ("1", "true", "yes", "on")
    if isinstance(default, int):
        try:
            return int(raw)
        except ValueError:
            raise ValueError(f"RETINASCREEN_{name} must be a whole number, not {raw!r}") from None
    return raw


def account_defaults() -> dict[str, Any]:
    """Accounts, sessions and abuse limits (docs/security.md); each key can also be
    set as ``$RETINASCREEN_<KEY>``."""
    https = _env("HTTPS", os.environ.get("RETINASCREEN_SECURE_COOKIES", "") == "1")
    return {
        "REGISTRATION": _env("REGISTRATION", "admin"),
        "REGISTRATION_IP_LIMIT": _env("REGISTRATION_IP_LIMIT", 10),  # per address per hour
        "LOGIN_FAILURE_LIMIT": _env("LOGIN_FAILURE_LIMIT", 5),  # per address and user
        "LOGIN_IP_LIMIT": _env("LOGIN_IP_LIMIT", 20),
        "LOGIN_USER_LIMIT": _env("LOGIN_USER_LIMIT", 50),  # per user, all addresses
        "LOGIN_GLOBAL_LIMIT": _env("LOGIN_GLOBAL_LIMIT", 500),
        "LOGIN_FAILURE_WINDOW_SECONDS": _env("LOGIN_FAILURE_WINDOW_SECONDS", 300),
        "TOKEN_LIFETIME_SECONDS": _env("TOKEN_LIFETIME_SECONDS", 24 * 3600),
        "TOKEN_CREATE_LIMIT": _env("TOKEN_CREATE_LIMIT", 10),  # per user per hour
        "SESSION_LIFETIME_SECONDS": _env("SESSION_LIFETIME_SECONDS", 8 * 3600),
        "TRUSTED_PROXIES": _env("TRUSTED_PROXIES", 0),
        "HTTPS": https,
        "HSTS_SECONDS": _env("HSTS_SECONDS", 365 * 24 * 3600),
        "PUBLIC_URL": _env("PUBLIC_URL", ""),
    }


def defaults() -> dict[str, Any]:
    """Default Flask configuration; ``create_app(config)`` overrides any of these."""
    return {
        **account_defaults(),
        "MODEL": os.environ.get("RETINASCREEN_MODEL") or None,
        # Vessel and lesion overlays (retinascreen.web.segmentation): None = bundled models.
        "SEGMENTATION": _env("SEGMENTATION", True),
        "VESSEL_MODEL": _env("VESSEL_MODEL", None),
        "LESION_MODEL": _env("LESION_MODEL", None),
        # False: lesion maps from one pass even when the model's card flip-averages them
        # (about 30 % more screenings a second on 2 cores, maps slightly less accurate).
        "LESION_FLIP_AVERAGE": _env("LESION_FLIP_AVERAGE", True),
        "MAX_CONTENT_LENGTH": DEFAULT_MAX_UPLOAD_BYTES,
        "MAX_IMAGE_PIXELS": None,  # None = retinascreen.data.images.MAX_PIXELS
        "AUTO_MIGRATE": True,
        "DATABASE_BUSY_TIMEOUT": 5.0,  # seconds a request waits for a SQLite lock, then 503
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "REMEMBER_COOKIE_HTTPONLY": True,
        "REMEMBER_COOKIE_SAMESITE": "Lax",
        "HISTORY_PAGE_SIZE": 20,
        # The screening programme's policy table (TOML); empty: the bundled ICO default.
        "SCREENING_POLICY": _env("SCREENING_POLICY", ""),
        "WTF_CSRF_TIME_LIMIT": None,  # tokens last the session; no expiry mid-form
    }
