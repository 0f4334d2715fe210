"""Creating console accounts and checking their passwords."""

from __future__ import annotations

import datetime as dt
import re

import sqlalchemy as sa
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from admin.models import StaffRole, User

# scrypt with N=2^15, r=8, p=1 (32 MiB per hash): memory-hard, as OWASP recommends.
PASSWORD_METHOD = "scrypt:32768:8:1"  # noqa: S105 - a method name, not a password
MIN_PASSWORD_LENGTH = 12
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{1,79}$")


class UserError(ValueError):
    """A request about an account that cannot be carried out, with the reason."""


def hash_password(password: str) -> str:
    """Return the stored form of `password`."""
    return generate_password_hash(password, method=PASSWORD_METHOD)


def create_user(
    session: Session, name: str, role: StaffRole | str, password: str, now: dt.datetime
) -> User:
    """Create a console account; refuse bad names, short passwords and taken names."""
    name = name.strip().lower()
    if not _NAME.match(name):
        raise UserError(
            "a user name has 2 to 80 characters: lower-case letters, digits, '.', '_' or '-'"
        )
    try:
        role = StaffRole(role)
    except ValueError:
        choices = ", ".join(r.value for r in StaffRole)
        raise UserError(f"role {role!r} is not one of {choices}") from None
    if len(password) < MIN_PASSWORD_LENGTH:
        raise UserError(f"the password needs at least {MIN_PASSWORD_LENGTH} characters")
    if session.scalar(sa.select(User.id).where(User.name == name)) is not None:
        raise UserError(f"a user named {name!r} already exists")
    user = User(name=name, role=role, password_hash=hash_password(password), created_at=now)
    session.add(user)
    session.flush()
    return user


def verify_password(user: User, password: str) -> bool:
    """Check `password` against the account's stored hash."""
    return check_password_hash(user.password_hash, password)
