"""The fast DKIM signer (#23): every signature checked by two verifiers of its own, dkimpy and OpenDKIM's
opendkim-testmsg (tests/opendkim.py), RSA alone and RSA + Ed25519, UTF-8 and long headers, bodies with
trailing blanks, after a relay refolds the headers, and byte for byte against dkimpy's own signature."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from unittest import mock

import dkim
import pytest

from newsletter.send import Recipient
from newsletter.send.compose import Confirmation, subject_header
from newsletter.send.sign import signed_headers

from .dkimkit import DOMAIN, Keys, dkimpy_each, engine_copies, mailer_for, make_keys, sign, signatures
from .opendkim import OpenDkim, opendkim

AT = 1_780_000_000  # t= of the signatures compared with dkimpy's


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    return make_keys(tmp_path_factory.mktemp("dkim-keys"))


@pytest.fixture(scope="module")
def odkim(keys: Keys, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpenDkim]:
    with opendkim(keys.records, tmp_path_factory.mktemp("opendkim")) as verifier:
        yield verifier


def refold(data: bytes, style: str) -> bytes:
    """What a relay may do to every header field, signatures included: "unfold" each onto one line, or
    "spread" it one word a line behind a tab, or "pad" it with tabs and spaces between and after the words."""
    head, body = data.split(b"\r\n\r\n", 1)
    out = []
    for field in re.split(rb"\r\n(?![ \t])", head):
        name, value = field.split(b":", 1)
        words = value.split()
        if style == "unfold":
            out.append(name + b": " + b" ".join(words))
        elif style == "spread":
            out.append(name + b":\r\n\t" + b"\r\n\t".join(words))
        else:
            out.append(name + b":  \t" + b" \t ".join(words) + b" \t")
    return b"\r\n".join(out) + b"\r\n\r\n" + body


@contextmanager
def clock_at(when: int) -> Iterator[None]:
    with mock.patch.object(dkim.time, "time", lambda: float(when)):
        yield


def dkimpy_signed(message: bytes, keys: Keys, algorithm: bytes = b"rsa-sha256") -> bytes:
    """dkimpy's own signature of ``message`` at AT, with the engine's header list."""
    ed = algorithm == b"ed25519-sha256"
    key, selector = (keys.ed25519_seed, b"ed2026") if ed else (keys.rsa_pem.read_bytes(), b"nl2026")
    with clock_at(AT):
        return dkim.sign(message, selector, DOMAIN.encode(), key, canonicalize=(b"relaxed", b"relaxed"),
                         include_headers=signed_headers(message), signature_algorithm=algorithm, linesep=b"\r\n")


PEOPLE = [("ada@example.org", "Ada Lovelace", "RL"), ("grace@example.org", "", "LLM;Vision;RL;Agents"),
          ("jose@bücher.example", "José Ñandú", "Vision"), ("x@example.org", "Long " * 30, "Agents;LLM")]


def test_rsa_signature_of_engine_copies_verifies_with_dkimpy_and_opendkim(repo_config, keys, odkim):
    """RSA alone: one relaxed/relaxed rsa-sha256 signature, h= as before (oversigned, no l=), that dkimpy and
    OpenDKIM both verify on every copy, and both refuse once the Subject is changed."""
    mailer = mailer_for(repo_config, keys)
    for copy in engine_copies(repo_config, mailer, PEOPLE):
        data = sign(mailer, copy)
        (tags,) = signatures(data)
        assert tags["a"] == "rsa-sha256" and tags["c"] == "relaxed/relaxed" and "l" not in tags
        assert tags["h"].encode().split(b":") == signed_headers(copy)
        assert dkimpy_each(data, keys) == [True] and odkim.verify_each(data) == [True]
        tampered = data.replace(b"\r\nSubject:", b"\r\nSubject: Re:", 1)
        assert dkimpy_each(tampered, keys) == [False] and odkim.verify_each(tampered) == [False]


def test_rsa_and_ed25519_signatures_each_verify_with_both_verifiers(repo_config, keys, odkim):
    """With dkim_ed25519_key_file the RSA signature comes first and an ed25519-sha256 one second, over the
    same fields and body hash; each verifies alone with dkimpy and with OpenDKIM, and neither survives a change."""
    mailer = mailer_for(repo_config, keys, ed25519_too=True)
    for copy in engine_copies(repo_config, mailer, PEOPLE[:3]):
        data = sign(mailer, copy)
        first, second = signatures(data)
        assert (first["a"], second["a"]) == ("rsa-sha256", "ed25519-sha256") and second["s"] == "ed2026"
        assert first["bh"] == second["bh"] and first["h"] == second["h"]
        assert dkimpy_each(data, keys) == [True, True] and odkim.verify_each(data) == [True, True]
        assert odkim.verify(data)  # both at once, as a receiver gets them
        tampered = data.replace(b"\r\n--", b"\r\nX--", 1)  # the body
        assert dkimpy_each(tampered, keys) == [False, False] and odkim.verify_each(tampered) == [False, False]


def test_utf8_headers_and_a_long_subject_verify(repo_config, keys, odkim):
    """A UTF-8 address (RFC 6532) in To, raw UTF-8 in a Subject, and 300-character subjects as compose folds
    them (plain and RFC 2047) sign and verify with both verifiers, both signatures."""
    mailer = mailer_for(repo_config, keys, ed25519_too=True)
    utf8, ascii_form = engine_copies(repo_config, mailer, [PEOPLE[2]])
    assert "bücher".encode() in utf8.split(b"\r\n\r\n")[0] and b"xn--" in ascii_form.split(b"\r\n\r\n")[0]
    subjects = [subject_header("Papers " * 43).encode(), subject_header("Überblick: Lernen " * 17).encode(),
                "Subject: Überblick über die Woche – 𝔼[x]".encode()]
    for subject in subjects:
        old = re.search(rb"\r\nSubject:.*?\r\n(?![ \t])", utf8, flags=re.DOTALL)
        assert old is not None
        message = utf8.replace(old.group(), b"\r\n" + subject + b"\r\n", 1)
        assert subject in message
        data = sign(mailer, message)
        assert dkimpy_each(data, keys) == [True, True] and odkim.verify_each(data) == [True, True]
    data = sign(mailer, ascii_form)
    assert dkimpy_each(data, keys) == [True, True] and odkim.verify_each(data) == [True, True]


RAGGED = (b"From: Ada <ada@example.org>\r\nTo: grace@example.org\r\nDate: Fri, 29 May 2026 09:00:00 +0000\r\n"
          b"Subject:   spaced\t out  \r\nMessage-ID: <ragged@example.org>\r\nMIME-Version: 1.0\r\n"
          b"Content-Type: text/plain; charset=utf-8\r\n\r\n"
          b"a line with trailing spaces   \r\n\ttabbed\t\tline\t\r\n   \r\n  two  runs   here  \r\n"
          b"\r\nlast words \t\r\n\r\n\r\n\r\n")


def test_body_with_trailing_blank_lines_and_whitespace(repo_config, keys, odkim):
    """A body with trailing blank lines, lines ending in spaces and tabs, and runs of WSP: the signature is
    dkimpy's, byte for byte, and still verifies after a relay trims line ends or drops the blank lines."""
    mailer = mailer_for(repo_config, keys, ed25519_too=True)
    data = sign(mailer, RAGGED, at=AT)
    theirs = dkimpy_signed(RAGGED, keys) + dkimpy_signed(RAGGED, keys, b"ed25519-sha256")
    assert b"".join(data[:-len(RAGGED)].split()) == b"".join(theirs.split())
    trimmed = re.sub(rb"[ \t]+\r\n", b"\r\n", data).removesuffix(b"\r\n\r\n\r\n")
    for variant in (data, trimmed, data + b"\r\n\r\n"):
        assert dkimpy_each(variant, keys) == [True, True] and odkim.verify_each(variant) == [True, True]


@pytest.mark.parametrize("style", ["unfold", "spread", "pad"])
def test_signatures_survive_a_relay_refolding_every_header(repo_config, keys, odkim, style):
    """A relay that unfolds, refolds or pads every header field, the DKIM-Signature fields among them,
    leaves both signatures valid for dkimpy and OpenDKIM (relaxed header canonicalisation)."""
    mailer = mailer_for(repo_config, keys, ed25519_too=True)
    long_name = "Ada Augusta King, Countess of Lovelace and Patron of the Analytical Engine"
    for copy in engine_copies(repo_config, mailer, [("ada@example.org", long_name, "LLM;RL")]):
        signed = sign(mailer, copy)
        data = refold(signed, style)
        assert data != signed
        assert dkimpy_each(data, keys) == [True, True] and odkim.verify_each(data) == [True, True]


MUTATIONS: dict[str, Callable[[bytes], bytes]] = {
    "as signed": lambda d: d,
    "refolded": lambda d: refold(d, "spread"),
    "line ends padded": lambda d: d.replace(b"=\r\n", b"= \t\r\n"),
    "blank lines added": lambda d: d + b"\r\n\r\n",
    "unsigned field added": lambda d: d.replace(b"\r\n\r\n", b"\r\nX-Relay: yes\r\n\r\n", 1),
    "second Subject added": lambda d: d.replace(b"\r\n\r\n", b"\r\nSubject: hi\r\n\r\n", 1),
    "field names in capitals": lambda d: d.replace(b"\r\nSubject:", b"\r\nSUBJECT:", 1),
    "body byte changed": lambda d: d[:-40] + bytes([d[-40] ^ 1]) + d[-39:],
}


def test_fast_signature_is_dkimpys_and_verifies_wherever_dkimpys_does(repo_config, keys, odkim):
    """Over engine copies, the confirmation mail and a ragged body, the fast signature at the same second is
    dkimpy's byte for byte (RSA and Ed25519), and under each relay mutation dkimpy and OpenDKIM agree with
    dkimpy's verdict on dkimpy's own signature."""
    mailer = mailer_for(repo_config, keys, ed25519_too=True)
    confirm = mailer.confirmation(Recipient(None, "new@example.org", ""),
                                  Confirmation("ML Papers Weekly", "Example Lab", "https://x.example/c/1", 48)).data
    corpus = engine_copies(repo_config, mailer, PEOPLE[:2]) + [confirm, RAGGED]
    for message in corpus:
        ours = sign(mailer, message, at=AT)
        theirs = dkimpy_signed(message, keys) + dkimpy_signed(message, keys, b"ed25519-sha256") + message
        assert b"".join(ours.split()) == b"".join(theirs.split())
        for name, mutate in MUTATIONS.items():
            expected = dkimpy_each(mutate(theirs), keys)
            assert dkimpy_each(mutate(ours), keys) == expected, name
            assert odkim.verify_each(mutate(ours)) == expected, name
