"""The keys of the service's doors, checked the same way on every transport.

Prediction calls need the API key when one is set (``HOUSING_API_KEY`` or ``_FILE``), sent as
``Authorization: Bearer <key>`` or ``X-API-Key`` (HTTP headers, or gRPC metadata); a missing or
wrong one is UNAUTHENTICATED. The control routes (model reload) have a door of their own
(``check_admin``): their own key, or closed (FORBIDDEN) unless the operator opens them. Keys are
compared in constant time, so a key cannot be guessed byte by byte from response times.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from app.errors import Refusal, RequestRefused
from app.settings import Settings

# A request's headers (or a call's text metadata): lower-case names, values as sent.
Headers = dict[bytes, bytes]


@dataclass(frozen=True, kw_only=True)
class Keys:
    """The doors' keys, from the settings."""

    api_key: bytes | None
    admin_key: bytes | None = None
    control_open: bool = False

    @classmethod
    def from_settings(cls, settings: Settings) -> Keys:
        return cls(
            api_key=settings.api_key_bytes(),
            admin_key=settings.admin_key_bytes(),
            control_open=settings.control_open,
        )

    def check_admin(self, headers: Headers) -> None:
        """The control routes' door: the admin key when one is set (401 without it; the
        prediction key is not it), else open only if the operator opened it (403)."""
        if self.admin_key is None:
            if self.control_open:
                return
            raise RequestRefused(
                Refusal.FORBIDDEN,
                "the control routes are closed. Hint: the operator sets HOUSING_ADMIN_KEY (or "
                "HOUSING_ADMIN_KEY_FILE) and sends it as 'Authorization: Bearer <key>', or "
                "HOUSING_CONTROL_OPEN=true on a trusted network; SIGHUP also reloads.",
            )
        if not _matches(headers.get(b"x-admin-key") or _bearer(headers), self.admin_key):
            raise RequestRefused(
                Refusal.UNAUTHENTICATED,
                "missing or wrong admin key. Hint: send 'Authorization: Bearer <key>' or "
                "'X-Admin-Key: <key>' with the value of HOUSING_ADMIN_KEY.",
            )

    def check_key(self, headers: Headers) -> None:
        if self.api_key is None:
            return
        given = headers.get(b"x-api-key")
        if given is None:
            given = _bearer(headers)
        if not _matches(given, self.api_key):
            raise RequestRefused(
                Refusal.UNAUTHENTICATED,
                "missing or wrong API key. Hint: send 'Authorization: Bearer <key>' or "
                "'X-API-Key: <key>' with the value of HOUSING_API_KEY.",
            )


def _matches(given: bytes | None, key: bytes) -> bool:
    # Constant time, so a key cannot be guessed byte by byte from response times.
    return given is not None and hmac.compare_digest(given, key)


def _bearer(headers: Headers) -> bytes | None:
    scheme, _, token = headers.get(b"authorization", b"").partition(b" ")
    return token.strip() if scheme.lower() == b"bearer" else None
