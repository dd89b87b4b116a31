"""The web pages: sign-up with double opt-in, unsubscribe, preferences, archive and editor preview."""

from .app import create_app
from .serving import listen_mismatch, serve

__all__ = ["create_app", "listen_mismatch", "serve"]
