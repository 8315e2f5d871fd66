"""The checks every prediction route makes before its body is parsed, each with its status.

In this order: method (405), API key (401), content type (415), body size (413, before a byte
of an oversized body is read when it has a Content-Length, as soon as a chunked one passes the
limit). Every refusal says how to fix the request. The control routes (model reload) have a
door of their own (``check_admin``): their own key, or closed unless the operator opens them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from starlette.types import Receive

from app.core.keys import Headers, Keys
from app.errors import ClientDisconnected, Refusal, RequestRefused, shown


def media_type(value: bytes | None) -> str:
    """``application/json; charset=utf-8`` -> ``application/json``; absent -> ``""``."""
    if value is None:
        return ""
    return value.split(b";", 1)[0].strip().lower().decode("latin-1")


@dataclass(frozen=True, kw_only=True)
class Guard(Keys):
    """The prediction routes' shared checks: the keys (``app.core.keys``), and the body's
    size."""

    max_body_bytes: int

    @classmethod
    def around(cls, keys: Keys, max_body_bytes: int) -> Guard:
        """The guard of ``keys`` (read once, by the composition root) and a body limit."""
        return cls(**asdict(keys), max_body_bytes=max_body_bytes)

    def admit(self, method: str, headers: Headers, media_types: frozenset[str]) -> None:
        """Method, key and content type (``""`` in ``media_types``: no Content-Type)."""
        if method != "POST":
            raise RequestRefused(Refusal.METHOD, "use POST")
        self.check_key(headers)
        kind = media_type(headers.get(b"content-type"))
        if kind not in media_types:
            accepted = ", ".join(sorted(t for t in media_types if t))
            raise RequestRefused(
                Refusal.MEDIA_TYPE,
                f"content type {shown(kind)} is not accepted here. Hint: send one of {accepted}.",
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
            Refusal.TOO_LARGE,
            f"the body is larger than HOUSING_MAX_BODY_BYTES={self.max_body_bytes} bytes. "
            "Hint: split the request, or raise the limit.",
        )
