"""The partner institutions' API under /api/v1 (being written)."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("partner_api", __name__, url_prefix="/api/v1")
