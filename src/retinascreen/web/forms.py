"""Flask-WTF forms (every form carries a CSRF token)."""

from __future__ import annotations

from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired
from wtforms import PasswordField, SelectField, StringField
from wtforms.validators import DataRequired, EqualTo, Length, Optional, Regexp

try:  # WTForms >= 3.3 prefers SelectChoice objects to tuples
    from wtforms.fields.choices import SelectChoice

    EYE_CHOICES: list = [
        SelectChoice("", "Not recorded"),
        SelectChoice("left", "Left"),
        SelectChoice("right", "Right"),
    ]
except ImportError:  # older WTForms
    EYE_CHOICES = [("", "Not recorded"), ("left", "Left"), ("right", "Right")]

USERNAME_RULE = Regexp(
    r"^[A-Za-z0-9_.-]+$", message="Use letters, digits, dots, dashes or underscores."
)


class RegisterForm(FlaskForm):
    username = StringField("Username", validators=[DataRequired(), Length(3, 64), USERNAME_RULE])
    password = PasswordField(
        "Password",
        validators=[DataRequired(), Length(10, 256, message="Use at least 10 characters.")],
    )
    confirm = PasswordField(
        "Repeat password",
        validators=[DataRequired(), EqualTo("password", message="The passwords differ.")],
    )
    invite = StringField("Invite code", validators=[Optional(), Length(max=128)])


class PasswordForm(FlaskForm):
    current = PasswordField("Current password", validators=[DataRequired(), Length(1, 256)])
    password = PasswordField(
        "New password",
        validators=[DataRequired(), Length(10, 256, message="Use at least 10 characters.")],
    )
    confirm = PasswordField(
        "Repeat new password",
        validators=[DataRequired(), EqualTo("password", message="The passwords differ.")],
    )


class LoginForm(FlaskForm):
    username = StringField("Username", validators=[DataRequired(), Length(1, 64)])
    password = PasswordField("Password", validators=[DataRequired(), Length(1, 256)])


class LogoutForm(FlaskForm):
    """Only the CSRF token: sign-out is a POST so a link elsewhere cannot sign anyone out."""


class UploadForm(FlaskForm):
    image = FileField("Fundus photograph", validators=[FileRequired("Choose a photograph.")])
    patient_id = StringField(
        "Patient id (optional)",
        validators=[Optional(), Length(max=64)],
    )
    eye = SelectField(
        "Eye (optional)",
        choices=EYE_CHOICES,
        default="",
    )
