"""C2SP tlog-cosignature, Ed25519 type (signature type 0x04): a witness's timestamped cosignature.

A cosignature is a signed-note signature line over a checkpoint, so `CosignatureSigner` and
`CosignatureVerifier` implement `ledger.note.NoteSigner` / `NoteVerifier` and work with
`sign_note` and `open_note` unchanged. What differs from a plain Ed25519 note signature
(c2sp.org/tlog-cosignature):

- the key ID is SHA-256(<name> || 0x0A || 0x04 || 32-byte public key)[:4];
- the signature bytes are `timestamped_signature`: a u64 big-endian POSIX timestamp (at most
  2^63 - 1) followed by the 64-byte Ed25519 signature, so a signature line carries
  base64(key ID || timestamp || signature), 76 bytes;
- the signed message is `cosignature/v1\\n`, `time <timestamp>\\n`, then the whole checkpoint
  body (extension lines included, signature lines not).

Keys use the signed-note text forms with type byte 0x04: `<name>+<id>+base64(0x04 || key)` for
the verifier and `PRIVATE+KEY+<name>+<id>+base64(0x04 || seed)` for the signer. A signer key of
type 0x01 (as `recpo ledger keygen` or Go's `note.GenerateKey` write) is accepted too, as Go's
transparency-dev/formats does; its cosignatures still use type 0x04.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ledger.note import (
    ALG_COSIGNATURE_V1,
    ALG_ED25519,
    MalformedNoteError,
    Signature,
    _parse_signature_line,
    check_name,
    key_id,
    key_text,
    parse_checkpoint,
    parse_key_text,
    public_key_id,
)

HEADER = b"cosignature/v1\n"
TIMESTAMP_SIZE = 8
SIGNATURE_SIZE = TIMESTAMP_SIZE + 64
MAX_TIMESTAMP = (1 << 63) - 1


def signed_message(timestamp: int, body: bytes) -> bytes:
    """Return the message an Ed25519 cosignature signs: header, time line, checkpoint body.

    Raise ValueError if `body` is not a checkpoint body or the timestamp is out of range.
    """
    if not isinstance(timestamp, int) or isinstance(timestamp, bool):
        raise ValueError("cosignature timestamp must be an integer")
    if not 0 <= timestamp <= MAX_TIMESTAMP:
        raise ValueError("cosignature timestamp must be between 0 and 2^63 - 1")
    try:
        parse_checkpoint(body.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ValueError("checkpoint body is not UTF-8") from exc
    return HEADER + f"time {timestamp}\n".encode() + body


@dataclass(frozen=True)
class CosignatureVerifier:
    """Verifies a witness's Ed25519 cosignatures (type 0x04)."""

    name: str
    public_key: bytes
    key_id: int = field(init=False)

    def __post_init__(self) -> None:
        """Validate the name and key and derive the cosignature key ID."""
        key = public_key_id(self.name, ALG_COSIGNATURE_V1, self.public_key)
        object.__setattr__(self, "key_id", key)

    @classmethod
    def from_text(cls, text: str) -> CosignatureVerifier:
        """Parse `<name>+<hex key ID>+<base64(0x04 || public key)>`."""
        name, key_id_value, alg, key = parse_key_text(text.strip(), "witness key", private=False)
        if alg == ALG_ED25519:
            raise ValueError(
                "this is a plain Ed25519 note key (type 0x01); a witness key has type 0x04 "
                "(`recpo witness keygen` prints it)"
            )
        if alg != ALG_COSIGNATURE_V1:
            raise ValueError("witness key is not an Ed25519 cosignature key (0x04 and 32 bytes)")
        verifier = cls(name, key)
        if verifier.key_id != key_id_value:
            raise ValueError("witness key ID does not match the name and public key")
        return verifier

    def text(self) -> str:
        """Return the verifier key text (type 0x04)."""
        return key_text(self.name, self.key_id, ALG_COSIGNATURE_V1, self.public_key)

    def verify(self, text: bytes, signature: bytes) -> bool:
        """Return whether `signature` (timestamp || Ed25519 signature) cosigns checkpoint `text`."""
        if len(signature) != SIGNATURE_SIZE:
            return False
        timestamp = int.from_bytes(signature[:TIMESTAMP_SIZE], "big")
        try:
            message = signed_message(timestamp, text)
        except ValueError:
            return False
        try:
            Ed25519PublicKey.from_public_bytes(self.public_key).verify(
                signature[TIMESTAMP_SIZE:], message
            )
        except (InvalidSignature, ValueError):
            return False
        return True


def _unix_now() -> int:
    return int(time.time())


class CosignatureSigner:
    """Produces a witness's timestamped Ed25519 cosignatures (type 0x04)."""

    def __init__(self, name: str, seed: bytes, now: Callable[[], int] = _unix_now) -> None:
        """Create a cosigner named `name` from a 32-byte Ed25519 seed; `now` gives POSIX seconds."""
        check_name(name)
        if len(seed) != 32:
            raise ValueError("Ed25519 seed must be 32 bytes")
        self._name = name
        self._seed = bytes(seed)
        self._key = Ed25519PrivateKey.from_private_bytes(seed)
        self._verifier = CosignatureVerifier(name, self._key.public_key().public_bytes_raw())
        self._now = now

    def __repr__(self) -> str:
        """Show the public identity only."""
        return f"CosignatureSigner({self._verifier.text()!r})"

    @property
    def name(self) -> str:
        """Return the witness's key name."""
        return self._name

    @property
    def key_id(self) -> int:
        """Return the cosignature key ID (computed with type byte 0x04)."""
        return self._verifier.key_id

    @classmethod
    def from_text(cls, text: str, now: Callable[[], int] = _unix_now) -> CosignatureSigner:
        """Parse `PRIVATE+KEY+<name>+<id>+base64(0x04 || seed)` (or a type 0x01 note key)."""
        name, key_id_value, alg, seed = parse_key_text(text.strip(), "signer key", private=True)
        if alg not in (ALG_ED25519, ALG_COSIGNATURE_V1):
            raise ValueError("signer key is not an Ed25519 key (0x04 or 0x01, then a 32-byte seed)")
        signer = cls(name, seed, now)
        if key_id(name, alg, signer.verifier().public_key) != key_id_value:
            raise ValueError("signer key ID does not match the name and key")
        return signer

    def text(self) -> str:
        """Return the private key text (type 0x04)."""
        return key_text(self._name, self.key_id, ALG_COSIGNATURE_V1, self._seed, private=True)

    def verifier(self) -> CosignatureVerifier:
        """Return the matching verifier."""
        return self._verifier

    def verifier_text(self) -> str:
        """Return the matching verifier key text."""
        return self._verifier.text()

    def sign_at(self, text: bytes, timestamp: int) -> bytes:
        """Return timestamp (8 bytes, big-endian) || Ed25519 signature over the cosigned message."""
        message = signed_message(timestamp, text)
        return timestamp.to_bytes(TIMESTAMP_SIZE, "big") + self._key.sign(message)

    def sign(self, text: bytes) -> bytes:
        """Cosign checkpoint body `text` as of now (NoteSigner protocol)."""
        return self.sign_at(text, self._now())

    def cosign(self, body: str, timestamp: int | None = None) -> str:
        """Return the cosignature line (`— <name> <base64>\\n`) over checkpoint `body`."""
        when = self._now() if timestamp is None else timestamp
        return Signature(self._name, self.key_id, self.sign_at(body.encode(), when)).line()


def generate_cosigner_key(name: str) -> str:
    """Generate a new witness key for `name` and return its private key text (type 0x04)."""
    seed = Ed25519PrivateKey.generate().private_bytes_raw()
    return CosignatureSigner(name, seed).text()


@dataclass(frozen=True)
class Cosignature:
    """One verified cosignature line: who signed, when (POSIX seconds), and the line itself."""

    name: str
    key_id: int
    timestamp: int
    line: str


def parse_cosignature_line(line: str) -> Signature:
    """Parse one signature line (with or without its newline); raise MalformedNoteError."""
    return _parse_signature_line(line.removesuffix("\n"))


def timestamp_of(signature: Signature) -> int:
    """Return the timestamp carried by an Ed25519 cosignature; raise ValueError if it has none."""
    if len(signature.signature) != SIGNATURE_SIZE:
        raise ValueError("not an Ed25519 cosignature (wrong length)")
    timestamp = int.from_bytes(signature.signature[:TIMESTAMP_SIZE], "big")
    if timestamp > MAX_TIMESTAMP:
        raise ValueError("cosignature timestamp exceeds 2^63 - 1")
    return timestamp


def verify_cosignatures(body: str, lines: str, verifier: CosignatureVerifier) -> list[Cosignature]:
    """Return the lines of `lines` that are valid cosignatures by `verifier` over `body`.

    Lines from other keys are ignored (c2sp.org/tlog-witness: the client MUST ignore cosignatures
    from unknown keys); a line from this key that fails to verify raises MalformedNoteError,
    and so does text that is not a sequence of signature lines.
    """
    if not lines.endswith("\n"):
        raise MalformedNoteError("signature lines must end with a newline")
    found: list[Cosignature] = []
    for line in lines[:-1].split("\n"):
        sig = parse_cosignature_line(line)
        if (sig.name, sig.key_id) != (verifier.name, verifier.key_id):
            continue
        if not verifier.verify(body.encode(), sig.signature):
            raise MalformedNoteError(f"cosignature by {sig.name}+{sig.key_id:08x} does not verify")
        found.append(Cosignature(sig.name, sig.key_id, timestamp_of(sig), sig.line()))
    return found
