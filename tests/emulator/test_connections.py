"""The emulator keeps HTTP/1.1 connections open between requests, as Key Vault's front end
does (docs/kvemu.md, "Connections"), and ends them when it stops."""

import requests

from tools.kvemu import Emulator


def test_connections_are_kept_between_requests_and_ended_by_stop(tmp_path) -> None:
    with Emulator({"conn": 0}, cert_dir=tmp_path) as emulator:
        session = requests.Session()
        session.trust_env = False  # else REQUESTS_CA_BUNDLE would win over the emulator's CA
        session.verify = emulator.ca_path
        url = f"{emulator.vault_url('conn')}/healthstatus"
        first = session.get(url, timeout=10)
        assert first.status_code == 200 and "close" not in first.headers.get("Connection", "")
        assert session.get(url, timeout=10).status_code == 200
        [server] = [
            s for s, _ in emulator._servers if s.port == int(url.split(":")[2].split("/")[0])
        ]
        assert len(server.live_connections) == 1  # both requests on one connection
        # An unauthenticated keys call is answered (401) on that connection too.
        assert session.get(f"{emulator.vault_url('conn')}/keys?api-version=7.4").status_code == 401
        assert len(server.live_connections) == 1
    assert not server.live_connections  # stop() ended the kept connection
