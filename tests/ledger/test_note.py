import base64
import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger import note
from ledger.note import (
    Checkpoint,
    InvalidSignatureError,
    MalformedNoteError,
    NoteError,
    Signer,
    UnverifiedNoteError,
    Verifier,
    generate_signer_key,
    open_checkpoint,
    open_note,
    parse_checkpoint,
    sign_note,
)

# Published vectors from golang.org/x/mod/sumdb/note's tests.
PETER_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
PETER_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
ENOCH_VKEY = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop"
TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
PETER_SIG = (
    "— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZ"
    "b6KE6RyyBwJnAM=\n"
)
ENOCH_SIG = (
    "— EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox3"
    "3WWd1RvMc+QQ=\n"
)


@pytest.fixture
def peter():
    return Verifier.from_text(PETER_VKEY)


@pytest.fixture
def enoch():
    return Verifier.from_text(ENOCH_VKEY)


# --- keys ------------------------------------------------------------------------------------


def test_published_key_pair(peter):
    signer = Signer.from_text(PETER_SKEY)
    assert signer.name == "PeterNeumann"
    assert signer.key_id == 0xC74F20A3
    assert signer.verifier_text() == PETER_VKEY
    assert signer.text() == PETER_SKEY
    assert peter.key_id == 0xC74F20A3
    assert peter.text() == PETER_VKEY
    public = base64.b64decode(PETER_VKEY.split("+")[2])[1:]
    digest = hashlib.sha256(b"PeterNeumann\n\x01" + public).digest()
    assert note.key_id("PeterNeumann", note.ALG_ED25519, public) == int.from_bytes(digest[:4])
    assert f"{note.key_id('PeterNeumann', 1, public):08x}" == "c74f20a3"


def test_published_signature_is_reproduced():
    signed = sign_note(TEXT, Signer.from_text(PETER_SKEY))
    assert signed == TEXT + "\n" + PETER_SIG


def _mangled(key):
    for i in range(len(key) + 1):
        for j in range(i + 1, len(key) + 1):
            if (i, j) != (0, len(key)):
                yield key[i:j]
    for i in range(len(key)):
        yield key[:i] + chr(ord(key[i]) + 1) + key[i + 1 :]


def test_mangled_verifier_keys_are_rejected():
    for bad in _mangled(PETER_VKEY):
        with pytest.raises(ValueError):
            Verifier.from_text(bad)


def test_mangled_signer_keys_are_rejected():
    for bad in _mangled(PETER_SKEY):
        with pytest.raises(ValueError):
            Signer.from_text(bad)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        # Wrong key length (whose base64 also has stray padding bits) and unknown algorithm,
        # each with a key ID matching the bytes.
        (
            "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY==",
            "not canonical base64",
        ),
        (
            "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEYA=",
            "not an Ed25519 key",
        ),
        ("PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "not an Ed25519"),
        ("PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "does not match"),
        ("PeterNeumann+C74F20A3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "lowercase hex"),
        ("Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "spaces"),
        ("+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "non-empty"),
        ("PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10T!", "base64"),
        ("PeterNeumann+c74f20a3", "form"),
        (PETER_SKEY, "private signer key"),
    ],
)
def test_bad_verifier_key_messages(text, message):
    with pytest.raises(ValueError, match=message):
        Verifier.from_text(text)


def test_bad_signer_key_messages():
    with pytest.raises(ValueError, match="PRIVATE"):
        Signer.from_text(PETER_VKEY)
    with pytest.raises(ValueError, match="does not match"):
        Signer.from_text(PETER_SKEY.replace("c74f20a3", "c74f20a4"))
    with pytest.raises(ValueError, match="not an Ed25519"):
        Signer.from_text(PETER_SKEY[:-4] + "FA==")


@pytest.mark.parametrize("name", ["", "a b", "a+b", "tab\there", "nbsp\u00a0x", "ctl\x01", "nl\n"])
def test_invalid_names(name):
    with pytest.raises(ValueError):
        generate_signer_key(name)
    with pytest.raises(ValueError):
        note.check_name(name)


def test_generated_keys_round_trip():
    skey = generate_signer_key("recpo.example/ledger")
    signer = Signer.from_text(skey)
    assert skey.startswith("PRIVATE+KEY+recpo.example/ledger+")
    assert signer.text() == skey
    verifier = Verifier.from_text(signer.verifier_text())
    assert verifier == signer.verifier()
    assert verifier.key_id == signer.key_id
    assert generate_signer_key("recpo.example/ledger") != skey
    assert "PRIVATE" not in repr(signer)


# --- notes -----------------------------------------------------------------------------------


def test_open_published_note(peter, enoch):
    opened = open_note(TEXT + "\n" + PETER_SIG + ENOCH_SIG, [peter])
    assert opened.text == TEXT
    assert [(s.name, s.key_id) for s in opened.signatures] == [("PeterNeumann", 0xC74F20A3)]
    assert [(s.name, s.key_id) for s in opened.unverified] == [("EnochRoot", 0xAF0CFE78)]
    assert opened.signatures[0].line() == PETER_SIG

    both = open_note((TEXT + "\n" + PETER_SIG + ENOCH_SIG).encode(), [peter, enoch])
    assert [s.name for s in both.signatures] == ["PeterNeumann", "EnochRoot"]
    assert both.unverified == ()


def test_no_known_signature(peter, enoch):
    with pytest.raises(UnverifiedNoteError) as info:
        open_note(TEXT + "\n" + PETER_SIG + ENOCH_SIG, [])
    assert len(info.value.note.unverified) == 2
    with pytest.raises(UnverifiedNoteError):
        open_note(TEXT + "\n" + ENOCH_SIG, [peter])
    # Same name, other key ID: an unknown key, so ignored rather than failed.
    other_id = PETER_SIG.replace("x08go", "x08gp")
    with pytest.raises(UnverifiedNoteError):
        open_note(TEXT + "\n" + other_id, [peter])


def test_known_key_with_bad_signature_rejects_note(peter, enoch):
    bad = PETER_SIG[:60] + "ABCD" + PETER_SIG[60:]
    with pytest.raises(InvalidSignatureError, match="PeterNeumann\\+c74f20a3"):
        open_note(TEXT + "\n" + bad, [peter])
    with pytest.raises(InvalidSignatureError):
        open_note(TEXT + "\n" + ENOCH_SIG + bad, [peter, enoch])
    # A bad signature from an unknown key is just ignored.
    assert open_note(TEXT + "\n" + ENOCH_SIG + bad, [enoch]).signatures


def test_repeated_signatures_count_once(peter):
    opened = open_note(TEXT + "\n" + PETER_SIG + PETER_SIG + ENOCH_SIG + ENOCH_SIG, [peter])
    assert len(opened.signatures) == 1
    assert len(opened.unverified) == 1


@pytest.mark.parametrize(
    "message",
    [
        TEXT,
        TEXT + "\n",
        TEXT + "\n" + PETER_SIG[:-1],
        "\x01" + TEXT + "\n" + PETER_SIG,
        TEXT + "\n" + PETER_SIG.replace("PeterNeumann", "Bad Name"),
        TEXT + "\n" + PETER_SIG + "Unexpected line.\n",
        TEXT + "\n" + PETER_SIG.replace("—", "-"),
        TEXT + "\n" + PETER_SIG.replace("— ", "—"),
        TEXT + "\n" + "— PeterNeumann AAAA\n",
        TEXT + "\n" + "— PeterNeumann not*base64\n",
        TEXT + "\n" + PETER_SIG + "\n",
        TEXT + "\n" + PETER_SIG * 101,
        TEXT.replace("\n", "\r\n", 1) + "\n" + PETER_SIG,
    ],
)
def test_malformed_notes(message, peter):
    with pytest.raises(MalformedNoteError):
        open_note(message, [peter])


def test_invalid_utf8_is_malformed(peter):
    with pytest.raises(MalformedNoteError):
        open_note(b"\xff" + (TEXT + "\n" + PETER_SIG).encode(), [peter])


def test_errors_are_note_errors():
    for cls in (MalformedNoteError, InvalidSignatureError, UnverifiedNoteError):
        assert issubclass(cls, NoteError)


def test_duplicate_verifiers_are_refused(peter):
    with pytest.raises(ValueError, match="two verifiers"):
        open_note(TEXT + "\n" + PETER_SIG, [peter, Verifier.from_text(PETER_VKEY)])


def test_round_trip_and_tampering():
    log = Signer.from_text(generate_signer_key("log.example/a"))
    witness = Signer.from_text(generate_signer_key("witness.example"))
    text = "hello\n\nsecond paragraph ñ\n"
    signed = sign_note(text, log, witness)
    assert open_note(signed, [log.verifier()]).text == text
    assert len(open_note(signed, [log.verifier(), witness.verifier()]).signatures) == 2

    with pytest.raises(InvalidSignatureError):
        open_note(signed.replace("hello", "hellO"), [log.verifier()])
    line = signed.splitlines(keepends=True)[-2]
    b64 = line.split(" ")[2]
    raw = bytearray(base64.b64decode(b64))
    raw[10] ^= 1
    tampered = signed.replace(b64, base64.b64encode(raw).decode() + "\n")
    with pytest.raises(InvalidSignatureError):
        open_note(tampered, [log.verifier()])

    stranger = Signer.from_text(generate_signer_key("log.example/a"))
    with pytest.raises(UnverifiedNoteError):
        open_note(signed, [stranger.verifier()])


def test_sign_note_checks_text():
    signer = Signer.from_text(PETER_SKEY)
    for bad in ["", "no newline", "ctl\x07\n"]:
        with pytest.raises(MalformedNoteError):
            sign_note(bad, signer)
    with pytest.raises(ValueError):
        sign_note(TEXT)


note_text = st.text(
    alphabet=st.characters(exclude_categories=("Cs",), min_codepoint=0x20) | st.just("\n"),
    max_size=200,
).map(lambda s: s + "\n")


@settings(max_examples=60, deadline=None)
@given(text=note_text)
def test_any_text_round_trips(text):
    signer = Signer.from_text(PETER_SKEY)
    assert open_note(sign_note(text, signer), [signer.verifier()]).text == text


# --- checkpoints -----------------------------------------------------------------------------

SPEC_BODY = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"


def test_spec_checkpoint_parses():
    cp = parse_checkpoint(SPEC_BODY)
    assert cp.origin == "example.com/behind-the-sofa"
    assert cp.size == 20852163
    assert cp.root == base64.b64decode("CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=")
    assert cp.extensions == ()
    assert cp.body() == SPEC_BODY


def test_checkpoint_round_trip_with_extensions():
    cp = Checkpoint("recpo.example/ledger", 0, hashlib.sha256(b"").digest(), ("ext one", "2"))
    assert cp.body() == (
        "recpo.example/ledger\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\next one\n2\n"
    )
    assert parse_checkpoint(cp.body()) == cp


@pytest.mark.parametrize(
    "body",
    [
        "origin\n12\n" + "A" * 43 + "=",  # no final newline
        "origin\n12\n",
        "\n12\n" + base64.b64encode(bytes(32)).decode() + "\n",
        "origin\n012\n" + base64.b64encode(bytes(32)).decode() + "\n",
        "origin\n-1\n" + base64.b64encode(bytes(32)).decode() + "\n",
        "origin\n+1\n" + base64.b64encode(bytes(32)).decode() + "\n",
        "origin\n 1\n" + base64.b64encode(bytes(32)).decode() + "\n",
        "origin\n1_0\n" + base64.b64encode(bytes(32)).decode() + "\n",
        "origin\n\uff11\n" + base64.b64encode(bytes(32)).decode() + "\n",
        "origin\n0x10\n" + base64.b64encode(bytes(32)).decode() + "\n",
        "origin\n" + str(2**64) + "\n" + base64.b64encode(bytes(32)).decode() + "\n",
        "origin\n1\n" + base64.b64encode(bytes(31)).decode() + "\n",
        "origin\n1\n" + base64.b64encode(bytes(33)).decode() + "\n",
        "origin\n1\n" + base64.b64encode(bytes(32)).decode().rstrip("=") + "\n",
        "origin\n1\n" + base64.b64encode(bytes(32)).hex() + "\n",
        "origin\n1\n" + base64.b64encode(bytes(32)).decode() + "\n\n",
        "origin\n1\n" + base64.b64encode(bytes(32)).decode() + "\n\nextension\n",
    ],
)
def test_malformed_checkpoints(body):
    with pytest.raises(ValueError):
        parse_checkpoint(body)


def test_checkpoint_constructor_checks():
    root = bytes(32)
    for args in [("", 1, root), ("a\nb", 1, root), ("o", -1, root), ("o", 1, root[:31])]:
        with pytest.raises(ValueError):
            Checkpoint(*args)
    with pytest.raises(ValueError):
        Checkpoint("o", 1, root, ("",))


def test_signed_checkpoint():
    signer = Signer.from_text(generate_signer_key("recpo.example/ledger"))
    cp = Checkpoint("recpo.example/ledger", 42, hashlib.sha256(b"x").digest())
    signed = sign_note(cp.body(), signer)
    got, opened = open_checkpoint(signed, [signer.verifier()], origin="recpo.example/ledger")
    assert got == cp
    assert opened.signatures[0].name == "recpo.example/ledger"
    with pytest.raises(MalformedNoteError, match="origin"):
        open_checkpoint(signed, [signer.verifier()], origin="other.example/ledger")
    not_a_checkpoint = sign_note("just text\n", signer)
    with pytest.raises(MalformedNoteError, match="checkpoint"):
        open_checkpoint(not_a_checkpoint, [signer.verifier()])
