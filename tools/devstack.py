"""``make run``: Azurite, the Key Vault emulator and the local Functions host, together.

Prints ``ready:`` once every part answers, and how to point the ``bao``/``vault`` CLI at it.
Ctrl-C, SIGTERM or SIGHUP (the terminal closing) stops every process it started, within a
few seconds. Tables and emulated vaults live in memory unless ``--persist`` keeps them in
``--data-dir`` (default ``.local/``, git-ignored), which also holds the development seal key
and the emulator's certificates; it and everything in it is readable by its owner only.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tools.localstack import (
    EMULATOR_FIXED_SETTINGS,
    EMULATOR_SETTINGS,
    ROOT,
    azurite_command,
    connection_string,
    engine_app_settings,
    funchost_command,
    new_seal_key,
    wait_for_port,
    wait_healthy,
)

# Signals that stop the stack: Ctrl-C, `kill`, and the terminal closing.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
# How long the children get to exit on SIGTERM before their process groups are killed.
STOP_GRACE = 3.0
# Files the children create are their owner's only (the umask is inherited).
PRIVATE_UMASK = 0o077
# The local host's keys (read by tools.funchost): the Event Grid one is made here for each
# run; a master key, which guards /admin/functions/..., only if devstack is given one.
EVENTGRID_KEY_VARIABLE = "FUNCHOST_EVENTGRID_KEY"
MASTER_KEY_VARIABLE = "FUNCHOST_MASTER_KEY"


def _wait(port: int, proc: subprocess.Popen, what: str, timeout: float = 60) -> None:
    try:
        wait_for_port(port, proc, timeout)
    except RuntimeError:
        raise SystemExit(f"{what} exited with code {proc.returncode}") from None
    except TimeoutError:
        raise SystemExit(f"{what} did not open port {port} within {timeout} s") from None


def _free(port: int) -> bool:
    """Whether the servers can bind ``port``: nothing listens there.

    SO_REUSEADDR, as the servers themselves bind (Werkzeug's ``allow_reuse_address``, libuv
    under Azurite): connections of the last run still in TIME_WAIT do not hold the port then.
    """
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _private_dir(path: Path) -> None:
    """Create ``path`` (mode 700), or take group and other access away from it."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.chmod(0o700)


def _tighten(path: Path) -> None:
    """Take group and other access away from ``path`` and, for a folder, all it holds (what
    earlier runs wrote before the umask was set)."""
    if not path.exists() or path.is_symlink():
        return
    paths = [path, *path.rglob("*")] if path.is_dir() else [path]
    for item in paths:
        if not item.is_symlink():
            item.chmod(stat.S_IMODE(item.stat().st_mode) & ~0o077)


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        os.fchmod(fh.fileno(), 0o600)  # the file may predate this run
        fh.write(text)


def _audit_device(path: Path) -> dict[str, Any]:
    """The local stack's audit device: a file in the data folder, its owner's only."""
    return {
        "path": "file",
        "type": "file",
        "description": "make run: the local audit log",
        "options": {"file_path": str(path), "mode": "0600"},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.devstack", description=__doc__)
    parser.add_argument("--port", type=int, default=int(os.environ.get("FUNCHOST_PORT", 7071)))
    parser.add_argument(
        "--table-port", type=int, default=int(os.environ.get("AZURITE_PORT", 10002))
    )
    parser.add_argument(
        "--blob-port", type=int, default=int(os.environ.get("AZURITE_BLOB_PORT", 10000))
    )
    parser.add_argument("--vault-port", type=int, default=int(os.environ.get("KVEMU_PORT", 8443)))
    parser.add_argument(
        "--identity-port",
        type=int,
        default=int(os.environ.get("KVEMU_IDENTITY_PORT", 8450)),
        help="the emulator's identity endpoint; its Entra-like authority takes the next port",
    )
    parser.add_argument(
        "--vault",
        default=os.environ.get("KVEMU_VAULT", "keyvault-name"),
        help="name of the emulated Key Vault (the seed's is keyvault-name)",
    )
    parser.add_argument(
        "--token",
        default=os.environ.get("KEYMGMT_ROOT_TOKEN", "root"),
        help="the root token (default: $KEYMGMT_ROOT_TOKEN, else root)",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=ROOT / ".local",
        help="git-ignored folder of its own for the seal key, certificates and --persist "
        "state; made readable by its owner only",
    )
    parser.add_argument(
        "--persist",
        action="store_true",
        help="keep tables and emulated vaults in --data-dir across restarts",
    )
    args = parser.parse_args(argv)
    # Absolute: the children run in other folders.
    args.data_dir = args.data_dir.resolve()

    for port, what in (
        (args.port, "local host"),
        (args.table_port, "Azurite"),
        (args.blob_port, "Azurite's Blob service"),
        (args.vault_port, "Key Vault emulator"),
        (args.identity_port, "identity endpoint"),
        (args.identity_port + 1, "the emulator's authority"),
    ):
        if not _free(port):
            raise SystemExit(
                f"port {port} ({what}) is in use; stop what holds it or pass "
                "another port (see --help)"
            )
    if args.data_dir.is_dir() and args.data_dir.stat().st_mode & stat.S_ISVTX:
        raise SystemExit(f"--data-dir {args.data_dir} is a shared folder; give one of its own")
    _private_dir(args.data_dir)
    seal_file = args.data_dir / "seal.key"
    if not seal_file.exists():
        _write_private(seal_file, new_seal_key())
    audit_log = args.data_dir / "audit.log"
    for path in (seal_file, args.data_dir / "kvemu", args.data_dir / "azurite", audit_log):
        _tighten(path)

    # The host's keys go to the host only.
    master_key = os.environ.get(MASTER_KEY_VARIABLE)
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in (MASTER_KEY_VARIABLE, EVENTGRID_KEY_VARIABLE)
    }
    children: list[subprocess.Popen] = []

    def interrupt(*_: object) -> None:
        _ignore_stop_signals()  # a second Ctrl-C must not cut the cleanup short
        raise KeyboardInterrupt

    for signum in STOP_SIGNALS:
        signal.signal(signum, interrupt)
    try:
        children.append(
            subprocess.Popen(
                azurite_command(
                    args.table_port,
                    blob_port=args.blob_port,
                    location=args.data_dir / "azurite" if args.persist else None,
                ),
                cwd=args.data_dir,  # where Azurite would write anything it writes
                env=env,
                start_new_session=True,
                umask=PRIVATE_UMASK,
            )
        )
        _wait(args.table_port, children[-1], "Azurite")
        _wait(args.blob_port, children[-1], "Azurite's Blob service")

        env["PYTHONPATH"] = str(ROOT)
        env.update(
            engine_app_settings(
                connection_string(args.table_port, args.blob_port),
                seal_key=seal_file.read_text().strip(),
                root_token=args.token,
                KEYMGMT_AUDIT_DEVICES=json.dumps([_audit_device(audit_log)]),
            )
        )
        # The Event Grid system key, new each run: the emulator's webhook URL carries it, as
        # an Event Grid subscription's would, and the host refuses events without it.
        eventgrid_key = secrets.token_urlsafe(32)
        emulator_lines = _start_emulator(args, env, children, eventgrid_key)
        host_env = {**env, EVENTGRID_KEY_VARIABLE: eventgrid_key}
        if master_key is not None:
            host_env[MASTER_KEY_VARIABLE] = master_key

        children.append(
            subprocess.Popen(
                funchost_command(args.port),
                cwd=ROOT,
                env=host_env,
                start_new_session=True,
                umask=PRIVATE_UMASK,
            )
        )
        _wait(args.port, children[-1], "local Functions host")
        _wait_health(f"http://127.0.0.1:{args.port}")

        print("", flush=True)
        for line in emulator_lines:
            print(line)
        print(
            f"ready: http://127.0.0.1:{args.port}  (Azurite tables on {args.table_port}, "
            f"blobs on {args.blob_port})"
        )
        print(f"audit log: {audit_log}  (file device 'file/', HMAC'd; see docs/audit.md)")
        print("try:")
        print(f"  export BAO_ADDR=http://127.0.0.1:{args.port} BAO_TOKEN={args.token}")
        print(f"  export VAULT_ADDR=$BAO_ADDR VAULT_TOKEN={args.token}")
        print("  bao secrets enable keymgmt")
        print('  bao write keymgmt/key/rsa-1 type="rsa-2048"')
        admin = f"  curl -X POST http://127.0.0.1:{args.port}/admin/functions/reconciler"
        if master_key is not None:
            admin += f' -H "x-functions-key: <your {MASTER_KEY_VARIABLE}>"'
        print(f"{admin}  # run a timer now")
        _print_login_recipe(args, env)
        print("(the bao CLI is in .venv/bin; Ctrl-C stops everything)", flush=True)
        while all(child.poll() is None for child in children):
            time.sleep(0.5)
        dead = [c.args[0] for c in children if c.poll() is not None]
        print(f"stopping: a child process exited: {dead}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        _stop(children)


def _stop(children: list[subprocess.Popen]) -> None:
    """SIGTERM to each child's process group; SIGKILL to what is left after the grace."""
    _ignore_stop_signals()
    for child in reversed(children):
        _signal_group(child, signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE
    for child in children:
        try:
            child.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
    for child in children:
        # Also sweeps anything a child started that outlived it in its group.
        _signal_group(child, signal.SIGKILL)
        child.wait()


def _ignore_stop_signals() -> None:
    for signum in STOP_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)


def _signal_group(child: subprocess.Popen, signum: int) -> None:
    # start_new_session made each child the leader of its own process group.
    try:
        os.killpg(child.pid, signum)
    except ProcessLookupError:
        pass


def _print_login_recipe(args: argparse.Namespace, env: Mapping[str, str]) -> None:
    """How to log in as the Function App's managed identity, as it would in Azure: a token for
    Resource Manager from the identity endpoint, then auth/azure (docs/auth.md)."""
    oid = getattr(args, "system_object_id", "") or "<the identity's object id>"
    arm = "https://management.azure.com/"
    header = args.data_dir / "identity-header"
    print("log in as the Function App's managed identity (docs/auth.md; uses jq):")
    print("  bao auth enable azure")
    print(f"  bao write auth/azure/config tenant_id={SEED_TENANT_ID} resource={arm}")
    print(f"  bao write auth/azure/role/app bound_service_principal_ids={oid} token_ttl=15m")
    print(
        f'  JWT=$(curl -s -H "X-IDENTITY-HEADER: $(cat {header})" '
        f'"{env["IDENTITY_ENDPOINT"]}?api-version=2019-08-01&resource={arm}" | jq -r .access_token)'
    )
    print('  bao write auth/azure/login role=app jwt="$JWT"')


# The seed document's example service principal and tenant (HashiCorp's docs; not secrets):
# registered in the emulator so the seed's commands run verbatim.
SEED_CLIENT_ID = "a0454cd1-e28e-405e-bc50-7477fa8a00b7"
SEED_CLIENT_SECRET = "eR%HizuCVEpAKgeaUEx"
SEED_TENANT_ID = "cd4bf224-d114-4f96-9bbc-b8f45751c43f"


# The seed document: "an access policy on the Key Vault instance with the following minimum
# key permissions" (and its Terraform grants exactly these).
SEED_KEY_PERMISSIONS = ("create", "delete", "get", "import", "update")


def _start_emulator(
    args: argparse.Namespace,
    env: dict[str, str],
    children: list[subprocess.Popen],
    eventgrid_key: str,
) -> list[str]:
    """Start the Key Vault emulator and point the engine at it; returns lines to print."""
    cert_dir = args.data_dir / "kvemu"
    _private_dir(cert_dir)
    webhook = (
        f"http://127.0.0.1:{args.port}/runtime/webhooks/eventgrid?functionName=keyvault_events"
        f"&code={eventgrid_key}"
    )
    # Secrets go in a file only its owner can read, not on the command line (ps shows it).
    secrets_file = cert_dir / "secrets.json"
    _write_private(
        secrets_file,
        json.dumps({"clients": {SEED_CLIENT_ID: SEED_CLIENT_SECRET}, "eventgrid_webhook": webhook}),
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
            "--secrets-file",
            str(secrets_file),
            # The seed's access policy for its service principal, and nothing else.
            "--access-policy",
            f"{args.vault}:{SEED_CLIENT_ID}:{','.join(SEED_KEY_PERMISSIONS)}",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
        umask=PRIVATE_UMASK,
    )
    children.append(proc)
    lines: list[str] = []
    assert proc.stdout is not None
    env.update(EMULATOR_FIXED_SETTINGS)
    for line in proc.stdout:  # the emulator prints its settings, then "control API: ..."
        lines.append(line.rstrip())
        name, sep, value = line.strip().partition("=")
        if sep and name in EMULATOR_SETTINGS:
            env[name] = value
        if line.startswith("control API:"):
            break
    else:
        raise SystemExit(f"the Key Vault emulator exited with code {proc.wait()}")
    threading.Thread(target=_drain, args=(proc.stdout,), daemon=True).start()
    # The identity endpoint's header, as App Service gives a Function App its
    # IDENTITY_HEADER: in a file only its owner reads, for the login recipe the banner prints.
    _write_private(args.data_dir / "identity-header", env["IDENTITY_HEADER"])
    system = next(
        (line.split() for line in lines if line.startswith("identity SystemAssigned")), []
    )
    args.system_object_id = system[system.index("object_id") + 1] if "object_id" in system else ""
    return [
        f"Key Vault emulator: vault {args.vault!r} at https://127.0.0.1:{args.vault_port} "
        f"(CA {env['KEYMGMT_KEYVAULT_CA_BUNDLE']}); Event Grid events go to the local host",
        f"  seed credentials accepted there: client_id={SEED_CLIENT_ID} tenant_id={SEED_TENANT_ID}",
    ]


def _drain(stream: Any) -> None:
    try:
        for line in stream:
            sys.stdout.write(line)
    except (OSError, ValueError):  # our terminal is gone (SIGHUP), or we are stopping
        pass


def _wait_health(url: str, timeout: float = 60) -> None:
    try:
        wait_healthy(url, timeout)
    except TimeoutError:
        raise SystemExit(f"{url}/v1/sys/health did not answer within {timeout} s") from None


if __name__ == "__main__":
    sys.exit(main())
