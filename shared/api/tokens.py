"""``auth/token/*``: the token store's paths, as Vault's token store declares them.

Fields are decoded as Vault's framework decodes them (``policies`` a list, never comma-split;
durations as Go strings, integers or numeric strings); the rules and texts are the engine's
(``shared/tokens.py``). Responses carry Vault's ``auth`` block (create, renew) or a lookup's
``data``, in Vault's field order.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from shared import durations, vaultapi
from shared.api import Context, PathSpec
from shared.errors import InvalidRequest, PermissionDenied
from shared.records import TokenInfo
from shared.tokens import ROOT_POLICY
from shared.vaultapi import ApiResponse, Field

# -- decoding, as Vault's framework decodes these field types ------------------------------------


def _go_text(value: Any, name: str) -> str:
    """A value as Vault's TypeString holds it (a boolean is ``"1"`` or ``"0"``)."""
    if isinstance(value, bool):
        return "1" if value else "0"
    return vaultapi.weak_str(value, name)


def _duration(value: Any, name: str) -> int | None:
    """A TypeString duration parsed as the token store parses it (``ParseDurationSecond``):
    ``"1h0m0s"``, ``"90m"``, ``"2d"``, ``90`` or ``"90"``; ``""`` is as if not sent. Seconds,
    signed: the engine refuses a negative one with Vault's text."""
    text = _go_text(value, name)
    return None if text == "" else durations.parse_seconds(text)


def _increment(value: Any, name: str) -> int:
    """Vault's TypeDurationSecond (``increment``): a duration or seconds, never negative."""
    prefix = f'Field validation failed: error converting input for field "{name}": '
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = int(value)
    else:
        try:
            seconds = durations.parse_seconds(_go_text(value, name))
        except InvalidRequest as exc:
            raise InvalidRequest(prefix + str(exc)) from None
    if seconds < 0:
        raise InvalidRequest(prefix + f"cannot provide negative value '{seconds}'")
    return seconds


MAX_POLICY_NAME = 256


def _string_list(value: Any, name: str) -> list[str]:
    """Vault's TypeStringSlice: a JSON list of strings, or one string as one item (so
    ``"a,b"`` is one policy named ``a,b``, as Vault makes it)."""
    items = value if isinstance(value, list) else [value]
    if len(items) > vaultapi.MAX_LIST:
        raise InvalidRequest(
            f"Field validation failed: {name} has more than {vaultapi.MAX_LIST} items"
        )
    return [vaultapi.weak_str(item, name, MAX_POLICY_NAME) for item in items]


def _text(value: Any, name: str) -> str:
    return _go_text(value, name)


_TOKEN_FIELD_HELP = "the token (in the body: never in the URL)"

CREATE_FIELDS = [
    Field("id", _text, "value for the token (root or sudo only)", default=""),
    Field(
        "policies",
        _string_list,
        "list of policies for the token (default: the parent's)",
        default=(),
    ),
    Field("meta", vaultapi.kv_pairs, "arbitrary key=value metadata to associate with the token"),
    Field(
        "no_parent",
        vaultapi.weak_bool,
        "create the token with no parent (root or sudo only)",
        default=False,
    ),
    Field(
        "no_default_policy",
        vaultapi.weak_bool,
        "do not include the default policy for this token",
        default=False,
    ),
    Field(
        "renewable",
        vaultapi.weak_bool,
        "allow the token to be renewed past its initial TTL, up to the maximum TTL",
        default=True,
    ),
    Field("lease", _duration, "use 'ttl' instead"),
    Field("ttl", _duration, "time to live for this token (e.g. 1h; default 768h)"),
    Field("type", _text, "token type: service (batch tokens are not issued)", default=""),
    Field("explicit_max_ttl", _duration, "explicit max TTL of this token, never extended"),
    Field("display_name", _text, "name to associate with this token", default=""),
    Field(
        "num_uses", vaultapi.weak_int, "max number of uses for this token (0: no limit)", default=0
    ),
    Field("period", _duration, "renew period (root or sudo only)"),
    Field("entity_alias", _text, "name of the entity alias (token roles only)", default=""),
]
TOKEN_FIELD = Field("token", _text, _TOKEN_FIELD_HELP, default="")
ACCESSOR_FIELD = Field("accessor", _text, "accessor of the token", default="")
INCREMENT_FIELD = Field(
    "increment", _increment, "the desired increment in seconds to the token expiration", default=0
)


# -- rendering: the token in Vault's wire format --------------------------------------------------


def go_time(value: dt.datetime) -> str:
    """Go's RFC 3339 with nanoseconds, trailing zeros trimmed, as Vault's JSON has times."""
    text = value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f").rstrip("0").rstrip(".")
    return text + "Z"


def render_lookup(token: TokenInfo) -> dict[str, Any]:
    """A lookup's ``data`` (Vault sends its keys sorted)."""
    data: dict[str, Any] = {
        "accessor": token.accessor,
        "creation_time": token.creation_time,
        "creation_ttl": token.creation_ttl,
        "display_name": token.display_name,
        "entity_id": token.entity_id,
        "expire_time": None if token.expire_time is None else go_time(token.expire_time),
        "explicit_max_ttl": token.explicit_max_ttl,
        "id": token.id,
        "meta": None if token.meta is None else dict(token.meta),
        "num_uses": token.num_uses,
        "orphan": token.orphan,
        "path": token.path,
        "policies": list(token.policies),
        "renewable": token.renewable,
        "ttl": token.ttl,
        "type": token.type,
    }
    if token.issue_time is not None:
        data["issue_time"] = go_time(token.issue_time)
    if token.last_renewal is not None:
        data["last_renewal"] = go_time(token.last_renewal)
        data["last_renewal_time"] = int(token.last_renewal.timestamp())
    if token.period:
        data["period"] = token.period
    if token.bound_cidrs:  # Vault shows a /32 (/128) as the bare address
        data["bound_cidrs"] = [
            c.removesuffix("/32") if ":" not in c else c.removesuffix("/128")
            for c in token.bound_cidrs
        ]
    return dict(sorted(data.items()))


def render_auth(token: TokenInfo) -> dict[str, Any]:
    """The ``auth`` block of a create or renew, in Vault's order (``token_policies`` is left
    out when empty, as Vault's omitempty does)."""
    auth: dict[str, Any] = {
        "client_token": token.id,
        "accessor": token.accessor,
        "policies": list(token.policies),
    }
    if token.policies:
        auth["token_policies"] = list(token.policies)
    auth.update(
        {
            "metadata": None if token.meta is None else dict(token.meta),
            "lease_duration": token.lease_ttl,
            "renewable": token.renewable,
            "entity_id": token.entity_id,
            "token_type": token.type,
            "orphan": token.orphan,
            "mfa_requirement": None,
            "num_uses": token.num_uses,
        }
    )
    return auth


# -- handlers ----------------------------------------------------------------------------------


def _caller(ctx: Context) -> TokenInfo:
    if ctx.token is None:  # handle() sets it on every authenticated path
        raise PermissionDenied()
    return ctx.token


def _sudo(ctx: Context) -> bool:
    """Whether the caller may do what Vault keeps for root or ``sudo`` on the path: a root
    token, or one whose policies grant ``sudo`` on this path (the handler asks, as OpenBao's
    token store does: these paths are not root-protected in the router)."""
    policies = _caller(ctx).policies
    if ROOT_POLICY in policies:
        return True
    return "sudo" in ctx.service.policies.acl(policies).capabilities(ctx.path)


def _create(ctx: Context, *, orphan_path: bool) -> ApiResponse:
    data = ctx.data
    token, warnings = ctx.service.tokens.create(
        _caller(ctx),
        sudo=_sudo(ctx),
        orphan_path=orphan_path,
        policies=data.get("policies"),
        no_default_policy=data.get("no_default_policy"),
        meta=data.get("meta") if data.has("meta") else None,
        no_parent=data.get("no_parent"),
        renewable=data.get("renewable"),
        ttl=data.get("ttl"),
        lease=data.get("lease"),
        explicit_max_ttl=data.get("explicit_max_ttl"),
        period=data.get("period"),
        display=data.get("display_name"),
        num_uses=data.get("num_uses"),
        token_type=data.get("type"),
        token_id=data.get("id"),
        entity_alias=data.get("entity_alias"),
    )
    return vaultapi.authenticated(render_auth(token), warnings + data.warnings)


def _create_child(ctx: Context) -> ApiResponse:
    return _create(ctx, orphan_path=False)


def _create_orphan(ctx: Context) -> ApiResponse:
    return _create(ctx, orphan_path=True)


def _lookup_self(ctx: Context) -> ApiResponse:
    return vaultapi.ok(render_lookup(_caller(ctx)), ctx.data.warnings)


def _lookup(ctx: Context) -> ApiResponse:
    """A token named in the body; none names the caller's own (Vault's rule)."""
    token = ctx.data.get("token").strip()
    if not token:
        return _lookup_self(ctx)
    return vaultapi.ok(render_lookup(ctx.service.tokens.lookup(token)), ctx.data.warnings)


def _lookup_read(ctx: Context) -> ApiResponse:
    if ctx.request.query.get("token"):
        raise InvalidRequest(
            "a token is never taken from the URL (it would be logged): POST it in the body, "
            'as {"token": "..."}'
        )
    return _lookup_self(ctx)


def _lookup_accessor(ctx: Context) -> ApiResponse:
    token = ctx.service.tokens.lookup_accessor(ctx.data.get("accessor").strip())
    return vaultapi.ok(render_lookup(token), ctx.data.warnings)


def _named_token(ctx: Context) -> str:
    token: str = ctx.data.get("token").strip()
    if not token:
        raise InvalidRequest("missing token ID")
    return token


def _renewed(ctx: Context, target: TokenInfo) -> ApiResponse:
    token, warnings = ctx.service.tokens.renew(target, ctx.data.get("increment"))
    return vaultapi.authenticated(render_auth(token), warnings + ctx.data.warnings)


def _renew(ctx: Context) -> ApiResponse:
    return _renewed(ctx, ctx.service.tokens.resolve(_named_token(ctx)))


def _renew_self(ctx: Context) -> ApiResponse:
    return _renewed(ctx, _caller(ctx))


def _renew_accessor(ctx: Context) -> ApiResponse:
    return _renewed(ctx, ctx.service.tokens.resolve_accessor(ctx.data.get("accessor").strip()))


def _revoke(ctx: Context) -> ApiResponse:
    ctx.service.tokens.revoke(_named_token(ctx))
    return vaultapi.written()


def _revoke_self(ctx: Context) -> ApiResponse:
    ctx.service.tokens.revoke_self(_caller(ctx))
    return vaultapi.written()


def _revoke_accessor(ctx: Context) -> ApiResponse:
    if not ctx.service.tokens.revoke_accessor(ctx.data.get("accessor").strip()):
        return vaultapi.written(["No token found with this accessor"])
    return vaultapi.written()


def _revoke_orphan(ctx: Context) -> ApiResponse:
    token = _named_token(ctx)
    if not _sudo(ctx):
        raise InvalidRequest("root or sudo privileges required to revoke and orphan")
    ctx.service.tokens.revoke_orphan(token)
    return vaultapi.written()


def _token_path(pattern: str, **options: Any) -> PathSpec:
    return PathSpec(f"auth/token/{pattern}", mounted=False, **options)


CREATE = _token_path(
    "create",
    fields=CREATE_FIELDS,
    operations={"update": _create_child},
    synopsis="Create a token, a child of the calling token.",
    help="Creates a service token (hvs.<24 characters>). Without policies it gets the "
    "caller's; a caller without root may only ask for a subset of its own (plus default). "
    "ttl defaults to 768h (KEYMGMT_TOKEN_DEFAULT_TTL), capped by explicit_max_ttl and the "
    "maximum (KEYMGMT_TOKEN_MAX_TTL) from creation; a token with the root policy and no ttl "
    "never expires. no_parent, period and id need root. The child stops working when its "
    "parent does, by revocation or expiry. Batch tokens are not issued.",
)
CREATE_ORPHAN = _token_path(
    "create-orphan",
    fields=CREATE_FIELDS,
    operations={"update": _create_orphan},
    synopsis="Create a token with no parent.",
    help="As auth/token/create, but the token is an orphan: revoking or expiring the caller "
    "leaves it working. Needs no root (Vault's rule: write access to this path suffices).",
)
LOOKUP = _token_path(
    "lookup",
    fields=[TOKEN_FIELD],
    operations={"update": _lookup, "read": _lookup_read},
    synopsis="Look up a token's properties.",
    help='POST the token in the body ({"token": ...}); an empty token looks up the '
    "caller's own. A token that does not work answers 403 bad token. Unlike Vault, a token "
    "is never taken from the URL (GET ?token=), where logs would keep it.",
)
LOOKUP_SELF = _token_path(
    "lookup-self",
    fields=[Field("token", _text, "unused; the calling token is looked up", default="")],
    operations={"read": _lookup_self, "update": _lookup_self},
    synopsis="Look up the calling token's properties.",
    help="Returns the calling token's id, accessor, policies, TTL, uses left (this request "
    "counts as one) and creation path.",
)
LOOKUP_ACCESSOR = _token_path(
    "lookup-accessor",
    fields=[ACCESSOR_FIELD],
    operations={"update": _lookup_accessor},
    synopsis="Look up a token by its accessor.",
    help="Returns the properties of the token the accessor names; the answer never "
    "contains the token (id is empty).",
)
RENEW = _token_path(
    "renew",
    fields=[TOKEN_FIELD, INCREMENT_FIELD],
    operations={"update": _renew},
    synopsis="Renew a token.",
    help="Extends the token's TTL to increment (its last TTL when 0), within its "
    "explicit_max_ttl and the maximum TTL from its creation; a periodic token gets its "
    "period again. Its children may then live as long as it does.",
)
RENEW_SELF = _token_path(
    "renew-self",
    fields=[
        Field("token", _text, "unused; the calling token is renewed", default=""),
        INCREMENT_FIELD,
    ],
    operations={"update": _renew_self},
    synopsis="Renew the calling token.",
    help="As auth/token/renew, for the token that sends the request.",
)
RENEW_ACCESSOR = _token_path(
    "renew-accessor",
    fields=[ACCESSOR_FIELD, INCREMENT_FIELD],
    operations={"update": _renew_accessor},
    synopsis="Renew a token by its accessor.",
    help="As auth/token/renew, for the token the accessor names; the answer never contains "
    "the token (client_token is empty).",
)
REVOKE = _token_path(
    "revoke",
    fields=[TOKEN_FIELD],
    operations={"update": _revoke},
    synopsis="Revoke a token and all its descendants.",
    help="The token and every token created under it stop working at once. A token that "
    "does not exist is no error. The root token from settings cannot be revoked.",
)
REVOKE_SELF = _token_path(
    "revoke-self",
    operations={"update": _revoke_self},
    synopsis="Revoke the calling token and all its descendants.",
    help="As auth/token/revoke, for the token that sends the request.",
)
REVOKE_ACCESSOR = _token_path(
    "revoke-accessor",
    fields=[ACCESSOR_FIELD],
    operations={"update": _revoke_accessor},
    synopsis="Revoke a token by its accessor, with all its descendants.",
    help="As auth/token/revoke, for the token the accessor names; an unknown accessor "
    "answers with a warning.",
)
REVOKE_ORPHAN = _token_path(
    "revoke-orphan",
    fields=[TOKEN_FIELD],
    operations={"update": _revoke_orphan},
    synopsis="Revoke a token and make its children orphans.",
    help="Revokes only the token: its children keep working, now orphans, each until its "
    "own TTL. Needs root.",
)

ALL = (
    CREATE,
    CREATE_ORPHAN,
    LOOKUP,
    LOOKUP_SELF,
    LOOKUP_ACCESSOR,
    RENEW,
    RENEW_SELF,
    RENEW_ACCESSOR,
    REVOKE,
    REVOKE_SELF,
    REVOKE_ACCESSOR,
    REVOKE_ORPHAN,
)
