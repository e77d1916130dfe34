"""Shared fixtures: Azurite, the local Functions host, the Key Vault emulator."""

pytest_plugins = [
    "tests.fixtures.azurite",
    "tests.fixtures.funchost",
    "tests.fixtures.kvemu",
]
