"""Offline proof bundles (C2SP tlog-proof): a receipt that verifies with no network and no database.

    c2sp.org/tlog-proof@v1
    extra <base64 of the entry's exact bytes>
    index <N>
    <base64 inclusion-path hash>
    ...
    <blank line>
    <the signed checkpoint note, with any cosignatures>

The entry travels as the `extra` data, so whoever holds the bundle and the log's verifier key
(for example a refinery or a customs officer) can check both what was recorded and that it is in
the log the checkpoint commits to.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable
from dataclasses import dataclass

from ledger import merkle
from ledger.note import Checkpoint, NoteError, NoteVerifier, open_checkpoint

HEADER = "c2sp.org/tlog-proof@v1"


class ProofError(ValueError):
    """A proof bundle that is malformed or does not verify; the message says why."""


@dataclass(frozen=True)
class ProofBundle:
    """A parsed bundle (not yet verified)."""

    entry: bytes
    index: int
    path: tuple[bytes, ...]
    note: str


@dataclass(frozen=True)
class CheckedProof:
    """A bundle that verified: the entry, its index, and the checkpoint it is included in."""

    entry: bytes
    index: int
    checkpoint: Checkpoint


def build_proof(entry: bytes, index: int, path: Iterable[bytes], note: str) -> str:
    """Write the bundle for `entry` at `index`, with its inclusion path and signed checkpoint."""
    lines = [HEADER, f"extra {base64.b64encode(entry).decode()}", f"index {index}"]
    lines += [base64.b64encode(h).decode() for h in path]
    return "\n".join(lines) + "\n\n" + note


def parse_proof(text: str) -> ProofBundle:
    """Parse a bundle; raise ProofError naming what is malformed."""
    head, sep, note = text.partition("\n\n")
    if not sep or not note:
        raise ProofError("no checkpoint after the proof lines (a blank line must separate them)")
    lines = head.split("\n")
    if lines[0] != HEADER:
        raise ProofError(f"the first line must be {HEADER}")
    extra, index, position = None, None, 1
    if position < len(lines) and lines[position].startswith("extra "):
        extra = _b64(lines[position][6:], "extra")
        position += 1
    if position >= len(lines) or not lines[position].startswith("index "):
        raise ProofError("missing the index line")
    digits = lines[position][6:]
    if not digits.isascii() or not digits.isdigit() or (len(digits) > 1 and digits[0] == "0"):
        raise ProofError(f"index {digits!r} is not a decimal number")
    index = int(digits)
    path = tuple(_b64(line, "a proof hash") for line in lines[position + 1 :])
    if any(len(h) != merkle.HASH_SIZE for h in path):
        raise ProofError("a proof hash is not 32 bytes")
    if extra is None:
        raise ProofError("the bundle does not carry the entry (extra line)")
    return ProofBundle(extra, index, path, note)


def check_proof(
    text: str, verifiers: Iterable[NoteVerifier], origin: str | None = None
) -> CheckedProof:
    """Verify a bundle against trusted keys; return what it proves or raise ProofError."""
    bundle = parse_proof(text)
    try:
        checkpoint, _ = open_checkpoint(bundle.note, verifiers, origin)
    except NoteError as exc:
        raise ProofError(f"checkpoint: {exc}") from None
    leaf = merkle.leaf_hash(bundle.entry)
    if not merkle.verify_inclusion(
        leaf, bundle.index, checkpoint.size, list(bundle.path), checkpoint.root
    ):
        raise ProofError(
            f"entry {bundle.index} is not included in the checkpointed tree of size "
            f"{checkpoint.size}"
        )
    return CheckedProof(bundle.entry, bundle.index, checkpoint)


def _b64(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ProofError(f"{what} is not valid base64") from None
