"""The HTTP transport the engine's Storage clients share: environment looked at once.

azure-core's default ``RequestsTransport`` leaves ``requests.Session.trust_env`` on, so every
request scans the whole process environment twice for proxy variables and stats ``~/.netrc``
(``requests.Session.merge_environment_settings``, ``get_netrc_auth``): about a tenth of a
Table point read's Python time, measured with cProfile (bench/RESULTS.md). Those inputs do not
change while a Functions instance runs (app settings changes restart it), so they are read
once here. Without a proxy variable or a netrc file the session does not look again
(``trust_env`` off, as azure-core's own ``use_env_settings=False``), and a CA bundle named by
``REQUESTS_CA_BUNDLE`` or ``CURL_CA_BUNDLE`` is handed to the transport once; with a proxy
or netrc setting the session keeps requests' per-request behaviour, which honours them.

The connection pool holds up to ``POOL_SIZE`` keep-alive connections per host. requests keeps
10 by default and discards (closes) connections beyond that after use, so more concurrent
request threads than that open a new TCP (and TLS) connection per request. The Python worker
runs synchronous functions on at most 32 threads (``PYTHON_THREADPOOL_THREAD_COUNT``'s
ceiling), hence 32.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

POOL_SIZE = 32

# What requests reads from the environment when trust_env is on (requests.utils
# get_environ_proxies, should_bypass_proxies, get_netrc_auth, Session.merge_environment_settings)
CA_BUNDLE_SETTINGS = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")  # in requests' order


def needs_environment(environ: Mapping[str, str], home: Path | None) -> bool:
    """Whether requests must keep reading the environment per request: a proxy variable
    (``<scheme>_proxy`` or ``no_proxy``, any case, as urllib reads them) or a netrc file.
    A CA bundle alone does not need it: ``ca_bundle`` hands it over once."""
    for name, value in environ.items():
        upper = name.upper()
        if value and (upper.endswith("_PROXY") or upper == "NETRC"):
            return True
    return home is not None and any((home / f).exists() for f in (".netrc", "_netrc"))


def ca_bundle(environ: Mapping[str, str]) -> str | None:
    """The CA bundle requests would take from the environment, if any."""
    for name in CA_BUNDLE_SETTINGS:
        if environ.get(name):
            return environ[name]
    return None


def _home() -> Path | None:
    try:
        return Path.home()
    except (KeyError, RuntimeError):  # no HOME and no passwd entry
        return None


def requests_transport(**options: Any) -> Any:
    """A new azure-core transport over its own session, with the environment decided once.
    ``options``: azure-core's connection settings (``connection_timeout``, ``read_timeout``,
    ``connection_verify``), which a client passed its own transport no longer applies."""
    import requests
    from azure.core.pipeline.transport import RequestsTransport
    from urllib3.util.retry import Retry

    session = requests.Session()
    session.trust_env = needs_environment(os.environ, _home())
    bundle = ca_bundle(os.environ)
    if not session.trust_env and bundle and "connection_verify" not in options:
        options["connection_verify"] = bundle  # what trust_env would have chosen
    # As azure-core's own adapter: retries belong to the SDK's RetryPolicy, not to urllib3.
    adapter = requests.adapters.HTTPAdapter(
        pool_maxsize=POOL_SIZE,
        max_retries=Retry(total=False, redirect=False, raise_on_status=False),
    )
    for scheme in ("http://", "https://"):
        session.mount(scheme, adapter)
    return RequestsTransport(session=session, session_owner=True, **options)
