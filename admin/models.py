"""Console accounts for DGFM staff."""

from __future__ import annotations

import datetime as dt
import enum

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from recpo.db import Base, str_enum


class StaffRole(enum.StrEnum):
    """What a console user may do."""

    ADMIN = "admin"  # everything, manages users
    ANALYST = "analyst"  # reviews and resolves, approves phone links
    AUDITOR = "auditor"  # reads only


class User(Base):
    """A console account; the password is kept only as a memory-hard hash."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(80), unique=True)
    role: Mapped[StaffRole] = mapped_column(str_enum(StaffRole, "role"))
    password_hash: Mapped[str] = mapped_column(sa.String(255))
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[dt.datetime]
