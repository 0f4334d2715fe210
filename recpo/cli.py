"""The `recpo` command (also reachable as `flask --app wsgi ...`)."""

from __future__ import annotations

import datetime as dt
import getpass
import logging
import secrets
import sys
from pathlib import Path
from typing import Any

import click
from flask import Flask
from flask.cli import FlaskGroup, with_appcontext

from recpo.clock import lima_date
from recpo.runtime import current_runtime


def _create_app(*_args: Any) -> Flask:
    from recpo.app import create_app

    return create_app()


def main() -> None:
    """Run the `recpo` command.

    The groups are added to the command itself (not only to the app's CLI), so a command that
    needs no application — `recpo ledger check-proof` — runs without building one: no instance
    folder, no database.
    """
    cli = FlaskGroup(
        name="recpo",
        create_app=_create_app,
        add_default_commands=False,
        load_dotenv=False,
        set_debug_flag=False,
        help="RECPO Gateway: registry of gold traders and processors.",
    )
    for command in COMMANDS:
        cli.add_command(command)
    cli.main(prog_name="recpo")


def register_commands(app: Flask) -> None:
    """Attach every command group to `app.cli`."""
    for command in COMMANDS:
        app.cli.add_command(command)


# --- db -------------------------------------------------------------------------------------------


@click.group(help="Database schema.")
def db() -> None:
    pass


@db.command("upgrade", help="Migrate the database to the newest schema (or to --revision).")
@click.option("--revision", default="head", show_default=True)
@with_appcontext
def db_upgrade(revision: str) -> None:
    from migrations import upgrade

    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    runtime = current_runtime()
    upgrade(runtime.settings.database_url, revision)
    click.echo(f"database at {runtime.database.dialect} schema revision {revision}")


@db.command("revision", help="Write a new migration file (for developers).")
@click.option("-m", "--message", required=True)
@click.option("--autogenerate/--empty", default=True, show_default=True)
@with_appcontext
def db_revision(message: str, autogenerate: bool) -> None:
    from alembic import command

    from migrations import alembic_config

    config = alembic_config(current_runtime().settings.database_url)
    command.revision(config, message=message, autogenerate=autogenerate)


# --- demo -----------------------------------------------------------------------------------------


@click.command(help="Seed demo registrants, REINFO registrations and an admin user (idempotent).")
@with_appcontext
def demo() -> None:
    from admin.models import StaffRole, User
    from admin.users import create_user
    from registry.demo import seed_demo

    runtime = current_runtime()
    now = runtime.clock.now()
    with runtime.database.transaction() as session:
        created = seed_demo(session, now)
        password = None
        if session.query(User.id).filter(User.name == "admin").first() is None:
            password = secrets.token_urlsafe(12)
            create_user(session, "admin", StaffRole.ADMIN, password, now)
    click.echo(f"demo data: {created} new registrants")
    if password:
        click.echo(f"console user 'admin' created with password: {password}")
        click.echo("(shown once; create others with `recpo admin create-user`)")
    else:
        click.echo("console user 'admin' already exists (password unchanged)")


# --- serve ----------------------------------------------------------------------------------------

# Threads per gunicorn worker. Python runs one thread of a process at a time, so more threads
# mostly queue for the interpreter: add processes (--workers) for more requests per second. On
# 2 cores (bench/webhook.py) 2 threads against 4 made no difference beyond the host's noise.
SERVE_THREADS = 4


def gunicorn_settings(
    host: str, port: int, workers: int, threads: int = SERVE_THREADS
) -> dict[str, object]:
    """Return how `recpo serve` configures gunicorn (bench/bare_app.py serves alike)."""
    return {
        "bind": f"{host}:{port}",
        "workers": workers,
        # Threads, so a long CSV export or a slow provider call does not hold a whole process;
        # the timeout is for a worker that stopped answering, not for a slow response.
        "worker_class": "gthread",
        "threads": threads,
        "timeout": 120,
        "accesslog": "-",
        "graceful_timeout": 10,
        "control_socket_disable": True,
    }


@click.command(help="Serve the web application with gunicorn.")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=None, help="Default: PORT, else 5000.")
@click.option("--workers", type=click.IntRange(min=1), default=2, show_default=True)
@click.option(
    "--threads",
    type=click.IntRange(min=1),
    default=SERVE_THREADS,
    show_default=True,
    help="Requests each worker process handles at once.",
)
@with_appcontext
def serve(host: str, port: int | None, workers: int, threads: int) -> None:
    from gunicorn.app.base import BaseApplication

    port = port or current_runtime().settings.port

    class Server(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            for name, value in gunicorn_settings(host, port, workers, threads).items():
                self.cfg.set(name, value)

        def load(self) -> Flask:
            # Each worker builds its own app, so no connection crosses a fork.
            return _create_app()

    click.echo(f"serving on http://{host}:{port} (Ctrl-C stops)")
    Server().run()


@click.command(help="Run an RQ worker: sends the outbox, retries, reconciles lost jobs.")
@click.option("--burst", is_flag=True, help="Stop when the queue is empty (tests, cron).")
@with_appcontext
def worker(burst: bool) -> None:
    import threading

    from rq import Queue, SimpleWorker

    from gateway import tasks
    from gateway.dispatch import QUEUE_NAME, RECONCILE_EVERY

    runtime = current_runtime()
    if runtime.redis is None:
        raise click.ClickException(
            "REDIS_URL is not set: without Redis the web process sends by itself; "
            "no worker is needed"
        )
    tasks.configure(runtime)
    stop = threading.Event()

    def reconcile_forever() -> None:
        while not stop.wait(RECONCILE_EVERY):
            try:
                tasks.reconcile()
            except Exception:
                logging.getLogger(__name__).exception("reconciler pass failed")

    tasks.reconcile()
    threading.Thread(target=reconcile_forever, daemon=True, name="reconciler").start()
    # SimpleWorker runs jobs in this process: no fork per job, so one worker sends hundreds
    # of messages a second; run more `recpo worker` processes to use more cores.
    rq_worker = SimpleWorker(
        [Queue(QUEUE_NAME, connection=runtime.redis)], connection=runtime.redis
    )
    try:
        rq_worker.work(with_scheduler=True, burst=burst)
    finally:
        stop.set()


@click.command(help="A phone in the terminal: type as PHONE would, read the replies.")
@click.argument("phone")
@click.option("--channel", type=click.Choice(["sms", "ussd", "whatsapp"]), default="sms")
@with_appcontext
def simulate(phone: str, channel: str) -> None:
    import uuid

    import sqlalchemy as sa

    from flows.messages import Channel, Inbound
    from gateway.models import Message
    from gateway.service import current_gateway
    from gateway.text import normalise_inbound
    from registry.identifiers import InvalidIdentifier, parse_phone

    try:
        phone = parse_phone(phone, region="PE")
    except InvalidIdentifier as exc:
        raise click.ClickException(str(exc)) from None
    gateway = current_gateway()
    medium = Channel(channel)
    session_id = uuid.uuid4().hex[:12]
    click.echo(f"{phone} on {medium.value}; messages are logged as simulated. Ctrl-D ends.")
    if medium is Channel.USSD:
        click.echo(f"(dialling {gateway.settings.ussd_service_code}; answer with digits)")
    answers: list[str] = []
    text = "" if medium is Channel.USSD else None
    while True:
        if text is None:
            try:
                text = click.prompt(">", prompt_suffix=" ", default="", show_default=False)
            except click.Abort:
                click.echo()
                return
            answers.append(text)
        inbound = Inbound(
            channel=medium,
            phone=phone,
            text=normalise_inbound(text),
            provider_id=f"sim-{uuid.uuid4().hex}"
            if medium is not Channel.USSD
            else f"{session_id}:{len(answers)}",
            received_at=gateway.clock.now(),
            session_id=session_id if medium is Channel.USSD else None,
            simulated=True,
        )
        received = gateway.receive(inbound)
        if received.inline is not None:
            prefix = "CON" if not received.inline.final else "END"
            click.echo(f"< [{prefix}] {received.inline.text}")
            if received.inline.final:
                session_id, answers = uuid.uuid4().hex[:12], []
                click.echo("(session ended; press Enter to dial again)")
        with gateway.database.transaction() as session:
            for message in session.scalars(
                sa.select(Message).where(Message.id.in_(received.outbox)).order_by(Message.id)
            ):
                to = "" if message.phone == phone else f"(to {message.phone}) "
                click.echo(f"< {to}{message.body}")
        text = None


# --- registry -------------------------------------------------------------------------------------


@click.group(help="Registrants, REINFO data, reference prices and red flags.")
def registry() -> None:
    pass


@registry.group("import", help="Import a CSV file (idempotent; rejected rows go to a report).")
def registry_import() -> None:
    pass


def _report_path(kind: str, given: Path | None) -> Path:
    if given:
        return given
    stamp = current_runtime().clock.now().strftime("%Y%m%dT%H%M%SZ")
    return current_runtime().settings.instance_path / "reports" / f"{kind}-{stamp}.csv"


def _progress(rows: int) -> None:
    click.echo(f"\r{rows:,} rows read", nl=False, err=True)


def _run_import(kind: str, importer: Any, path: Path, report: Path | None, **kwargs: Any) -> None:
    from registry.csvfiles import FileRefused

    runtime = current_runtime()
    report_path = _report_path(kind, report)
    try:
        with runtime.database.transaction() as session:
            summary = importer(
                session,
                path,
                now=runtime.clock.now(),
                report_path=report_path,
                progress=_progress,
                **kwargs,
            )
    except FileRefused as exc:
        raise click.ClickException(f"file refused, nothing imported: {exc}") from None
    click.echo("", err=True)
    click.echo(f"{path.name}: {summary}")


@registry_import.command("reinfo", help="Import the public REINFO list.")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--snapshot-date",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    help="Date the list was published (default: today in Lima).",
)
@click.option("--report", type=click.Path(path_type=Path, dir_okay=False))
@with_appcontext
def import_reinfo_command(
    file: Path, snapshot_date: dt.datetime | None, report: Path | None
) -> None:
    from registry.imports import import_reinfo

    snapshot = snapshot_date.date() if snapshot_date else lima_date(current_runtime().clock.now())
    _run_import("reinfo", import_reinfo, file, report, snapshot_date=snapshot)


@registry_import.command(
    "registrants", help="Import registrants (role,document,name,phone,language)."
)
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--report", type=click.Path(path_type=Path, dir_okay=False))
@with_appcontext
def import_registrants_command(file: Path, report: Path | None) -> None:
    from registry.imports import import_registrants

    _run_import("registrants", import_registrants, file, report, decided_by=f"import:{file.name}")


@registry_import.command(
    "prices", help="Import reference gold prices (fecha, LBMA USD/oz, PEN per USD) for R8."
)
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--report", type=click.Path(path_type=Path, dir_okay=False))
@with_appcontext
def import_prices_command(file: Path, report: Path | None) -> None:
    from registry.prices import import_prices

    _run_import("prices", import_prices, file, report)


@registry.group("flags", help="Red-flag rules R1-R10 (thresholds: RECPO_REDFLAG_* variables).")
def registry_flags() -> None:
    pass


@registry_flags.command(
    "run", help="Evaluate every rule over the recent transactions (nightly); never flags twice."
)
@click.option(
    "--since",
    "days",
    type=click.IntRange(min=1),
    default=30,
    show_default=True,
    help="Days back from now.",
)
@with_appcontext
def registry_flags_run(days: int) -> None:
    from registry.redflags import NOT_EVALUABLE, Thresholds, run_nightly

    runtime = current_runtime()
    try:
        thresholds = Thresholds.from_env()
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    with runtime.database.transaction() as session:
        report = run_nightly(session, runtime.clock.now(), days, thresholds)
    click.echo(
        f"{report.transactions:,} transactions created since {report.since:%Y-%m-%d %H:%M} UTC"
    )
    for run in report.runs:
        if not run.evaluable:
            click.echo(f"  {run.rule:>3}: not evaluated: {NOT_EVALUABLE[run.rule]}")
            continue
        click.echo(
            f"  {run.rule:>3}: {run.new} new flag(s), {run.found} found ({run.seconds:.2f} s)"
        )
    click.echo(f"{report.new} new flag(s) in {report.seconds:.2f} s")


@registry.command("lookup", help="May this DNI or RUC sell gold today?")
@click.argument("document")
@with_appcontext
def registry_lookup(document: str) -> None:
    from registry.identifiers import InvalidIdentifier, parse_document
    from registry.lookup import seller_standing

    try:
        parsed = parse_document(document)
    except InvalidIdentifier as exc:
        raise click.ClickException(str(exc)) from None
    with current_runtime().database.transaction() as session:
        standing = seller_standing(session, parsed)
        click.echo(str(standing))
        for registration in standing.registrations:
            click.echo(
                f"  {registration.codigo_unico} {registration.mining_right} "
                f"({registration.district}, {registration.province}, {registration.department}) "
                f"{registration.status.value}"
            )
    if not standing.may_sell:
        sys.exit(1)


# --- ledger ---------------------------------------------------------------------------------------


@click.group(help="The verifiable ledger.")
def ledger() -> None:
    pass


def _log() -> Any:
    from gateway.ledger_api import current_log

    return current_log()


@ledger.command("keygen", help="Print a new signing key and its verifier key.")
@click.option("--name", help="Key name (default: LEDGER_ORIGIN).")
@with_appcontext
def ledger_keygen(name: str | None) -> None:
    from ledger.note import Signer, generate_signer_key

    try:
        private = generate_signer_key(name or current_runtime().settings.ledger_origin)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(private)
    click.echo(Signer.from_text(private).verifier_text())


@ledger.command("sequence", help="Sequence every queued entry now and sign a checkpoint.")
@with_appcontext
def ledger_sequence() -> None:
    from ledger.witnesses import submit_configured

    runtime = current_runtime()
    count = _log().sequence(runtime.database)
    click.echo(f"sequenced {count} entries")
    if count:
        submit_configured(runtime.database, _log(), runtime.settings)


@ledger.command("checkpoint", help="Sign the current tree if needed and print the checkpoint.")
@with_appcontext
def ledger_checkpoint() -> None:
    head = _log().checkpoint_now(current_runtime().database)
    click.echo(head.note, nl=False)


@ledger.command("verify", help="Re-check every entry, node and checkpoint from the stored bytes.")
@with_appcontext
def ledger_verify() -> None:
    from ledger.verify import verify_log

    log = _log()
    with current_runtime().database.transaction() as session:
        report = verify_log(
            session,
            log.signer.verifier(),
            log.origin,
            progress=lambda n: click.echo(f"\r{n:,} entries verified", nl=False, err=True),
        )
    click.echo("", err=True)
    if not report.ok:
        raise click.ClickException(
            f"ledger NOT valid: {report.problem} "
            f"({report.entries} entries and {report.checkpoints} checkpoints checked before it)"
        )
    click.echo(f"ledger valid: {report.entries} entries, {report.checkpoints} checkpoints")


@ledger.command(
    "check-proof", help="Verify a receipt's proof bundle offline (no network, no database)."
)
@click.argument("file", type=click.File("r", encoding="utf-8"))
@click.option("--key", "keys", multiple=True, required=True, help="The log's verifier key (text).")
@click.option(
    "--witness",
    "witness_keys",
    multiple=True,
    help="A witness's verifier key: its cosignature on the checkpoint is required; repeatable.",
)
def ledger_check_proof(file: Any, keys: tuple[str, ...], witness_keys: tuple[str, ...]) -> None:
    import json

    from ledger.cosignature import CosignatureVerifier
    from ledger.entries import parse_entry
    from ledger.note import NoteError, Verifier, open_note
    from ledger.proofs import ProofError, check_proof, parse_proof

    try:
        verifiers = [Verifier.from_text(k.strip()) for k in keys]
    except ValueError as exc:
        raise click.ClickException(f"--key: {exc}") from None
    try:
        witnesses = [CosignatureVerifier.from_text(k.strip()) for k in witness_keys]
    except ValueError as exc:
        raise click.ClickException(f"--witness: {exc}") from None
    text = file.read()
    try:
        checked = check_proof(text, [*verifiers, *witnesses])
        if witnesses:
            opened = open_note(parse_proof(text).note, [*verifiers, *witnesses])
            signed = {signature.name for signature in opened.signatures}
            if missing := [w.name for w in witnesses if w.name not in signed]:
                raise ProofError(f"the checkpoint is not cosigned by {', '.join(missing)}")
    except (ProofError, NoteError) as exc:
        raise click.ClickException(f"proof NOT valid: {exc}") from None
    cosigned = f", cosigned by {', '.join(w.name for w in witnesses)}" if witnesses else ""
    click.echo(
        f"proof valid: entry {checked.index} is in {checked.checkpoint.origin} "
        f"at tree size {checked.checkpoint.size}{cosigned}"
    )
    click.echo(json.dumps(parse_entry(checked.entry)["body"], ensure_ascii=False, indent=2))


# --- admin ----------------------------------------------------------------------------------------


@click.group(help="Console accounts.")
def admin() -> None:
    pass


@admin.command("create-user", help="Create a console user; the password is read from stdin.")
@click.argument("name")
@click.option("--role", required=True, type=click.Choice(["admin", "analyst", "auditor"]))
@with_appcontext
def create_user_command(name: str, role: str) -> None:
    from admin.users import UserError, create_user

    if sys.stdin.isatty():
        password = getpass.getpass("Password: ")
        if getpass.getpass("Repeat password: ") != password:
            raise click.ClickException("the passwords differ; nothing was created")
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    runtime = current_runtime()
    try:
        with runtime.database.transaction() as session:
            user = create_user(session, name, role, password, runtime.clock.now())
    except UserError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"created {user.role.value} {user.name!r}")


# --- witness --------------------------------------------------------------------------------------


@click.group(help="Run a witness for a partner institution (C2SP tlog-witness); needs no registry.")
def witness() -> None:
    pass


@witness.command("keygen", help="Print a new witness key (PRIVATE+KEY+...) and its verifier key.")
@click.option("--name", required=True, help="The witness's name, e.g. sunat.gob.pe/witness.")
def witness_keygen(name: str) -> None:
    from ledger.cosignature import CosignatureSigner, generate_cosigner_key

    try:
        private = generate_cosigner_key(name)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(private)
    click.echo(CosignatureSigner.from_text(private).verifier_text())


@witness.command("serve", help="Serve POST /add-checkpoint, cosigning consistent checkpoints.")
@click.option("--name", required=True, help="The witness's name (the key's name in KEYFILE).")
@click.option(
    "--key",
    "key_file",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="File holding the witness's PRIVATE+KEY+... signing key.",
)
@click.option(
    "--log-key",
    "log_keys",
    multiple=True,
    required=True,
    help="Verifier key of a log to follow (its name is the log's origin); repeatable.",
)
@click.option("--database", help="SQLAlchemy URL (default: witness.sqlite3 beside KEYFILE).")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=7380, show_default=True)
@click.option("--workers", type=int, default=1, show_default=True)
def witness_serve(
    name: str,
    key_file: Path,
    log_keys: tuple[str, ...],
    database: str | None,
    host: str,
    port: int,
    workers: int,
) -> None:
    from gunicorn.app.base import BaseApplication

    from gateway.witness_server import create_witness_app
    from ledger.cosignature import CosignatureSigner
    from ledger.note import Verifier
    from ledger.witness import Witness, WitnessStore, default_database_url

    try:
        # The file `recpo witness keygen` wrote: the PRIVATE+KEY+... line (its verifier key, on
        # the next line, is for the registry's LEDGER_WITNESSES).
        lines = key_file.read_text(encoding="utf-8").split()
        private = next((line for line in lines if line.startswith("PRIVATE+KEY+")), "")
        signer = CosignatureSigner.from_text(private or " ".join(lines))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise click.ClickException(f"--key {key_file}: {exc}") from None
    if signer.name != name:
        raise click.ClickException(f"the key in {key_file} is named {signer.name!r}, not {name!r}")
    try:
        verifiers = [Verifier.from_text(k.strip()) for k in log_keys]
    except ValueError as exc:
        raise click.ClickException(f"--log-key: {exc}") from None
    url = database or default_database_url(key_file)
    WitnessStore.from_url(url).dispose()  # create the tables once, before any worker starts

    class Server(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            self.cfg.set("bind", f"{host}:{port}")
            self.cfg.set("workers", workers)
            self.cfg.set("accesslog", "-")
            self.cfg.set("graceful_timeout", 5)
            self.cfg.set("control_socket_disable", True)

        def load(self) -> Flask:
            # Each worker opens its own database connection; the store's compare-and-swap keeps
            # them consistent with one another.
            return create_witness_app(Witness(signer, verifiers, WitnessStore.from_url(url)))

    click.echo(f"witness {signer.verifier_text()}")
    for verifier in verifiers:
        click.echo(f"following log {verifier.name} ({verifier.text()})")
    click.echo(f"database {url}")
    click.echo(f"serving POST http://{host}:{port}/add-checkpoint (Ctrl-C stops)")
    Server().run()


# --- api ------------------------------------------------------------------------------------------


@click.group(help="Partner institutions' API tokens.")
def api() -> None:
    pass


@api.command(
    "create-token", help="Create a bearer token for INSTITUTION and print it (shown only once)."
)
@click.argument("institution")
@click.option(
    "--scopes",
    required=True,
    help="Comma-separated: transactions:read, registrants:read, flags:read, aggregates:read, "
    "personal_data.",
)
@with_appcontext
def api_create_token(institution: str, scopes: str) -> None:
    from registry.partners import TokenError, create_token

    runtime = current_runtime()
    try:
        with runtime.database.transaction() as session:
            new = create_token(session, institution, scopes, runtime.clock.now(), created_by="cli")
    except TokenError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(
        f"token {new.token.id} for {new.token.institution!r} with scopes {new.token.scopes}; "
        "it is shown only this once:",
        err=True,
    )
    click.echo(new.secret)


@api.command("revoke-token", help="Revoke a token, by its id or the prefix `list-tokens` shows.")
@click.argument("token")
@with_appcontext
def api_revoke_token(token: str) -> None:
    from registry.partners import TokenError, revoke_token

    runtime = current_runtime()
    try:
        with runtime.database.transaction() as session:
            revoked = revoke_token(session, token, runtime.clock.now())
    except TokenError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(
        f"token {revoked.id} ({revoked.token_prefix}...) of {revoked.institution!r} "
        f"revoked at {revoked.revoked_at.isoformat()}"
    )


@api.command("list-tokens", help="List the tokens: institution, scopes, last use, revocation.")
@with_appcontext
def api_list_tokens() -> None:
    from registry.partners import list_tokens

    def when(value: dt.datetime | None) -> str:
        return value.strftime("%Y-%m-%d %H:%M") if value else "-"

    with current_runtime().database.transaction() as session:
        tokens = list_tokens(session)
    click.echo("id\tprefix\tinstitution\tscopes\tcreated\tlast used\trevoked")
    for t in tokens:
        click.echo(
            f"{t.id}\t{t.token_prefix}...\t{t.institution}\t{t.scopes.replace(' ', ',')}\t"
            f"{when(t.created_at)}\t{when(t.last_used_at)}\t{when(t.revoked_at)}"
        )


COMMANDS = (db, demo, serve, worker, simulate, registry, admin, ledger, witness, api)
