"""Witness cosigning: C2SP tlog-cosignature keys and signatures, the tlog-witness service
(`recpo witness serve`), and the registry submitting its checkpoints and catching a rewrite."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gateway.witness_server import create_witness_app
from ledger import merkle
from ledger.cosignature import (
    CosignatureSigner,
    CosignatureVerifier,
    generate_cosigner_key,
    parse_cosignature_line,
    timestamp_of,
    verify_cosignatures,
)
from ledger.entries import make_entry, parse_entry
from ledger.log import Log, climb, frontier_root
from ledger.models import Entry, SignedCheckpoint
from ledger.note import (
    Checkpoint,
    MalformedNoteError,
    Signer,
    UnverifiedNoteError,
    Verifier,
    generate_signer_key,
    key_id,
    open_note,
    sign_note,
)
from ledger.verify import verify_log
from ledger.witness import (
    SIZE_CONTENT_TYPE,
    Recorded,
    Witness,
    WitnessStore,
    format_request,
)
from ledger.witnesses import (
    BackgroundSubmitter,
    LedgerCosignature,
    WitnessEndpoint,
    WitnessRefusal,
    WitnessStatus,
    cosigned_note,
    parse_witnesses,
    submit,
)
from recpo import cli

ORIGIN = "recpo.test/ledger"
SECRET = b"receipt-secret-for-tests-0123456789"
T0 = 1_800_000_000
PROJECT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def log_signer() -> Signer:
    return Signer.from_text(generate_signer_key(ORIGIN))


def _cosigner(name: str = "witness.test/w1", t: int = T0) -> CosignatureSigner:
    return CosignatureSigner.from_text(generate_cosigner_key(name), now=lambda: t)


def _tree(n: int, tag: str = "a") -> merkle.MemoryTree:
    return merkle.MemoryTree(f"{tag}{i}".encode() for i in range(n))


def _body(tree: merkle.MemoryTree, size: int, origin: str = ORIGIN) -> str:
    return Checkpoint(origin, size, tree.root(size)).body()


def _request(
    old: int,
    new: int,
    tree: merkle.MemoryTree,
    signer: Signer,
    proof: list[bytes] | None = None,
) -> bytes:
    if proof is None:
        proof = merkle.consistency_proof(tree, old, new)
    return format_request(old, proof, sign_note(_body(tree, new), signer))


# --- cosignatures ---------------------------------------------------------------------------------


class TestCosignature:
    def test_a_cosigned_checkpoint_opens_with_the_log_and_witness_keys(self, log_signer):
        cosigner = _cosigner()
        body = _body(_tree(5), 5)
        note = sign_note(body, log_signer, cosigner)
        opened = open_note(note, [log_signer.verifier(), cosigner.verifier()])
        assert [s.name for s in opened.signatures] == [ORIGIN, "witness.test/w1"]
        assert timestamp_of(opened.signatures[1]) == T0

    def test_the_signed_message_is_header_time_line_and_body(self):
        cosigner = _cosigner()
        body = _body(_tree(3), 3).encode()
        signature = cosigner.sign_at(body, 1679315147)
        assert len(signature) == 8 + 64
        assert signature[:8] == (1679315147).to_bytes(8, "big")
        public = Ed25519PublicKey.from_public_bytes(cosigner.verifier().public_key)
        public.verify(signature[8:], b"cosignature/v1\ntime 1679315147\n" + body)  # no exception

    def test_the_line_carries_key_id_timestamp_and_signature(self):
        cosigner = _cosigner()
        line = cosigner.cosign(_body(_tree(3), 3))
        assert line.startswith("\N{EM DASH} witness.test/w1 ") and line.endswith("\n")
        raw = base64.b64decode(line.split(" ")[2])
        assert len(raw) == 4 + 8 + 64
        assert int.from_bytes(raw[:4], "big") == cosigner.key_id
        assert int.from_bytes(raw[4:12], "big") == T0

    def test_the_key_id_uses_signature_type_0x04(self):
        cosigner = _cosigner()
        public = cosigner.verifier().public_key
        digest = hashlib.sha256(b"witness.test/w1\n\x04" + public).digest()
        assert cosigner.key_id == int.from_bytes(digest[:4], "big")
        assert cosigner.key_id != key_id("witness.test/w1", 0x01, public)

    def test_key_texts_round_trip(self):
        cosigner = _cosigner()
        assert cosigner.text().startswith(f"PRIVATE+KEY+witness.test/w1+{cosigner.key_id:08x}+")
        assert base64.b64decode(cosigner.text().split("+", 4)[4])[0] == 0x04
        again = CosignatureSigner.from_text(cosigner.text())
        assert again.verifier_text() == cosigner.verifier_text()
        vkey = cosigner.verifier_text()
        assert base64.b64decode(vkey.split("+", 2)[2])[0] == 0x04
        assert CosignatureVerifier.from_text(vkey) == cosigner.verifier()
        assert "seed" not in repr(cosigner) and cosigner.text() not in repr(cosigner)

    def test_a_plain_ed25519_signer_key_cosigns_with_type_0x04(self, log_signer):
        plain = generate_signer_key("witness.test/plain")
        cosigner = CosignatureSigner.from_text(plain, now=lambda: T0)
        note = sign_note(_body(_tree(2), 2), log_signer, cosigner)
        assert len(open_note(note, [cosigner.verifier()]).signatures) == 1
        # A plain (type 0x01) verifier of the same key does not match the cosignature's key ID.
        with pytest.raises(UnverifiedNoteError):
            open_note(note, [Signer.from_text(plain).verifier()])

    @pytest.mark.parametrize(
        ("text", "message"),
        [
            (Signer.from_text(generate_signer_key("w.test")).verifier_text(), "type 0x01"),
            ("w.test+00000000+" + base64.b64encode(b"\x04" + bytes(32)).decode(), "does not match"),
            ("w.test+zz+" + base64.b64encode(b"\x04" + bytes(32)).decode(), "8 lowercase hex"),
            ("w.test+12345678+" + base64.b64encode(b"\x06" + bytes(32)).decode(), "0x04"),
            ("w.test", "form"),
            (generate_cosigner_key("w.test"), "private"),
        ],
    )
    def test_bad_verifier_keys_are_refused(self, text, message):
        with pytest.raises(ValueError, match=message):
            CosignatureVerifier.from_text(text)

    def test_changes_to_body_or_timestamp_break_the_signature(self):
        cosigner = _cosigner()
        verifier = cosigner.verifier()
        body = _body(_tree(4), 4) + "an extension line\n"
        signature = cosigner.sign(body.encode())
        assert verifier.verify(body.encode(), signature)
        assert not verifier.verify(body.replace("extension", "Extension").encode(), signature)
        assert not verifier.verify(body.replace("\n4\n", "\n5\n").encode(), signature)
        later = (T0 + 1).to_bytes(8, "big") + signature[8:]
        assert not verifier.verify(body.encode(), later)
        too_late = (1 << 63).to_bytes(8, "big") + signature[8:]
        assert not verifier.verify(body.encode(), too_late)
        assert not verifier.verify(body.encode(), signature[:-1])

    def test_only_checkpoints_are_cosigned(self):
        with pytest.raises(ValueError, match="checkpoint"):
            _cosigner().sign(b"This is an example message.\n")

    def test_a_published_cosignature_verifies(self):
        # A checkpoint of the transparency.dev log arche2025h1 as served with its cosignatures;
        # remora.n621.de's key is the type 0x04 key of transparency-dev/formats' tests.
        body = (
            "arche2025h1.staging.ct.transparency.dev\n1432088532\n"
            "U7WM79jrzyhGZ5/GUBTpM7NzwdyfFx61t3RovgcC4Ro=\n"
        )
        log_sig = (
            "— arche2025h1.staging.ct.transparency.dev "
            "ui8GwCF1+kWqZrxGdhj4aX3gcw7XUlXQQabg/27lefwhUkzbC3NygNI75MdhL1bfTW9g8Ei59RA23oHP7Ry1k3ZFWwQ=\n"
        )
        cosig = (
            "— remora.n621.de 2net5wAAAABqEiEgPlfF3V06o0Y+fHM+J5J9s27wgxxcOVSpZ/2g/KSiXCg9DEZI"
            "+aVCIobWX9sXTynk5XeU/zZ0WBxtqB0DrAWfBw==\n"
        )
        witness = CosignatureVerifier.from_text(
            "remora.n621.de+da77ade7+BOvN63jn/bLvkieywe8R6UYAtVtNbZpXh34x7onlmtw2"
        )
        log_key = Verifier.from_text(
            "arche2025h1.staging.ct.transparency.dev+ba2f06c0+"
            "AU0vHmlGCS/PdN8b2OaGmKprLI8HKM+dJ472xgFYh15f"
        )
        assert witness.key_id == 0xDA77ADE7
        opened = open_note(body + "\n" + log_sig + cosig, [log_key, witness])
        assert len(opened.signatures) == 2
        [found] = verify_cosignatures(body, log_sig + cosig, witness)
        assert found.timestamp == 1779573024
        with pytest.raises(MalformedNoteError):
            verify_cosignatures(body.replace("1432088532", "1432088533"), cosig, witness)

    def test_the_timestamp_of_a_published_cosignature(self):
        # transparency-dev/formats, note/note_cosigv1_test.go, TestCoSigV1Timestamp.
        line = (
            "— w ZGhGuQAAAABm/qTPeyKXD+R2rzyQsxPiP8mXum7qq/iF0u4vanlqJyocWODBt97w9uL+8qT7S5gx"
            "EHWWOworDcFiEBYJXORmnFBOBA=="
        )
        assert timestamp_of(parse_cosignature_line(line)) == 1727964367


# --- the witness ----------------------------------------------------------------------------------


@pytest.fixture
def witness(tmp_path, log_signer) -> Iterator[Witness]:
    store = WitnessStore.from_url(f"sqlite:///{tmp_path / 'witness.sqlite3'}")
    yield Witness(_cosigner(), [log_signer.verifier()], store)
    store.dispose()


@pytest.fixture
def wclient(witness):
    return create_witness_app(witness).test_client()


def _post(client, body: bytes) -> tuple[int, str, str]:
    response = client.post("/add-checkpoint", data=body)
    return response.status_code, response.get_data(as_text=True), response.content_type


class TestWitness:
    def test_the_first_checkpoint_is_cosigned_and_recorded(self, wclient, witness, log_signer):
        tree = _tree(5)
        status, body, _ = _post(wclient, _request(0, 5, tree, log_signer))
        assert status == 200
        [found] = verify_cosignatures(_body(tree, 5), body, witness.signer.verifier())
        assert found.timestamp == T0 and body == found.line
        assert witness.store.get(ORIGIN) == Recorded(5, tree.root(5))

    def test_growth_is_cosigned_with_a_consistency_proof(self, wclient, witness, log_signer):
        tree = _tree(40)
        for old, new in [(0, 5), (5, 8), (8, 21), (21, 40)]:
            status, body, _ = _post(wclient, _request(old, new, tree, log_signer))
            assert status == 200, body
        assert witness.store.get(ORIGIN) == Recorded(40, tree.root(40))

    def test_the_same_checkpoint_is_cosigned_again(self, wclient, log_signer):
        tree = _tree(7)
        assert _post(wclient, _request(0, 7, tree, log_signer))[0] == 200
        assert _post(wclient, _request(7, 7, tree, log_signer))[0] == 200

    def test_another_old_size_gets_409_with_the_size_cosigned(self, wclient, log_signer):
        tree = _tree(9)
        assert _post(wclient, _request(0, 5, tree, log_signer))[0] == 200
        for old in (0, 3, 6):
            assert _post(wclient, _request(old, 9, tree, log_signer)) == (
                409,
                "5\n",
                SIZE_CONTENT_TYPE,
            )

    def test_a_log_never_cosigned_is_at_size_zero(self, wclient, log_signer):
        answer = _post(wclient, _request(5, 9, _tree(9), log_signer))
        assert answer == (409, "0\n", SIZE_CONTENT_TYPE)

    def test_another_root_for_the_same_size_gets_409(self, wclient, witness, log_signer):
        honest, fork = _tree(5, "a"), _tree(5, "b")
        assert _post(wclient, _request(0, 5, honest, log_signer))[0] == 200
        assert _post(wclient, _request(5, 5, fork, log_signer)) == (409, "5\n", SIZE_CONTENT_TYPE)
        assert witness.store.get(ORIGIN) == Recorded(5, honest.root(5))
        [kept] = witness.store.evidence(ORIGIN)
        assert (kept["status"], kept["reason"]) == (409, "same size, different root")

    def test_an_inconsistent_tree_gets_422_and_is_kept_as_evidence(
        self, wclient, witness, log_signer
    ):
        honest, rewritten = _tree(5, "a"), _tree(9, "b")
        assert _post(wclient, _request(0, 5, honest, log_signer))[0] == 200
        request = _request(5, 9, rewritten, log_signer)
        status, body, _ = _post(wclient, request)
        assert (status, body) == (422, "consistency proof does not verify\n")
        assert witness.store.get(ORIGIN) == Recorded(5, honest.root(5))
        [kept] = witness.store.evidence(ORIGIN)
        assert (kept["status"], kept["request"]) == (422, request.decode())

    def test_a_proof_cannot_be_bent_to_fit(self, wclient, log_signer):
        tree = _tree(9)
        assert _post(wclient, _request(0, 5, tree, log_signer))[0] == 200
        proof = merkle.consistency_proof(tree, 5, 9)
        bent = [hashlib.sha256(proof[0]).digest(), *proof[1:]]
        assert _post(wclient, _request(5, 9, tree, log_signer, bent))[0] == 422
        assert _post(wclient, _request(5, 9, tree, log_signer, proof[:-1]))[0] == 422
        assert _post(wclient, _request(5, 9, tree, log_signer, proof))[0] == 200

    def test_a_signature_by_another_key_gets_403(self, wclient, log_signer):
        impostor = Signer.from_text(generate_signer_key(ORIGIN))
        status, _, _ = _post(wclient, _request(0, 5, _tree(5), impostor))
        assert status == 403
        stranger = Signer.from_text(generate_signer_key("someone.else/key"))
        assert _post(wclient, _request(0, 5, _tree(5), stranger))[0] == 403

    def test_a_tampered_log_signature_gets_403(self, wclient, log_signer):
        note = sign_note(_body(_tree(5), 5), log_signer)
        tampered = note.replace("\n5\n", "\n6\n")
        assert _post(wclient, format_request(0, [], tampered))[0] == 403

    def test_an_unknown_origin_gets_404(self, wclient):
        other = Signer.from_text(generate_signer_key("other.example/log"))
        note = sign_note(_body(_tree(5), 5, "other.example/log"), other)
        status, body, _ = _post(wclient, format_request(0, [], note))
        assert (status, body) == (404, "unknown log origin 'other.example/log'\n")

    @pytest.mark.parametrize(
        ("label", "mangle"),
        [
            ("no blank line", lambda r: r.replace(b"\n\n", b"\n", 1)),
            ("leading zero", lambda r: r.replace(b"old 0\n", b"old 00\n", 1)),
            ("negative", lambda r: r.replace(b"old 0\n", b"old -1\n", 1)),
            ("no old line", lambda r: r.replace(b"old 0\n", b"", 1)),
            ("not base64", lambda r: r.replace(b"old 0\n", b"old 0\nnot base64!\n", 1)),
            ("short hash", lambda r: r.replace(b"old 0\n", b"old 0\nAAAA\n", 1)),
            ("proof from 0", lambda r: r.replace(b"old 0\n", b"old 0\n" + b"A" * 43 + b"=\n", 1)),
            ("not UTF-8", lambda r: r.replace(b"old 0\n", b"old 0\xff\n", 1)),
            ("old above size", lambda r: r.replace(b"old 0\n", b"old 6\n", 1)),
        ],
    )
    def test_malformed_requests_get_400(self, wclient, log_signer, label, mangle):
        request = _request(0, 5, _tree(5), log_signer)
        status, _, _ = _post(wclient, mangle(request))
        assert status == 400, label

    def test_more_than_63_proof_lines_get_400(self, wclient, log_signer):
        proof = [bytes(32)] * 64
        assert _post(wclient, _request(0, 5, _tree(5), log_signer, proof))[0] == 400

    def test_a_signed_note_that_is_no_checkpoint_gets_400(self, wclient, log_signer):
        note = sign_note(f"{ORIGIN}\nfive\nroot\n", log_signer)
        assert _post(wclient, format_request(0, [], note))[0] == 400

    def test_the_empty_tree_has_the_empty_root(self, wclient, witness, log_signer):
        empty = sign_note(Checkpoint(ORIGIN, 0, merkle.EMPTY_ROOT).body(), log_signer)
        assert _post(wclient, format_request(0, [], empty))[0] == 200
        wrong = sign_note(Checkpoint(ORIGIN, 0, bytes(32)).body(), log_signer)
        assert _post(wclient, format_request(0, [], wrong))[0] == 422
        # Every tree extends the empty one: no proof is needed from size 0.
        assert _post(wclient, _request(0, 5, _tree(5), log_signer))[0] == 200
        assert witness.store.get(ORIGIN).size == 5

    def test_get_shows_the_keys(self, wclient, witness, log_signer):
        text = wclient.get("/").get_data(as_text=True)
        assert witness.signer.verifier_text() in text
        assert log_signer.verifier_text() in text
        assert f"log {ORIGIN}: nothing cosigned yet" in text

    def test_get_shows_what_was_cosigned_and_an_alarm_once_a_history_is_refused(
        self, wclient, witness, log_signer, caplog
    ):
        tree, rewritten = _tree(9, "a"), _tree(9, "b")
        assert _post(wclient, _request(0, 5, tree, log_signer))[0] == 200
        text = wclient.get("/").get_data(as_text=True)
        assert f"log {ORIGIN}: cosigned up to size 5 (20" in text  # (and when, ISO 8601)
        assert "ALARM" not in text
        assert _post(wclient, _request(5, 9, rewritten, log_signer))[0] == 422
        assert _post(wclient, _request(5, 5, rewritten, log_signer))[0] == 409
        text = wclient.get("/").get_data(as_text=True)
        assert f"log {ORIGIN}: cosigned up to size 5" in text
        [alarm] = [line for line in text.splitlines() if line.startswith("ALARM")]
        assert alarm.startswith(
            f"ALARM log {ORIGIN}: 2 checkpoint(s) signed by the log refused as another history; "
            "latest 20"
        )
        assert alarm.endswith(
            ": 409 same size, different root (the signed requests are kept as evidence)"
        )
        warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
        assert warnings == [
            f"refused a checkpoint signed by {ORIGIN}: 422 consistency proof does not verify "
            "(evidence kept)",
            f"refused a checkpoint signed by {ORIGIN}: 409 same size, different root "
            "(evidence kept)",
        ]

    def test_concurrent_requests_advance_the_record_once(self, witness, log_signer):
        tree = _tree(20)
        app = create_witness_app(witness)
        assert _post(app.test_client(), _request(0, 5, tree, log_signer))[0] == 200
        results: dict[int, tuple[int, str, str]] = {}
        start = threading.Barrier(8)

        def race(new: int) -> None:
            client = app.test_client()
            start.wait()
            results[new] = _post(client, _request(5, new, tree, log_signer))

        threads = [threading.Thread(target=race, args=(n,)) for n in range(6, 14)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        winners = [n for n, (status, _, _) in results.items() if status == 200]
        assert len(winners) == 1
        [winner] = winners
        for new, answer in results.items():
            if new != winner:
                assert answer == (409, f"{winner}\n", SIZE_CONTENT_TYPE)
        assert witness.store.get(ORIGIN) == Recorded(winner, tree.root(winner))

    def test_the_store_is_a_compare_and_swap(self, witness):
        store, now = witness.store, witness.now()
        a5, b5, a9 = Recorded(5, b"a" * 32), Recorded(5, b"b" * 32), Recorded(9, b"c" * 32)
        assert store.advance(ORIGIN, None, a5, "note", now)
        assert not store.advance(ORIGIN, None, a9, "note", now)
        assert not store.advance(ORIGIN, b5, a9, "note", now)
        assert store.advance(ORIGIN, a5, a9, "note", now)
        assert not store.advance(ORIGIN, a5, Recorded(7, b"d" * 32), "note", now)  # no rollback
        assert store.get(ORIGIN) == a9


# --- over HTTP: `recpo witness serve` ---------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class RunningWitness:
    url: str
    verifier: CosignatureVerifier
    database_url: str

    @property
    def name(self) -> str:
        return self.verifier.name

    @property
    def key(self) -> str:
        return self.verifier.text()


@contextmanager
def _witness_process(tmp_path: Path, name: str, log_key: str) -> Iterator[RunningWitness]:
    """Run `recpo witness serve` with a new key in a folder of its own (its database goes there)."""
    folder = tmp_path / name.replace("/", "_")
    folder.mkdir()
    key_text = generate_cosigner_key(name)
    key_file = folder / "witness.key"  # as `recpo witness keygen > witness.key` writes it
    verifier_text = CosignatureSigner.from_text(key_text).verifier_text()
    key_file.write_text(f"{key_text}\n{verifier_text}\n", encoding="utf-8")
    port = _free_port()
    output = folder / "server.log"
    command = [str(Path(sys.executable).parent / "recpo"), "witness", "serve"]
    command += ["--name", name, "--key", str(key_file), "--log-key", log_key, "--port", str(port)]
    with output.open("wb") as out:
        process = subprocess.Popen(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=tmp_path,
            env={**os.environ, "PYTHONPATH": str(PROJECT)},
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if requests.get(url + "/", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"witness did not start:\n{output.read_text()}")
            time.sleep(0.1)
        yield RunningWitness(
            url,
            CosignatureSigner.from_text(key_text).verifier(),
            f"sqlite:///{folder / 'witness.sqlite3'}",
        )
    finally:
        process.terminate()
        process.wait(timeout=30)


class TestOverHTTP:
    def test_every_answer_of_the_spec(self, tmp_path, log_signer):
        tree, rewritten = _tree(12, "a"), _tree(12, "b")
        other = Signer.from_text(generate_signer_key("other.example/log"))
        impostor = Signer.from_text(generate_signer_key(ORIGIN))
        with _witness_process(tmp_path, "witness.test/http", log_signer.verifier_text()) as w:

            def post(body: bytes) -> requests.Response:
                return requests.post(w.url + "/add-checkpoint", data=body, timeout=10)

            first = post(_request(0, 5, tree, log_signer))
            assert first.status_code == 200
            assert verify_cosignatures(_body(tree, 5), first.text, w.verifier)
            grown = post(_request(5, 9, tree, log_signer))
            assert grown.status_code == 200
            assert verify_cosignatures(_body(tree, 9), grown.text, w.verifier)

            conflict = post(_request(5, 12, tree, log_signer))
            assert (conflict.status_code, conflict.text) == (409, "9\n")
            assert conflict.headers["Content-Type"] == SIZE_CONTENT_TYPE
            fork = post(_request(9, 9, rewritten, log_signer))
            assert (fork.status_code, fork.text) == (409, "9\n")
            assert post(_request(9, 12, rewritten, log_signer)).status_code == 422
            assert post(_request(9, 12, tree, impostor)).status_code == 403
            note = sign_note(_body(tree, 12, "other.example/log"), other)
            assert post(format_request(0, [], note)).status_code == 404
            assert post(b"old 9\n").status_code == 400
            assert post(_request(12, 9, tree, log_signer, [])).status_code == 400

            assert post(_request(9, 12, tree, log_signer)).status_code == 200
            store = WitnessStore.from_url(w.database_url)
            try:
                assert store.get(ORIGIN) == Recorded(12, tree.root(12))
                assert [e["status"] for e in store.evidence(ORIGIN)] == [409, 422]
            finally:
                store.dispose()

    def test_serve_refuses_a_key_of_another_name(self, tmp_path, log_signer):
        key_file = tmp_path / "witness.key"
        key_file.write_text(generate_cosigner_key("witness.test/a"), encoding="utf-8")
        result = CliRunner().invoke(
            cli.witness,
            [
                *("serve", "--name", "witness.test/b", "--key", str(key_file)),
                *("--log-key", log_signer.verifier_text()),
            ],
        )
        assert result.exit_code == 1
        assert "is named 'witness.test/a', not 'witness.test/b'" in result.output

    def test_keygen_prints_a_witness_key_pair(self):
        result = CliRunner().invoke(cli.witness, ["keygen", "--name", "witness.test/k"])
        assert result.exit_code == 0, result.output
        private, public = result.output.splitlines()
        assert CosignatureSigner.from_text(private).verifier_text() == public
        assert CosignatureVerifier.from_text(public).name == "witness.test/k"


# --- the registry's side --------------------------------------------------------------------------


class TestConfiguration:
    def test_pairs_are_parsed(self):
        a, b = _cosigner("w.test/a").verifier(), _cosigner("w.test/b").verifier()
        parsed = parse_witnesses(f" https://a.example/w/ {a.text()} ;; http://b:7380 {b.text()} ;")
        assert parsed == [
            WitnessEndpoint("https://a.example/w", a),
            WitnessEndpoint("http://b:7380", b),
        ]
        assert parse_witnesses(None) == [] and parse_witnesses("  ") == []

    @pytest.mark.parametrize(
        ("text", "message"),
        [
            ("https://a.example", "expected '<url> <verifier key>'"),
            ("ftp://a.example KEY", "not an http"),
            ("https://a.example w+00000000+AAAA", "item 1"),
            (
                "https://a.example "
                + Signer.from_text(generate_signer_key("w.test")).verifier_text(),
                "type 0x01",
            ),
        ],
    )
    def test_bad_configuration_is_refused(self, text, message):
        with pytest.raises(ValueError, match=message):
            parse_witnesses(text)

    def test_a_witness_cannot_be_listed_twice(self):
        key = _cosigner("w.test/a").verifier_text()
        with pytest.raises(ValueError, match="twice"):
            parse_witnesses(f"https://a {key}; https://b {key}")


def _append(database, log: Log, count: int) -> None:
    with database.transaction() as session:
        start = session.scalar(sa.select(sa.func.count()).select_from(Entry)) or 0
        for i in range(start, start + count):
            log.append(session, "test", {"n": i})
    log.sequence(database)


def _results(outcomes) -> list[tuple[str, int, str]]:
    return [(o.witness, o.size, o.result) for o in outcomes]


def _statuses(database) -> dict[str, WitnessStatus]:
    with database.transaction() as session:
        return {s.witness_name: s for s in session.scalars(sa.select(WitnessStatus))}


def _rewrite_history(database, signer: Signer, index: int, body: dict) -> None:
    """What a malicious operator with superuser rights does: change entry `index`, then rebuild
    every later entry's chain link, every node, and re-sign every checkpoint with the log key."""
    with database.transaction() as session:
        rows = session.execute(sa.select(Entry.idx, Entry.kind, Entry.entry).order_by(Entry.idx))
        rows = [(idx, kind, bytes(data)) for idx, kind, data in rows]
        sizes = set(session.scalars(sa.select(SignedCheckpoint.size)))
    prev, frontier, entries, nodes, roots = None, {}, [], [], {}
    for idx, kind, data in rows:
        new_body = body if idx == index else parse_entry(data)["body"]
        entry = make_entry(kind, new_body, prev)
        leaf = merkle.leaf_hash(entry)
        entries.append({"i": idx, "e": entry, "l": leaf})
        nodes.extend({"lv": lv, "i": i, "h": h} for lv, i, h in climb(frontier, idx, leaf))
        prev = leaf
        if idx + 1 in sizes:
            roots[idx + 1] = frontier_root(frontier)
    tables = ("ledger_entries", "ledger_nodes", "ledger_checkpoints")
    with database.transaction() as session:
        for table in tables:
            session.execute(sa.text(f"ALTER TABLE {table} DISABLE TRIGGER USER"))
        session.execute(
            sa.text("UPDATE ledger_entries SET entry = :e, leaf_hash = :l WHERE idx = :i"), entries
        )
        session.execute(sa.text("DELETE FROM ledger_nodes"))
        session.execute(
            sa.text("INSERT INTO ledger_nodes (level, idx, hash) VALUES (:lv, :i, :h)"), nodes
        )
        for size, root in roots.items():
            note = sign_note(Checkpoint(ORIGIN, size, root).body(), signer)
            session.execute(
                sa.text("UPDATE ledger_checkpoints SET root = :r, note = :n WHERE size = :s"),
                {"r": root, "n": note, "s": size},
            )
        session.execute(sa.text("UPDATE ledger_state SET last_leaf_hash = :p"), {"p": prev})
        for table in tables:
            for trigger in ("append_only", "no_truncate"):
                session.execute(
                    sa.text(f"ALTER TABLE {table} ENABLE ALWAYS TRIGGER {table}_{trigger}")
                )


class TestRegistrySubmission:
    def test_two_witnesses_cosign_a_growing_log(
        self, committing_database, log_signer, clock, tmp_path
    ):
        database = committing_database
        log_key = log_signer.verifier_text()
        with (
            _witness_process(tmp_path, "w1.test/witness", log_key) as w1,
            _witness_process(tmp_path, "w2.test/witness", log_key) as w2,
        ):
            witnesses = parse_witnesses(f"{w1.url} {w1.key}; {w2.url}/ {w2.key}")
            log = Log(ORIGIN, log_signer, SECRET, clock)
            for count, size in [(10, 10), (7, 17), (13, 30)]:
                _append(database, log, count)
                outcomes = submit(database, log, witnesses)
                assert _results(outcomes) == [
                    (w1.name, size, "cosigned"),
                    (w2.name, size, "cosigned"),
                ]
            # Nothing new: nothing is sent.
            assert _results(submit(database, log, witnesses)) == [
                (w1.name, 30, "already cosigned"),
                (w2.name, 30, "already cosigned"),
            ]

            with database.transaction() as session:
                note = cosigned_note(session)
                sizes = sorted(set(session.scalars(sa.select(LedgerCosignature.size))))
            opened = open_note(note, [log_signer.verifier(), w1.verifier, w2.verifier])
            assert [s.name for s in opened.signatures] == [ORIGIN, w1.name, w2.name]
            assert sizes == [10, 17, 30]
            statuses = _statuses(database)
            for w in (w1, w2):
                status = statuses[w.name]
                assert (status.cosigned_size, status.last_status, status.alarm) == (30, 200, False)
                assert status.last_error is None and status.url == w.url

            # The registry loses track of where the witnesses stand: each answers 409 with the
            # size it cosigned, and the submission is retried from there.
            with database.transaction() as session:
                session.execute(sa.delete(WitnessStatus))
            _append(database, log, 5)
            assert _results(submit(database, log, witnesses)) == [
                (w1.name, 35, "cosigned"),
                (w2.name, 35, "cosigned"),
            ]
            assert {s.cosigned_size for s in _statuses(database).values()} == {35}
            for w in (w1, w2):
                store = WitnessStore.from_url(w.database_url)
                try:
                    assert store.get(ORIGIN).size == 35
                finally:
                    store.dispose()

    def test_an_unreachable_witness_is_recorded_without_alarm(
        self, committing_database, log_signer, clock
    ):
        log = Log(ORIGIN, log_signer, SECRET, clock)
        _append(committing_database, log, 3)
        dead = WitnessEndpoint(f"http://127.0.0.1:{_free_port()}", _cosigner().verifier())
        [outcome] = submit(committing_database, log, [dead], timeout=2)
        assert (outcome.result, outcome.status) == ("unreachable", None)
        status = _statuses(committing_database)[dead.name]
        assert status.cosigned_size is None and not status.alarm
        assert "ConnectionError" in status.last_error

    def test_a_kicked_submission_can_be_awaited(self, committing_database, log_signer, clock):
        """What a short-lived process (`recpo simulate`) does at exit, so its kick is not lost."""
        log = Log(ORIGIN, log_signer, SECRET, clock)
        _append(committing_database, log, 3)
        dead = WitnessEndpoint(f"http://127.0.0.1:{_free_port()}", _cosigner().verifier())
        submitter = BackgroundSubmitter(committing_database, log, [dead], timeout=2)
        assert submitter.wait(0)  # nothing asked for
        submitter.kick()
        assert submitter.wait(30)
        status = _statuses(committing_database)[dead.name]
        assert "ConnectionError" in status.last_error

    def test_a_rewritten_history_is_refused_by_both_witnesses(
        self, committing_database, log_signer, clock, tmp_path
    ):
        database = committing_database
        log_key = log_signer.verifier_text()
        with (
            _witness_process(tmp_path, "w1.test/witness", log_key) as w1,
            _witness_process(tmp_path, "w2.test/witness", log_key) as w2,
        ):
            witnesses = parse_witnesses(f"{w1.url} {w1.key}; {w2.url} {w2.key}")
            log = Log(ORIGIN, log_signer, SECRET, clock)
            for count in (20, 10):
                _append(database, log, count)
                assert {o.result for o in submit(database, log, witnesses)} == {"cosigned"}

            _rewrite_history(database, log_signer, 3, {"n": 3, "note": "rewritten"})
            with database.transaction() as session:
                assert parse_entry(session.get(Entry, 3).entry)["body"]["note"] == "rewritten"
                # The rewrite is consistent in itself: the registry's own check cannot see it.
                report = verify_log(session, log_signer.verifier(), ORIGIN)
                assert report.ok and (report.entries, report.checkpoints) == (30, 2)

            clock.advance(dt.timedelta(minutes=5))
            log = Log(ORIGIN, log_signer, SECRET, clock)  # a fresh process
            _append(database, log, 5)
            outcomes = submit(database, log, witnesses)
            assert [(o.witness, o.size, o.result, o.status) for o in outcomes] == [
                (w1.name, 35, "refused", 422),
                (w2.name, 35, "refused", 422),
            ]

            statuses = _statuses(database)
            with database.transaction() as session:
                refusals = list(session.scalars(sa.select(WitnessRefusal)))
                cosigned = set(session.scalars(sa.select(LedgerCosignature.size)))
                note = cosigned_note(session)
            for w in (w1, w2):
                status = statuses[w.name]
                assert status.alarm and status.alarm_since == clock.now()
                assert (status.cosigned_size, status.last_status) == (30, 422)
                assert "consistency proof does not verify" in status.last_error
                store = WitnessStore.from_url(w.database_url)
                try:
                    assert store.get(ORIGIN).size == 30
                    assert [e["status"] for e in store.evidence(ORIGIN)] == [422]
                finally:
                    store.dispose()
            assert sorted((r.witness_name, r.size, r.old_size, r.status) for r in refusals) == [
                (w1.name, 35, 30, 422),
                (w2.name, 35, 30, 422),
            ]
            assert 35 not in cosigned
            opened = open_note(note, [log_signer.verifier(), w1.verifier, w2.verifier])
            assert [s.name for s in opened.signatures] == [ORIGIN]

            # Trying again changes nothing: the alarm stays, and each refusal is kept.
            outcomes = submit(database, log, witnesses)
            assert {(o.result, o.status) for o in outcomes} == {("refused", 422)}
            assert all(s.alarm for s in _statuses(database).values())
