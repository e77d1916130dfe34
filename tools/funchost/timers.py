"""Timer triggers: NCRONTAB schedules (``%NAME%`` settings resolved), when a run is past
due, and the loop that runs one timer until the host stops."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable, Mapping

from croniter import croniter

from tools.funchost.errors import HostError
from tools.funchost.metadata import resolve_setting_refs

# A timer run that starts this much after its scheduled time reports past_due.
PAST_DUE_AFTER = dt.timedelta(seconds=5)


def resolve_schedule(name: str, schedule: str, environ: Mapping[str, str]) -> str:
    """Timer ``name``'s six-field NCRONTAB ``schedule``, settings resolved; HostError if it
    is not one."""
    schedule = resolve_setting_refs(schedule, environ)
    if len(schedule.split()) != 6:
        raise HostError(
            f"timer {name}: schedule {schedule!r} must have six NCRONTAB fields "
            "({second} {minute} {hour} {day} {month} {day-of-week})"
        )
    if not croniter.is_valid(schedule, second_at_beginning=True):
        raise HostError(f"timer {name}: invalid NCRONTAB schedule {schedule!r}")
    return schedule


def run_loop(
    run: Callable[[bool], None], schedule: str, *, run_on_startup: bool, stop: threading.Event
) -> None:
    """Call ``run(past_due)`` at each occurrence of ``schedule`` until ``stop`` is set (and
    once at the start with ``run_on_startup``)."""
    if run_on_startup:
        run(False)
    due = next_due(schedule, None, dt.datetime.now(dt.UTC))
    while not stop.is_set():
        wait = (due - dt.datetime.now(dt.UTC)).total_seconds()
        if wait > 0 and stop.wait(wait):
            return
        run(is_past_due(due, dt.datetime.now(dt.UTC)))
        due = next_due(schedule, due, dt.datetime.now(dt.UTC))


def is_past_due(
    due: dt.datetime, now: dt.datetime, threshold: dt.timedelta = PAST_DUE_AFTER
) -> bool:
    """Whether a run for the occurrence ``due`` starting at ``now`` reports past_due."""
    return now - due > threshold


def next_due(schedule: str, due: dt.datetime | None, now: dt.datetime) -> dt.datetime:
    """The occurrence to run next, after the run for ``due`` ended at ``now``.

    Occurrences missed while that run went on collapse into one: the latest of them, run at
    once (and past due if it is late enough); otherwise the next occurrence after ``now``.
    """
    if due is not None:
        latest = croniter(schedule, now, second_at_beginning=True).get_prev(dt.datetime)
        if latest > due:
            return latest
    return croniter(schedule, now, second_at_beginning=True).get_next(dt.datetime)
