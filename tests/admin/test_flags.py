"""Red flags: the queue, the evidence, and the review steps."""

from __future__ import annotations

import json
import re

import pytest
import sqlalchemy as sa

from admin.models import AuditEntry, StaffRole
from registry.models import FlagStatus, RedFlag
from tests.admin.conftest import add_flag


@pytest.fixture
def flags(database, clock) -> dict[str, int]:
    with database.transaction() as session:
        return {
            "r1": add_flag(session, at=clock.now()).id,
            "mercury": add_flag(session, at=clock.now(), rule="R7", evidence='{"kg": "2"}').id,
            "done": add_flag(session, at=clock.now(), status=FlagStatus.RESOLVED).id,
        }


def flag_row(database, flag_id: int) -> RedFlag:
    with database.transaction() as session:
        return session.get(RedFlag, flag_id)


def listed(response) -> list[int]:
    return [int(i) for i in re.findall(r'<a href="/admin/flags/(\d+)">\1</a>', response.text)]


class TestQueue:
    @pytest.mark.parametrize(
        ("query", "expected"),
        [
            ("", ["done", "mercury", "r1"]),
            ("?status=open", ["mercury", "r1"]),
            ("?rule=R7", ["mercury"]),
            ("?status=resolved&rule=R1", ["done"]),
            ("?rule=NOPE", ["done", "mercury", "r1"]),
        ],
    )
    def test_filters(self, client, as_role, flags, query, expected):
        as_role(StaffRole.AUDITOR)
        response = client.get("/admin/flags" + query)
        assert [i for i in listed(response) if i in flags.values()] == [
            flags[name] for name in expected
        ]


class TestDetail:
    def test_evidence_is_pretty_and_escaped(self, client, as_role, database, clock):
        evidence = json.dumps({"note": "<img src=x onerror=alert(1)>", "ruc": "10456789124"})
        with database.transaction() as session:
            flag = add_flag(session, at=clock.now(), evidence=evidence)
        as_role(StaffRole.AUDITOR)
        page = client.get(f"/admin/flags/{flag.id}").get_data(as_text=True)
        assert "{\n  &#34;note&#34;: &#34;&lt;img src=x onerror=alert(1)&gt;&#34;," in page
        assert "<img src=x" not in page
        assert "Tomar para revisión" not in page  # auditors read only


class TestReview:
    def test_take_then_resolve_with_a_note(self, client, as_role, flags, database):
        token = as_role(StaffRole.ANALYST)
        flag_id = flags["r1"]
        client.post(f"/admin/flags/{flag_id}/take", data={"csrf_token": token})
        assert flag_row(database, flag_id).status is FlagStatus.IN_REVIEW
        response = client.post(
            f"/admin/flags/{flag_id}/resolve",
            data={"csrf_token": token, "note": "REINFO suspension confirmed; buyer warned."},
            follow_redirects=True,
        )
        assert "Alerta resuelta." in response.get_data(as_text=True)
        row = flag_row(database, flag_id)
        assert row.status is FlagStatus.RESOLVED
        assert row.note == "REINFO suspension confirmed; buyer warned."
        with database.transaction() as session:
            steps = session.scalars(
                sa.select(AuditEntry.action)
                .where(AuditEntry.target_id == str(flag_id), AuditEntry.action != "flag.view")
                .where(AuditEntry.target_type == "flag")
                .order_by(AuditEntry.id)
            ).all()
        assert steps == ["flag.take", "flag.resolve"]
        page = client.get(f"/admin/flags/{flag_id}").get_data(as_text=True)
        assert "abierta → en revisión" in page and "en revisión → resuelta" in page

    def test_resolving_needs_a_note(self, client, as_role, flags, database):
        token = as_role(StaffRole.ANALYST)
        response = client.post(
            f"/admin/flags/{flags['r1']}/resolve",
            data={"csrf_token": token, "note": "   "},
            follow_redirects=True,
        )
        assert "hace falta una nota" in response.get_data(as_text=True)
        assert flag_row(database, flags["r1"]).status is FlagStatus.OPEN

    def test_escalate_then_resolve(self, client, as_role, flags, database):
        token = as_role(StaffRole.ADMIN)
        client.post(
            f"/admin/flags/{flags['mercury']}/escalate",
            data={"csrf_token": token, "note": "to the prosecutor"},
        )
        assert flag_row(database, flags["mercury"]).status is FlagStatus.ESCALATED
        client.post(
            f"/admin/flags/{flags['mercury']}/resolve", data={"csrf_token": token, "note": "closed"}
        )
        assert flag_row(database, flags["mercury"]).status is FlagStatus.RESOLVED

    def test_a_resolved_flag_is_not_taken_again(self, client, as_role, flags, database):
        token = as_role(StaffRole.ANALYST)
        response = client.post(
            f"/admin/flags/{flags['done']}/take", data={"csrf_token": token}, follow_redirects=True
        )
        assert "no se modificó nada" in response.get_data(as_text=True)
        assert flag_row(database, flags["done"]).status is FlagStatus.RESOLVED

    def test_unknown_step_and_flag(self, client, as_role, flags):
        token = as_role(StaffRole.ANALYST)
        assert (
            client.post(f"/admin/flags/{flags['r1']}/delete", data={"csrf_token": token})
        ).status_code == 404
        assert (
            client.post("/admin/flags/999999999/take", data={"csrf_token": token})
        ).status_code == 404
