"""The retinascreen web application: accounts, uploads, results, history, reports and REST API.

``create_app(config=None, *, predictor=None)`` builds a Flask app; the predictor (anything with
``predict``/``heatmap``/``card`` like :class:`retinascreen.serving.predictor.Predictor`) is loaded
lazily from ``config["MODEL"]`` unless one is passed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flask import Flask, request
from flask_login import LoginManager
from flask_wtf.csrf import CSRFProtect
from sqlalchemy import select
from sqlalchemy.orm import sessionmaker

from retinascreen import __version__
from retinascreen.grading import LABELS
from retinascreen.web import db as database
from retinascreen.web import handlers, health

# The visit tables (patients, visits, reviews) and the intake ledger live in their own modules;
# importing them with the package puts them in Base.metadata wherever any web module is loaded
# (Alembic, the app, the admin and watch commands), without a cycle through web.models.
from retinascreen.web import intake_models as _intake_models  # noqa: E402,F401,I001
from retinascreen.web import visit_models as _visit_models  # noqa: E402,F401,I001
from retinascreen.web.config import database_url, default_instance_path, defaults, load_secret_key
from retinascreen.web.models import User
from retinascreen.web.private import private_folder
from retinascreen.web.storage import PhotoStore, sweep_photos

csrf = CSRFProtect()


def create_app(config: dict[str, Any] | None = None, *, predictor: Any = None) -> Flask:
    """Build the app. ``config`` keys override :func:`retinascreen.web.config.defaults`.

    Useful keys: ``INSTANCE_PATH`` (database, photos, secret key), ``DATABASE_URL``, ``MODEL``,
    ``MAX_CONTENT_LENGTH``, ``MAX_IMAGE_PIXELS``, ``AUTO_MIGRATE`` (migrate and sweep unfinished
    uploads at start; the only step that may create a SQLite file), ``DATABASE_BUSY_TIMEOUT``,
    ``HTTPS``; the account and limit keys are in :func:`retinascreen.web.config.account_defaults`.
    """
    config = dict(config or {})
    instance_path = Path(config.pop("INSTANCE_PATH", None) or default_instance_path()).resolve()
    private_folder(instance_path)  # 0700: database, photos and secret key are patient data
    app = Flask(__name__, instance_path=str(instance_path))
    app.config.update(defaults())
    app.config.update(config)
    if not app.config.get("SECRET_KEY"):
        app.config["SECRET_KEY"] = load_secret_key(instance_path)
    app.config["DATABASE_URL"] = database_url(app.config, instance_path)
    from retinascreen.web.policy import load_policy

    load_policy(app.config.get("SCREENING_POLICY") or None)  # a bad policy file stops the start

    busy = float(app.config["DATABASE_BUSY_TIMEOUT"])
    engine = database.make_engine(app.config["DATABASE_URL"], busy_timeout=busy)
    photos = PhotoStore(instance_path / "photos")
    if app.config["AUTO_MIGRATE"]:  # the start-up step: migrate, then sweep unfinished uploads
        database.upgrade(engine)
        sweep_photos(engine, photos)
    app.extensions["retinascreen.engine"] = engine
    app.extensions["retinascreen.sessionmaker"] = sessionmaker(engine, expire_on_commit=False)
    app.extensions["retinascreen.photos"] = photos
    if predictor is not None:
        app.extensions["retinascreen.predictor"] = predictor
    app.teardown_appcontext(database.close_session)

    csrf.init_app(app)
    _init_login(app)
    handlers.init_app(app)  # before the blueprints: it bounds <int:...> in their routes
    _init_account_security(app)

    from retinascreen.web.api import bp as api_bp
    from retinascreen.web.auth import bp as auth_bp
    from retinascreen.web.screenings import bp as screenings_bp
    from retinascreen.web.views import bp as main_bp
    from retinascreen.web.visit_api import bp as visit_api_bp
    from retinascreen.web.visits import bp as visits_bp

    app.register_blueprint(main_bp)
    app.register_blueprint(auth_bp)
    app.register_blueprint(screenings_bp)
    app.register_blueprint(api_bp)
    app.register_blueprint(visits_bp)
    app.register_blueprint(visit_api_bp)
    app.register_blueprint(health.bp)
    csrf.exempt(api_bp)  # the API authenticates with bearer tokens, not cookies
    csrf.exempt(visit_api_bp)

    @app.after_request
    def _security_headers(response: Any) -> Any:
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        response.headers.setdefault(
            "Content-Security-Policy",
            "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
            "frame-ancestors 'none'; form-action 'self'",
        )
        return response

    app.jinja_env.globals["app_version"] = __version__
    app.jinja_env.globals["labels"] = LABELS
    return app


def dispose(app: Flask) -> None:
    """Close the app's database connections (e.g. before the files are removed)."""
    app.extensions["retinascreen.engine"].dispose()


def _init_login(app: Flask) -> None:
    manager = LoginManager()
    manager.login_view = "auth.login"
    manager.login_message = "Sign in to continue."
    manager.login_message_category = "info"
    manager.session_protection = "strong"  # another address or browser: signed out
    manager._session_identifier_generator = _session_identifier
    manager.init_app(app)

    @manager.user_loader
    def _load_user(alternative_id: str) -> User | None:
        # "<public_id>:<session_version>": the random id dies with the account (a reused
        # integer id cannot inherit the cookie); a sign-out, password change or disable bumps
        # the version, which ends every cookie issued before it (copied ones included).
        public_id, _, version = alternative_id.partition(":")
        if not public_id or not version.isdigit():
            return None
        user = database.session().scalar(select(User).where(User.public_id == public_id))
        if user is None or not user.is_active or user.session_version != int(version):
            return None
        return user


def _session_identifier() -> str:
    """What a session is bound to: the client address (as ProxyFix, if trusted, resolved it;
    Flask-Login's own would believe any X-Forwarded-For header) and the User-Agent."""
    import hashlib

    base = f"{request.remote_addr}|{request.headers.get('User-Agent', '')}"
    return hashlib.sha512(base.encode("utf-8", "replace")).hexdigest()


def _init_account_security(app: Flask) -> None:
    """Proxies, HTTPS-only cookies and HSTS, session lifetime and no-store on patient data."""
    from datetime import timedelta

    from retinascreen.web.auth import enforce_session_lifetime

    proxies = int(app.config.get("TRUSTED_PROXIES") or 0)
    if proxies > 0:  # only then is X-Forwarded-For believed, and only that many hops
        from werkzeug.middleware.proxy_fix import ProxyFix

        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=proxies, x_proto=proxies)  # type: ignore[method-assign]
    secure = bool(app.config.get("HTTPS") or app.config.get("SESSION_COOKIE_SECURE"))
    app.config["HTTPS"] = secure
    app.config["SESSION_COOKIE_SECURE"] = secure
    app.config["REMEMBER_COOKIE_SECURE"] = secure
    lifetime = timedelta(seconds=int(app.config["SESSION_LIFETIME_SECONDS"]))
    app.config["PERMANENT_SESSION_LIFETIME"] = lifetime
    app.config["REMEMBER_COOKIE_DURATION"] = lifetime
    app.before_request(enforce_session_lifetime)

    @app.after_request
    def _account_headers(response: Any) -> Any:
        if request.path.startswith(("/screenings", "/api/", "/visits", "/review", "/agreement")):
            response.headers["Cache-Control"] = "no-store"
        if secure and app.config.get("HSTS_SECONDS"):
            response.headers.setdefault(
                "Strict-Transport-Security", f"max-age={int(app.config['HSTS_SECONDS'])}"
            )
        return response
