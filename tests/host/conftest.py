"""The test app (tests/host/app, routePrefix "api") served by the local host over HTTP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from tests.fixtures.azurite import ROOT, Azurite
from tests.fixtures.funchost import FuncHost

APP_DIR = Path(__file__).resolve().parent / "app"


@dataclass
class AppHost:
    host: FuncHost
    markers: Path
    settings: dict[str, str]

    @property
    def url(self) -> str:
        return self.host.url

    def request(self, method: str, path: str, **kwargs: object) -> requests.Response:
        kwargs.setdefault("timeout", 60)
        return requests.request(method, f"{self.url}/{path.lstrip('/')}", **kwargs)

    def events(self) -> dict[str, dict]:
        folder = self.markers / "events"
        if not folder.is_dir():
            return {}
        return {p.stem: json.loads(p.read_text()) for p in folder.glob("*.json")}


def app_settings(markers: Path, **extra: str) -> dict[str, str]:
    return {
        "TEST_MARKER_DIR": str(markers),
        "TEST_SCHEDULE": "0 0 0 1 1 *",
        **extra,
    }


@pytest.fixture(scope="session")
def app_host(azurite: Azurite) -> Iterator[AppHost]:
    """The test app with timers off (they run through the admin endpoint only)."""
    with tempfile.TemporaryDirectory(prefix="funchost-markers-") as markers:
        settings = app_settings(
            Path(markers),
            TEST_STORAGE=azurite.connection_string,
            TEST_TABLE=f"hostsmoke{uuid.uuid4().hex[:12]}",
            TEST_RUN_ID=uuid.uuid4().hex,
        )
        host = FuncHost(settings, app_dir=APP_DIR)
        try:
            yield AppHost(host, Path(markers), settings)
        finally:
            host.stop()


def run_host_expecting_failure(
    settings: dict[str, str], app_dir: Path = APP_DIR, *extra_args: str
) -> subprocess.CompletedProcess[str]:
    """Start ``python -m tools.funchost`` that must refuse to start: it has to exit by itself."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TEST_", "AzureWebJobs."))}
    env.update(settings)
    env["PYTHONPATH"] = str(ROOT)
    args = [sys.executable, "-m", "tools.funchost", "--app-dir", str(app_dir), "--port", "0"]
    args += ["--settings", os.devnull, *extra_args]
    try:
        return subprocess.run(
            args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=30, check=False
        )
    except subprocess.TimeoutExpired:
        pytest.fail("the host started (and kept serving) where it had to refuse")


def create_emulated_key(
    authority: str, tenant: str, client_id: str, secret: str, vault_url: str, name: str, ca: str
) -> None:
    """Create an RSA key in an emulated vault as a client of the emulator's authority."""
    import requests

    token = requests.post(
        f"{authority}/{tenant}/oauth2/v2.0/token",
        data={
            "grant_type": "client_credentials",
            "client_id": client_id,
            "client_secret": secret,
            "scope": "https://vault.azure.net/.default",
        },
        verify=ca,
        timeout=60,
    )
    assert token.status_code == 200, token.text
    created = requests.post(
        f"{vault_url}/keys/{name}/create?api-version=7.4",
        json={"kty": "RSA"},
        headers={"Authorization": f"Bearer {token.json()['access_token']}"},
        verify=ca,
        timeout=60,
    )
    assert created.status_code == 200, created.text
