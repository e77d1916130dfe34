"""The one adapter between Functions HTTP triggers and the engine's Vault API."""

from __future__ import annotations

import azure.functions as func

from shared import service, vaultapi
from shared.api import PathSpec, handle


def to_api_request(req: func.HttpRequest) -> vaultapi.ApiRequest:
    return vaultapi.ApiRequest(
        method=req.method.upper(),
        query=dict(req.params),
        headers={k.lower(): v for k, v in req.headers.items()},
        body=req.get_body() or b"",
    )


def to_http_response(response: vaultapi.ApiResponse) -> func.HttpResponse:
    return func.HttpResponse(
        body=response.body or None,
        status_code=response.status,
        headers=dict(response.headers),
    )


def serve(spec: PathSpec, req: func.HttpRequest) -> func.HttpResponse:
    api_request = to_api_request(req)
    return to_http_response(handle(spec, api_request, dict(req.route_params), service.get))
