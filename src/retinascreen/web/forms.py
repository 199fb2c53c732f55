"""Flask-WTF forms (every form carries a CSRF token)."""

from __future__ import annotations

from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired
from wtforms import PasswordField, SelectField, StringField
from wtforms.validators import DataRequired, EqualTo, Length, Optional, Regexp

from retinascreen.web.security import MIN_PASSWORD_LENGTH

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

# A new password: the length here, the strength (zxcvbn) in security.password_problem.
NEW_PASSWORD_RULES = [
    DataRequired(),
    Length(MIN_PASSWORD_LENGTH, 256, message=f"Use at least {MIN_PASSWORD_LENGTH} characters."),
]
REPEAT_PASSWORD_RULES = [
    DataRequired(),
    EqualTo("password", message="The passwords differ."),
]


class RegisterForm(FlaskForm):
    username = StringField("Username", validators=[DataRequired(), Length(3, 64), USERNAME_RULE])
    password = PasswordField("Password", validators=NEW_PASSWORD_RULES)
    confirm = PasswordField("Repeat password", validators=REPEAT_PASSWORD_RULES)
    invite = StringField("Invite code", validators=[Optional(), Length(max=128)])


class PasswordForm(FlaskForm):
    current = PasswordField("Current password", validators=[DataRequired(), Length(1, 256)])
    password = PasswordField("New password", validators=NEW_PASSWORD_RULES)
    confirm = PasswordField("Repeat new password", validators=REPEAT_PASSWORD_RULES)


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
