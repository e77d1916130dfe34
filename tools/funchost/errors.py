"""The one error of the local host."""

from __future__ import annotations


class HostError(RuntimeError):
    """The app cannot be hosted (bad route, schedule or setting), as the real host refuses."""
