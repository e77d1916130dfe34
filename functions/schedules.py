"""Timer triggers: the rotation sweep, the reconciler and the token tidy (schedules from app
settings)."""

import azure.functions as func

from shared import schedules, service
from shared.settings import schedule

bp = func.Blueprint()  # type: ignore[no-untyped-call]  # azure-functions is untyped


@bp.timer_trigger(
    arg_name="timer", schedule=schedule("KEYMGMT_ROTATION_SCHEDULE"), use_monitor=True
)
def rotation_sweep(timer: func.TimerRequest) -> None:
    schedules.rotation_sweep(service.get(), past_due=timer.past_due)


@bp.timer_trigger(
    arg_name="timer", schedule=schedule("KEYMGMT_RECONCILE_SCHEDULE"), use_monitor=True
)
def reconciler(timer: func.TimerRequest) -> None:
    schedules.reconcile_all(service.get())


@bp.timer_trigger(
    arg_name="timer", schedule=schedule("KEYMGMT_TOKEN_TIDY_SCHEDULE"), use_monitor=True
)
def token_tidy(timer: func.TimerRequest) -> None:
    schedules.token_tidy(service.get())
