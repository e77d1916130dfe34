"""Key Vault's error envelope: ``{"error": {"code", "message", "innererror": {"code"}}}``."""

from __future__ import annotations

from typing import Any


class KvError(Exception):
    """An error the emulator answers with Key Vault's status, code and message."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        inner: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.inner = inner
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.inner:
            error["innererror"] = {"code": self.inner}
        return {"error": error}


def bad_parameter(message: str) -> KvError:
    return KvError(400, "BadParameter", message)


def key_not_found(name: str) -> KvError:
    return KvError(
        404,
        "KeyNotFound",
        f"A key with (name/id) {name} was not found in this key vault. If you recently deleted "
        "this key you may be able to recover it using the correct recovery command. For help "
        "resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125182",
    )


def forbidden(message: str, inner: str | None = None) -> KvError:
    return KvError(403, "Forbidden", message, inner=inner)
