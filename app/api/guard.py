"""The checks every prediction route makes before its body is parsed, each with its status.

In this order: method (405), API key (401), content type (415), body size (413, before a byte
of an oversized body is read when it has a Content-Length, as soon as a chunked one passes the
limit). Every refusal says how to fix the request.
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

    @classmethod
    def from_settings(cls, settings: Settings) -> Guard:
        key = settings.api_key
        return cls(settings.max_body_bytes, key.get_secret_value().encode() if key else None)

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
            auth = headers.get(b"authorization", b"")
            scheme, _, token = auth.partition(b" ")
            given = token.strip() if scheme.lower() == b"bearer" else None
        # Constant time, so the key cannot be guessed byte by byte from response times.
        if given is None or not hmac.compare_digest(given, self.api_key):
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
