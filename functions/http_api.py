"""HTTP triggers for the Vault-compatible API, one per path in ``shared.api.routes.ALL``, and
one catch-all for every path none of them routes.

Routes are relative to routePrefix "v1"; each path's route and function name come from its
``PathSpec``, so the API is declared once, beside its handlers. No trigger declares methods:
the host then routes every verb, LIST included, and ``handle()`` answers 405 as Vault does
(docs/local-host.md, "Methods and the catch-all route").
"""

import azure.functions as func

from functions._http import serve, serve_unrouted
from shared.api import PathSpec
from shared.api.routes import ALL

bp = func.Blueprint()  # type: ignore[no-untyped-call]  # azure-functions is untyped

# The Functions host orders routes literal segments first, then longer ones first
# (WebJobsRouteBuilder.RouteComparison), so a lone catch-all parameter comes last.
UNROUTED_ROUTE = "{*path}"
UNROUTED_FUNCTION = "vault_unrouted"


def _register(spec: PathSpec) -> None:
    def handler(req: func.HttpRequest) -> func.HttpResponse:
        return serve(spec, req)

    handler.__name__ = handler.__qualname__ = spec.function_name
    bp.function_name(name=spec.function_name)(bp.route(route=spec.route)(handler))


for _spec in ALL:
    _register(_spec)


@bp.function_name(name=UNROUTED_FUNCTION)
@bp.route(route=UNROUTED_ROUTE)
def vault_unrouted(req: func.HttpRequest) -> func.HttpResponse:
    return serve_unrouted(req)
