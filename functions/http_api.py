"""HTTP triggers for the Vault-compatible API. Routes are relative to routePrefix "v1".

Engine routes declare no methods, so every standard verb reaches them and the API answers 405
for an unsupported operation on a known path, as Vault does (the Functions host itself would
answer 404 for an undeclared method).
"""

import azure.functions as func

from functions._http import serve, to_api_request, to_http_response
from shared.api import keys, kms, sys

bp = func.Blueprint()


@bp.route(route="sys/health", methods=["GET", "HEAD"])
def sys_health(req: func.HttpRequest) -> func.HttpResponse:
    return to_http_response(sys.health(to_api_request(req)))


@bp.route(route="sys/seal-status", methods=["GET"])
def sys_seal_status(req: func.HttpRequest) -> func.HttpResponse:
    return serve(sys.SEAL_STATUS, req)


@bp.route(route="sys/leader", methods=["GET"])
def sys_leader(req: func.HttpRequest) -> func.HttpResponse:
    return serve(sys.LEADER, req)


@bp.route(route="sys/init", methods=["GET"])
def sys_init(req: func.HttpRequest) -> func.HttpResponse:
    return serve(sys.INIT, req)


@bp.route(route="sys/mounts", methods=["GET"])
def sys_mounts(req: func.HttpRequest) -> func.HttpResponse:
    return serve(sys.MOUNTS, req)


@bp.route(route="sys/mounts/{path}")
def sys_mount(req: func.HttpRequest) -> func.HttpResponse:
    return serve(sys.MOUNT, req)


@bp.route(route="auth/token/lookup-self", methods=["GET"])
def auth_token_lookup_self(req: func.HttpRequest) -> func.HttpResponse:
    return serve(sys.LOOKUP_SELF, req)


@bp.route(route="{mount}/key")
def keys_list(req: func.HttpRequest) -> func.HttpResponse:
    return serve(keys.KEYS, req)


@bp.route(route="{mount}/key/{name}")
def key(req: func.HttpRequest) -> func.HttpResponse:
    return serve(keys.KEY, req)


@bp.route(route="{mount}/key/{name}/rotate")
def key_rotate(req: func.HttpRequest) -> func.HttpResponse:
    return serve(keys.ROTATE, req)


@bp.route(route="{mount}/key/{name}/kms")
def key_kms(req: func.HttpRequest) -> func.HttpResponse:
    return serve(keys.KEY_KMS, req)


@bp.route(route="{mount}/kms")
def kms_list(req: func.HttpRequest) -> func.HttpResponse:
    return serve(kms.PROVIDERS, req)


@bp.route(route="{mount}/kms/{name}")
def kms_provider(req: func.HttpRequest) -> func.HttpResponse:
    return serve(kms.PROVIDER, req)


@bp.route(route="{mount}/kms/{name}/health")
def kms_health(req: func.HttpRequest) -> func.HttpResponse:
    return serve(kms.HEALTH, req)


@bp.route(route="{mount}/kms/{name}/key")
def kms_keys(req: func.HttpRequest) -> func.HttpResponse:
    return serve(kms.DISTRIBUTED, req)


@bp.route(route="{mount}/kms/{name}/key/{key_name}")
def kms_distribution(req: func.HttpRequest) -> func.HttpResponse:
    return serve(kms.DISTRIBUTION, req)


@bp.route(route="sys/keymgmt/rotation", methods=["GET"])
def sys_keymgmt_rotation(req: func.HttpRequest) -> func.HttpResponse:
    return serve(sys.ROTATION_STATUS, req)


@bp.route(route="sys/keymgmt/reconcile", methods=["GET"])
def sys_keymgmt_reconcile(req: func.HttpRequest) -> func.HttpResponse:
    return serve(sys.RECONCILE_STATUS, req)
