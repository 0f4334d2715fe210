from __future__ import annotations

import sqlalchemy as sa

from admin.models import StaffRole, User
from admin.users import verify_password
from gateway.models import Message
from recpo.cli import SERVE_THREADS, gunicorn_settings
from registry.models import PhoneLink, Registrant, ReinfoRegistration


class TestDemo:
    def test_seeds_once_and_prints_password_once(self, runner, db_session):
        first = runner.invoke(args=["demo"])
        assert first.exit_code == 0, first.output
        assert "demo data: 5 new registrants" in first.output
        password = first.output.split("password: ")[1].split()[0]
        user = db_session.scalar(sa.select(User).where(User.name == "admin"))
        assert user.role is StaffRole.ADMIN
        assert verify_password(user, password)

        second = runner.invoke(args=["demo"])
        assert second.exit_code == 0, second.output
        assert "demo data: 0 new registrants" in second.output
        assert "password:" not in second.output
        assert db_session.scalar(sa.select(sa.func.count()).select_from(Registrant)) == 5
        assert db_session.scalar(sa.select(sa.func.count()).select_from(PhoneLink)) == 5
        assert db_session.scalar(sa.select(sa.func.count()).select_from(ReinfoRegistration)) == 4


class TestCreateUser:
    def test_password_from_stdin(self, runner, db_session):
        result = runner.invoke(
            args=["admin", "create-user", "Maria.Q", "--role", "analyst"],
            input="a long enough passphrase\n",
        )
        assert result.exit_code == 0, result.output
        assert "created analyst 'maria.q'" in result.output
        user = db_session.scalar(sa.select(User).where(User.name == "maria.q"))
        assert user.password_hash.startswith("scrypt:")
        assert "a long enough passphrase" not in user.password_hash
        assert verify_password(user, "a long enough passphrase")
        assert not verify_password(user, "a long enough passphrasE")

    def test_short_password_refused_and_nothing_created(self, runner, db_session):
        result = runner.invoke(
            args=["admin", "create-user", "pedro", "--role", "auditor"], input="short\n"
        )
        assert result.exit_code != 0
        assert "at least 12 characters" in result.output
        assert db_session.scalar(sa.select(User).where(User.name == "pedro")) is None

    def test_duplicate_name_refused(self, runner):
        args = ["admin", "create-user", "ana", "--role", "auditor"]
        assert runner.invoke(args=args, input="first password here\n").exit_code == 0
        result = runner.invoke(args=args, input="second password here\n")
        assert result.exit_code != 0
        assert "already exists" in result.output

    def test_unknown_role_refused(self, runner):
        result = runner.invoke(
            args=["admin", "create-user", "ana", "--role", "boss"], input="long password here\n"
        )
        assert result.exit_code != 0
        assert "boss" in result.output


class TestLookup:
    def test_vigente_miner_exits_zero(self, runner):
        runner.invoke(args=["demo"])
        result = runner.invoke(args=["registry", "lookup", "45.678.912"])
        assert result.exit_code == 0, result.output
        assert "RUC 10456789124 is VIGENTE" in result.output
        assert "010149108 Rinconada Uno" in result.output

    def test_suspended_miner_exits_one(self, runner):
        runner.invoke(args=["demo"])
        result = runner.invoke(args=["registry", "lookup", "40000001"])
        assert result.exit_code == 1
        assert "SUSPENDED" in result.output

    def test_bad_document_is_explained(self, runner):
        result = runner.invoke(args=["registry", "lookup", "20131312956"])
        assert result.exit_code != 0
        assert "check digit" in result.output


class TestImportCommands:
    def test_reinfo_import_prints_summary_and_report(self, runner, tmp_path, db_session):
        path = tmp_path / "reinfo.csv"
        path.write_text(
            "RUC;Nombre;Código único;Derecho minero;Departamento;Provincia;Distrito;Estado\n"
            "20131312955;ORO SUR;01-01491-08;Rinconada;PUNO;SAN ANTONIO DE PUTINA;ANANEA;VIGENTE\n"
            "20131312956;MAL;010149109;X;PUNO;SAN ANTONIO DE PUTINA;ANANEA;VIGENTE\n",
            encoding="utf-8",
        )
        report = tmp_path / "report.csv"
        result = runner.invoke(
            args=["registry", "import", "reinfo", str(path), "--report", str(report)]
        )
        assert result.exit_code == 0, result.output
        assert "inserted 1, updated 0, unchanged 0, rejected 1" in result.output
        assert report.read_text().splitlines()[1].startswith("3,")
        row = db_session.scalar(sa.select(ReinfoRegistration))
        assert (row.ruc, row.codigo_unico) == ("20131312955", "010149108")

    def test_refused_file_writes_nothing(self, runner, tmp_path, db_session):
        path = tmp_path / "reinfo.csv"
        path.write_text("RUC;Nombre\n20131312955;ORO SUR\n")
        result = runner.invoke(args=["registry", "import", "reinfo", str(path)])
        assert result.exit_code != 0
        assert "file refused, nothing imported" in result.output
        assert "código único" in result.output
        assert db_session.scalar(sa.select(sa.func.count()).select_from(ReinfoRegistration)) == 0

    def test_missing_file_is_explained(self, runner, tmp_path):
        result = runner.invoke(args=["registry", "import", "registrants", str(tmp_path / "no.csv")])
        assert result.exit_code != 0
        assert "cannot read" in result.output


class TestSimulate:
    def test_a_terminal_phone_runs_the_real_flows(self, runner, db_session):
        runner.invoke(args=["demo"])
        result = runner.invoke(
            args=["simulate", "987000001"], input="COMPRA 45678912 DORE 25.5G 850 5400\nSI\n"
        )
        assert result.exit_code == 0, result.output
        assert "+51987000001 on sms" in result.output
        assert "21.68" in result.output  # the summary, with the fine gold
        assert "(to +51987000011)" in result.output  # the seller's notice
        logged = db_session.scalars(
            sa.select(Message).where(Message.phone == "+51987000001").order_by(Message.id)
        ).all()
        assert logged and all(m.simulated for m in logged)

    def test_ussd_session_ends_with_end(self, runner):
        runner.invoke(args=["demo"])
        result = runner.invoke(args=["simulate", "987000001", "--channel", "ussd"], input="\n6\n")
        assert result.exit_code == 0, result.output
        assert "< [CON]" in result.output and "< [END]" in result.output

    def test_a_bad_number_is_explained(self, runner):
        result = runner.invoke(args=["simulate", "12"])
        assert result.exit_code != 0


class TestServe:
    def test_gunicorn_runs_threaded_workers_as_asked(self):
        settings = gunicorn_settings("127.0.0.1", 8000, workers=3, threads=5)
        assert settings["worker_class"] == "gthread"
        assert (settings["workers"], settings["threads"]) == (3, 5)
        assert gunicorn_settings("127.0.0.1", 8000, workers=2)["threads"] == SERVE_THREADS

    def test_no_workers_or_threads_is_refused_before_serving(self, runner):
        for option in ("--workers", "--threads"):
            result = runner.invoke(args=["serve", option, "0"])
            assert result.exit_code == 2, result.output
            assert "0 is not in the range x>=1" in result.output
            assert "serving on" not in result.output
