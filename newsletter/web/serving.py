"""Running the web app: uvicorn with a redacted access log, and the check that base_url reaches it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from starlette.applications import Starlette

from ..config import Config
from . import guard
from .app import create_app
from .clicks import quiet_access_log
from .guard import is_loopback

if TYPE_CHECKING:
    import uvicorn


def server(app: Starlette, host: str, port: int, **options: Any) -> uvicorn.Server:
    """uvicorn for ``app``, its access log without link tokens (``guard.RedactTokens``) and without the tracked
    links' requests (``clicks.QuietClicks``).

    uvicorn's own proxy headers stay off: it would believe X-Forwarded-For from any loopback peer. The
    app believes it from ``[web] trusted_proxies`` only (``guard.middleware``).
    """
    import uvicorn

    options = {"proxy_headers": False, "log_level": "info", **options}
    made = uvicorn.Server(uvicorn.Config(app, host=host, port=port, **options))
    guard.redact_access_log()  # after uvicorn.Config, which (re)configures logging
    quiet_access_log(guard.ACCESS_LOG)  # no line for a tracked link: it would tie an address to a paper
    return made


def listen_mismatch(base_url: str, host: str, port: int) -> str | None:
    """Why links made from ``base_url`` (every link in the mails) would miss a server on ``host:port``, or None.

    Only a base_url on loopback or on the listening host itself is checked: any other host is taken
    for a reverse proxy in front of this server, with a port and scheme of its own.
    """
    url = urlsplit(base_url)
    there, here = (url.hostname or "").casefold(), host.strip("[]").casefold()
    try:
        their_port = url.port or (443 if url.scheme == "https" else 80)
    except ValueError:  # not a port number: the config is wrong in a way this check cannot judge
        return None
    if not _is_local(there) and there != here:
        return None
    if _is_local(there) and not (_is_local(here) or here in _ANY_ADDRESS):
        return (f"[newsletter] base_url {base_url} is this machine's loopback, but the server listens on {host} "
                f"only: the links in the mails it sends will not reach it")
    if their_port != port:
        return (f"[newsletter] base_url {base_url} is port {their_port}, but the server listens on port {port}: "
                f"the links in the mails it sends (confirm, unsubscribe, preferences) will not reach it")
    return None


_ANY_ADDRESS = ("0.0.0.0", "::", "")


def _is_local(host: str) -> bool:
    return host == "localhost" or host.endswith(".localhost") or is_loopback(host)


def serve(config: Config, host: str, port: int) -> None:
    """Run the app under uvicorn until interrupted."""
    server(create_app(config), host, port).run()
