"""The one adapter between Functions HTTP triggers and the engine's Vault API."""

from __future__ import annotations

import ipaddress
import urllib.parse

import azure.functions as func

from shared import service, vaultapi
from shared.api import PathSpec, handle
from shared.api.generic import handle_unrouted


def _address(entry: str) -> str:
    """``1.2.3.4``, ``1.2.3.4:5678``, ``[2001:db8::1]:5678`` or ``2001:db8::1`` → the IP;
    "" for anything else."""
    entry = entry.strip()
    if entry.startswith("["):
        entry = entry[1:].partition("]")[0]
    elif entry.count(":") == 1:
        entry = entry.partition(":")[0]
    try:
        return str(ipaddress.ip_address(entry))
    except ValueError:
        return ""


def client_address(headers: dict[str, str]) -> str:
    """The client's address as App Service's front end reports it to the app.

    The front end sets ``client-ip`` (``ip:port``) on every request and overwrites one a
    client sent, so it cannot be spoofed (Azure/app-service-linux-docs,
    Things_You_Should_Know/headers.md, "client-ip"). It also appends ``ip:port`` to
    ``X-Forwarded-For`` (azure-functions-host#3790, pbojinov/request-ip#29): a client may
    send that header with anything in it, so only its last entry, the one the front end
    added, is used when ``client-ip`` is missing. Behind another proxy (Front Door,
    Application Gateway) both name that proxy, not the client: docs/auth.md says so."""
    direct = _address(headers.get("client-ip", ""))
    if direct:
        return direct
    forwarded = headers.get("x-forwarded-for", "")
    return _address(forwarded.rsplit(",", 1)[-1]) if forwarded else ""


ROUTE_PREFIX = "/v1/"  # host.json extensions.http.routePrefix


def api_path(url: str) -> str:
    """The request's path after /v1/, percent-decoded, its trailing "/" kept: the route
    values lose it (ASP.NET routing ignores a trailing slash), Vault's router does not."""
    path = urllib.parse.unquote(urllib.parse.urlsplit(url).path)
    if path.startswith(ROUTE_PREFIX):
        return path[len(ROUTE_PREFIX) :]
    return ""


def to_api_request(req: func.HttpRequest) -> vaultapi.ApiRequest:
    headers = {k.lower(): v for k, v in req.headers.items()}
    return vaultapi.ApiRequest(
        method=req.method.upper(),
        query=dict(req.params),
        headers=headers,
        body=req.get_body() or b"",
        remote_address=client_address(headers),
        path=api_path(req.url),
    )


def to_http_response(response: vaultapi.ApiResponse) -> func.HttpResponse:
    return func.HttpResponse(
        body=response.body or None,
        status_code=response.status,
        headers=dict(response.headers),
    )


def serve(spec: PathSpec, req: func.HttpRequest) -> func.HttpResponse:
    api_request = to_api_request(req)
    response = handle(spec, api_request, dict(req.route_params), service.get)
    return to_http_response(vaultapi.finished(api_request, response))


def serve_unrouted(req: func.HttpRequest) -> func.HttpResponse:
    """A path no PathSpec routes: Vault's JSON answer, never the host's page."""
    api_request = to_api_request(req)
    response = handle_unrouted(api_request, service.get)
    return to_http_response(vaultapi.finished(api_request, response))
