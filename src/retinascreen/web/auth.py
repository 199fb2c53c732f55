"""Accounts: register (open, invite or closed), sign in (rate limited), sign out (POST, ends the
session server-side) and change password (ends every other session and token)."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    url_for,
)
from flask import (
    session as cookie,
)
from flask_login import current_user, login_required, login_user, logout_user
from sqlalchemy.exc import IntegrityError

from retinascreen.web.db import session
from retinascreen.web.forms import LoginForm, LogoutForm, PasswordForm, RegisterForm
from retinascreen.web.invites import use_invite, valid_invite
from retinascreen.web.limits import Refused, registration_limits, take
from retinascreen.web.models import User
from retinascreen.web.security import (
    DISABLED_MESSAGE,
    audit,
    client_ip,
    create_user,
    end_sessions,
    find_user,
    hash_password,
    password_problem,
    rate_limit_message,
    sign_in,
)

bp = Blueprint("auth", __name__, url_prefix="/auth")


def _safe_next(target: str | None) -> str:
    """Only same-site relative paths are followed after sign-in (no open redirects)."""
    if target:
        parts = urlsplit(target)
        if (
            not parts.scheme
            and not parts.netloc
            and target.startswith("/")
            and not target.startswith("//")
        ):
            return target
    return url_for("screenings.new")


NEUTRAL_REGISTERED = (
    "If that username was free, the account is ready: sign in with it. If signing in fails, "
    "the name was taken; register again with another."
)


def start_session(user: User) -> None:
    """Sign ``user`` in for at most ``SESSION_LIFETIME_SECONDS`` from now.

    The CSRF token is rotated (the one from before sign-in is void). The cookie lasts the
    browser session (not "permanent": Flask-Login's strong protection only signs out
    non-permanent sessions seen from another address or browser); the absolute lifetime is
    enforced on the server by :func:`enforce_session_lifetime`.
    """
    # A new CSRF token for the signed-in session: one seen before sign-in stops working.
    field = current_app.config.get("WTF_CSRF_FIELD_NAME", "csrf_token")
    cookie.pop(field, None)
    g.pop(field, None)
    login_user(user)
    cookie["login_at"] = int(time.time())


def enforce_session_lifetime() -> None:
    """Before each request: a session older than its absolute lifetime is signed out."""
    if "_user_id" not in cookie:
        return
    started = cookie.get("login_at")
    limit = int(current_app.config["SESSION_LIFETIME_SECONDS"])
    if not isinstance(started, int) or time.time() - started > limit:
        logout_user()
        cookie.clear()


def _limited(refused: Refused, template: str, **context: Any) -> Any:
    page = render_template(template, error=rate_limit_message(refused), **context)
    return page, 429, {"Retry-After": str(refused.retry_after)}


@bp.route("/register", methods=["GET", "POST"])
def register() -> Any:
    if current_user.is_authenticated:
        return redirect(url_for("screenings.new"))
    mode = current_app.config["REGISTRATION"]
    if mode not in ("open", "invite"):
        return render_template("auth/register_closed.html"), 403
    form = RegisterForm()
    if mode == "invite" and request.method == "GET":
        form.invite.data = request.args.get("invite", "")
    if form.validate_on_submit():
        refused = take(registration_limits(client_ip()))
        if isinstance(refused, Refused):
            return _limited(refused, "auth/register.html", form=form, mode=mode)
        result = _create_account(form, mode)
        if result is not None:
            return result
    status = 400 if form.is_submitted() else 200
    return render_template("auth/register.html", form=form, mode=mode, error=None), status


def _create_account(form: RegisterForm, mode: str) -> Any:
    """Create the account; None when the form has errors to show.

    A taken username gets the same answer as a new account (and costs the same hash), so the
    form does not tell anyone which usernames exist.
    """
    db = session()
    username = form.username.data.strip()
    problem = password_problem(form.password.data, username=username)
    if problem:
        form.password.errors = [*form.password.errors, problem]
        return None
    code = (form.invite.data or "").strip()
    if mode == "invite" and not valid_invite(db, code):
        form.invite.errors = [
            *form.invite.errors,
            "This invite is not valid (used, expired or mistyped).",
        ]
        return None
    if find_user(db, username) is not None:
        hash_password(form.password.data)  # same cost as creating the account
        audit(db, "register_taken", username=username[:64])
        db.commit()
    else:
        try:
            user = create_user(db, username, form.password.data)
            if mode == "invite" and not use_invite(db, code, user):
                db.rollback()
                form.invite.errors = [*form.invite.errors, "This invite was used just now."]
                return None
            audit(db, "register", user=user)
            db.commit()
        except IntegrityError:  # registered in parallel: the same neutral answer
            db.rollback()
    flash(NEUTRAL_REGISTERED, "info")
    return redirect(url_for("auth.login"))


@bp.route("/login", methods=["GET", "POST"])
def login() -> Any:
    if current_user.is_authenticated:
        return redirect(url_for("screenings.new"))
    form = LoginForm()
    if form.validate_on_submit():
        db = session()
        user = sign_in(db, form.username.data.strip(), form.password.data, via="web")
        if isinstance(user, Refused):
            return _limited(user, "auth/login.html", form=form)
        db.commit()
        if user is not None and user.is_active:
            start_session(user)
            return redirect(_safe_next(request.args.get("next")))
        message = "Wrong username or password." if user is None else DISABLED_MESSAGE
        return render_template("auth/login.html", form=form, error=message), 401
    status = 400 if form.is_submitted() else 200
    return render_template("auth/login.html", form=form, error=None), status


@bp.post("/logout")
@login_required
def logout() -> Any:
    form = LogoutForm()
    if not form.validate_on_submit():
        return render_template(
            "error.html", code=400, message="Sign-out failed: reload and retry."
        ), 400
    db = session()
    user = db.get(User, current_user.id)
    if user is not None:  # ends this cookie everywhere it was copied (and the user's other ones)
        end_sessions(db, user, tokens=False)
        audit(db, "logout", user=user)
        db.commit()
    logout_user()
    cookie.clear()
    flash("You are signed out.", "info")
    return redirect(url_for("main.home"))


@bp.route("/password", methods=["GET", "POST"])
@login_required
def change_password() -> Any:
    """Change the password (current one required); every other session and API token ends."""
    form = PasswordForm()
    if form.validate_on_submit():
        db = session()
        checked = sign_in(db, current_user.username, form.current.data, via="password")
        if isinstance(checked, Refused):
            return _limited(checked, "auth/password.html", form=form)
        if checked is None:
            db.commit()
            form.current.errors = [*form.current.errors, "That is not your current password."]
        else:
            problem = password_problem(form.password.data, username=checked.username)
            if problem:
                form.password.errors = [*form.password.errors, problem]
            else:
                checked.password_hash = hash_password(form.password.data)
                end_sessions(db, checked, tokens=True)
                audit(db, "password_changed", user=checked)
                db.commit()
                start_session(checked)  # this browser stays signed in, on the new version
                flash("Password changed. Your other sessions and API tokens were ended.", "success")
                return redirect(url_for("screenings.new"))
    status = 400 if form.is_submitted() else 200
    return render_template("auth/password.html", form=form, error=None), status
