"""What the DKIM tests share: a pair of keys with their TXT records, engine copies, and the two ways to ask
dkimpy about each signature."""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from pathlib import Path

import dkim
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from newsletter.config import Config
from newsletter.content import find_issue, load_issue
from newsletter.links import Links
from newsletter.send import Mailer, Recipient
from newsletter.send.groups import Groups
from newsletter.send.sign import DkimSigner

SECRET = "dkim-tests-secret-0123456789-abcdefghij"
DOMAIN = "example.org"


@dataclass(frozen=True)
class Keys:
    rsa_pem: Path
    ed25519_pem: Path
    ed25519_seed: bytes  # base64, as dkimpy takes it
    records: dict[str, str]  # TXT records by name

    def dns(self, name: bytes, timeout: int = 5) -> bytes:
        """dkimpy's DNS lookup, from the same records OpenDKIM is served."""
        return self.records[name.decode().rstrip(".")].encode()


def make_keys(folder: Path) -> Keys:
    """A fresh RSA-2048 and Ed25519 key in ``folder``, and their TXT records."""
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ed_key = ed25519.Ed25519PrivateKey.generate()
    raw = serialization.Encoding.Raw
    ed_public = ed_key.public_key().public_bytes(raw, serialization.PublicFormat.Raw)
    rsa_public = rsa_key.public_key().public_bytes(serialization.Encoding.DER,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo)
    (folder / "rsa.pem").write_bytes(rsa_key.private_bytes(serialization.Encoding.PEM,
                                                           serialization.PrivateFormat.TraditionalOpenSSL,
                                                           serialization.NoEncryption()))
    (folder / "ed.pem").write_bytes(ed_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                         serialization.NoEncryption()))
    seed = base64.b64encode(ed_key.private_bytes(raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()))
    return Keys(folder / "rsa.pem", folder / "ed.pem", seed, {
        f"nl2026._domainkey.{DOMAIN}": f"v=DKIM1; k=rsa; p={base64.b64encode(rsa_public).decode()}",
        f"ed2026._domainkey.{DOMAIN}": f"v=DKIM1; k=ed25519; p={base64.b64encode(ed_public).decode()}",
    })


def mailer_for(config: Config, keys: Keys, ed25519_too: bool = False) -> Mailer:
    smtp = {"dkim_key_file": str(keys.rsa_pem), "dkim_selector": "nl2026"}
    if ed25519_too:
        smtp |= {"dkim_ed25519_key_file": str(keys.ed25519_pem), "dkim_ed25519_selector": "ed2026"}
    return Mailer(config.model_copy(update={"smtp": config.smtp.model_copy(update=smtp)}))


def engine_copies(config: Config, mailer: Mailer, people: list[tuple[str, str, str]]) -> list[bytes]:
    """Unsigned issue copies as the engine makes them: (email, name, areas) each, UTF-8 form and ASCII form."""
    issue = load_issue(find_issue(config.path("issues"), "latest"), config.newsletter.areas)
    groups, links = Groups(config, issue, mailer.sender), Links(SECRET, "https://news.example.org")
    out = []
    for i, (email, name, areas) in enumerate(people):
        key = groups.key_for(areas)
        prepared = groups.get(key) if key else None
        assert prepared is not None, areas
        msg = mailer.copy(prepared, links, Recipient(i + 1, email, name, row_id=i + 1), mailer.new_message_id())
        out += [msg.data] + ([msg.ascii.data] if msg.ascii else [])
    return out


def signatures(data: bytes) -> list[dict[str, str]]:
    """Each DKIM-Signature's tags, whitespace removed, in the order the fields stand."""
    head = data.split(b"\r\n\r\n", 1)[0].decode()
    found = re.findall(r"^DKIM-Signature:([^\r\n]*(?:\r\n[ \t][^\r\n]*)*)", head, re.MULTILINE)
    return [{k.strip(): "".join(v.split()) for k, v in (t.split("=", 1) for t in f.split(";") if t.strip())}
            for f in found]


def dkimpy_each(data: bytes, keys: Keys) -> list[bool]:
    """dkimpy's verdict on each signature (``dkim.verify`` alone looks at the first only)."""
    return [_dkimpy_one(data, i, keys) for i in range(len(signatures(data)))]


def _dkimpy_one(data: bytes, idx: int, keys: Keys) -> bool:
    try:
        return bool(dkim.DKIM(data).verify(idx=idx, dnsfunc=keys.dns))
    except dkim.DKIMException:  # what dkim.verify turns into False too
        return False


def sign(mailer: Mailer, data: bytes, at: int | None = None) -> bytes:
    """``data`` signed as the mailer signs (at the second ``at``, if given)."""
    assert mailer.signer is not None
    signer = mailer.signer if at is None else DkimSigner(mailer.signer.domain, mailer.signer.keys, clock=lambda: at)
    return signer.sign(data)
