"""The console's audit log: every action, and every view of a registrant's personal data.

Rows are only ever inserted (the table refuses UPDATE and DELETE); admins read them in the
console. An entry is written in the same transaction as the change it records, so a change
without its entry cannot exist.
"""

from __future__ import annotations

import json

from flask import g, has_request_context, request
from sqlalchemy.orm import Session

from admin.models import AuditEntry, User
from recpo.runtime import current_runtime


def record(
    session: Session,
    action: str,
    target_type: str | None = None,
    target_id: object = None,
    *,
    user: User | None = None,
    user_name: str | None = None,
    **detail: object,
) -> AuditEntry:
    """Add an audit entry for `action` by the signed-in user (or `user` / `user_name`)."""
    user = user or (g.get("user") if has_request_context() else None)
    entry = AuditEntry(
        at=current_runtime().clock.now(),
        user_id=user.id if user is not None else None,
        user_name=(user.name if user is not None else user_name or "-")[:80],
        action=action,
        target_type=target_type,
        target_id=None if target_id is None else str(target_id)[:80],
        detail=json.dumps(detail, sort_keys=True, default=str, ensure_ascii=False),
        address=(request.remote_addr or "")[:64] if has_request_context() else None,
    )
    session.add(entry)
    return entry
