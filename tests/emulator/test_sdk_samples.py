"""Microsoft's own azure-keyvault-keys samples, unmodified, against the emulator.

The samples are the ``samples/`` folder of the package's sdist on PyPI for exactly the
installed version (``pip download --no-deps --no-binary :all: azure-keyvault-keys==<version>``),
downloaded at test time and cached in the git-ignored ``.local/sdk-samples/``; nothing of
them is copied into this repository. Without PyPI the module is skipped, with pip's error.
The sdist's PKG-INFO must name the installed version.

Each sample runs as its own ``python <sample>.py`` (the venv's interpreter) in the extracted
``samples/`` folder, with one emulator vault for all of them. What the harness changes, and
why:

* ``VAULT_URL`` is the vault's ``https://127.0.0.1:<port>`` (the samples read it).
* Credentials: the samples build ``DefaultAzureCredential()``. ``IDENTITY_ENDPOINT`` and
  ``IDENTITY_HEADER`` point its ManagedIdentityCredential at the emulator's App Service
  managed identity endpoint (the system-assigned identity, granted "Key Vault Administrator"
  on the vault). ``AZURE_TOKEN_CREDENTIALS=ManagedIdentityCredential`` (azure-identity's own
  switch) leaves every other credential out of the chain, so no Azure CLI, VS Code, broker or
  shared cache of the developer is tried; every other ``AZURE_*``, ``MSI_*``, ``IDENTITY_*``,
  ``IMDS_*`` variable is removed (``AZURE_CLIENT_ID`` would select a user-assigned identity,
  ``AZURE_CLIENT_SECRET`` an EnvironmentCredential) and ``HOME`` is an empty temp dir.
* TLS: the emulator's CA through ``REQUESTS_CA_BUNDLE`` (the sync transport, requests) and
  ``SSL_CERT_FILE`` (ssl's default context: aiohttp, the async transport); the subprocess only
  talks to the emulator, so replacing the system CAs there is harmless. ``NO_PROXY`` gets
  127.0.0.1 so that a CI proxy is not used for the emulator.
* Challenge resource: the emulator's challenge names ``resource="https://vault.azure.net"``,
  which the SDK (``verify_challenge_resource=True`` by default) refuses for a vault on
  127.0.0.1. There is no environment switch for it, so a ``sitecustomize.py`` in a temp dir on
  the subprocess's ``PYTHONPATH`` makes ``verify_challenge_resource=False`` the default of
  ``KeyClient``/``CryptographyClient`` (sync and async): ``kwargs.setdefault``, nothing else
  (its text is ``SITECUSTOMIZE`` in ``tests/emulator/samples_runner.py``).
* The vault is configured like a vault without purge protection, as the samples assume
  (recover_purge_operations purges): ``purge_protection=False`` and a short
  ``delete_delay=0.5`` s.
* The samples reuse key names (``rsaKeyName`` is in three of them) and some leave soft-deleted
  keys behind, which a real vault would refuse as well (409 ``ObjectIsDeletedButRecoverable``)
  on the next sample: before each sample, the harness deletes and purges every key (through
  the SDK, with an emulator-issued token), as one would between runs on a real vault.

Every keys API response during a sample is also checked against the spec (as for the other
tests in ``tests/emulator``).

Run (7 samples; the sync ones wait on the SDK's delete pollers, 2 s per poll):
hello_world, list_operations, recover_purge_operations, send_request, hello_world_async,
list_operations_async, recover_purge_operations_async (the async ones through aiohttp, the
SDK's async transport, pinned in requirements-dev.txt).

Skipped, because they need operations the emulator answers with 501:

* backup_restore_operations, backup_restore_operations_async: ``backup_key`` /
  ``restore_key_backup`` (and a 60 s sleep after the purge).
* key_rotation, key_rotation_async: ``update_key_rotation_policy`` /
  ``get_key_rotation_policy``.

Parallel runs (``-n 2 --dist loadgroup``): the module is in its own ``xdist_group``, but it does
not depend on it: each worker that runs some of its tests starts its own emulator, and the
sdist cache is written atomically. (With pytest 9.2 and pytest-xdist 3.8 the group has no
effect at all: xdist still sets ``item._nodeid``, which pytest 9.2 no longer reads;
pytest-dev/pytest-xdist#1386.)

``test_every_sample_is_classified`` fails when the installed version's sdist has a sample this
module does not list, so that a version bump does not silently drop one.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.emulator.conformance import Conformance
from tests.emulator.helpers import StaticToken
from tests.emulator.samples_runner import (
    SdistUnavailable,
    empty_vault,
    extract_samples,
    installed_version,
    run_sample,
    sample_environment,
    sample_names,
    sdist_path,
    write_site_dir,
)
from tools.kvemu import Emulator

pytestmark = [pytest.mark.xdist_group("kvemu-sdk-samples"), pytest.mark.slow]

VAULT = "sdk-samples"
SAMPLE_TIMEOUT = 45.0
DELETE_DELAY = 0.5

_BACKUP = "backup_key/restore_key_backup: the emulator answers 501 for backup/restore"
_ROTATION = "key rotation policies: the emulator answers 501 for rotation policies"

RUN = ["hello_world", "list_operations", "recover_purge_operations", "send_request"]
RUN_ASYNC = ["hello_world_async", "list_operations_async", "recover_purge_operations_async"]
SKIPPED = {
    "backup_restore_operations": _BACKUP,
    "backup_restore_operations_async": _BACKUP,
    "key_rotation": _ROTATION,
    "key_rotation_async": _ROTATION,
}
SAMPLES = [
    *RUN,
    *RUN_ASYNC,
    *(pytest.param(name, marks=pytest.mark.skip(reason=why)) for name, why in SKIPPED.items()),
]


@pytest.fixture(scope="module")
def samples_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    version = installed_version()
    try:
        sdist = sdist_path(version)
    except SdistUnavailable as exc:
        pytest.skip(f"cannot get the azure-keyvault-keys {version} sdist: {exc}")
    return extract_samples(sdist, version, tmp_path_factory.mktemp("sdk-samples"))


@pytest.fixture(scope="module")
def samples_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    emulator = Emulator(
        {VAULT: 0},
        cert_dir=tmp_path_factory.mktemp("kvemu-samples-certs"),
        record=True,
        purge_protection=False,  # as the samples assume: recover_purge_operations purges
        delete_delay=DELETE_DELAY,
    )
    emulator.start()
    try:
        emulator.grant(VAULT, emulator.system_identity.object_id, "Key Vault Administrator")
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture(scope="module")
def sample_env(
    samples_emulator: Emulator, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, str]:
    return sample_environment(
        vault_url=samples_emulator.vault_url(VAULT),
        ca_path=samples_emulator.ca_path,
        identity_endpoint=samples_emulator.identity_endpoint,
        identity_header=samples_emulator.identity_header,
        site_dir=write_site_dir(tmp_path_factory.mktemp("sdk-samples-site")),
        home=tmp_path_factory.mktemp("sdk-samples-home"),
    )


@pytest.fixture(scope="module")
def admin_client(samples_emulator: Emulator) -> Iterator[Any]:
    """The harness's own client (vault cleanup), with a token of the granted identity."""
    from azure.keyvault.keys import KeyClient

    client = KeyClient(
        samples_emulator.vault_url(VAULT),
        StaticToken(samples_emulator.issue_token(lifetime_seconds=3600)),
        connection_verify=samples_emulator.ca_path,
        verify_challenge_resource=False,
    )
    with client:
        yield client


@pytest.mark.parametrize("sample", SAMPLES)
def test_sample(
    sample: str,
    samples_dir: Path,
    samples_emulator: Emulator,
    sample_env: dict[str, str],
    admin_client: Any,
    conformance: Conformance | None,
) -> None:
    empty_vault(admin_client, settle=DELETE_DELAY + 0.2)
    start = len(samples_emulator.recorded())

    run = run_sample(samples_dir, sample, sample_env, SAMPLE_TIMEOUT)

    assert run.returncode == 0, (
        f"sample {sample}.py failed (exit {run.returncode}, {run.seconds:.1f} s)\n{run.tail()}"
    )
    if conformance is not None:
        problems = [
            problem
            for r in samples_emulator.recorded()[start:]
            for problem in conformance.problems(r.operation_id, r.status, r.body)
        ]
        assert not problems, (
            f"sample {sample}.py passed, but responses do not match the keys API spec:\n"
            + "\n".join(problems)
        )


def test_every_sample_is_classified(samples_dir: Path) -> None:
    known = {*RUN, *RUN_ASYNC, *SKIPPED}
    found = sample_names(samples_dir)
    assert found - known == set(), f"samples this module does not list: {sorted(found - known)}"
    assert known - found == set(), f"listed samples not in the sdist: {sorted(known - found)}"
