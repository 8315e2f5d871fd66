"""The checks every prediction route makes before its body is parsed, each with its status.

In this order: method (405), API key (401), content type (415), body size (413, before a byte
of an oversized body is read when it has a Content-Length, as soon as a chunked one passes the
limit). Every refusal says how to fix the request. The control routes (model reload) have a
door of their own (``check_admin``): their own key, or closed unless the operator opens them.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from starlette.types import Receive

from app.errors import ClientDisconnected, RequestRefused
from app.settings import Settings

Headers = dict[bytes, bytes]


def media_type(value: bytes | None) -> str:
    """``application/json; charset=utf-8`` -> ``application/json``; absent -> ``""``."""
    if value is None:
        return ""
    return value.split(b";", 1)[0].strip().lower().decode("latin-1")


@dataclass(frozen=True)
class Guard:
    """The prediction routes' shared checks, from the settings."""

    max_body_bytes: int
    api_key: bytes | None
    admin_key: bytes | None = None
    control_open: bool = False

    @classmethod
    def from_settings(cls, settings: Settings) -> Guard:
        return cls(
            settings.max_body_bytes,
            settings.api_key_bytes(),
            settings.admin_key_bytes(),
            settings.control_open,
        )

    def check_admin(self, headers: Headers) -> None:
        """The control routes' door: the admin key when one is set (401 without it; the
        prediction key is not it), else open only if the operator opened it (403)."""
        if self.admin_key is None:
            if self.control_open:
                return
            raise RequestRefused(
                403,
                "the control routes are closed. Hint: the operator sets HOUSING_ADMIN_KEY (or "
                "HOUSING_ADMIN_KEY_FILE) and sends it as 'Authorization: Bearer <key>', or "
                "HOUSING_CONTROL_OPEN=true on a trusted network; SIGHUP also reloads.",
            )
        if not _matches(headers.get(b"x-admin-key") or _bearer(headers), self.admin_key):
            raise RequestRefused(
                401,
                "missing or wrong admin key. Hint: send 'Authorization: Bearer <key>' or "
                "'X-Admin-Key: <key>' with the value of HOUSING_ADMIN_KEY.",
                {"WWW-Authenticate": "Bearer"},
            )

    def admit(self, method: str, headers: Headers, media_types: frozenset[str]) -> None:
        """Method, key and content type (``""`` in ``media_types``: no Content-Type)."""
        if method != "POST":
            raise RequestRefused(405, "use POST", {"Allow": "POST"})
        self.check_key(headers)
        kind = media_type(headers.get(b"content-type"))
        if kind not in media_types:
            accepted = ", ".join(sorted(t for t in media_types if t))
            raise RequestRefused(
                415, f"content type {kind!r} is not accepted here. Hint: send one of {accepted}."
            )

    def check_key(self, headers: Headers) -> None:
        if self.api_key is None:
            return
        given = headers.get(b"x-api-key")
        if given is None:
            given = _bearer(headers)
        if not _matches(given, self.api_key):
            raise RequestRefused(
                401,
                "missing or wrong API key. Hint: send 'Authorization: Bearer <key>' or "
                "'X-API-Key: <key>' with the value of HOUSING_API_KEY.",
                {"WWW-Authenticate": "Bearer"},
            )

    async def read_body(self, headers: Headers, receive: Receive) -> bytes:
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body_bytes:
            raise self._too_large()  # refused before a byte of the body is read
        message = await receive()
        body: bytes = message.get("body", b"")
        if not message.get("more_body", False):
            if len(body) > self.max_body_bytes:
                raise self._too_large()
            return body  # the common case: the whole body in one message
        chunks = [body]
        size = len(body)
        while message.get("more_body", False):
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ClientDisconnected()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:  # chunked uploads have no content-length
                raise self._too_large()
            chunks.append(chunk)
        return b"".join(chunks)

    def _too_large(self) -> RequestRefused:
        return RequestRefused(
            413,
            f"the body is larger than HOUSING_MAX_BODY_BYTES={self.max_body_bytes} bytes. "
            "Hint: split the request, or raise the limit.",
            {"Connection": "close"},  # the rest of the body is never read: drop the connection
        )


def _matches(given: bytes | None, key: bytes) -> bool:
    # Constant time, so a key cannot be guessed byte by byte from response times.
    return given is not None and hmac.compare_digest(given, key)


def _bearer(headers: Headers) -> bytes | None:
    scheme, _, token = headers.get(b"authorization", b"").partition(b" ")
    return token.strip() if scheme.lower() == b"bearer" else None
