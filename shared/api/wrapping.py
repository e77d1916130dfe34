"""``sys/wrapping/*``: wrap, lookup, unwrap and rewrap, as Vault's system backend declares
them. The engine, and the hook ``handle()`` passes answers through when a request asks for
wrapping (``X-Vault-Wrap-TTL``), are ``shared/wrapping.py``.
"""

from __future__ import annotations

from typing import Any

from shared import vaultapi, wrapping
from shared.api import Context, PathSpec
from shared.errors import EngineError, InvalidRequest, PermissionDenied
from shared.vaultapi import ApiResponse, Field


def _token_text(value: Any, name: str) -> str:
    return vaultapi.weak_str(value, name, 512)


TOKEN_FIELD = Field(
    "token", _token_text, "the wrapping token (in the body; none: the request's own)", default=""
)


def _sent_token(context: Context) -> str | None:
    """The token in the body, or None when none was sent (Vault's ``req.Data["token"] !=
    nil``); a sent value that is no token is refused as Vault's validateWrappingToken does."""
    raw = context.data.raw
    if raw.get("token") is None:
        return None
    value = raw["token"]
    if not isinstance(value, str):
        raise wrapping.WrappingTokenRefused("could not decode token in request body")
    if value == "":
        raise wrapping.WrappingTokenRefused("empty token in request body")
    token: str = context.data.get("token")
    return token


def _refused_caller(context: Context) -> EngineError:
    """What Vault answers an unwrap or rewrap whose own token is refused: it validates the
    wrapping token first (validateWrappingToken, before CheckToken), so the answer is about
    that token: the body's, else the request's own. Only a valid wrapping token in the body
    gets the caller's 403. Nothing is spent or unwrapped."""
    request = context.request
    raw = vaultapi.parse_body(request, context.service.settings.max_body_bytes)
    value = raw.get("token")
    if value is None:
        if not request.token:
            return wrapping.WrappingTokenRefused("token is empty")
        return wrapping.InvalidWrappingToken()
    if not isinstance(value, str):
        return wrapping.WrappingTokenRefused("could not decode token in request body")
    if value == "":
        return wrapping.WrappingTokenRefused("empty token in request body")
    if not wrapping.for_service(context.service).valid(value):
        return wrapping.InvalidWrappingToken()
    return PermissionDenied()


def _wrap(context: Context) -> ApiResponse:
    if not context.wrap_ttl:
        raise InvalidRequest("endpoint requires response wrapping to be used")
    # The body as sent is the data (Vault: data.Raw); the hook wraps the answer.
    return vaultapi.ok(dict(context.data.raw))


def _lookup(context: Context) -> ApiResponse:
    token = _sent_token(context) if context.operation != "read" else None
    if context.request.query.get("token"):
        raise InvalidRequest(
            "a token is never taken from the URL (it would be logged): POST it in the body, "
            'as {"token": "..."}'
        )
    if token is None:
        token = context.request.token
        if not token:
            raise wrapping.WrappingTokenRefused("token is empty")
    data = wrapping.for_service(context.service).lookup(token)
    return vaultapi.ok(data, context.data.warnings)


def _unwrap(context: Context) -> ApiResponse:
    engine = wrapping.for_service(context.service)
    token = _sent_token(context)
    if token is None:  # the wrapping token is the request's own, its use spent by handle()
        caller = context.token
        if caller is None:
            raise wrapping.WrappingTokenRefused("token is empty")
        body = engine.unwrap(caller.id, spent=caller)
    else:
        body = engine.unwrap(token)
    return ApiResponse(200, body, {"Content-Type": vaultapi.JSON})


def _rewrap(context: Context) -> ApiResponse:
    token = _sent_token(context)
    if token is None:
        caller = context.token
        if caller is None:
            raise wrapping.WrappingTokenRefused("token is empty")
        token = caller.id
    display = context.token.display_name if context.token is not None else ""
    envelope = wrapping.for_service(context.service).rewrap(
        token, ttl=context.wrap_ttl, display=display
    )
    return vaultapi.raw_json(200, envelope)


WRAP = PathSpec(
    "sys/wrapping/wrap",
    mounted=False,
    operations={"update": _wrap},
    synopsis="Response-wraps an arbitrary JSON object.",
    help="Round trips the given input data into a response-wrapped token: the request must "
    "ask for wrapping (X-Vault-Wrap-TTL, the CLI's -wrap-ttl); the body as sent is the data "
    "the token unwraps to.",
)
LOOKUP = PathSpec(
    "sys/wrapping/lookup",
    fields=[TOKEN_FIELD],
    mounted=False,
    authenticated=False,  # as Vault's: the wrapping token itself is the proof
    operations={"read": _lookup, "update": _lookup},
    synopsis="Looks up the properties of a response-wrapped token.",
    help="Returns the creation path, creation time and creation TTL of a wrapping token, "
    "sent in the body (POST) or as the request's token; its use is not spent. No other "
    "token is needed.",
)
UNWRAP = PathSpec(
    "sys/wrapping/unwrap",
    fields=[TOKEN_FIELD],
    mounted=False,
    operations={"update": _unwrap},
    refused_token=_refused_caller,
    synopsis="Unwraps a response-wrapped token.",
    help="Returns the answer the wrapping token holds, once: the token in the body (the "
    "caller's own token then needs update on sys/wrapping/unwrap, which the default policy "
    "grants), or the wrapping token as the request's token.",
)
REWRAP = PathSpec(
    "sys/wrapping/rewrap",
    fields=[TOKEN_FIELD],
    mounted=False,
    operations={"update": _rewrap},
    refused_token=_refused_caller,
    synopsis="Rotates a response-wrapped token.",
    help="Moves what the wrapping token in the body holds to a new wrapping token with the "
    "same creation path and TTL; the old token stops working.",
)

ALL = (WRAP, LOOKUP, UNWRAP, REWRAP)
