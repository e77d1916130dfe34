"""The engine on Azurite: sealing bound to rows, crash-safe delete, reads that never unseal."""

import pytest

from shared.errors import NotFound, RowTampered, SealError
from shared.seal import material_context
from shared.store import version_rk
from tests.fixtures.funchost import build_service


@pytest.fixture
def engine(azurite, table_prefix):
    return build_service(azurite, table_prefix)


def write(engine, name, key_type="ecdsa-p256"):
    engine.keys.write(
        "keymgmt",
        name,
        key_type=key_type,
        min_enabled_version=None,
        deletion_allowed=None,
        auto_rotate_period=None,
    )


def version_rows(store, name):
    rows = store.table.query_entities(
        "PartitionKey eq 'keymgmt' and RowKey gt @lo and RowKey lt @hi",
        parameters={"lo": f"key:{name}:", "hi": f"key:{name};"},
        select=["RowKey"],
    )
    return sum(1 for _ in rows)


def test_rows_store_no_plaintext_material(engine):
    write(engine, "a", "aes256-gcm96")
    material = engine.keys.unseal("keymgmt", "a", 1)
    entity = engine.store.table.get_entity("keymgmt", version_rk("a", 1))
    for value in entity.values():
        if isinstance(value, (bytes, bytearray)):
            assert material not in bytes(value)


def test_a_row_moved_to_another_key_or_version_fails_to_unseal(engine):
    write(engine, "a")
    write(engine, "b")
    engine.keys.rotate("keymgmt", "a")
    table = engine.store.table
    source = table.get_entity("keymgmt", version_rk("a", 1))
    for columns in (
        ("seal_kid", "seal_dek", "seal_ct"),
        ("seal_kid", "seal_dek", "seal_ct", "seal_sha", "mac"),
    ):
        # Copy a's version 1 material (alone, or with its digest and MAC) over b's version 1
        # and over a's version 2: the row check refuses both, naming the row.
        for target in (version_rk("b", 1), version_rk("a", 2)):
            row = table.get_entity("keymgmt", target)
            original = dict(row)
            row.update({k: source[k] for k in columns})
            table.upsert_entity(row)
            with pytest.raises(RowTampered, match=f"keymgmt/{target}"):
                engine.keys.unseal("keymgmt", target.split(":")[1], int(target.rsplit(":", 1)[1]))
            table.upsert_entity(original)
    assert engine.keys.unseal("keymgmt", "a", 1)  # the original still opens
    assert engine.keys.unseal("keymgmt", "b", 1)  # and the restored rows open again


def test_sealed_material_is_bound_to_its_row_even_without_the_row_check(engine):
    """The AEAD layer on its own: material sealed for one version does not open as another."""
    sealed = engine.sealer.seal(b"material", material_context("keymgmt", "a", 1))
    with pytest.raises(SealError, match="moved from another key or version"):
        engine.sealer.open(sealed, material_context("keymgmt", "b", 1))
    with pytest.raises(SealError, match="keymgmt/a/2"):
        engine.sealer.open(sealed, material_context("keymgmt", "a", 2))
    assert engine.sealer.open(sealed, material_context("keymgmt", "a", 1)) == b"material"


def test_a_tampered_row_fails_to_unseal(engine):
    write(engine, "t")
    table = engine.store.table
    row = table.get_entity("keymgmt", version_rk("t", 1))
    ct = bytearray(row["seal_ct"])
    ct[-1] ^= 1
    row["seal_ct"] = bytes(ct)
    table.upsert_entity(row)
    with pytest.raises(RowTampered, match="keymgmt/key:t:0000000001"):
        engine.keys.unseal("keymgmt", "t", 1)


def test_reads_and_lists_never_unseal(engine):
    write(engine, "r")

    class Refuses:
        def wrap(self, dek):
            raise AssertionError("read path wrapped")

        def unwrap(self, wrapped, key_id):
            raise AssertionError("read path unsealed")

    engine.sealer.seal_key = Refuses()
    assert engine.keys.read("keymgmt", "r").key.latest_version == 1
    assert "r" in engine.keys.list("keymgmt")


def test_a_crash_in_the_middle_of_delete_never_leaves_a_valid_looking_key(engine):
    write(engine, "big", "aes256-gcm96")
    for _ in range(130):  # more versions than one transaction can delete
        engine.keys.rotate("keymgmt", "big")
    engine.keys.write(
        "keymgmt",
        "big",
        key_type=None,
        min_enabled_version=None,
        deletion_allowed=True,
        auto_rotate_period=None,
    )

    store = engine.store
    real_delete_rows = store.delete_rows

    def crash_after_first_chunk(partition, rows):
        real_delete_rows(partition, rows[:100])
        raise RuntimeError("instance recycled mid-delete")

    store.delete_rows = crash_after_first_chunk
    with pytest.raises(RuntimeError):
        engine.keys.delete("keymgmt", "big")
    store.delete_rows = real_delete_rows

    with pytest.raises(NotFound):
        engine.keys.read("keymgmt", "big")
    assert "big" not in engine.keys.list("keymgmt")
    assert version_rows(store, "big") == 31  # half done, hidden
    # Creating the name again finishes the old delete first: the new key starts clean.
    write(engine, "big", "aes256-gcm96")
    assert engine.keys.read("keymgmt", "big").key.latest_version == 1
    assert version_rows(store, "big") == 1


def test_storage_down_is_503_not_500(azurite, table_prefix):
    """With Table Storage unreachable, the API says so (503) instead of failing blindly."""
    import requests

    from tests.fixtures.azurite import free_port
    from tests.fixtures.funchost import engine_settings, serving

    class Nowhere:
        connection_string = (
            "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey="
            f"{azurite.connection_string.split('AccountKey=')[1].split(';')[0]};"
            f"TableEndpoint=http://127.0.0.1:{free_port()}/devstoreaccount1;"
        )

    with serving(engine_settings(Nowhere, table_prefix, KEYMGMT_DEFAULT_MOUNTS="")) as host:
        response = requests.get(
            f"{host.url}/v1/keymgmt/key/a", headers={"X-Vault-Token": "root"}, timeout=120
        )
        assert response.status_code == 503
        assert "Table Storage" in response.json()["errors"][0]


def test_storage_lost_after_start_is_503(table_prefix):
    import requests

    from tests.fixtures.azurite import Azurite
    from tests.fixtures.funchost import engine_settings, serving

    own = Azurite()
    try:
        with serving(engine_settings(own, table_prefix)) as host:
            headers = {"X-Vault-Token": "root"}
            url = f"{host.url}/v1/keymgmt/key/a"
            created = requests.post(url, json={"type": "ecdsa-p256"}, headers=headers, timeout=120)
            assert created.status_code == 204
            own.stop()
            response = requests.get(url, headers=headers, timeout=120)
            assert response.status_code == 503
            assert "unavailable" in response.json()["errors"][0]
    finally:
        own.stop()


def test_a_lost_table_is_503_naming_the_cause_then_recovers_without_a_restart(table_prefix):
    """Azurite restarted in memory: the table is gone. The request that finds out says so;
    the table is recreated, caches dropped, default mounts back; the next requests work."""
    import requests

    from tests.fixtures.azurite import Azurite
    from tests.fixtures.funchost import engine_settings, serving

    own = Azurite()
    try:
        with serving(engine_settings(own, table_prefix)) as host:
            headers = {"X-Vault-Token": "root"}
            api = f"{host.url}/v1"
            for path in ("keymgmt/key/a", "sys/mounts/other"):
                body = {"type": "ecdsa-p256"} if "key" in path else {"type": "keymgmt"}
                answer = requests.post(f"{api}/{path}", json=body, headers=headers, timeout=120)
                assert answer.status_code == 204
            own.stop()
            own = Azurite(own.port)  # the same endpoint, empty
            response = requests.get(f"{api}/keymgmt/key/a", headers=headers, timeout=120)
            assert response.status_code == 503
            assert "was not found" in response.json()["errors"][0]
            assert "recreated" in response.json()["errors"][0]
            # Recovered: the data is gone (as in the storage), the API works again at once.
            assert (
                requests.get(f"{api}/keymgmt/key/a", headers=headers, timeout=120).status_code
                == 404
            )
            assert (
                requests.post(
                    f"{api}/sys/mounts/other",
                    json={"type": "keymgmt"},
                    headers=headers,
                    timeout=120,
                ).status_code
                == 204
            )
            assert (
                requests.post(
                    f"{api}/keymgmt/key/a",
                    json={"type": "ecdsa-p256"},
                    headers=headers,
                    timeout=120,
                ).status_code
                == 204
            )
            mounts = requests.get(f"{api}/sys/mounts", headers=headers, timeout=120).json()["data"]
            assert {"keymgmt/", "other/"} <= set(mounts)
    finally:
        own.stop()


class _Throttling:
    """A Table endpoint that says the table exists and answers everything else as a storage
    account under throttling does: 503 ServerBusy (Table service error codes)."""

    def __init__(self, status: int = 503, code: str = "ServerBusy") -> None:
        import http.server
        import json
        import threading

        requests_seen = self.requests = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                requests_seen.append((self.command, self.path))
                if self.command == "POST" and self.path.rstrip("/").endswith("/Tables"):
                    answer, error = 409, "TableAlreadyExists"
                else:
                    answer, error = status, code
                body = json.dumps(
                    {"odata.error": {"code": error, "message": {"lang": "en-US", "value": error}}}
                ).encode()
                self.send_response(answer)
                self.send_header("Content-Type", "application/json;odata=minimalmetadata")
                self.send_header("x-ms-error-code", error)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_MERGE = _answer

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.port = self.server.server_address[1]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize(("status", "code"), [(503, "ServerBusy"), (500, "OperationTimedOut")])
def test_storage_throttling_is_503_after_bounded_retries(azurite, table_prefix, status, code):
    """Throttled or failing storage, still so after the SDK's retries: 503 (never 500), and
    the retries are few and short (store.TABLE_RETRIES)."""
    import time

    from shared import service, settings
    from shared.errors import UpstreamUnavailable
    from shared.store import TABLE_RETRIES
    from tools.localstack import engine_settings

    busy = _Throttling(status, code)
    try:
        key = azurite.connection_string.split("AccountKey=")[1].split(";")[0]

        class Busy:
            connection_string = (
                "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
                f"AccountKey={key};TableEndpoint=http://127.0.0.1:{busy.port}/devstoreaccount1;"
            )

        app = settings.load(engine_settings(Busy, table_prefix, KEYMGMT_DEFAULT_MOUNTS=""))
        started = time.monotonic()
        with pytest.raises(UpstreamUnavailable, match=f"busy or failing \\({code}\\)"):
            service.build(app).keys.read("keymgmt", "a")  # the build reads the policies
        assert time.monotonic() - started < 30
        reads = [r for r in busy.requests if r[0] == "GET"]
        assert len(reads) == TABLE_RETRIES["retry_total"] + 1  # the first try and 3 retries
    finally:
        busy.stop()
