"""The signer's parts around the signature (#23): the body hash from each group's template gives dkimpy's
hash for every copy, whatever the copies do; the key settings; a real send with both keys."""

from __future__ import annotations

import base64
import hashlib
import random
from collections.abc import Iterator

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from newsletter.config import load_config
from newsletter.errors import ConfigError
from newsletter.send import dkim as fast
from newsletter.send.bodycache import MAX_LEARN, BodyHasher, learn
from newsletter.send.sign import dkim_signer, load_ed25519, load_rsa

from .conftest import REPO, invoke
from .dkimkit import SECRET, Keys, dkimpy_each, engine_copies, mailer_for, make_keys, signatures
from .opendkim import OpenDkim, opendkim
from .smtpd import smtp_server


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    return make_keys(tmp_path_factory.mktemp("dkim-keys"))


@pytest.fixture(scope="module")
def odkim(keys: Keys, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpenDkim]:
    with opendkim(keys.records, tmp_path_factory.mktemp("opendkim")) as verifier:
        yield verifier


def dkimpy_bh(body: bytes) -> bytes:
    """The relaxed body hash as dkimpy computes it."""
    canonical = dkim.canonicalization.Relaxed.canonicalize_body(body)
    return base64.b64encode(hashlib.sha256(canonical).digest())


def ragged_line(rng: random.Random) -> bytes:
    """A line with what relaxed canonicalisation changes: runs of spaces and tabs, WSP at its end, or nothing."""
    words = [rng.choice([b"word", b"=20", b"x", b""]) for _ in range(rng.randint(0, 6))]
    gaps = [rng.choice([b" ", b"  ", b"\t", b" \t  "]) for _ in words]
    return b"".join(g + w for g, w in zip(gaps, words, strict=True)) + rng.choice([b"", b" ", b"\t\t"]) + b"\r\n"


def test_group_template_gives_dkimpys_body_hash_for_every_copy():
    """Synthetic groups whose slots hold ragged lines, are empty, or repeat across the first copies: each copy's
    bh= through the template is dkimpy's, templates are learnt, and a group that never fits stops learning."""
    rng = random.Random(23)
    hasher = BodyHasher()
    for group in range(4):
        statics = [b"--==b%d==\r\n" % group + b"".join(ragged_line(rng) for _ in range(60))]
        statics += [b"".join(ragged_line(rng) for _ in range(rng.randint(1, 40))) for _ in range(3)]
        for copy in range(40):
            slots = [b"".join(ragged_line(rng) for _ in range(rng.randint(0, 3))) if copy > 1 else b"same\r\n"
                     for _ in statics]
            body = b"".join(s + slot for s, slot in zip(statics, slots, strict=True)) + b"\r\n" * rng.randint(0, 3)
            assert hasher(body) == dkimpy_bh(body), (group, copy)
    assert len(hasher.templates) == 4 and all(t.pieces for t in hasher.templates.values())
    for copy in range(4 * MAX_LEARN):  # every pair of copies shares a run the next pair lacks: it gives up learning
        body = b"--==c==\r\n" + b"".join(ragged_line(random.Random(copy // 2)) for _ in range(80)) + b"end\r\n"
        assert hasher(body) == dkimpy_bh(body)
    assert hasher.learnt[b"--==c=="] == MAX_LEARN and not hasher.templates[b"--==c=="].pieces


def test_engine_copies_hash_through_their_groups_template(repo_config, keys):
    """Real copies of every kind of group, names equal or not: the template path gives dkimpy's bh= for each,
    the shared pieces cover nearly all of a copy, and a body that is not MIME is hashed whole."""
    mailer = mailer_for(repo_config, keys)
    areas = ["LLM", "LLM;RL", "LLM;RL;Vision"]
    people = [(f"r{i}@example.org", "there" if i < 6 else f"Reader  {i}\t", areas[i % 3])
              for i in range(30)]  # the first two copies of each group have the same name
    hasher = BodyHasher()
    for copy in engine_copies(repo_config, mailer, people):
        body = copy[fast.split(copy)[1]:]
        assert hasher(body) == dkimpy_bh(body)
        template = hasher.templates.get(body[:body.find(b"\r\n")])
        if template and template.parts(body):
            assert sum(len(p.raw) for p in template.pieces) > 0.95 * len(body)
    assert len(hasher.templates) == 3 and all(n == 2 for n in hasher.learnt.values())  # learnt again once
    assert hasher(b"Hello\r\n\r\n") == dkimpy_bh(b"Hello\r\n\r\n") and not learn(b"", b"").pieces


def test_ed25519_settings_need_an_rsa_key_and_a_selector(make_config):
    """dkim_ed25519_key_file is a second signature: without dkim_key_file or its own selector the config is refused."""
    for smtp in ('dkim_ed25519_key_file = "ed.pem"\ndkim_ed25519_selector = "ed"',
                 'dkim_key_file = "rsa.pem"\ndkim_selector = "s"\ndkim_ed25519_key_file = "ed.pem"'):
        path = make_config(f'[newsletter]\nsecret_key = "{SECRET}"\n[smtp]\n{smtp}\n')
        with pytest.raises(ConfigError, match="dkim_ed25519_key_file"):
            load_config(path)


def test_key_files_are_checked_in_one_line_each(tmp_path, keys):
    """A key of the wrong kind or no key at all is one ConfigError naming the setting; dkimpy's base64 Ed25519
    seed (dknewkey) loads like a PEM key."""
    seed = tmp_path / "ed.key"
    seed.write_bytes(keys.ed25519_seed + b"\n")
    assert isinstance(load_ed25519(seed), ed25519.Ed25519PrivateKey)
    assert load_ed25519(seed).public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw) \
        == load_ed25519(keys.ed25519_pem).public_key().public_bytes(serialization.Encoding.Raw,
                                                                    serialization.PublicFormat.Raw)
    junk = tmp_path / "junk.pem"
    junk.write_text("-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n")
    with pytest.raises(ConfigError, match="^smtp.dkim_key_file: .* is not an RSA key"):
        load_rsa(keys.ed25519_pem)
    with pytest.raises(ConfigError, match="^smtp.dkim_key_file: .* is not a PEM private key"):
        load_rsa(junk)
    with pytest.raises(ConfigError, match="^smtp.dkim_ed25519_key_file: .* is not an Ed25519 private key"):
        load_ed25519(keys.rsa_pem)
    with pytest.raises(ConfigError, match="^smtp.dkim_ed25519_key_file: cannot read"):
        load_ed25519(tmp_path / "absent")


def test_a_real_send_with_both_keys_verifies_with_both_verifiers(make_config, runner, keys, odkim):
    """`newsletter send` with dkim_key_file and dkim_ed25519_key_file: the message the relay gets carries both
    signatures, in that order, and dkimpy and OpenDKIM verify each."""
    with smtp_server() as (handler, port):
        config = make_config(f"""
            [newsletter]
            secret_key = "{SECRET}"
            base_url = "https://news.example.org"
            [smtp]
            port = {port}
            timeout = 5
            dkim_key_file = "{keys.rsa_pem}"
            dkim_selector = "nl2026"
            dkim_ed25519_key_file = "{keys.ed25519_pem}"
            dkim_ed25519_selector = "ed2026"
            """)
        invoke(runner, config, "subscribers", "add", "ada@example.org", "--name", "Ada", "--areas", "RL;LLM")
        invoke(runner, config, "send", "latest")
    (_, data), = handler.messages
    assert [s["a"] for s in signatures(data)] == ["rsa-sha256", "ed25519-sha256"]
    assert dkimpy_each(data, keys) == [True, True] and odkim.verify_each(data) == [True, True]
    assert dkim_signer(load_config(config).smtp, "example.org", REPO) is not None
