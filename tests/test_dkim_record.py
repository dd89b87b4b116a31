"""`newsletter dkim-record` (#22): the TXT records it prints are the ones the key fixtures publish, and dkimpy,
looking the keys up in exactly those records, verifies what the engine signs."""

from __future__ import annotations

import json
import re

import dkim
import pytest

from newsletter.config import load_config
from newsletter.send.sign import DnsRecord

from .conftest import invoke
from .dkimkit import DOMAIN, Keys, engine_copies, mailer_for, make_keys, sign, signatures


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    return make_keys(tmp_path_factory.mktemp("dkim-keys"))


def config_with(make_config, keys: Keys, ed25519: bool) -> str:
    extra = f'\ndkim_ed25519_key_file = "{keys.ed25519_pem}"\ndkim_ed25519_selector = "ed2026"' if ed25519 else ""
    return make_config(f"""
        [newsletter]
        from = "ML Papers Weekly <digest@{DOMAIN}>"
        [smtp]
        dkim_key_file = "{keys.rsa_pem}"
        dkim_selector = "nl2026"{extra}
        """)


def printed(runner, config) -> dict[str, str]:
    """The records `dkim-record --json` prints, by name."""
    lines = invoke(runner, config, "dkim-record", "--json").output.splitlines()
    found = [json.loads(line) for line in lines]
    assert all(r["type"] == "TXT" for r in found)
    return {r["name"]: r["value"] for r in found}


@pytest.mark.parametrize("ed25519", [False, True])
def test_the_records_are_the_fixtures_and_verify_the_engines_signatures(make_config, runner, keys, ed25519):
    """RSA alone, then RSA and Ed25519: the records equal the key fixtures' (SubjectPublicKeyInfo for RSA, the raw
    32-byte key for Ed25519), and dkimpy with them as its DNS passes every signature of an engine copy."""
    config = config_with(make_config, keys, ed25519)
    records = printed(runner, config)
    expected = {k: v for k, v in keys.records.items() if ed25519 or k.startswith("nl2026.")}
    assert records == expected
    mailer = mailer_for(load_config(config), keys, ed25519_too=ed25519)
    data = sign(mailer, engine_copies(load_config(config), mailer, [("ada@example.org", "Ada", "")])[0])

    def dns(name: bytes, timeout: int = 5) -> bytes:
        return records[name.decode().rstrip(".")].encode()
    assert [bool(dkim.DKIM(data).verify(idx=i, dnsfunc=dns)) for i in range(len(signatures(data)))] == \
        [True] * (2 if ed25519 else 1)


def test_the_zone_line_splits_a_long_value_into_strings_receivers_join(make_config, runner, keys):
    """An RSA-2048 value is longer than one TXT string may be (255 octets): the zone-file line quotes it in parts
    that join to the value, under the name <selector>._domainkey.<domain>."""
    config = config_with(make_config, keys, ed25519=False)
    line = invoke(runner, config, "dkim-record").output.strip()
    value = keys.records[f"nl2026._domainkey.{DOMAIN}"]
    assert line.startswith(f"nl2026._domainkey.{DOMAIN}. IN TXT ( \"v=DKIM1; k=rsa; p=")
    parts = re.findall(r'"([^"]*)"', line)
    assert len(parts) == 2 and all(len(p) <= 255 for p in parts) and "".join(parts) == value
    assert DnsRecord("x", "v" * 600).strings() == ["v" * 255, "v" * 255, "v" * 90]


def test_without_a_key_it_says_what_to_set(make_config, runner):
    """No [smtp] dkim_key_file: one line naming the settings, exit 1."""
    done = invoke(runner, make_config(""), "dkim-record", code=1)
    assert done.output.strip().startswith("Error: no DKIM key is configured: set [smtp] dkim_key_file")
