"""Uploads of REINFO and registrant CSV files: the same import as `recpo registry import`.

The file is saved under the instance folder (`uploads/`, removed after the import), imported by
`registry.imports.import_reinfo` or `import_registrants` inside one transaction together with its
audit entry, and its rejected rows are written to `reports/` under the instance folder, as the CLI
does. A refused file (not a CSV, wrong header, ...) changes nothing; the refusal is audited too.
Analysts and admins only: reports hold whole rows (phone numbers included).

Request size: the app refuses bodies over 1 MiB; this form alone accepts up to
`common.UPLOAD_MAX_BYTES` (50 MiB, the size of a national REINFO list with room to spare), and
only from a signed-in analyst or admin (see `common._guard`). The import runs in the request (a
REINFO list of 100,000 rows takes a few seconds).
"""

from __future__ import annotations

import datetime as dt
import json
import re
import secrets
import shutil
from pathlib import Path

import sqlalchemy as sa
from flask import (
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    send_from_directory,
    url_for,
)
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from werkzeug.utils import secure_filename

from admin import audit
from admin.models import AuditEntry
from admin.views.common import (
    REVIEWERS,
    UPLOAD_MAX_BYTES,
    audited_view,
    bp,
    current_user,
    now,
    requires,
)
from recpo.clock import lima_date
from recpo.runtime import current_runtime, request_session
from registry.imports import FileRefused, import_registrants, import_reinfo

KINDS = ("reinfo", "registrants")
RECENT = 20
REPORT_NAME = re.compile(r"(reinfo|registrants)-[0-9]{8}T[0-9]{6}Z(-[0-9a-f]{6})?\.csv")
SUMMARY_FIELDS = ("inserted", "updated", "unchanged", "rejected")


def reports_dir() -> Path:
    """Where import reports go (the CLI writes its reports there too)."""
    return current_runtime().settings.instance_path / "reports"


def _entry_view(entry: AuditEntry) -> dict:
    detail = json.loads(entry.detail)
    report = detail.get("report")
    return {
        "entry": entry,
        "kind": entry.action.split(".")[1],
        "refused": entry.action.endswith(".refused"),
        "detail": detail,
        "report": report if report and (reports_dir() / report).is_file() else None,
    }


@bp.get("/uploads")
@requires(*REVIEWERS)
def uploads() -> ResponseReturnValue:
    """The upload forms, the outcome of the last upload, and the recent ones."""
    db = request_session()
    recent = db.scalars(
        sa.select(AuditEntry)
        .where(
            AuditEntry.target_type == "upload",
            AuditEntry.action.in_([f"upload.{k}{s}" for k in KINDS for s in ("", ".refused")]),
        )
        .order_by(AuditEntry.id.desc())
        .limit(RECENT)
    ).all()
    done = None
    if (done_id := request.args.get("done", "")).isdigit():
        found = db.get(AuditEntry, int(done_id))
        if found is not None and found.target_type == "upload":
            done = _entry_view(found)
    return render_template(
        "admin/uploads.html",
        done=done,
        recent=[_entry_view(e) for e in recent],
        today=lima_date(now()),
        fields=SUMMARY_FIELDS,
        max_mib=current_app.config.get("CONSOLE_UPLOAD_MAX_BYTES", UPLOAD_MAX_BYTES) // 2**20,
    )


def _snapshot_date() -> dt.date | None:
    raw = request.form.get("snapshot_date", "").strip()
    if not raw:
        return lima_date(now())
    try:
        day = dt.date.fromisoformat(raw)
    except ValueError:
        return None
    return day if day <= lima_date(now()) else None


@bp.post("/uploads")
@requires(*REVIEWERS)
def upload() -> ResponseReturnValue:
    """Import an uploaded REINFO list or registrant list; show what it did."""
    kind = request.form.get("kind", "")
    file = request.files.get("file")
    if kind not in KINDS or file is None or not file.filename:
        flash(_("Choose a CSV file to upload."), "error")
        return redirect(url_for("admin.uploads"))
    options: dict[str, object] = {}
    if kind == "reinfo":
        snapshot = _snapshot_date()
        if snapshot is None:
            flash(_("The snapshot date must be a date, and not in the future."), "error")
            return redirect(url_for("admin.uploads"))
        options["snapshot_date"] = snapshot
        importer = import_reinfo
    else:
        options["decided_by"] = f"console:{current_user().name}"[:80]
        importer = import_registrants
    runtime = current_runtime()
    moment = now()
    name = f"{kind}-{moment.strftime('%Y%m%dT%H%M%SZ')}-{secrets.token_hex(3)}"
    folder = runtime.settings.instance_path / "uploads" / name
    folder.mkdir(parents=True, exist_ok=True)
    saved = folder / (secure_filename(file.filename) or f"{kind}.csv")
    report = reports_dir() / f"{name}.csv"
    described = {"file": file.filename[:200], **{k: str(v) for k, v in options.items()}}
    try:
        file.save(saved)
        described["bytes"] = saved.stat().st_size
        with runtime.database.transaction() as db:
            summary = importer(
                db,
                saved,
                now=moment,
                report_path=report,
                source_file=file.filename,
                changed_by=current_user().name,
                **options,
            )
            entry = audit.record(
                db,
                f"upload.{kind}",
                "upload",
                name,
                **described,
                **{field: getattr(summary, field) for field in SUMMARY_FIELDS},
                report=report.name if report.is_file() else None,
            )
            db.flush()
            entry_id = entry.id
    except FileRefused as exc:
        report.unlink(missing_ok=True)
        with runtime.database.transaction() as db:
            entry = audit.record(
                db, f"upload.{kind}.refused", "upload", name, **described, reason=str(exc)
            )
            db.flush()
            entry_id = entry.id
        flash(_("File refused, nothing was imported: %(reason)s", reason=str(exc)), "error")
        return redirect(url_for("admin.uploads", done=entry_id))
    except BaseException:
        report.unlink(missing_ok=True)
        raise
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    flash(
        _(
            "%(file)s imported: %(inserted)d inserted, %(updated)d updated, "
            "%(unchanged)d unchanged, %(rejected)d rejected.",
            file=file.filename,
            inserted=summary.inserted,
            updated=summary.updated,
            unchanged=summary.unchanged,
            rejected=summary.rejected,
        ),
        "success" if not summary.rejected else "info",
    )
    return redirect(url_for("admin.uploads", done=entry_id))


@bp.get("/uploads/reports/<name>")
@requires(*REVIEWERS)
def upload_report(name: str) -> ResponseReturnValue:
    """Download the rejected-rows report of an import (line, reason, the row as it was)."""
    if not REPORT_NAME.fullmatch(name) or not (reports_dir() / name).is_file():
        abort(404)
    audited_view("upload.report", "upload", name.removesuffix(".csv"))
    return send_from_directory(
        reports_dir(), name, mimetype="text/csv", as_attachment=True, download_name=name
    )
