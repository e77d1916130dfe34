"""shared/transport.py: what requests would read from the environment, decided once."""

from pathlib import Path

import pytest

from shared import transport


def test_proxy_variables_in_any_case_keep_the_environment_read(tmp_path):
    for name in ("HTTPS_PROXY", "http_proxy", "all_proxy", "NO_PROXY", "no_proxy", "FTP_PROXY"):
        assert transport.needs_environment({name: "x"}, tmp_path), name
    assert transport.needs_environment({"NETRC": "/etc/netrc"}, tmp_path)


def test_a_netrc_file_keeps_the_environment_read(tmp_path):
    assert not transport.needs_environment({}, tmp_path)
    (tmp_path / ".netrc").write_text("machine example.org login a password b\n")
    assert transport.needs_environment({}, tmp_path)


def test_a_plain_environment_or_a_ca_bundle_alone_is_read_once(tmp_path):
    assert not transport.needs_environment({"PATH": "/bin", "HTTPS_PROXY": ""}, tmp_path)
    assert not transport.needs_environment({"REQUESTS_CA_BUNDLE": "/ca.pem"}, tmp_path)
    assert not transport.needs_environment({}, None)


def test_the_ca_bundle_is_the_one_requests_would_choose():
    assert transport.ca_bundle({}) is None
    assert transport.ca_bundle({"CURL_CA_BUNDLE": "/c.pem"}) == "/c.pem"
    both = {"CURL_CA_BUNDLE": "/c.pem", "REQUESTS_CA_BUNDLE": "/r.pem"}
    assert transport.ca_bundle(both) == "/r.pem"


@pytest.fixture
def environ(monkeypatch, tmp_path):
    for name in list(__import__("os").environ):
        if name.upper().endswith("_PROXY") or name in ("NETRC", *transport.CA_BUNDLE_SETTINGS):
            monkeypatch.delenv(name)
    monkeypatch.setattr(transport, "_home", lambda: Path(tmp_path))
    return monkeypatch


def test_the_transport_follows_the_environment(environ):
    plain = transport.requests_transport()
    assert plain.session.trust_env is False
    assert plain.connection_config.verify is True
    adapter = plain.session.get_adapter("https://account.table.core.windows.net/")
    assert adapter._pool_maxsize == transport.POOL_SIZE
    assert adapter.max_retries.total is False  # azure-core's RetryPolicy retries, not urllib3

    environ.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/corp.pem")
    bundled = transport.requests_transport(read_timeout=7)
    assert bundled.session.trust_env is False
    assert bundled.connection_config.verify == "/etc/ssl/corp.pem"
    assert bundled.connection_config.read_timeout == 7

    environ.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    proxied = transport.requests_transport()
    assert proxied.session.trust_env is True  # requests reads proxies (and no_proxy) per request
