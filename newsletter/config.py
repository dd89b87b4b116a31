"""Typed configuration, loaded once: config.toml, then ``NEWSLETTER_<SECTION>__<KEY>`` env vars.

pydantic-settings does the merging and type conversion (env beats file, nested keys through
``__``); this module only picks the file, makes relative paths relative to that file, and turns a
validation failure into one line that names the key and where its value came from.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from .errors import ConfigError

ENV_PREFIX = "NEWSLETTER_"
DEFAULT_CONFIG = Path("config.toml")
# secret_key values copied from examples and tutorials: whoever has read them can sign every link (unsubscribe,
# preferences, confirm, CSRF, VERP) for every subscriber. Anywhere in the value: the words of a "fill this in";
# the whole value: the stock names of a secret.
PLACEHOLDER_KEYS = re.compile(r"""
    change[-_ ]?me | placeholder | replace[-_ ]?me | fill[-_ ]?me | insert[-_ ]?here
  | ^(?: (?:your|my|the)?[-_ ]?secret(?:[-_ ]?key)? | password | example | test | dev )$
""", re.IGNORECASE | re.VERBOSE)
_SNS_TOPIC = re.compile(r"arn:aws:sns:[a-z0-9-]{1,30}:\d{12}:[A-Za-z0-9_-]{1,256}")
MIN_KEY_BYTES = 32  # HMAC-SHA1/SHA256 keys: 256 bits, as many as the hash gives back
MAKE_KEY = "python3 -c 'import secrets; print(secrets.token_urlsafe(48))'"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class NewsletterSection(_Section):
    name: str = "ML Papers Weekly"
    sender: str = Field(default="ML Papers Weekly <digest@example.org>", alias="from")
    reply_to: str = ""
    base_url: str = "http://127.0.0.1:8000"
    areas: list[str] = Field(default_factory=lambda: ["LLM", "Vision", "RL", "Agents"], min_length=1)
    secret_key: SecretStr = SecretStr("")
    previous_secret_key: SecretStr = SecretStr("")  # the key before `newsletter keys rotate`: still verifies
    previous_key_days: float = Field(default=30.0, ge=0)  # … for this many days after the rotation
    language: str = "en"
    identity: str = "ML Papers Weekly · Example Lab · 1 Example Street · 10115 Berlin"
    send_when_no_match: bool = False
    late_joiners_days: float = Field(default=7.0, ge=0)  # confirming this soon after a send gets that issue; 0: off
    editor: str = ""  # `preview --serve`: where "send me a test" sends a [Test] copy

    @field_validator("areas")
    @classmethod
    def _unique_areas(cls, areas: list[str]) -> list[str]:
        if len({a.casefold() for a in areas}) != len(areas):
            raise ValueError("areas must be unique")
        if any(not a.strip() or "," in a or ";" in a for a in areas):
            raise ValueError("an area must be a non-empty name without ',' or ';'")
        return areas

    @field_validator("secret_key", "previous_secret_key")
    @classmethod
    def _usable_key(cls, key: SecretStr, info: ValidationInfo) -> SecretStr:
        """Empty (the database's own key) or not public and, for a key that signs, at least 32 bytes. A
        previous key may be shorter: it only verifies, for previous_key_days, the links sent before."""
        value = key.get_secret_value()
        if value and PLACEHOLDER_KEYS.search(value.strip()):
            raise ValueError(f"is a known placeholder, with which anyone can sign links; make a key with {MAKE_KEY}")
        if value and info.field_name == "secret_key" and len(value.encode()) < MIN_KEY_BYTES:
            raise ValueError(f"must be at least {MIN_KEY_BYTES} bytes; make a key with {MAKE_KEY}")
        return key

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        if not url.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return url.rstrip("/")


class PathsSection(_Section):
    issues: Path = Path("issues")
    templates: Path = Path("templates/email")
    subscribers: Path = Path("subscribers")
    preview: Path = Path("build/preview")


class DatabaseSection(_Section):
    url: str = "sqlite:///newsletter.db"


class SmtpSection(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=1025, ge=1, le=65535)
    security: Literal["none", "starttls", "tls"] = "none"
    username: str = ""
    password: SecretStr = SecretStr("")
    envelope_from: str = ""
    connections: int = Field(default=4, ge=1, le=64)
    processes: int = Field(default=0, ge=0, le=64)  # 0: one a core (one for a rate-limited send); send/fanout.py
    timeout: float = Field(default=30.0, gt=0)
    rate_per_second: float = Field(default=0.0, ge=0)
    rate_per_hour: int = Field(default=0, ge=0)
    max_attempts: int = Field(default=5, ge=1)
    retry_seconds: float = Field(default=60.0, ge=0)
    pause_after_errors: int = Field(default=25, ge=1)
    # rows marked "sending" per commit: 1 = a commit a message, ≤ 1 unknown per connection after a crash;
    # N = a commit per N messages, ≤ N unknown per connection
    commit_every: int = Field(default=0, ge=0, le=200)  # 0: 8 (Config._commit_every)
    ca_file: str = ""
    dkim_key_file: str = ""
    dkim_selector: str = ""
    dkim_domain: str = ""
    # a second signature, Ed25519-SHA256 (RFC 8463), under a selector of its own (one key per DNS record)
    dkim_ed25519_key_file: str = ""
    dkim_ed25519_selector: str = ""

    @model_validator(mode="after")
    def _dkim_complete(self) -> SmtpSection:
        if self.dkim_key_file and not self.dkim_selector:
            raise ValueError("dkim_selector: required when dkim_key_file is set")
        if self.dkim_ed25519_key_file and not (self.dkim_key_file and self.dkim_ed25519_selector):
            raise ValueError("dkim_ed25519_key_file: a second signature, needs dkim_key_file and dkim_ed25519_selector")
        return self


class BouncesSection(_Section):
    # VERP: each message's envelope sender is bounces+<token>@<domain of address>; empty = no VERP
    address: str = ""
    listen_host: str = "127.0.0.1"
    listen_port: int = Field(default=2526, ge=1, le=65535)
    lmtp: bool = False
    imap_host: str = ""
    imap_port: int = Field(default=993, ge=1, le=65535)
    imap_security: Literal["tls", "starttls", "none"] = "tls"
    imap_user: str = ""
    imap_password: SecretStr = SecretStr("")
    imap_folder: str = "INBOX"
    imap_done: str = "delete"          # or the folder processed messages are moved to
    imap_held: str = Field(default="newsletter-held", min_length=1)  # over max_size or unreadable: moved here
    max_size: int = Field(default=40 << 20, ge=1)  # `bounces fetch` skips larger messages, by RFC822.SIZE
    soft_threshold: int = Field(default=5, ge=1)
    soft_window_days: float = Field(default=7.0, gt=0)
    keep_raw_days: float = Field(default=30.0, ge=0)
    raw_bytes_per_day: int = Field(default=64 << 20, ge=0)  # raw notice text one process keeps a day
    receive_per_minute: int = Field(default=300, ge=1)     # `bounces receive`: notices per client per minute
    # provider webhooks, POST /hooks/<provider> (web/hooks.py): only these answer, the others are 404
    providers: list[Literal["ses", "mailgun", "postmark", "sendgrid"]] = Field(default_factory=list)
    hook_max_bytes: int = Field(default=1 << 20, ge=1024)  # a larger webhook body is refused (413)
    # a notification signed longer ago than this (or over 5 minutes ahead) is refused (403): a replay; raise it
    # if a provider is set to retry for longer (SNS resends a message with its first Timestamp)
    hook_max_age_seconds: float = Field(default=900.0, ge=60)
    ses_topic_arns: list[str] = Field(default_factory=list)  # the SNS topics whose notifications count
    mailgun_signing_key: SecretStr = SecretStr("")
    postmark_user: str = ""
    postmark_password: SecretStr = SecretStr("")
    sendgrid_public_key: str = ""  # the Event Webhook's verification key, base64 (as SendGrid shows it)

    @model_validator(mode="after")
    def _providers_complete(self) -> BouncesSection:
        """A provider switched on without what verifies its notifications would answer strangers: refused at start."""
        needs = {"ses": ("ses_topic_arns",), "mailgun": ("mailgun_signing_key",),
                 "postmark": ("postmark_user", "postmark_password"), "sendgrid": ("sendgrid_public_key",)}
        for provider in self.providers:
            for key in needs[provider]:
                value = getattr(self, key)
                if not (value.get_secret_value() if isinstance(value, SecretStr) else value):
                    raise ValueError(f"{key}: required when providers has {provider!r}")
        for arn in self.ses_topic_arns:
            if not _SNS_TOPIC.fullmatch(arn):
                raise ValueError(f"ses_topic_arns: {arn!r} is not arn:aws:sns:<region>:<account>:<topic>")
        return self

    @field_validator("address")
    @classmethod
    def _plain_address(cls, value: str) -> str:
        local, at, domain = value.rpartition("@")
        if value and (not at or not local or not domain or "+" in local or not value.isascii() or " " in value):
            raise ValueError("must be a plain ASCII address without '+', e.g. bounces@bounces.example.org")
        return value

    @field_validator("imap_done", "imap_held")
    @classmethod
    def _another_folder(cls, value: str, info: ValidationInfo) -> str:
        if value == info.data.get("imap_folder"):
            raise ValueError("must not be imap_folder itself: its messages would be read again every run")
        return value


class TransportSection(_Section):
    kind: Literal["smtp", "directory"] = "smtp"
    directory: Path = Path("build/outgoing")


class ScheduleSection(_Section):
    day: Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"] = "thu"
    time: str = Field(default="09:00", pattern=r"^([01]\d|2[0-3]):[0-5]\d$")
    timezone: str = "UTC"
    grace_hours: float = Field(default=6.0, ge=0)
    # self: the scheduler delivers the send; workers: it only makes the outbox, `newsletter worker`s deliver
    deliver: Literal["self", "workers"] = "self"

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, name: str) -> str:
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown IANA time zone {name!r} (e.g. Europe/Berlin)") from None
        return name


class WebSection(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    preview_token: SecretStr = SecretStr("")
    confirm_hours: float = Field(default=48.0, gt=0)
    subscribe_per_hour: int = Field(default=5, ge=1)
    confirm_every_minutes: float = Field(default=60.0, gt=0)  # one confirmation mail per address this often
    confirm_mails_per_hour: int = Field(default=100, ge=1)  # confirmation mails an hour, all addresses and processes
    trusted_proxies: list[str] = Field(default_factory=list)  # peers whose X-Forwarded-For is believed

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, proxies: list[str]) -> list[str]:
        for proxy in proxies:
            try:
                ipaddress.ip_network(proxy, strict=False)
            except ValueError:
                raise ValueError(f"{proxy!r} is not an IP address or network (e.g. 127.0.0.1, 10.0.0.0/8)") from None
        return proxies


class TrackingSection(_Section):
    """Click counts per paper (clicks.py): off unless asked; per issue, paper, link kind and day, never per reader."""

    clicks: bool = False
    ignore_first_seconds: float = Field(default=60.0, ge=0, le=86400)  # scanners follow links as mail arrives


class ArxivSection(_Section):
    """``newsletter issue add``: arXiv's API (its terms: a request per 3 s at most, a User-Agent naming us) and
    how its metadata becomes a paper. ``areas`` and ``keywords`` only suggest: the editor decides."""

    api_url: str = Field(default="https://export.arxiv.org/api/query", pattern=r"^https?://\S+$")
    cache_dir: Path = Path("build/arxiv-cache")  # one JSON file per id asked (2605.01234v2 apart from 2605.01234)
    min_interval_seconds: float = Field(default=3.0, ge=0)
    timeout: float = Field(default=30.0, gt=0)
    user_agent: str = ""  # empty: "newsletter/<version> (<name>; mailto:<address of [newsletter] from>)"
    max_authors: int = Field(default=5, ge=1)  # the rest become et_al = N
    areas: dict[str, str] = Field(default_factory=lambda: {
        "cs.CL": "LLM", "cs.CV": "Vision", "eess.IV": "Vision", "cs.MA": "Agents"})
    # words of the title or abstract (whole words; an all-capitals one, like RL, in capitals only) → area,
    # looked for only in papers listed in keyword_categories
    keywords: dict[str, str] = Field(default_factory=lambda: {
        "reinforcement learning": "RL", "RL": "RL", "policy optimization": "RL", "agentic": "Agents",
        "LLM agent": "Agents", "LLM agents": "Agents", "multi-agent": "Agents"})
    keyword_categories: list[str] = Field(default_factory=lambda: ["cs.LG", "stat.ML", "cs.AI", "cs.CL"])


class Config(BaseSettings):
    """The whole configuration. ``root`` is the folder of the config file: relative paths start there."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="ignore", case_sensitive=False
    )

    newsletter: NewsletterSection = Field(default_factory=NewsletterSection)
    paths: PathsSection = Field(default_factory=PathsSection)
    database: DatabaseSection = Field(default_factory=DatabaseSection)
    smtp: SmtpSection = Field(default_factory=SmtpSection)
    transport: TransportSection = Field(default_factory=TransportSection)
    bounces: BouncesSection = Field(default_factory=BouncesSection)
    schedule: ScheduleSection = Field(default_factory=ScheduleSection)
    web: WebSection = Field(default_factory=WebSection)
    arxiv: ArxivSection = Field(default_factory=ArxivSection)
    tracking: TrackingSection = Field(default_factory=TrackingSection)
    root: Path = Path(".")
    _file: Path = PrivateAttr(default=DEFAULT_CONFIG)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Env vars first so they override what the file (passed as init kwargs) says.
        return env_settings, init_settings

    @model_validator(mode="after")
    def _commit_every(self) -> Config:
        """``[smtp] commit_every`` unset (0): 8. On PostgreSQL 8 met #16's targets (1.05-1.10x one SQLite process,
        49.9 rows read a message; 0.67x and 73 rows at 1); on SQLite, with a send's processes taking turns at the
        one writer lock, 8 took 20,000 messages from 11.6 to 8.6 s (2 processes, 4 connections, #23). The price:
        after a crash at most 8 messages per connection are of unknown fate instead of 1 (``commit_every = 1``)."""
        if not self.smtp.commit_every:
            self.smtp.commit_every = 8
        return self

    def origin(self, section: str, key: str) -> str:
        """Where ``[section] key`` came from, for a one-line error: its env var if set, else the config file."""
        env = _env_name((section, key))
        return f"env {env}" if _in_env(env) else f"{self._file} [{section}] {key}"

    def path(self, name: Literal["issues", "templates", "subscribers", "preview"]) -> Path:
        return (self.root / getattr(self.paths, name)).resolve()

    @property
    def database_url(self) -> str:
        """The database URL with a relative SQLite path made relative to the config file."""
        url = self.database.url
        prefix = "sqlite:///"
        if url.startswith(prefix) and not url.startswith(prefix + "/") and ":memory:" not in url:
            return prefix + str((self.root / url[len(prefix):]).resolve())
        return url


LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


def one_click(base_url: str) -> bool:
    """RFC 8058 one-click unsubscribe needs an https URL: only then is List-Unsubscribe-Post sent."""
    return base_url.startswith("https://")


def base_url_warning(base_url: str) -> str | None:
    """One line when ``base_url`` is plain http on a public host (on loopback it is development: silent)."""
    if one_click(base_url) or urlsplit(base_url).hostname in LOOPBACK_HOSTS:
        return None
    return (f"warning: [newsletter] base_url {base_url} is not https: List-Unsubscribe-Post (RFC 8058 "
            "one-click) is left out; the mailto: stays in List-Unsubscribe")


def config_path(explicit: str | os.PathLike[str] | None = None) -> Path:
    """Which file to read: ``--config``, else ``NEWSLETTER_CONFIG``, else ./config.toml."""
    if explicit:
        return Path(explicit)
    return Path(os.environ.get(ENV_PREFIX + "CONFIG") or DEFAULT_CONFIG)


def load_config(explicit: str | os.PathLike[str] | None = None) -> Config:
    path = config_path(explicit)
    data = _read_toml(path) if path.exists() else {}
    if explicit and not path.exists():
        raise ConfigError(f"{path}: no such config file")
    unknown = set(data) - (set(Config.model_fields) - {"root"})
    if unknown:
        raise ConfigError(f"{path}: unknown section [{sorted(unknown)[0]}]")
    try:
        config = Config(**data, root=path.resolve().parent)
    except ValidationError as exc:
        raise ConfigError(_one_line(path, exc)) from None
    config._file = path
    return config


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None


def _one_line(path: Path, exc: ValidationError) -> str:
    err = exc.errors()[0]
    key = ".".join(str(p) for p in err["loc"])
    env = _env_name(err["loc"])
    where = f"env {env}" if _in_env(env) else str(path)
    shown = None if _secret(err["loc"]) else err.get("input")
    got = f" (got {shown!r})" if isinstance(shown, (str, int, float, bool)) else ""
    return f"{where}: {key}: {err['msg']}{got}"


def _env_name(loc: tuple[int | str, ...]) -> str:
    return ENV_PREFIX + "__".join(str(p) for p in loc).upper()


def _in_env(name: str) -> bool:
    return name in {k.upper() for k in os.environ}


def _secret(loc: tuple[int | str, ...]) -> bool:
    """Whether ``loc`` names a SecretStr key, whose value an error line must never show."""
    model: Any = Config
    for part in loc:
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:
            return False
        model = field.annotation
    return model is SecretStr
