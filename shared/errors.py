"""The engine's domain errors. The HTTP layer maps each to one status code, in one place."""

from __future__ import annotations


class EngineError(Exception):
    """Base class. ``messages`` are safe to show to the caller: never key material or secrets."""

    status = 500

    def __init__(self, *messages: str) -> None:
        super().__init__(*messages)
        self.messages = list(messages)

    def __str__(self) -> str:
        return "; ".join(self.messages)


class InvalidRequest(EngineError):
    """Bad input, or a state change the engine refuses (Vault answers both with 400)."""

    status = 400


class PermissionDenied(EngineError):
    status = 403

    def __init__(self, *messages: str) -> None:
        super().__init__(*(messages or ("permission denied",)))


class DeniedByPolicy(PermissionDenied):
    """A valid token whose policies do not grant the request: Vault's multierror text."""

    def __init__(self) -> None:
        super().__init__("1 error occurred:\n\t* permission denied\n\n")


class NotFound(EngineError):
    """Nothing at this path. Vault reads answer 404 with an empty error list."""

    status = 404


class UnsupportedOperation(EngineError):
    """A path that does not serve this operation. Vault's request handler wraps a routed
    request's error in go-multierror (``1 error occurred:\n\t* unsupported operation\n\n``:
    OpenBao 2.7.2 on DELETE auth/token/create, POST sys/policies/acl); a login request's
    handler returns it bare (GET auth/<jwt>/login: ``unsupported operation``). ``wrapped``
    says which; every message is sent that way."""

    status = 405

    def __init__(self, *messages: str, wrapped: bool = True) -> None:
        texts = messages or ("unsupported operation",)
        super().__init__(*(f"1 error occurred:\n\t* {m}\n\n" if wrapped else m for m in texts))


class PayloadTooLarge(EngineError):
    status = 413


class UpstreamThrottled(EngineError):
    """A provider kept throttling after our bounded retries."""

    status = 429


class UpstreamUnavailable(EngineError):
    """A dependency (Table Storage, Key Vault) could not be reached."""

    status = 503


class ConcurrentChange(EngineError):
    """An ETag or existence condition failed: someone else changed the row first. Every
    optimistic write retries through ``shared.store.optimistic``; this reaches a caller only
    when a row kept changing for every attempt (409: retrying the request is safe)."""

    status = 409


class StorageLost(UpstreamUnavailable):
    """The table itself is gone (deleted, or an in-memory emulator restarted). The store has
    recreated it and dropped its caches; the request that found out answers 503."""


class SealError(EngineError):
    """Sealed data failed to open: tampered, moved to another row, or the wrong seal key."""

    status = 500


class RowTampered(EngineError):
    """A stored row failed its integrity check: changed outside the engine. Never acted on."""

    status = 500


# Texts clients show or parse, as Vault sends them (docs/compatibility.md lists them).
# A write on a key that does not exist: Vault's transit answers 400 with this text
# (openbao internal/builtin/logical/transit/path_rotate.go), so the CLI shows a reason.
KEY_NOT_FOUND = "key not found"
