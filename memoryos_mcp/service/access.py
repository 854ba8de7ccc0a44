"""Who may act for which user: bearer tokens bound to users, and the server's allowed_users.

Pure Python (no mcp): server.py adapts `TokenTable` to the SDK's TokenVerifier and asks `resolve_user` for the
user of every call. A token file holds tokens in clear or as SHA-256 digests; either way a presented token is
hashed once and compared with every stored digest in constant time, so neither timing nor an early exit tells
an attacker how close a guess came. Tokens are never logged; a token's `name` (or its position) is.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from memoryos_mcp.core.errors import ConfigurationError, InvalidInputError
from memoryos_mcp.service import validation
from memoryos_mcp.service.messages import names, quote
from memoryos_mcp.service.settings import user_id_problem

logger = logging.getLogger(__name__)

ANY_USER = "*"
USERS_CLAIM = "memoryos_users"  # the AccessToken claim that carries a token's users
MIN_TOKEN_CHARS = 16
_TOKEN = re.compile(r"^[\x21-\x7e]+$")  # what an Authorization header can carry: visible ASCII, no spaces
_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")
_ENTRY_KEYS = {"token", "token_sha256", "users", "name"}
GENERATE = "python -c 'import secrets; print(secrets.token_urlsafe(32))'"


@dataclass(frozen=True)
class Grant:
    """The users one credential may act for; `users` None means any user ("*")."""

    name: str
    users: frozenset[str] | None

    def allows(self, user_id: str) -> bool:
        return self.users is None or user_id in self.users

    def describe(self) -> str:
        return "any user" if self.users is None else names(sorted(self.users)[:10])


def digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


class TokenTable:
    """The tokens of an auth_tokens_file: `{"tokens": [{"token" | "token_sha256": ..., "users": [...]}]}`."""

    def __init__(self, entries: Iterable[tuple[bytes, Grant]]) -> None:
        self._entries = list(entries)

    def __len__(self) -> int:
        return len(self._entries)

    def lookup(self, token: str) -> Grant | None:
        """The grant of `token`, or None. Compares against every entry, without an early exit."""
        presented = digest(token)
        found: Grant | None = None
        for stored, grant in self._entries:
            if hmac.compare_digest(presented, stored):
                found = grant
        return found

    @classmethod
    def load(cls, path: Path) -> TokenTable:
        """Read and check a token file; every mistake is one ConfigurationError naming the entry and the fix."""
        where = f"auth_tokens_file {path}"
        try:
            raw = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigurationError(
                f"{where} cannot be read ({exc.strerror}); check the path and permissions"
            ) from None
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise ConfigurationError(
                f"{where} is not valid JSON ({exc}); see the README's Security section"
            ) from None
        tokens = data.get("tokens") if isinstance(data, dict) else None
        if not isinstance(tokens, list) or not tokens:
            raise ConfigurationError(
                f'{where} must be a JSON object {{"tokens": [{{"token": "...", "users": ["alice"]}}, ...]}} '
                "with at least one token"
            )
        entries: list[tuple[bytes, Grant]] = []
        in_clear = False
        for number, entry in enumerate(tokens, start=1):
            stored, grant = _entry(entry, f"{where}: token entry {number}", f"token {number}")
            if any(hmac.compare_digest(stored, other) for other, _ in entries):
                raise ConfigurationError(
                    f"{where}: token entry {number} repeats an earlier token; give each token once"
                )
            in_clear = in_clear or "token" in entry
            entries.append((stored, grant))
        if in_clear and path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            logger.warning(
                "%s holds tokens in clear and other users of this machine can read it: chmod 600 it, or store "
                "token_sha256 digests instead",
                where,
            )
        return cls(entries)


def _entry(entry: Any, where: str, default_name: str) -> tuple[bytes, Grant]:
    if not isinstance(entry, dict):
        raise ConfigurationError(f'{where} must be an object such as {{"token": "...", "users": ["alice"]}}')
    unknown = sorted(set(entry) - _ENTRY_KEYS)
    if unknown:
        raise ConfigurationError(
            f"{where} has unknown key(s) {names(unknown)}; the keys are {names(sorted(_ENTRY_KEYS))}"
        )
    if ("token" in entry) == ("token_sha256" in entry):
        raise ConfigurationError(
            f"{where} needs exactly one of 'token' (in clear) and 'token_sha256' (hex digest)"
        )
    if "token" in entry:
        token = entry["token"]
        if not isinstance(token, str) or len(token) < MIN_TOKEN_CHARS or not _TOKEN.match(token):
            raise ConfigurationError(
                f"{where}: a token must be at least {MIN_TOKEN_CHARS} visible ASCII characters without spaces; "
                f"make one with {GENERATE}"
            )
        stored = digest(token)
    else:
        hexdigest = entry["token_sha256"]
        if not isinstance(hexdigest, str) or not _SHA256.match(hexdigest):
            raise ConfigurationError(
                f"{where}: token_sha256 must be 64 hexadecimal characters (sha256sum of the token, no newline)"
            )
        stored = bytes.fromhex(hexdigest)
    users = entry.get("users")
    if not isinstance(users, list) or not users or not all(isinstance(u, str) for u in users):
        raise ConfigurationError(
            f'{where} needs "users": a non-empty list of user_ids, or ["*"] for any user'
        )
    for uid in users:
        problem = None if uid == ANY_USER else user_id_problem(uid)
        if problem:
            raise ConfigurationError(f"{where}: {quote(uid)} is not a user_id: {problem}")
    name = entry.get("name", default_name)
    if not isinstance(name, str) or not name.strip():
        raise ConfigurationError(
            f"{where}: name must be a non-empty string (it is shown in logs, the token never is)"
        )
    return stored, Grant(name=name, users=None if ANY_USER in users else frozenset(users))


def grant_from_claims(name: str, claims: Mapping[str, Any] | None, subject: str | None) -> Grant:
    """The users of a verified access token: its `memoryos_users` claim, else its subject as the one user.

    A static token carries the claim; an OAuth verifier can set it too, or just report the subject (`sub`).
    """
    users = (claims or {}).get(USERS_CLAIM)
    if isinstance(users, list | tuple | set | frozenset):
        listed = [u for u in users if isinstance(u, str)]
        return Grant(name=name, users=None if ANY_USER in listed else frozenset(listed))
    return Grant(name=name, users=frozenset([subject]) if subject else frozenset())


def users_for(grant: Grant | None, allowed: frozenset[str] | None) -> frozenset[str] | None:
    """The users a caller may act for: its credential's, narrowed by allowed_users; None: any."""
    users = grant.users if grant is not None else None
    if allowed is not None:
        users = allowed if users is None else users & allowed
    return users


def resolve_user(
    requested: str | None, *, default: str, grant: Grant | None, allowed: frozenset[str] | None
) -> str:
    """The user a call acts for: the one it names, if its credential and the server allow it; else the implicit one.

    With no user_id the call acts for the credential's only user; a credential for several users (or any) acts
    for the server's default user when that one is among them, and must otherwise name one.
    """
    if requested is not None:
        uid = validation.user_id(requested, default)
        if grant is not None and not grant.allows(uid):
            logger.info("%s was refused user_id %s", grant.name, uid)
            raise InvalidInputError(
                f"user_id {quote(uid)} is not allowed for this token: it may act for {grant.describe()}; "
                "pass one of those or leave user_id out"
            )
        if allowed is not None and uid not in allowed:
            raise InvalidInputError(f"user_id {quote(uid)} is not among this server's allowed_users")
        return uid
    users = users_for(grant, allowed)
    if users is None or default in users:
        return default
    if len(users) == 1:
        return next(iter(users))
    if not users:
        raise InvalidInputError(
            "this token may act for no user this server allows (see its users and allowed_users); "
            "ask the operator for a token bound to your user"
        )
    raise InvalidInputError(
        f"user_id is required: this caller may act for {names(sorted(users)[:10])}; pass one"
    )
