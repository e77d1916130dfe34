"""HTTP triggers for the Vault-compatible API, one per path in ``shared.api.routes.ALL``.

Routes are relative to routePrefix "v1"; each path's route, declared methods and function
name come from its ``PathSpec``, so the API is declared once, beside its handlers.
"""

import azure.functions as func

from functions._http import serve
from shared.api import PathSpec
from shared.api.routes import ALL

bp = func.Blueprint()  # type: ignore[no-untyped-call]  # azure-functions is untyped


def _register(spec: PathSpec) -> None:
    def handler(req: func.HttpRequest) -> func.HttpResponse:
        return serve(spec, req)

    handler.__name__ = handler.__qualname__ = spec.function_name
    methods = list(spec.methods) if spec.methods else None
    bp.function_name(name=spec.function_name)(bp.route(route=spec.route, methods=methods)(handler))


for _spec in ALL:
    _register(_spec)
