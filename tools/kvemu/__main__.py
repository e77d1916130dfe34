"""``python -m tools.kvemu --vault keyvault-name=8443 --identity-port 8450 --cert-dir DIR``"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import stat
import sys
import threading
from pathlib import Path
from typing import Any

from .emulator import (
    DEFAULT_FUNCTION_APP,
    DEFAULT_RESOURCE_GROUP,
    DEFAULT_SUBSCRIPTION_ID,
    DEFAULT_TENANT_ID,
    Emulator,
)

# How long a stop may take: a webhook that does not answer must not hold the process for the
# event poster's whole request timeout.
STOP_GRACE = 2.0


def _name_port(text: str) -> tuple[str, int]:
    name, sep, port = text.partition("=")
    if not sep or not name or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected NAME=PORT, got {text!r}")
    return name, int(port)


def _triple(parser: argparse.ArgumentParser, flag: str, text: str) -> tuple[str, str, str]:
    parts = text.split(":", 2)
    if len(parts) != 3 or not all(parts):
        parser.error(f"{flag} expects VAULT:PRINCIPAL:VALUE, got {text!r}")
    return parts[0], parts[1], parts[2]


def _principal(emulator: Emulator, principal: str) -> str:
    return emulator.system_identity.object_id if principal == "system" else principal


def _read_secrets(parser: argparse.ArgumentParser, path: Path) -> dict[str, Any]:
    """``--secrets-file``: what must stay off the command line, where ``ps`` shows it."""
    try:
        mode = path.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            parser.error(f"{path} must be readable by its owner only (chmod 600 {path})")
        secrets = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        parser.error(f"cannot read --secrets-file {path}: {exc}")
    if not isinstance(secrets, dict) or set(secrets) - {"clients", "eventgrid_webhook"}:
        parser.error(f'{path} must be a JSON object with only "clients" and "eventgrid_webhook"')
    clients = secrets.get("clients", {})
    if not isinstance(clients, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and k and v for k, v in clients.items()
    ):
        parser.error(f'{path}: "clients" must map each client id to its secret')
    webhook = secrets.get("eventgrid_webhook")
    if webhook is not None and not isinstance(webhook, str):
        parser.error(f'{path}: "eventgrid_webhook" must be a URL')
    return secrets


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.kvemu",
        description="Local Azure Key Vault (keys API, real BYOK) and identity endpoints.",
    )
    parser.add_argument(
        "--vault",
        action="append",
        type=_name_port,
        default=[],
        metavar="NAME=PORT",
        help="a vault on its own HTTPS port (0: free port)",
    )
    parser.add_argument(
        "--hsm-vault",
        action="append",
        type=_name_port,
        default=[],
        metavar="NAME=PORT",
        help="a Managed HSM-style vault (allows oct keys)",
    )
    parser.add_argument(
        "--identity-port",
        type=int,
        default=0,
        help="HTTP port of the managed identity endpoint and control API",
    )
    parser.add_argument(
        "--authority-port",
        type=int,
        default=None,
        help="HTTPS port of the Entra-like authority (default: identity port + 1)",
    )
    parser.add_argument(
        "--cert-dir", required=True, help="where the CA (ca.pem) and server certificate are written"
    )
    parser.add_argument(
        "--state", default=None, help="keep vault state in FILE.json or FILE.sqlite across restarts"
    )
    parser.add_argument(
        "--eventgrid-webhook",
        default=None,
        help="POST Key Vault events (Event Grid schema) to this URL, query string kept "
        "(a URL with a key in it belongs in --secrets-file)",
    )
    parser.add_argument("--tenant-id", default=DEFAULT_TENANT_ID)
    parser.add_argument(
        "--identity-header", default=None, help="the X-IDENTITY-HEADER value (default: random)"
    )
    parser.add_argument(
        "--client",
        action="append",
        default=[],
        metavar="CLIENT_ID=SECRET",
        help="register an app for ClientSecretCredential (the secret shows in ps: prefer "
        "--secrets-file)",
    )
    parser.add_argument(
        "--secrets-file",
        type=Path,
        default=None,
        metavar="FILE",
        help='JSON, mode 600: {"clients": {CLIENT_ID: SECRET, ...}, "eventgrid_webhook": URL}; '
        "both optional",
    )
    parser.add_argument(
        "--user-assigned",
        action="append",
        default=[],
        metavar="CLIENT_ID",
        help="add a user-assigned managed identity",
    )
    parser.add_argument(
        "--role-assignment",
        action="append",
        default=[],
        metavar="VAULT:PRINCIPAL:ROLE",
        help="RBAC: assign a built-in role (PRINCIPAL: an object or client id, or 'system' for "
        "the system-assigned identity); nothing is allowed that is not granted",
    )
    parser.add_argument(
        "--access-policy",
        action="append",
        default=[],
        metavar="VAULT:PRINCIPAL:PERMISSIONS",
        help="make VAULT use access policies and give PRINCIPAL these key permissions "
        "(comma-separated, e.g. create,delete,get,import,update)",
    )
    parser.add_argument(
        "--no-purge-protection",
        action="append",
        default=[],
        metavar="VAULT",
        help="a vault without purge protection (on by default, as our Terraform sets it)",
    )
    parser.add_argument(
        "--delete-delay",
        type=float,
        default=None,
        help="seconds before a deleted key is visible under /deletedkeys (default 3)",
    )
    parser.add_argument(
        "--subscription-id",
        default=DEFAULT_SUBSCRIPTION_ID,
        help="the subscription of the Function App and its identities (xms_mirid)",
    )
    parser.add_argument(
        "--resource-group",
        default=DEFAULT_RESOURCE_GROUP,
        help="the resource group of the Function App and its identities (xms_mirid)",
    )
    parser.add_argument(
        "--function-app",
        default=DEFAULT_FUNCTION_APP,
        help="the Function App whose system-assigned identity the MSI endpoint serves",
    )
    parser.add_argument(
        "--app",
        action="append",
        default=[],
        metavar="JSON",
        help='register an API app, as POST /_control/apps: {"client_id", "identifier_uris", '
        '"access_token_version", "app_roles", "group_membership_claims"}',
    )
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    if not args.vault and not args.hsm_vault:
        parser.error("give at least one --vault NAME=PORT")
    secrets = _read_secrets(parser, args.secrets_file) if args.secrets_file else {}
    webhook = args.eventgrid_webhook
    if secrets.get("eventgrid_webhook") is not None:
        if webhook is not None:
            parser.error("give the Event Grid webhook once: --eventgrid-webhook or --secrets-file")
        webhook = secrets["eventgrid_webhook"]
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    authority_port = args.authority_port
    if authority_port is None:
        authority_port = args.identity_port + 1 if args.identity_port else 0
    emulator = Emulator(
        dict(args.vault),
        hsm_vaults=dict(args.hsm_vault),
        cert_dir=args.cert_dir,
        identity_port=args.identity_port,
        authority_port=authority_port,
        tenant_id=args.tenant_id,
        state_path=args.state,
        eventgrid_webhook=webhook,
        identity_header=args.identity_header,
        subscription_id=args.subscription_id,
        resource_group=args.resource_group,
        function_app=args.function_app,
        **({} if args.delete_delay is None else {"delete_delay": args.delete_delay}),
    )
    for text in args.app:
        try:
            spec = json.loads(text)
            if not isinstance(spec, dict):
                raise ValueError("expected a JSON object")
            emulator.register_app(**spec)
        except (ValueError, TypeError) as exc:
            parser.error(f"--app {text!r}: {exc}")
    for name in args.no_purge_protection:
        emulator.configure_vault(name, purge_protection=False)
    for pair in args.client:
        client_id, sep, secret = pair.partition("=")
        if not sep:
            parser.error(f"--client expects CLIENT_ID=SECRET, got {pair!r}")
        emulator.add_client(client_id, secret)
    for client_id, secret in secrets.get("clients", {}).items():
        emulator.add_client(client_id, secret)
    for client_id in args.user_assigned:
        emulator.add_user_assigned_identity(client_id)
    for text in args.role_assignment:
        vault, principal, role = _triple(parser, "--role-assignment", text)
        emulator.grant(vault, _principal(emulator, principal), role)
    for text in args.access_policy:
        vault, principal, permissions = _triple(parser, "--access-policy", text)
        emulator.configure_vault(vault, permission_model="access_policy")
        emulator.set_access_policy(
            vault, _principal(emulator, principal), [p for p in permissions.split(",") if p]
        )
    emulator.start()
    for name in emulator.vaults:
        kind = "managed-hsm" if emulator.vaults[name].managed_hsm else "vault"
        print(f"{kind} {name} {emulator.vault_url(name)}")
    print(f"KEYMGMT_KEYVAULT_URLS={emulator.keyvault_urls_setting}")
    print(f"KEYMGMT_KEYVAULT_CA_BUNDLE={emulator.ca_path}")
    print("KEYMGMT_KEYVAULT_VERIFY_CHALLENGE_RESOURCE=false")  # 127.0.0.1 is no vault domain
    print(f"IDENTITY_ENDPOINT={emulator.identity_endpoint}")
    print(f"IDENTITY_HEADER={emulator.identity_header}")
    print(f"AZURE_TENANT_ID={emulator.tenant_id}")
    print(f"AZURE_AUTHORITY_HOST={emulator.authority_host}")
    for identity in emulator.describe_identities():
        print(
            f"identity {identity['type']} client_id {identity['client_id']} "
            f"object_id {identity['object_id']} resource_id {identity['resource_id']}"
        )
    for app in emulator.directory.apps():
        print(
            f"app {app.client_id} identifier_uris {','.join(app.identifier_uris) or '-'} "
            f"token version {app.token_version}"
        )
    tenant = f"{emulator.authority_host}/{emulator.tenant_id}"
    print(f"openid-configuration v1.0 {tenant}/.well-known/openid-configuration")
    print(f"openid-configuration v2.0 {tenant}/v2.0/.well-known/openid-configuration")
    print(f"control API: {emulator.control_url}")
    sys.stdout.flush()

    done = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, lambda *_: done.set())
    done.wait()
    # The servers and the event poster run on daemon threads: what is still going after the
    # grace (a post to a webhook that does not answer) ends with the process.
    stopper = threading.Thread(target=emulator.stop, name="kvemu-stop", daemon=True)
    stopper.start()
    stopper.join(STOP_GRACE)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
