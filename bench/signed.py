"""`bench/run.py --dkim`: what DKIM signing costs a send, in one run on one list and one sink (#23).

    python bench/run.py --dkim                               # 10,000 subscribers into Postfix's smtp-sink
    python bench/run.py --dkim --sizes 60 --sink aiosmtpd    # the smoke test's quick run

An RSA-2048 key is made for the run. On the wire: smtp-source into the sink right before each engine
run (the path's limit, at the signed copies' mean size), the engine unsigned, the engine signed
(`newsletter send` subprocesses: msg/s, share of smtp-source, CPU, peak RSS). In this process: the
signer's CPU per message over engine copies of every group (``newsletter.send.sign``, the engine's
own), in rounds alternating with OpenSSL's raw RSA-2048 sign of a 32-byte digest with the same key
(the floor), and dkimpy's on a few copies (what signing cost before). Writes dkim.json to --out.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import run as base  # bench/run.py: the sink, smtp-source, the measured engine runs

ROUNDS = 5  # signer and raw RSA alternate, so a change of the machine's steal time hits both alike
SECRET = "bench-secret-0123456789abcdef0123456789"  # as bench/run.py's config has it


def make_key(folder: Path) -> Path:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    path = folder / "dkim.pem"
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    return path


def copies(count: int) -> list[bytes]:
    """Unsigned engine copies over the benchmark's random area mix, as `send` makes them (one per subscriber)."""
    from newsletter.config import load_config
    from newsletter.content import find_issue, load_issue
    from newsletter.links import Links
    from newsletter.send import Mailer, Recipient
    from newsletter.send.groups import Groups

    config = load_config(base.REPO / "config.toml")
    issue = load_issue(find_issue(config.path("issues"), "latest"), config.newsletter.areas)
    mailer = Mailer(config)
    groups, links = Groups(config, issue, mailer.sender), Links(SECRET, config.newsletter.base_url)
    rng, out = random.Random(7), []
    for i in range(count * 2):
        key = groups.key_for(";".join(rng.sample(base.AREAS, rng.randint(0, len(base.AREAS)))))
        prepared = groups.get(key) if key is not None else None
        if prepared is not None and len(out) < count:
            to = Recipient(i, f"reader{i}@example.org", f"Reader {i}", row_id=i)
            out.append(mailer.copy(prepared, links, to, mailer.new_message_id()).data)
    return out


def cpu_per_message(fn: Callable[[bytes], object], items: list[bytes]) -> float:
    """CPU seconds (this process) that ``fn`` takes per item."""
    start = time.process_time()
    for item in items:
        fn(item)
    return (time.process_time() - start) / len(items)


def signed_size(key_path: Path, count: int = 200) -> int:
    """The mean size of a signed copy: what smtp-source is given, so both sides move the same bytes."""
    from newsletter.config import SmtpSection
    from newsletter.send.sign import dkim_signer

    signer = dkim_signer(SmtpSection(dkim_key_file=str(key_path), dkim_selector="bench"), "example.org", base.REPO)
    assert signer is not None
    made = copies(count)
    return round(sum(len(signer.sign(m)) for m in made) / len(made))


def signing_cpu(key_path: Path, count: int) -> dict[str, Any]:
    """The engine's signer against OpenSSL's raw RSA-2048 sign of a digest, same key, alternating rounds."""
    import dkim
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding, rsa, utils

    from newsletter.config import SmtpSection
    from newsletter.send.sign import dkim_signer, signed_headers

    signer = dkim_signer(SmtpSection(dkim_key_file=str(key_path), dkim_selector="bench"), "example.org", base.REPO)
    assert signer is not None
    messages = copies(count)
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    digests = [hashlib.sha256(m[:64]).digest() for m in messages]
    pad, prehashed = padding.PKCS1v15(), utils.Prehashed(hashes.SHA256())
    fast = raw = 0.0
    share = -(-len(messages) // ROUNDS)
    for r in range(ROUNDS):
        part = slice(r * share, (r + 1) * share)
        fast += cpu_per_message(signer.sign, messages[part]) * len(messages[part])
        raw += cpu_per_message(lambda d: key.sign(d, pad, prehashed), digests[part]) * len(digests[part])
    pem, few = key_path.read_bytes(), messages[:min(20, len(messages))]
    relaxed = (b"relaxed", b"relaxed")
    dkimpy = cpu_per_message(lambda m: dkim.sign(m, b"bench", b"example.org", pem, canonicalize=relaxed,
                                                 include_headers=signed_headers(m)), few)
    fast, raw = fast / len(messages), raw / len(messages)
    return {"messages": len(messages), "signer_ms": round(fast * 1e3, 3), "raw_rsa_ms": round(raw * 1e3, 3),
            "ratio": round(fast / raw, 2), "dkimpy_ms": round(dkimpy * 1e3, 2), "dkimpy_messages": len(few),
            "signed_bytes": round(sum(len(signer.sign(m)) for m in messages[:200]) / min(200, len(messages)))}


def engine_pair(port: int, count: int, work: Path, key: Path, sink: str, size: int) -> list[dict[str, Any]]:
    """The engine unsigned, then signed, on the same list into the same sink; smtp-source before each."""
    runs = []
    for label, smtp in (("unsigned", ""), ("signed", f'dkim_key_file = "{key}"\ndkim_selector = "bench"\n')):
        source = base.smtp_source(port, min(count, base.SOURCE_MESSAGES), size) if sink == "smtp-sink" else None
        run = base.engine_run(port, count, work, smtp, label="-" + label)
        run["label"] = label
        if source:
            run["smtp_source"] = source
            run["of_smtp_source"] = round(run["rate"] / source["rate"], 3)
        runs.append(run)
    return runs


def targets(results: dict[str, Any]) -> list[str]:
    """The issue's two targets, met or missed, in one line each."""
    signed, cpu = results["engine"][1], results["signing"]
    lines = []
    if "of_smtp_source" in signed:
        share = signed["of_smtp_source"]
        lines.append(f"signed ≥ 0.6× smtp-source: {'met' if share >= 0.6 else 'MISSED'} ({share:.2f}×)")
    lines.append(f"signing CPU ≤ 1.5× OpenSSL's raw RSA-2048 sign: {'met' if cpu['ratio'] <= 1.5 else 'MISSED'} "
                 f"({cpu['signer_ms']} ms against {cpu['raw_rsa_ms']} ms, {cpu['ratio']}×)")
    return lines


def report(results: dict[str, Any], out: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"DKIM signing, {results['subscribers']:,} subscribers (one run, this machine)")
    for col in ("what", "messages/s", "of smtp-source", "CPU µs/msg", "peak RSS MB", "seconds"):
        table.add_column(col)
    for run in results["engine"]:
        src = run.get("smtp_source")
        if src:
            table.add_row(f"smtp-source → sink, {src['messages']:,} msgs", f"{src['rate']:,}", "1.00", "", "",
                          str(src["seconds"]))
        share = f"{run['of_smtp_source']:.2f}" if src else ""
        table.add_row(f"engine, {run['label']}", f"{run['rate']:,}", share, str(run["cpu_us_per_message"]),
                      str(run["send"]["peak_rss_mb"]), str(run["send"]["seconds"]))
    cpu = results["signing"]
    table.add_row(f"signer, in process, {cpu['messages']:,} copies", "", "", f"{cpu['signer_ms'] * 1e3:.0f}", "", "")
    table.add_row("OpenSSL RSA-2048 sign of a digest", "", "", f"{cpu['raw_rsa_ms'] * 1e3:.0f}", "", "")
    table.add_row(f"dkimpy, {cpu['dkimpy_messages']} copies (before)", "", "", f"{cpu['dkimpy_ms'] * 1e3:.0f}", "", "")
    Console(width=130).print(table)  # one line a row, in a pipe too
    for line in results["targets"]:
        print(line)
    (out / "dkim.json").write_text(json.dumps(results, indent=2), encoding="utf-8")
    print(f"Wrote {out / 'dkim.json'}")


def main(args: argparse.Namespace) -> None:
    count = int((args.sizes or "10000").split(",")[0])
    args.out.mkdir(parents=True, exist_ok=True)
    if args.sink == "smtp-sink":
        base.ensure_postfix_tools()
    with tempfile.TemporaryDirectory(prefix="nl-bench-dkim-") as tmp, base.sink(args.sink, Path(tmp)) as port:
        work = Path(tmp)
        key = make_key(work)
        size = base.isolated(signed_size, key)
        results: dict[str, Any] = {"subscribers": count, "message_bytes": size, "sink": args.sink,
                                   "connections": base.CONNECTIONS, "cores": os.cpu_count()}
        results["engine"] = engine_pair(port, count, work, key, args.sink, size)
        results["signing"] = base.isolated(signing_cpu, key, min(count, 2000))
    results["targets"] = targets(results)
    report(results, args.out)
