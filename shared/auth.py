"""Token check, in one place. Today: the root token from settings, compared as a hash."""

from __future__ import annotations

import hashlib
import hmac

from shared.errors import PermissionDenied
from shared.records import TokenInfo

ROOT = TokenInfo(display_name="root", policies=("root",), path="auth/token/root", orphan=True)


class TokenChecker:
    def __init__(self, root_token_sha256: str | None) -> None:
        self._root = root_token_sha256

    def check(self, token: str | None) -> TokenInfo:
        """What the token is (``auth/token/lookup-self`` shows it), or PermissionDenied."""
        if not token or self._root is None:
            raise PermissionDenied()
        digest = hashlib.sha256(token.encode()).hexdigest()
        if not hmac.compare_digest(digest, self._root):
            raise PermissionDenied()
        return ROOT
