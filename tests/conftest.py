"""Shared fixtures: Azurite, the local Functions host, the Key Vault emulator, an OpenBao dev
server (the oracle of the differential tests)."""

pytest_plugins = [
    "tests.fixtures.azurite",
    "tests.fixtures.funchost",
    "tests.fixtures.kvemu",
    "tests.fixtures.openbao",
]
