"""``python -m tools.kvemu --vault keyvault-name=8443 --identity-port 8450 --cert-dir DIR``"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading

from .emulator import DEFAULT_TENANT_ID, Emulator


def _name_port(text: str) -> tuple[str, int]:
    name, sep, port = text.partition("=")
    if not sep or not name or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected NAME=PORT, got {text!r}")
    return name, int(port)


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
        help="POST Key Vault events (Event Grid schema) to this URL",
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
        help="register an app for ClientSecretCredential",
    )
    parser.add_argument(
        "--user-assigned",
        action="append",
        default=[],
        metavar="CLIENT_ID",
        help="add a user-assigned managed identity",
    )
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    if not args.vault and not args.hsm_vault:
        parser.error("give at least one --vault NAME=PORT")
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
        eventgrid_webhook=args.eventgrid_webhook,
        identity_header=args.identity_header,
    )
    for pair in args.client:
        client_id, sep, secret = pair.partition("=")
        if not sep:
            parser.error(f"--client expects CLIENT_ID=SECRET, got {pair!r}")
        emulator.add_client(client_id, secret)
    for client_id in args.user_assigned:
        emulator.add_user_assigned_identity(client_id)
    emulator.start()
    for name in emulator.vaults:
        kind = "managed-hsm" if emulator.vaults[name].managed_hsm else "vault"
        print(f"{kind} {name} {emulator.vault_url(name)}")
    print(f"KEYMGMT_KEYVAULT_URLS={emulator.keyvault_urls_setting}")
    print(f"KEYMGMT_KEYVAULT_CA_BUNDLE={emulator.ca_path}")
    print(f"IDENTITY_ENDPOINT={emulator.identity_endpoint}")
    print(f"IDENTITY_HEADER={emulator.identity_header}")
    print(f"AZURE_TENANT_ID={emulator.tenant_id}")
    print(f"AZURE_AUTHORITY_HOST={emulator.authority_host}")
    print(f"control API: {emulator.control_url}")
    sys.stdout.flush()

    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    done.wait()
    emulator.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
