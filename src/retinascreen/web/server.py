"""Running the app under gunicorn: migrate once in the master, load the model in each worker."""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
from typing import Any

from gunicorn.app.base import BaseApplication
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError

from retinascreen.errors import ConfigError
from retinascreen.web.config import database_url, default_instance_path, load_secret_key


def prepare(instance: Path | None, db_url: str | None, model: str | None) -> dict[str, Any]:
    """Everything done once before workers start: folders, secret key, schema, photo sweep, model.

    Returns the app configuration the workers use. TensorFlow is not imported here, so forking
    stays safe.
    """
    from retinascreen.models.engines import resolve_model_path
    from retinascreen.web.db import make_engine, upgrade
    from retinascreen.web.private import private_folder
    from retinascreen.web.storage import PhotoStore, sweep_photos

    model_path = str(resolve_model_path(model))  # clear ModelError now, not in every worker
    instance = Path(instance or default_instance_path()).resolve()
    config: dict[str, Any] = {"INSTANCE_PATH": instance, "MODEL": model_path}
    url = database_url({"DATABASE_URL": db_url}, instance)
    config["DATABASE_URL"] = url
    engine = make_engine(url)
    try:
        try:
            private_folder(instance)
            config["SECRET_KEY"] = load_secret_key(instance)
            upgrade(engine)  # the only step that may create a SQLite file
            photos = PhotoStore(instance / "photos")
            sweep_photos(engine, photos)  # uploads a crash interrupted
        except (OSError, OperationalError) as exc:
            raise _not_writable(exc, instance) from exc
        refuse_unwritable(engine, photos.folder)
    finally:
        engine.dispose()
    config["AUTO_MIGRATE"] = False
    return config


def refuse_unwritable(engine: Engine, photos: Path) -> None:
    """ConfigError, before any worker starts, when the database or the photo folder cannot be
    written: a server that answers every upload 503 is worse than one that does not start."""
    from retinascreen.web.writable import database_write_problem, folder_write_problem

    problem = database_write_problem(engine) or folder_write_problem(photos)
    if problem:
        raise ConfigError(f"cannot serve: {problem}. {_MAKE_WRITABLE}")


_MAKE_WRITABLE = (
    "Make the instance folder, the database file and its -wal/-shm files writable by the "
    "service account (and free disk space if it is full), then start again"
)


def _not_writable(exc: BaseException, instance: Path) -> BaseException:
    """A start-up failure that is a read-only or full disk, as a clear ConfigError."""
    from retinascreen.web.writable import folder_write_problem, write_failure

    failure = write_failure(exc)
    problem = None
    with contextlib.suppress(OSError):
        problem = folder_write_problem(instance)
    if failure is None and problem is None:
        return exc
    what = problem or (
        "the disk is full" if failure == "disk_full" else "the database is read-only"
    )
    return ConfigError(f"cannot serve: {what} ({instance}). {_MAKE_WRITABLE}")


DEFAULT_THREADS = 16
"""Threads per worker: requests mostly wait (on the body, the database, the model lock)."""
DEFAULT_BODY_TIMEOUT = 30.0
"""Seconds a request body may take to arrive."""

ACCESS_LOG_FORMAT = '%(h)s %(l)s %(u)s %(t)s "%(m)s %(U)s %(H)s" %(s)s %(b)s %(L)s "%(a)s"'
"""gunicorn's default without query strings or referrers (they can carry patient ids): %(U)s is
the path only."""


class GunicornServer(BaseApplication):
    """gunicorn with our app factory; ``preload_app`` is off, so each worker builds its own app."""

    def __init__(self, app_config: dict[str, Any], options: dict[str, Any]) -> None:
        self.app_config = app_config
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            if key in self.cfg.settings and value is not None:
                self.cfg.set(key, value)

    def load(self) -> Any:
        from retinascreen.web import create_app
        from retinascreen.web.config import DEFAULT_MAX_UPLOAD_BYTES
        from retinascreen.web.service import warm_up
        from retinascreen.web.slowbody import BodyTimeout, UnreadBody

        config = dict(self.app_config)
        body_timeout = float(config.pop("BODY_TIMEOUT", 0) or 0)
        app = create_app(config)
        warm_up(app)  # the model loads once per worker, before its first request
        if body_timeout:
            app.wsgi_app = BodyTimeout(app.wsgi_app, body_timeout)  # type: ignore[method-assign]
        # Outermost: a body left unread by a refusal is drained, or the connection closed.
        limit = int(app.config.get("MAX_CONTENT_LENGTH") or 0) or DEFAULT_MAX_UPLOAD_BYTES
        app.wsgi_app = UnreadBody(app.wsgi_app, limit)  # type: ignore[method-assign]
        logging.getLogger("gunicorn.error").info("retinascreen worker %d ready", os.getpid())
        return app


def serve(
    app_config: dict[str, Any],
    *,
    host: str = "127.0.0.1",
    port: int = 5000,
    workers: int = 2,
    threads: int = DEFAULT_THREADS,
    timeout: int = 120,
    body_timeout: float = DEFAULT_BODY_TIMEOUT,
) -> None:
    """Serve until interrupted (Ctrl-C or SIGTERM).

    gunicorn's ``gthread`` workers give each request a thread; ``body_timeout`` seconds bound
    how long a request body may take to arrive (408 after that; 0 = no limit), so slow clients
    hold threads briefly and ``/healthz`` stays fast. In production put nginx in front
    (docs/deployment.md), which buffers bodies before they reach a thread at all.
    """
    cores = os.cpu_count() or 1
    app_config.setdefault("MODEL_THREADS", max(1, cores // max(1, workers)))
    app_config["BODY_TIMEOUT"] = body_timeout
    options = {
        "bind": f"{host}:{port}",
        "workers": workers,
        "worker_class": "gthread",
        "threads": threads,
        "timeout": timeout,
        "graceful_timeout": 10,
        "preload_app": False,
        "accesslog": "-",
        "access_log_format": ACCESS_LOG_FORMAT,
        "errorlog": "-",
        "loglevel": "info",
        "proc_name": "retinascreen",
        "forwarded_allow_ips": "127.0.0.1",
    }
    GunicornServer(app_config, options).run()
