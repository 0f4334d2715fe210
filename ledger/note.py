"""C2SP signed-note (Ed25519) and C2SP tlog-checkpoint."""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

ALG_ED25519 = 0x01
ALG_COSIGNATURE_V1 = 0x04
MAX_SIGNATURES = 100
_SIG_PREFIX = "\N{EM DASH} "
_HEX8 = re.compile(r"[0-9a-f]{8}", re.ASCII)
_DECIMAL = re.compile(r"0|[1-9][0-9]*", re.ASCII)


class NoteError(Exception):
    """A signed note could not be accepted."""


class MalformedNoteError(NoteError):
    """The note does not follow the signed-note syntax."""


class InvalidSignatureError(NoteError):
    """A signature from a known key does not verify."""


class UnverifiedNoteError(NoteError):
    """No signature from a known key is present; `note` holds the text and unknown signatures."""

    def __init__(self, note: Note) -> None:
        """Keep the unverified note for callers that want to inspect it."""
        super().__init__("note has no signature from a known key")
        self.note = note


def _has_control(text: str) -> bool:
    return any(ord(ch) < 0x20 and ch != "\n" for ch in text)


def check_name(name: str) -> None:
    """Raise ValueError unless `name` is a valid key name (non-empty, no spaces, no '+')."""
    if not isinstance(name, str) or not name:
        raise ValueError("key name must be a non-empty string")
    if any(ch.isspace() or ch == "+" or ord(ch) < 0x20 for ch in name):
        raise ValueError(f"key name {name!r} must not contain spaces, '+' or control characters")


def key_id(name: str, alg: int, public_key: bytes) -> int:
    """Return the key ID: first 4 bytes (big-endian) of SHA-256(name || 0x0A || alg || key)."""
    digest = hashlib.sha256(name.encode() + b"\n" + bytes([alg]) + public_key).digest()
    return int.from_bytes(digest[:4], "big")


def public_key_id(name: str, alg: int, public_key: bytes) -> int:
    """Check a verifier's name and Ed25519 public key; return its key ID."""
    check_name(name)
    if len(public_key) != 32:
        raise ValueError("Ed25519 public key must be 32 bytes")
    return key_id(name, alg, public_key)


def _b64decode(text: str, what: str) -> bytes:
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error) as exc:
        raise ValueError(f"{what} is not valid base64") from exc
    # Reject non-canonical encodings (stray bits in the padding) so each value has one spelling.
    if base64.b64encode(raw).decode() != text:
        raise ValueError(f"{what} is not canonical base64")
    return raw


class NoteSigner(Protocol):
    """Anything that can sign note text under a (name, key ID)."""

    @property
    def name(self) -> str:
        """Return the key name."""
        ...

    @property
    def key_id(self) -> int:
        """Return the 32-bit key ID."""
        ...

    def sign(self, text: bytes) -> bytes:
        """Return the signature bytes (without the key ID) over the note text."""
        ...


class NoteVerifier(Protocol):
    """Anything that can verify note signatures for one (name, key ID)."""

    @property
    def name(self) -> str:
        """Return the key name."""
        ...

    @property
    def key_id(self) -> int:
        """Return the 32-bit key ID."""
        ...

    def verify(self, text: bytes, signature: bytes) -> bool:
        """Return whether `signature` (without the key ID) is valid over the note text."""
        ...


def parse_key_text(text: str, what: str, private: bool) -> tuple[str, int, int, bytes]:
    """Split key text into (name, key ID, algorithm byte, 32 key bytes), checking its shape.

    Verifier keys are `<name>+<hex id>+<base64(alg || key)>`; private keys carry `PRIVATE+KEY+`
    in front. The caller checks the algorithm byte and that the ID matches the key.
    """
    if private:
        parts = text.split("+", 4)
        if len(parts) != 5 or parts[:2] != ["PRIVATE", "KEY"]:
            raise ValueError(f"{what} must have the form PRIVATE+KEY+<name>+<key id>+<base64>")
        parts = parts[2:]
    else:
        if text.startswith("PRIVATE+KEY+"):
            raise ValueError(f"this is a private signer key, not a {what} <name>+<id>+<key>")
        parts = text.split("+", 2)  # base64 may contain '+', names may not
        if len(parts) != 3:
            raise ValueError(f"{what} must have the form <name>+<key id>+<base64 key>")
    name, hex_id, b64 = parts
    check_name(name)
    if not _HEX8.fullmatch(hex_id):
        raise ValueError(f"{what} ID must be 8 lowercase hex digits")
    raw = _b64decode(b64, what)
    if len(raw) != 33:
        raise ValueError(f"{what} is not an Ed25519 key (an algorithm byte and 32 bytes)")
    return name, int(hex_id, 16), raw[0], raw[1:]


def key_text(name: str, key_id_value: int, alg: int, key: bytes, private: bool = False) -> str:
    """Write key text in the standard form (see `parse_key_text`)."""
    b64 = base64.b64encode(bytes([alg]) + key).decode()
    prefix = "PRIVATE+KEY+" if private else ""
    return f"{prefix}{name}+{key_id_value:08x}+{b64}"


@dataclass(frozen=True)
class Verifier:
    """An Ed25519 note verifier."""

    name: str
    public_key: bytes
    key_id: int = field(init=False)

    def __post_init__(self) -> None:
        """Validate the name and key and derive the key ID."""
        key = public_key_id(self.name, ALG_ED25519, self.public_key)
        object.__setattr__(self, "key_id", key)

    @classmethod
    def from_text(cls, text: str) -> Verifier:
        """Parse `<name>+<hex key ID>+<base64(0x01 || public key)>`."""
        name, key_id_value, alg, key = parse_key_text(text, "verifier key", private=False)
        if alg != ALG_ED25519:
            raise ValueError("verifier key is not an Ed25519 key (0x01 followed by 32 bytes)")
        verifier = cls(name, key)
        if verifier.key_id != key_id_value:
            raise ValueError("verifier key ID does not match the name and public key")
        return verifier

    def text(self) -> str:
        """Return the verifier key text."""
        return key_text(self.name, self.key_id, ALG_ED25519, self.public_key)

    def verify(self, text: bytes, signature: bytes) -> bool:
        """Return whether `signature` is a valid Ed25519 signature over `text`."""
        if len(signature) != 64:
            return False
        try:
            Ed25519PublicKey.from_public_bytes(self.public_key).verify(signature, text)
        except (InvalidSignature, ValueError):
            return False
        return True


class Signer:
    """An Ed25519 note signer."""

    def __init__(self, name: str, seed: bytes) -> None:
        """Create a signer for key `name` from a 32-byte Ed25519 seed."""
        check_name(name)
        if len(seed) != 32:
            raise ValueError("Ed25519 seed must be 32 bytes")
        self._name = name
        self._key = Ed25519PrivateKey.from_private_bytes(seed)
        self._seed = bytes(seed)
        self._verifier = Verifier(name, self._key.public_key().public_bytes_raw())

    def __repr__(self) -> str:
        """Show the public identity only."""
        return f"Signer({self._verifier.text()!r})"

    @property
    def name(self) -> str:
        """Return the key name."""
        return self._name

    @property
    def key_id(self) -> int:
        """Return the 32-bit key ID."""
        return self._verifier.key_id

    @classmethod
    def from_text(cls, text: str) -> Signer:
        """Parse `PRIVATE+KEY+<name>+<hex key ID>+<base64(0x01 || seed)>`."""
        name, key_id_value, alg, seed = parse_key_text(text, "signer key", private=True)
        if alg != ALG_ED25519:
            raise ValueError("signer key is not an Ed25519 key (0x01 followed by a 32-byte seed)")
        signer = cls(name, seed)
        if signer.key_id != key_id_value:
            raise ValueError("signer key ID does not match the name and key")
        return signer

    def text(self) -> str:
        """Return the private key text."""
        return key_text(self._name, self.key_id, ALG_ED25519, self._seed, private=True)

    def verifier(self) -> Verifier:
        """Return the matching verifier."""
        return self._verifier

    def verifier_text(self) -> str:
        """Return the matching verifier key text."""
        return self._verifier.text()

    def sign(self, text: bytes) -> bytes:
        """Return the Ed25519 signature over `text`."""
        return self._key.sign(text)


def generate_signer_key(name: str) -> str:
    """Generate a new Ed25519 key for `name` and return its private key text."""
    seed = Ed25519PrivateKey.generate().private_bytes_raw()
    return Signer(name, seed).text()


@dataclass(frozen=True)
class Signature:
    """One signature line of a note."""

    name: str
    key_id: int
    signature: bytes

    def line(self) -> str:
        """Return the signature line, newline included."""
        b64 = base64.b64encode(self.key_id.to_bytes(4, "big") + self.signature).decode()
        return f"{_SIG_PREFIX}{self.name} {b64}\n"


@dataclass(frozen=True)
class Note:
    """A note's text with its verified signatures and the signatures from unknown keys."""

    text: str
    signatures: tuple[Signature, ...]
    unverified: tuple[Signature, ...] = ()


def _check_text(text: str) -> None:
    if not text.endswith("\n"):
        raise MalformedNoteError("note text must end in a newline")
    if _has_control(text):
        raise MalformedNoteError("note text must not contain control characters")


def sign_note(text: str, *signers: NoteSigner) -> str:
    """Return `text` followed by a blank line and one signature line per signer."""
    if not signers:
        raise ValueError("a signed note needs at least one signer")
    _check_text(text)
    lines = []
    for signer in signers:
        check_name(signer.name)
        lines.append(Signature(signer.name, signer.key_id, signer.sign(text.encode())).line())
    return text + "\n" + "".join(lines)


def _parse_signature_line(line: str) -> Signature:
    if not line.startswith(_SIG_PREFIX):
        raise MalformedNoteError("signature line must start with an em dash and a space")
    parts = line[len(_SIG_PREFIX) :].split(" ")
    if len(parts) != 2:
        raise MalformedNoteError("signature line must be '— <name> <base64>'")
    name, b64 = parts
    try:
        check_name(name)
        raw = _b64decode(b64, "signature")
    except ValueError as exc:
        raise MalformedNoteError(str(exc)) from exc
    if len(raw) < 5:
        raise MalformedNoteError("signature too short")
    return Signature(name, int.from_bytes(raw[:4], "big"), raw[4:])


def open_note(note: str | bytes, verifiers: Iterable[NoteVerifier]) -> Note:
    """Parse `note` and verify its signatures against `verifiers`.

    Signatures from unknown keys are ignored (returned as `unverified`); any failing signature
    from a known key rejects the note, and so does the absence of any verified signature.
    """
    if isinstance(note, bytes):
        try:
            note = note.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MalformedNoteError("note is not valid UTF-8") from exc
    known: dict[tuple[str, int], NoteVerifier] = {}
    for v in verifiers:
        if (v.name, v.key_id) in known:
            raise ValueError(f"two verifiers for {v.name}+{v.key_id:08x}")
        known[(v.name, v.key_id)] = v
    if _has_control(note):
        raise MalformedNoteError("note must not contain control characters")
    split = note.rfind("\n\n")
    if split < 0:
        raise MalformedNoteError("note has no blank line before its signatures")
    text, block = note[: split + 1], note[split + 2 :]
    if not block.endswith("\n"):
        raise MalformedNoteError("note must end with a newline after its signatures")
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise MalformedNoteError(f"note has more than {MAX_SIGNATURES} signatures")
    verified: list[Signature] = []
    unverified: list[Signature] = []
    for line in lines:
        sig = _parse_signature_line(line)
        verifier = known.get((sig.name, sig.key_id))
        if verifier is None:
            if sig not in unverified:
                unverified.append(sig)
        elif not verifier.verify(text.encode(), sig.signature):
            raise InvalidSignatureError(f"invalid signature for key {sig.name}+{sig.key_id:08x}")
        elif sig not in verified:
            verified.append(sig)
    result = Note(text, tuple(verified), tuple(unverified))
    if not verified:
        raise UnverifiedNoteError(result)
    return result


@dataclass(frozen=True)
class Checkpoint:
    """A C2SP tlog-checkpoint body: origin, tree size, root hash and optional extension lines."""

    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        """Reject values that cannot be written as a checkpoint body."""
        if not self.origin or "\n" in self.origin or _has_control(self.origin):
            raise ValueError("checkpoint origin must be one non-empty line")
        if not isinstance(self.size, int) or isinstance(self.size, bool) or self.size < 0:
            raise ValueError("checkpoint size must be a non-negative integer")
        if not isinstance(self.root, bytes) or len(self.root) != 32:
            raise ValueError("checkpoint root must be 32 bytes")
        for ext in self.extensions:
            if not ext or "\n" in ext or _has_control(ext):
                raise ValueError("checkpoint extension lines must be non-empty single lines")

    def body(self) -> str:
        """Return the note text: origin, size, base64 root and extension lines."""
        lines = [self.origin, str(self.size), base64.b64encode(self.root).decode()]
        return "\n".join([*lines, *self.extensions]) + "\n"


def parse_checkpoint(text: str) -> Checkpoint:
    """Parse a checkpoint body; raise ValueError if it is malformed."""
    if not text.endswith("\n"):
        raise ValueError("checkpoint must end in a newline")
    lines = text[:-1].split("\n")
    if len(lines) < 3:
        raise ValueError("checkpoint needs origin, size and root lines")
    origin, size, root_b64, *extensions = lines
    if not _DECIMAL.fullmatch(size):
        raise ValueError("checkpoint size must be a decimal number without leading zeros")
    if int(size) >= 1 << 64:
        raise ValueError("checkpoint size does not fit in 64 bits")
    root = _b64decode(root_b64, "checkpoint root")
    return Checkpoint(origin, int(size), root, tuple(extensions))


def open_checkpoint(
    note: str | bytes, verifiers: Iterable[NoteVerifier], origin: str | None = None
) -> tuple[Checkpoint, Note]:
    """Verify a signed checkpoint note and parse its body, checking the origin if given."""
    opened = open_note(note, verifiers)
    try:
        checkpoint = parse_checkpoint(opened.text)
    except ValueError as exc:
        raise MalformedNoteError(f"bad checkpoint: {exc}") from exc
    if origin is not None and checkpoint.origin != origin:
        raise MalformedNoteError(f"checkpoint origin {checkpoint.origin!r} is not {origin!r}")
    return checkpoint, opened
