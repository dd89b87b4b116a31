"""The web pages: sign-up with double opt-in, unsubscribe, preferences, archive and editor preview."""

from .app import create_app, serve

__all__ = ["create_app", "serve"]
