"""Run Microsoft's azure-keyvault-keys samples, unmodified, against a ``tools.kvemu`` vault.

Used by ``tests/emulator/test_sdk_samples.py`` (its docstring says what is changed and why).
Nothing here copies sample code: the samples come from the package's sdist on PyPI, for
exactly the installed version, downloaded at test time and cached under ``.local/``.
"""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PACKAGE = "azure-keyvault-keys"
REPO_ROOT = Path(__file__).resolve().parents[2]
# git-ignored (.gitignore: ".local/"), so repeated runs and CI caches reuse the download
CACHE_DIR = REPO_ROOT / ".local" / "sdk-samples"
DOWNLOAD_TIMEOUT = 180

# Put on the sample's PYTHONPATH as sitecustomize.py: the only change to the SDK's defaults.
SITECUSTOMIZE = '''\
"""Written by tests/emulator/samples_runner.py for one run of an azure-keyvault-keys sample.

The emulator's challenge names resource="https://vault.azure.net" and the vault is
https://127.0.0.1:<port>, so the SDK's default verify_challenge_resource=True refuses it.
This makes verify_challenge_resource=False the default for the four Key Vault key clients;
an explicit argument still wins. Nothing else is changed.
"""

import functools

from azure.keyvault.keys import KeyClient
from azure.keyvault.keys.aio import KeyClient as AsyncKeyClient
from azure.keyvault.keys.crypto import CryptographyClient
from azure.keyvault.keys.crypto.aio import CryptographyClient as AsyncCryptoClient


def _no_challenge_resource_check_by_default(cls):
    init = cls.__init__

    @functools.wraps(init)
    def __init__(self, *args, **kwargs):
        kwargs.setdefault("verify_challenge_resource", False)
        init(self, *args, **kwargs)

    cls.__init__ = __init__


for _cls in (KeyClient, AsyncKeyClient, CryptographyClient, AsyncCryptoClient):
    _no_challenge_resource_check_by_default(_cls)
'''

# Variables that could make DefaultAzureCredential, the TLS stack or Python pick up something
# from the developer's or CI's environment instead of the emulator.
_DROP_PREFIXES = ("AZURE_", "MSI_", "IDENTITY_", "IMDS_", "MSAL_")
_DROP_NAMES = {
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "PYTHONPATH",
    "PYTHONSTARTUP",
    "PYTHONHOME",
    "PYTHONSAFEPATH",
    "PYTHONNOUSERSITE",
}


class SdistUnavailable(Exception):
    """The sdist could not be downloaded (offline, index unreachable, ...)."""


def installed_version() -> str:
    return importlib.metadata.version(PACKAGE)


def sdist_path(version: str, cache_dir: Path = CACHE_DIR) -> Path:
    """The sdist of ``version``, from the cache or downloaded with pip (atomically cached)."""
    target = cache_dir / f"azure_keyvault_keys-{version}.tar.gz"
    if target.is_file():
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache_dir, prefix=".download-") as tmp:
        command = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--no-binary",
            ":all:",
            "--disable-pip-version-check",
            f"{PACKAGE}=={version}",
            "-d",
            tmp,
        ]
        try:
            done = subprocess.run(
                command, capture_output=True, text=True, timeout=DOWNLOAD_TIMEOUT, check=False
            )
        except subprocess.TimeoutExpired as exc:
            raise SdistUnavailable(f"`{' '.join(command[2:])}` timed out") from exc
        found = sorted(Path(tmp).glob("*.tar.gz"))
        if done.returncode != 0 or len(found) != 1:
            lines = (done.stderr or done.stdout).strip().splitlines()
            tail = [line for line in lines if line.startswith("ERROR")] or lines[-3:]
            raise SdistUnavailable(
                f"`{' '.join(command[2:5])} ... {PACKAGE}=={version}` failed "
                f"(exit {done.returncode}): " + " | ".join(tail)
            )
        os.replace(found[0], target)
    return target


def extract_samples(sdist: Path, version: str, dest: Path) -> Path:
    """Extract ``samples/`` of the sdist into ``dest``; check PKG-INFO names ``version``."""
    with tarfile.open(sdist) as tar:
        top = f"azure_keyvault_keys-{version}"
        pkg_info = tar.extractfile(f"{top}/PKG-INFO")
        if pkg_info is None:
            raise ValueError(f"{sdist} has no {top}/PKG-INFO")
        header = pkg_info.read().decode("utf-8", "replace").splitlines()
        if f"Version: {version}" not in header:
            raise ValueError(f"{sdist} is not {PACKAGE} {version}")
        members = [m for m in tar.getmembers() if m.name.startswith(f"{top}/samples/")]
        tar.extractall(dest, members=members, filter="data")
    return dest / top / "samples"


def sample_names(samples_dir: Path) -> set[str]:
    return {p.stem for p in samples_dir.glob("*.py")}


def write_site_dir(dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "sitecustomize.py").write_text(SITECUSTOMIZE, "utf-8")
    return dest


def sample_environment(
    *,
    vault_url: str,
    ca_path: str,
    identity_endpoint: str,
    identity_header: str,
    site_dir: Path,
    home: Path,
    base: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The environment the samples expect (``VAULT_URL`` + DefaultAzureCredential), pointed at
    the emulator's App Service managed identity endpoint, trusting the emulator's CA."""
    source = os.environ if base is None else base
    env = {
        k: v
        for k, v in source.items()
        if not k.upper().startswith(_DROP_PREFIXES) and k.upper() not in _DROP_NAMES
    }
    # our sitecustomize first; then the caller's PYTHONPATH (absolute: the cwd is samples/), so
    # the subprocess sees the same packages as the test process that decided what to skip
    inherited = [
        str(Path(p).resolve()) for p in source.get("PYTHONPATH", "").split(os.pathsep) if p
    ]
    no_proxy = ",".join(
        part for part in ("127.0.0.1", "localhost", source.get("NO_PROXY", "")) if part
    )
    env.update(
        {
            "VAULT_URL": vault_url,
            # DefaultAzureCredential: only ManagedIdentityCredential (no CLI, VS Code, broker...)
            "AZURE_TOKEN_CREDENTIALS": "ManagedIdentityCredential",
            "IDENTITY_ENDPOINT": identity_endpoint,
            "IDENTITY_HEADER": identity_header,
            # TLS: requests (sync transport) and ssl's default context (aiohttp, async samples)
            "REQUESTS_CA_BUNDLE": ca_path,
            "SSL_CERT_FILE": ca_path,
            "NO_PROXY": no_proxy,
            "no_proxy": no_proxy,
            # no ~/.azure, no MSAL token cache of the developer
            "HOME": str(home),
            "PYTHONPATH": os.pathsep.join([str(site_dir), *inherited]),
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


@dataclass(frozen=True)
class SampleRun:
    name: str
    returncode: int | None  # None: killed after the timeout
    stdout: str
    stderr: str
    seconds: float

    def tail(self, lines: int = 40) -> str:
        def last(text: str) -> str:
            return "\n".join(text.rstrip().splitlines()[-lines:]) or "(empty)"

        return (
            f"--- stdout (tail) ---\n{last(self.stdout)}\n"
            f"--- stderr (tail) ---\n{last(self.stderr)}"
        )


def _text(value: Any) -> str:
    if value is None:
        return ""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def run_sample(samples_dir: Path, name: str, env: Mapping[str, str], timeout: float) -> SampleRun:
    script = samples_dir / f"{name}.py"
    start = time.monotonic()
    try:
        done = subprocess.run(
            [sys.executable, str(script)],
            cwd=samples_dir,
            env=dict(env),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        return SampleRun(
            name,
            None,
            _text(exc.stdout),
            _text(exc.stderr) + f"\n(killed after {timeout:.0f} s)",
            time.monotonic() - start,
        )
    return SampleRun(name, done.returncode, done.stdout, done.stderr, time.monotonic() - start)


def empty_vault(client: Any, *, settle: float, timeout: float = 30.0) -> None:
    """Delete and purge every key, so each sample starts on an empty vault.

    ``settle``: wait first, so deletes a sample started without waiting (hello_world does not
    wait for its delete pollers) are visible as deleted keys. Keys this deletes are waited for
    with the SDK's own poller; purged names are waited for until they are gone.
    """
    from azure.core.exceptions import ResourceNotFoundError

    time.sleep(settle)
    deadline = time.monotonic() + timeout
    while True:
        active = [p.name for p in client.list_properties_of_keys()]
        for name in active:
            try:
                client.begin_delete_key(name, _polling_interval=0.2).wait()
            except ResourceNotFoundError:
                pass
        deleted = [d.name for d in client.list_deleted_keys()]
        for name in deleted:
            try:
                client.purge_deleted_key(name)
            except ResourceNotFoundError:
                pass
        for name in deleted:
            while True:
                try:
                    client.get_deleted_key(name)
                except ResourceNotFoundError:
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError(f"deleted key {name} is still there after its purge")
                time.sleep(0.2)
        if not active and not deleted:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"the vault is not empty: keys {active}, deleted keys {deleted}")
