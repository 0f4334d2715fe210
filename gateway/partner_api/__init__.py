"""The partner institutions' API under /api/v1 (DESIGN.md §4; issue 7, section 2).

Read-only JSON for public institutions, with bearer tokens per institution (`registry.partners`),
scopes, rate limits, an audit row per call and RFC 9457 errors (`core`); the endpoints (`views`);
and the OpenAPI 3.1 document at /api/v1/openapi.json (`openapi`).
"""

from __future__ import annotations

from gateway.partner_api import openapi, views
from gateway.partner_api.core import bp

__all__ = ["bp", "openapi", "views"]
