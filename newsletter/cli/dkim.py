"""``newsletter dkim-record``: the DNS TXT record of each DKIM key the engine signs with, exactly as receivers look
it up, made from the configured key files themselves (``send/sign.py``), so the record and the signatures cannot
disagree."""

from __future__ import annotations

import json

import click

from ..send.compose import sender_for
from ..send.sign import dns_records
from .base import State, cli, pass_state


@cli.command("dkim-record")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per record: name, type, value.")
@pass_state
def dkim_record(state: State, as_json: bool) -> None:
    """Print the DNS TXT record(s) for [smtp] dkim_key_file (and dkim_ed25519_key_file), to publish before signing.

    Zone-file lines by default (a long value split into 255-octet strings, which receivers join); --json gives each
    value whole, for a DNS provider's form.

    Example: newsletter dkim-record
    """
    nl = state.config.newsletter
    found = dns_records(state.config.smtp, sender_for(nl.name, nl.sender, nl.reply_to).domain, state.config.root)
    if not found:
        raise click.ClickException("no DKIM key is configured: set [smtp] dkim_key_file and dkim_selector "
                                   "(README, Deploying: DNS records)")
    for record in found:
        click.echo(json.dumps({"name": record.name, "type": "TXT", "value": record.value}) if as_json
                   else record.zone_line())
