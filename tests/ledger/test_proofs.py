"""Offline proof bundles: built by the service, checked with nothing but the log's key."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from gateway.ledger_api import current_log
from ledger import merkle
from ledger.cosignature import CosignatureSigner, generate_cosigner_key
from ledger.entries import make_entry
from ledger.note import Checkpoint, Signer, generate_signer_key, sign_note
from ledger.proofs import HEADER, ProofError, build_proof, check_proof, parse_proof
from ledger.receipts import damm_check_digit
from recpo import cli
from recpo.runtime import current_runtime

ORIGIN = "recpo.test/ledger"


@pytest.fixture(scope="module")
def signer() -> Signer:
    return Signer.from_text(generate_signer_key(ORIGIN))


@pytest.fixture
def bundle(signer):
    tree = merkle.MemoryTree()
    entries = []
    prev = None
    for i in range(13):
        data = make_entry("test", {"n": i}, prev)
        entries.append(data)
        prev = merkle.leaf_hash(data)
        tree.append(data)
    note = sign_note(Checkpoint(ORIGIN, 13, tree.root()).body(), signer)
    return build_proof(entries[6], 6, merkle.inclusion_proof(tree, 6, 13), note), entries


class TestBundles:
    def test_round_trip(self, bundle, signer):
        text, entries = bundle
        assert text.startswith(HEADER + "\nextra ")
        checked = check_proof(text, [signer.verifier()], ORIGIN)
        assert (checked.index, checked.entry) == (6, entries[6])
        assert checked.checkpoint.size == 13

    def test_another_entry_does_not_verify(self, bundle, signer):
        text, entries = bundle
        other = build_proof(entries[7], 6, parse_proof(text).path, parse_proof(text).note)
        with pytest.raises(ProofError, match="not included"):
            check_proof(other, [signer.verifier()])

    def test_wrong_index_does_not_verify(self, bundle, signer):
        text, _ = bundle
        with pytest.raises(ProofError, match="not included"):
            check_proof(text.replace("index 6", "index 5"), [signer.verifier()])

    def test_another_key_is_refused(self, bundle):
        text, _ = bundle
        stranger = Signer.from_text(generate_signer_key(ORIGIN))
        with pytest.raises(ProofError, match="checkpoint"):
            check_proof(text, [stranger.verifier()])

    @pytest.mark.parametrize(
        ("change", "message"),
        [
            (lambda t: t.replace(HEADER, "c2sp.org/tlog-proof@v2"), "first line"),
            (lambda t: t.replace("index 6", "index 06"), "not a decimal"),
            (lambda t: t.split("\n\n")[0], "no checkpoint"),
            (
                lambda t: "\n".join(line for line in t.split("\n") if not line.startswith("extra")),
                "extra",
            ),
            (lambda t: t.replace("index 6\n", "index 6\n!!!!\n"), "base64"),
        ],
    )
    def test_malformed(self, bundle, signer, change, message):
        text, _ = bundle
        with pytest.raises(ProofError, match=message):
            check_proof(change(text), [signer.verifier()])


class TestServedAndChecked:
    def test_receipt_proof_checks_offline(self, app, client, tmp_path: Path):
        with app.app_context():
            log, database = current_log(), current_runtime().database
            with database.transaction() as session:
                for i in range(5):
                    pending = log.append(session, "test", {"n": i})
            log.sequence(database)
            key = log.signer.verifier_text()
        response = client.get(f"/r/{pending.receipt_code}/proof")
        assert response.status_code == 200
        assert "attachment" in response.headers["Content-Disposition"]
        path = tmp_path / "receipt.tlog-proof"
        path.write_text(response.get_data(as_text=True))
        # No database, no network, no instance folder: only the file and the key.
        env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
        env["DATABASE_URL"] = "postgresql+psycopg://nobody@127.0.0.1:1/none"
        env["RECPO_INSTANCE_PATH"] = str(tmp_path / "never")
        recpo = str(Path(sys.executable).parent / "recpo")
        result = subprocess.run(
            [recpo, "ledger", "check-proof", str(path), "--key", key],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        assert "proof valid: entry 4" in result.stdout
        assert '"n": 4' in result.stdout
        assert not (tmp_path / "never").exists()
        tampered = tmp_path / "tampered.tlog-proof"
        tampered.write_text(path.read_text().replace("index 4", "index 3"))
        result = subprocess.run(
            [recpo, "ledger", "check-proof", str(tampered), "--key", key],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 1
        assert "proof NOT valid" in result.stderr

    def test_unknown_and_malformed_codes(self, client):
        assert client.get("/r/1234/proof").status_code == 400
        code = "123456789012345"
        assert client.get(f"/r/{code + damm_check_digit(code)}/proof").status_code == 404


class TestWitnessCosignature:
    """`check-proof --witness KEY` also requires that witness's cosignature on the checkpoint."""

    @pytest.fixture
    def witness(self) -> CosignatureSigner:
        return CosignatureSigner.from_text(generate_cosigner_key("witness.test/w"))

    def _files(self, tmp_path: Path, bundle, signer, cosigners) -> tuple[Path, str]:
        text, _ = bundle
        parsed = parse_proof(text)
        body = parsed.note.split("\n\n")[0] + "\n"
        note = parsed.note + "".join(c.cosign(body) for c in cosigners)
        path = tmp_path / "receipt.proof"
        path.write_text(build_proof(parsed.entry, parsed.index, parsed.path, note))
        return path, signer.verifier_text()

    def test_a_checkpoint_cosigned_by_the_witness_passes(self, tmp_path, bundle, signer, witness):
        path, key = self._files(tmp_path, bundle, signer, [witness])
        result = CliRunner().invoke(
            cli.ledger,
            ["check-proof", str(path), "--key", key, "--witness", witness.verifier_text()],
        )
        assert result.exit_code == 0, result.output
        assert result.output.startswith(
            f"proof valid: entry 6 is in {ORIGIN} at tree size 13, cosigned by witness.test/w\n"
        )

    @pytest.mark.parametrize("cosigned_by", ["nobody", "another key of the same name"])
    def test_without_that_witness_the_proof_is_refused(
        self, tmp_path, bundle, signer, witness, cosigned_by
    ):
        cosigners = []
        if cosigned_by != "nobody":
            cosigners = [CosignatureSigner.from_text(generate_cosigner_key("witness.test/w"))]
        path, key = self._files(tmp_path, bundle, signer, cosigners)
        result = CliRunner().invoke(
            cli.ledger,
            ["check-proof", str(path), "--key", key, "--witness", witness.verifier_text()],
        )
        assert result.exit_code == 1
        assert "proof NOT valid: the checkpoint is not cosigned by witness.test/w" in result.output
        # Without --witness only the log's signature is required.
        plain = CliRunner().invoke(cli.ledger, ["check-proof", str(path), "--key", key])
        assert plain.exit_code == 0, plain.output

    def test_a_bad_witness_key_is_named(self, tmp_path, bundle, signer):
        path, key = self._files(tmp_path, bundle, signer, [])
        result = CliRunner().invoke(
            cli.ledger, ["check-proof", str(path), "--key", key, "--witness", "nonsense"]
        )
        assert result.exit_code == 1 and "--witness:" in result.output
