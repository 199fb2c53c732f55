"""Accounts: register, sign in (rate limited), sign out (POST)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required, login_user, logout_user
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from retinascreen.web.db import session
from retinascreen.web.forms import LoginForm, LogoutForm, RegisterForm
from retinascreen.web.models import User
from retinascreen.web.security import (
    RATE_LIMIT_MESSAGE,
    audit,
    authenticate,
    create_user,
    too_many_failures,
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


@bp.route("/register", methods=["GET", "POST"])
def register() -> Any:
    if current_user.is_authenticated:
        return redirect(url_for("screenings.new"))
    form = RegisterForm()
    if form.validate_on_submit():
        db = session()
        username = form.username.data.strip()
        if db.scalar(select(User).where(User.username == username)) is not None:
            form.username.errors.append("That username is taken.")
        else:
            try:
                user = create_user(db, username, form.password.data)
                audit(db, "register", user=user)
                db.commit()
            except IntegrityError:
                db.rollback()
                form.username.errors.append("That username is taken.")
            else:
                login_user(user)
                flash("Account created. You are signed in.", "success")
                return redirect(url_for("screenings.new"))
    status = 400 if form.is_submitted() else 200
    return render_template("auth/register.html", form=form), status


@bp.route("/login", methods=["GET", "POST"])
def login() -> Any:
    if current_user.is_authenticated:
        return redirect(url_for("screenings.new"))
    form = LoginForm()
    if form.validate_on_submit():
        db = session()
        username = form.username.data.strip()
        if too_many_failures(db, username):
            return render_template("auth/login.html", form=form, error=RATE_LIMIT_MESSAGE), 429
        user = authenticate(db, username, form.password.data, via="web")
        db.commit()
        if user is not None:
            login_user(user)
            return redirect(_safe_next(request.args.get("next")))
        return render_template(
            "auth/login.html", form=form, error="Wrong username or password."
        ), 401
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
    logout_user()
    flash("You are signed out.", "info")
    return redirect(url_for("main.home"))
