"""Signed links in every email: unsubscribe, preferences, and the double opt-in confirmation.

itsdangerous signs the subscriber id with HMAC, so a link can't be guessed or altered; each kind
has its own salt, so an unsubscribe token is no preferences token. Confirmation links expire.
"""

from __future__ import annotations

from dataclasses import dataclass

from itsdangerous import BadData, URLSafeSerializer, URLSafeTimedSerializer

UNSUBSCRIBE = "unsubscribe"
PREFERENCES = "preferences"
CONFIRM = "confirm"


class BadToken(Exception):
    """A tampered, expired or foreign token."""


@dataclass(frozen=True)
class Links:
    secret: str
    base_url: str

    def token(self, kind: str, subscriber_id: int) -> str:
        return URLSafeSerializer(self.secret, salt=kind).dumps(subscriber_id)

    def url(self, kind: str, subscriber_id: int) -> str:
        return f"{self.base_url}/{kind}/{self.token(kind, subscriber_id)}"

    def confirm_url(self, subscriber_id: int) -> str:
        token = URLSafeTimedSerializer(self.secret, salt=CONFIRM).dumps(subscriber_id)
        return f"{self.base_url}/{CONFIRM}/{token}"

    def verify(self, kind: str, token: str) -> int:
        try:
            value = URLSafeSerializer(self.secret, salt=kind).loads(token)
        except BadData:
            raise BadToken(kind) from None
        return _subscriber_id(value, kind)

    def verify_confirm(self, token: str, max_age_seconds: int) -> int:
        try:
            value = URLSafeTimedSerializer(self.secret, salt=CONFIRM).loads(token, max_age=max_age_seconds)
        except BadData:
            raise BadToken(CONFIRM) from None
        return _subscriber_id(value, CONFIRM)


def _subscriber_id(value: object, kind: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise BadToken(kind)
    return value
