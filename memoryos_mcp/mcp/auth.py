"""Bearer tokens over HTTP: the SDK's resource-server hook over an auth_tokens_file."""

from __future__ import annotations

import hashlib
import logging
from typing import TypeVar

from mcp.server.auth.provider import AccessToken, TokenVerifier
from mcp.server.auth.settings import AuthSettings

from memoryos_mcp.service.access import USERS_CLAIM, TokenTable
from memoryos_mcp.service.settings import Settings

T = TypeVar("T")
logger = logging.getLogger(__name__)


class StaticTokenVerifier(TokenVerifier):
    """The SDK's resource-server hook over an auth_tokens_file: a known token becomes an AccessToken whose
    `memoryos_users` claim lists the users it may act for. An OAuth verifier (RFC 7662 introspection, JWT)
    plugs in at the same place; see `build_server`."""

    def __init__(self, table: TokenTable) -> None:
        self.table = table

    async def verify_token(self, token: str) -> AccessToken | None:
        grant = self.table.lookup(token)
        if grant is None:
            return None
        return AccessToken(
            # The digest, not the token: nothing downstream needs the secret, and nothing can then log it.
            token=hashlib.sha256(token.encode("utf-8")).hexdigest(),
            client_id=grant.name,
            scopes=[],
            claims={USERS_CLAIM: ["*"] if grant.users is None else sorted(grant.users)},
        )


def static_token_auth(settings: Settings) -> tuple[TokenVerifier, AuthSettings] | None:
    """The verifier and auth settings for `settings.auth_tokens_file`; None when it is unset."""
    if settings.auth_tokens_file is None:
        return None
    table = TokenTable.load(settings.auth_tokens_file)
    # issuer_url is required by AuthSettings but only used by OAuth flows (metadata routes, an authorization
    # server); static tokens publish neither, so it names this server.
    auth = AuthSettings(issuer_url=f"http://localhost:{settings.port}", resource_server_url=None)
    return StaticTokenVerifier(table), auth
