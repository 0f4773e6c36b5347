"""Bearer tokens: who may start runs, and who may watch or steer each run.

Two kinds of token:

- *Service tokens*, configured (``--token name=secret``, or ``INCREMENTAL_TOKENS``). Each belongs to a
  named principal, which owns the runs it starts: it may list them, read them, cancel, pause and resume.
- *Watch tokens*, one per run, handed out when the run starts (``w.{run_id}.{secret}``). They read that
  one run and nothing else, so a backend can pass one to a browser without giving it its own token.

Only SHA-256 digests are kept (the run hash holds its watch token's digest) and compared in constant
time. No token is ever logged: the service logs no headers, and tokens never travel in URLs.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass

from starlette.requests import Request

from ._errors import ApiError

__all__ = ["Auth", "Principal", "parse_tokens"]


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def parse_tokens(specs: list[str]) -> dict[str, str]:
    """``["alice=s3cret", "t0ken"]`` -> ``{"alice": "s3cret", "default": "t0ken"}`` (comma lists too)."""
    tokens: dict[str, str] = {}
    for spec in specs:
        for item in filter(None, (part.strip() for part in spec.split(","))):
            name, sep, secret = item.partition("=")
            if not sep:
                name, secret = "default" if "default" not in tokens else f"token{len(tokens)}", item
            if len(secret) < 16:
                raise ValueError(f"token for {name!r} is too short: use at least 16 characters")
            tokens[name.strip()] = secret.strip()
    return tokens


@dataclass(frozen=True, slots=True)
class Principal:
    name: str  # the owner name, or "watch" for a watch token
    run_id: str | None = None  # set for a watch token: the one run it may read

    @property
    def read_only(self) -> bool:
        return self.run_id is not None


class Auth:
    def __init__(self, tokens: Mapping[str, str]) -> None:
        if not tokens:
            raise ValueError("the service needs at least one token")
        self._digests = {name: _digest(token) for name, token in tokens.items()}

    @staticmethod
    def new_watch_token(run_id: str) -> tuple[str, str]:
        """A fresh watch token for ``run_id`` and the hex digest to store with the run."""
        token = f"w.{run_id}.{secrets.token_urlsafe(24)}"
        return token, hashlib.sha256(token.encode()).hexdigest()

    def bearer(self, request: Request) -> str:
        header = request.headers.get("authorization")
        if not header:
            raise ApiError(401, "missing Authorization header: send 'Authorization: Bearer <token>'")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiError(401, "malformed Authorization header: expected 'Bearer <token>'")
        return token.strip()

    def principal(self, token: str) -> Principal | None:
        """The service principal a token belongs to; None for anything else (watch tokens included)."""
        digest = _digest(token)
        found = None
        for name, known in self._digests.items():  # every comparison runs: no early exit to time
            if hmac.compare_digest(digest, known):
                found = name
        return Principal(found) if found is not None else None

    @staticmethod
    def watch_run(token: str) -> str | None:
        """The run a watch token claims to be for (checked against the run's stored digest later)."""
        if not token.startswith("w."):
            return None
        run_id, sep, _ = token[2:].rpartition(".")
        return run_id if sep and run_id else None

    @staticmethod
    def watch_matches(token: str, stored_hex: str | None) -> bool:
        if not stored_hex:
            return False
        return hmac.compare_digest(hashlib.sha256(token.encode()).hexdigest(), stored_hex)
