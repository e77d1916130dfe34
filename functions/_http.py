"""The one adapter between Functions HTTP triggers and the engine's Vault API."""

from __future__ import annotations

from urllib.parse import urlsplit

import azure.functions as func

from shared import service, vaultapi
from shared.api import PathSpec, handle


def to_api_request(req: func.HttpRequest) -> vaultapi.ApiRequest:
    path = urlsplit(req.url).path
    marker = "/v1/"
    path = path[path.find(marker) + len(marker) :] if marker in path else path.lstrip("/")
    return vaultapi.ApiRequest(
        method=req.method.upper(),
        path=path.strip("/"),
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
