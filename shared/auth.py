"""Token check, in one place. Today: the root token from settings, compared as a hash."""

from __future__ import annotations

import hashlib
import hmac

from shared.errors import PermissionDenied


class TokenChecker:
    def __init__(self, root_token_sha256: str | None) -> None:
        self._root = root_token_sha256

    def check(self, token: str | None) -> dict[str, object]:
        """The token's description (for lookup-self), or PermissionDenied."""
        if not token or self._root is None:
            raise PermissionDenied()
        digest = hashlib.sha256(token.encode()).hexdigest()
        if not hmac.compare_digest(digest, self._root):
            raise PermissionDenied()
        return {
            "accessor": "",
            "creation_ttl": 0,
            "display_name": "root",
            "entity_id": "",
            "expire_time": None,
            "explicit_max_ttl": 0,
            "id": "",  # never echo the token
            "meta": None,
            "num_uses": 0,
            "orphan": True,
            "path": "auth/token/root",
            "policies": ["root"],
            "renewable": False,
            "ttl": 0,
            "type": "service",
        }
