"""Local Azure Functions host (development and tests only; never deployed)."""

from tools.funchost.host import FunctionHost, HostError, load_app, load_local_settings

__all__ = ["FunctionHost", "HostError", "load_app", "load_local_settings"]
