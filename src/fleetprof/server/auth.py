"""The ingest token: write routes (OTLP ingest, symbol upload) need `Authorization: Bearer TOKEN`;
reads don't."""

from __future__ import annotations

import hmac


def bearer_token(header: str | None) -> str | None:
    """The token of an `Authorization: Bearer …` header value, or None."""
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


class TokenCheck:
    """Compares presented tokens with the configured one in constant time; no token configured = open."""

    def __init__(self, token: str | None) -> None:
        self.token = token or None

    @property
    def required(self) -> bool:
        """Whether writes need a token."""
        return self.token is not None

    def allows(self, authorization: str | None) -> bool:
        """Whether an Authorization header value grants write access."""
        if self.token is None:
            return True
        presented = bearer_token(authorization)
        return presented is not None and hmac.compare_digest(presented.encode(), self.token.encode())
