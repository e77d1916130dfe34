"""``make run``: Azurite, the Key Vault emulator and the local Functions host, together.

Prints ``ready:`` once every part answers, and how to point the ``bao``/``vault`` CLI at it.
Ctrl-C (or SIGTERM) stops every child process it started. Tables and emulated vaults
live in memory unless ``--persist`` keeps them in ``--data-dir`` (default ``.local/``,
git-ignored), which also holds the development seal key and the emulator's certificates.
"""

from __future__ import annotations

import argparse
import base64
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEV_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def _wait(port: int, proc: subprocess.Popen, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited with code {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"{what} did not open port {port} within {timeout} s")


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.devstack", description=__doc__)
    parser.add_argument("--port", type=int, default=int(os.environ.get("FUNCHOST_PORT", 7071)))
    parser.add_argument(
        "--table-port", type=int, default=int(os.environ.get("AZURITE_PORT", 10002))
    )
    parser.add_argument("--vault-port", type=int, default=int(os.environ.get("KVEMU_PORT", 8443)))
    parser.add_argument(
        "--identity-port", type=int, default=int(os.environ.get("KVEMU_IDENTITY_PORT", 8450))
    )
    parser.add_argument(
        "--vault",
        default=os.environ.get("KVEMU_VAULT", "keyvault-name"),
        help="name of the emulated Key Vault (the seed's is keyvault-name)",
    )
    parser.add_argument("--token", default=os.environ.get("KEYMGMT_ROOT_TOKEN", "root"))
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=ROOT / ".local",
        help="git-ignored folder for the seal key, certificates and --persist state",
    )
    parser.add_argument(
        "--persist",
        action="store_true",
        help="keep tables and emulated vaults in --data-dir across restarts",
    )
    args = parser.parse_args(argv)

    for port, what in (
        (args.port, "local host"),
        (args.table_port, "Azurite"),
        (args.vault_port, "Key Vault emulator"),
        (args.identity_port, "identity endpoint"),
    ):
        if not _free(port):
            raise SystemExit(
                f"port {port} ({what}) is in use; stop what holds it or pass "
                "another port (see --help)"
            )
    args.data_dir.mkdir(parents=True, exist_ok=True)
    seal_file = args.data_dir / "seal.key"
    if not seal_file.exists():
        seal_file.write_text(base64.b64encode(os.urandom(32)).decode())
        seal_file.chmod(0o600)

    children: list[subprocess.Popen] = []

    def stop(*_: object) -> None:
        for child in reversed(children):
            if child.poll() is None:
                child.terminate()
        for child in children:
            try:
                child.wait(10)
            except subprocess.TimeoutExpired:
                child.kill()

    signal.signal(signal.SIGTERM, lambda *_: (stop(), sys.exit(0)))
    try:
        azurite = ROOT / "node_modules" / ".bin" / "azurite-table"
        children.append(
            subprocess.Popen(
                [
                    str(azurite),
                    *(
                        ["--location", str(args.data_dir / "azurite")]
                        if args.persist
                        else ["--inMemoryPersistence"]
                    ),
                    "--disableTelemetry",
                    "--silent",
                    "--tableHost",
                    "127.0.0.1",
                    "--tablePort",
                    str(args.table_port),
                ],
                start_new_session=True,
            )
        )
        _wait(args.table_port, children[-1], "Azurite")

        env = dict(os.environ)
        env.update(
            {
                "PYTHONPATH": str(ROOT),
                "KEYMGMT_STORAGE": (
                    "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
                    f"AccountKey={DEV_KEY};TableEndpoint=http://127.0.0.1:{args.table_port}/"
                    "devstoreaccount1;"
                ),
                "KEYMGMT_SEAL_KEY": seal_file.read_text().strip(),
                "KEYMGMT_ROOT_TOKEN": args.token,
            }
        )
        emulator_lines = _start_emulator(args, env, children)

        children.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "tools.funchost",
                    "--app-dir",
                    str(ROOT),
                    "--port",
                    str(args.port),
                ],
                cwd=ROOT,
                env=env,
                start_new_session=True,
            )
        )
        _wait(args.port, children[-1], "local Functions host")
        _wait_health(f"http://127.0.0.1:{args.port}/v1/sys/health")

        print("", flush=True)
        for line in emulator_lines:
            print(line)
        print(f"ready: http://127.0.0.1:{args.port}  (Azurite tables on {args.table_port})")
        print("try:")
        print(f"  export BAO_ADDR=http://127.0.0.1:{args.port} BAO_TOKEN={args.token}")
        print(f"  export VAULT_ADDR=$BAO_ADDR VAULT_TOKEN={args.token}")
        print("  bao secrets enable keymgmt")
        print('  bao write keymgmt/key/rsa-1 type="rsa-2048"')
        print("(the bao CLI is in .venv/bin; Ctrl-C stops everything)", flush=True)
        while all(child.poll() is None for child in children):
            time.sleep(0.5)
        dead = [c.args[0] for c in children if c.poll() is not None]
        print(f"stopping: a child process exited: {dead}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        stop()


# The seed document's example service principal and tenant (HashiCorp's docs; not secrets):
# registered in the emulator so the seed's commands run verbatim.
SEED_CLIENT_ID = "a0454cd1-e28e-405e-bc50-7477fa8a00b7"
SEED_CLIENT_SECRET = "eR%HizuCVEpAKgeaUEx"
SEED_TENANT_ID = "cd4bf224-d114-4f96-9bbc-b8f45751c43f"
ENGINE_SETTINGS = (
    "KEYMGMT_KEYVAULT_URLS",
    "KEYMGMT_KEYVAULT_CA_BUNDLE",
    "IDENTITY_ENDPOINT",
    "IDENTITY_HEADER",
    "AZURE_AUTHORITY_HOST",
)


# The seed document: "an access policy on the Key Vault instance with the following minimum
# key permissions" (and its Terraform grants exactly these).
SEED_KEY_PERMISSIONS = ("create", "delete", "get", "import", "update")


def _start_emulator(
    args: argparse.Namespace, env: dict[str, str], children: list[subprocess.Popen]
) -> list[str]:
    """Start the Key Vault emulator and point the engine at it; returns lines to print."""
    cert_dir = args.data_dir / "kvemu"
    cert_dir.mkdir(parents=True, exist_ok=True)
    webhook = (
        f"http://127.0.0.1:{args.port}/runtime/webhooks/eventgrid?functionName=keyvault_events"
    )
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tools.kvemu",
            "--vault",
            f"{args.vault}={args.vault_port}",
            "--identity-port",
            str(args.identity_port),
            "--cert-dir",
            str(cert_dir),
            *(["--state", str(cert_dir / "state.sqlite")] if args.persist else []),
            "--tenant-id",
            SEED_TENANT_ID,
            "--client",
            f"{SEED_CLIENT_ID}={SEED_CLIENT_SECRET}",
            # The seed's access policy for its service principal, and nothing else.
            "--access-policy",
            f"{args.vault}:{SEED_CLIENT_ID}:{','.join(SEED_KEY_PERMISSIONS)}",
            "--eventgrid-webhook",
            webhook,
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    children.append(proc)
    lines: list[str] = []
    assert proc.stdout is not None
    for line in proc.stdout:  # the emulator prints its settings, then "control API: ..."
        lines.append(line.rstrip())
        name, sep, value = line.strip().partition("=")
        if sep and name in ENGINE_SETTINGS:
            env[name] = value
        if line.startswith("control API:"):
            break
    else:
        raise SystemExit(f"the Key Vault emulator exited with code {proc.wait()}")
    threading.Thread(target=_drain, args=(proc.stdout,), daemon=True).start()
    return [
        f"Key Vault emulator: vault {args.vault!r} at https://127.0.0.1:{args.vault_port} "
        f"(CA {env['KEYMGMT_KEYVAULT_CA_BUNDLE']}); Event Grid events go to the local host",
        f"  seed credentials accepted there: client_id={SEED_CLIENT_ID} tenant_id={SEED_TENANT_ID}",
    ]


def _drain(stream: Any) -> None:
    for line in stream:
        sys.stdout.write(line)


def _wait_health(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 (loopback)
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"{url} did not answer within {timeout} s")


if __name__ == "__main__":
    sys.exit(main())
