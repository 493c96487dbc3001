"""The pages' forms (Flask-WTF: each carries its CSRF token)."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import HiddenField, PasswordField, StringField
from wtforms.validators import AnyOf, DataRequired, Length


class LoginForm(FlaskForm):
    username = StringField(_l("User name"), validators=[DataRequired(), Length(max=64)])
    password = PasswordField(_l("Password"), validators=[DataRequired(), Length(max=256)])


class LogoutForm(FlaskForm):
    """No fields: the form carries only its CSRF token, so a logout cannot be forged."""


class LanguageForm(FlaskForm):
    language = HiddenField(validators=[AnyOf(("en", "zh_CN"))])
    next = HiddenField()
