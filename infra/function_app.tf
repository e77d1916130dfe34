resource "azurerm_user_assigned_identity" "app" {
  count               = local.user_assigned ? 1 : 0
  name                = local.names.identity
  location            = azurerm_resource_group.this.location
  resource_group_name = azurerm_resource_group.this.name
  tags                = local.tags
}

locals {
  identity_id        = one(azurerm_user_assigned_identity.app[*].id)
  identity_client_id = one(azurerm_user_assigned_identity.app[*].client_id)
  # The identity every role assignment in rbac.tf and targets.tf (and every target vault access
  # policy) is granted to.
  principal_id = local.user_assigned ? one(azurerm_user_assigned_identity.app[*].principal_id) : azurerm_function_app_flex_consumption.this.identity[0].principal_id
}

resource "azurerm_service_plan" "this" {
  #checkov:skip=CKV_AZURE_212:worker_count does not apply to Flex Consumption (FC1): instances scale per function group between zero (or always_ready) and maximum_instance_count.
  #checkov:skip=CKV_AZURE_211:FC1 is Flex Consumption, the production serverless plan for Functions; the check only knows App Service SKUs.
  name                   = local.names.plan
  location               = azurerm_resource_group.this.location
  resource_group_name    = azurerm_resource_group.this.name
  os_type                = "Linux"
  sku_name               = "FC1"
  zone_balancing_enabled = var.zone_redundant
  tags                   = local.tags
}

# ---------------------------------------------------------------------------------------------
# App settings. Names are fixed by shared/settings.py. Nothing here is a secret: storage is
# identity-based, the seal key is a Key Vault key id, the root token is a SHA-256 digest or a
# Key Vault reference.
# ---------------------------------------------------------------------------------------------
locals {
  app_settings_host = {
    # Identity-based host storage, per-service URIs (they carry the right suffix in every cloud).
    AzureWebJobsStorage__blobServiceUri  = azurerm_storage_account.this.primary_blob_endpoint
    AzureWebJobsStorage__queueServiceUri = azurerm_storage_account.this.primary_queue_endpoint
    AzureWebJobsStorage__tableServiceUri = azurerm_storage_account.this.primary_table_endpoint
    AzureWebJobsStorage__credential      = "managedidentity"
    # Telemetry with Entra ID auth (local auth is disabled on Application Insights).
    APPLICATIONINSIGHTS_AUTHENTICATION_STRING = local.user_assigned ? "ClientId=${local.identity_client_id};Authorization=AAD" : "Authorization=AAD"
  }

  # For every storage_authentication_type, the provider writes a key-based AzureWebJobsStorage
  # built from an empty key (DefaultEndpointsProtocol=https;AccountName=...;AccountKey=;...:
  # hashicorp/terraform-provider-azurerm #29149, #29693, #30732; Azure/azure-functions-host
  # #11796). A setting named exactly AzureWebJobsStorage wins over the AzureWebJobsStorage__*
  # identity settings, and the account has no shared keys, so the host could not reach its
  # storage. The user's app_settings are merged over the provider's, so an explicit empty value
  # here replaces it on every create and update, for both identity types.
  #
  # The plan shows it as an addition every time (`+ "AzureWebJobsStorage" = ""` in app_settings):
  # the provider's read moves AzureWebJobsStorage out of app_settings (into storage_access_key),
  # so state never holds it. The diff is expected and harmless: each apply sends the empty value
  # again. `ignore_changes` would be wrong: an update would then send the provider's key-based
  # value.
  app_settings_host_storage = {
    AzureWebJobsStorage = ""
  }

  app_settings_user_assigned = {
    AzureWebJobsStorage__clientId      = local.identity_client_id
    KEYMGMT_STORAGE__clientId          = local.identity_client_id
    KEYMGMT_MANAGED_IDENTITY_CLIENT_ID = local.identity_client_id
  }

  app_settings_engine = {
    KEYMGMT_STORAGE__tableServiceUri = trimsuffix(azurerm_storage_account.this.primary_table_endpoint, "/")
    # The blob audit device's account (same identity and credential as the tables).
    KEYMGMT_STORAGE__blobServiceUri  = trimsuffix(azurerm_storage_account.this.primary_blob_endpoint, "/")
    KEYMGMT_STORAGE__credential      = "managedidentity"
    KEYMGMT_TABLE_PREFIX             = var.table_prefix
    KEYMGMT_SEAL_KEY_ID              = local.seal_key_id
    KEYMGMT_DEFAULT_MOUNTS           = join(",", var.default_mounts)
    KEYMGMT_ROTATION_SCHEDULE        = var.rotation_schedule
    KEYMGMT_RECONCILE_SCHEDULE       = var.reconcile_schedule
    KEYMGMT_TOKEN_TIDY_SCHEDULE      = var.token_tidy_schedule
    KEYMGMT_DISABLE_FOREIGN_VERSIONS = tostring(var.disable_foreign_versions)
    AZURE_TENANT_ID                  = local.tenant_id
    AZURE_ENVIRONMENT                = var.environment
  }

  # The Python worker runs our synchronous `def` HTTP functions on a thread pool; on Python 3.9+
  # its default size is Python's min(32, CPUs + 4). One thread per request the instance admits
  # (http_concurrency above): no admitted request waits for a thread, and no idle threads
  # contend for the GIL. docs/performance.md has the measurements.
  app_settings_worker = {
    PYTHON_THREADPOOL_THREAD_COUNT = tostring(var.http_per_instance_concurrency)
  }

  # Audit devices (audit.tf), declared here rather than through the API, as OpenBao 2.3+ requires
  # (CVE-2025-6000): `bao audit list` shows them, `bao audit enable` is refused.
  app_settings_audit = {
    KEYMGMT_AUDIT_DEVICES = jsonencode(local.audit_devices)
  }

  # The app gets only the SHA-256 digest of the root token: it needs no access to secrets. The
  # digest of a 48-character random token reveals nothing usable, so it is marked non-sensitive
  # to keep plans readable. (A Key Vault reference to the secret cannot work here: see the
  # root_token_delivery variable.)
  app_settings_root_token = {
    KEYMGMT_ROOT_TOKEN_SHA256 = nonsensitive(sha256(local.root_token))
  }

  app_settings_optional = {
    KEYMGMT_KEYVAULT_URLS  = join(",", [for name, url in var.keyvault_url_overrides : "${name}=${url}"])
    KEYMGMT_PRIVATE_RANGES = join(",", var.private_ranges)
    # auth/azure's default resource (the audience of login tokens); unset unless configured.
    AZURE_AD_RESOURCE = var.auth_azure_resource
  }

  app_settings = merge(
    local.app_settings_host,
    local.app_settings_host_storage,
    { for k, v in local.app_settings_user_assigned : k => v if local.user_assigned },
    local.app_settings_engine,
    local.app_settings_worker,
    local.app_settings_audit,
    local.app_settings_root_token,
    { for k, v in local.app_settings_optional : k => v if v != "" },
  )
}

resource "azurerm_function_app_flex_consumption" "this" {
  name                = local.names.function_app
  location            = azurerm_resource_group.this.location
  resource_group_name = azurerm_resource_group.this.name
  service_plan_id     = azurerm_service_plan.this.id

  # Deployment package: a blob container read with the app's identity (no keys). The `storage_*`
  # arguments are this resource's current way to say so in every azurerm 4.x (none of them is
  # deprecated; there is no `deployment_storage` block on this resource).
  storage_container_type            = "blobContainer"
  storage_container_endpoint        = "${azurerm_storage_account.this.primary_blob_endpoint}${azurerm_storage_container.deployment.name}"
  storage_authentication_type       = local.user_assigned ? "UserAssignedIdentity" : "SystemAssignedIdentity"
  storage_user_assigned_identity_id = local.identity_id

  runtime_name           = "python"
  runtime_version        = var.python_version
  instance_memory_in_mb  = var.instance_memory_mb
  maximum_instance_count = var.maximum_instance_count
  # functionAppConfig.scaleAndConcurrency.triggers.http.perInstanceConcurrency (azurerm 4.46+).
  # Always set: Microsoft's default for Python apps is 1 request per instance, and the argument is
  # not Computed in the provider, whose read stores the platform's value, so leaving it unset
  # would also show as a change on every plan.
  http_concurrency = var.http_per_instance_concurrency

  dynamic "always_ready" {
    for_each = var.always_ready_http_instances > 0 ? [var.always_ready_http_instances] : []
    content {
      name           = "http"
      instance_count = always_ready.value
    }
  }

  https_only = true
  # The API is called by clients (bao, hvac, pipelines) and by Event Grid, which cannot deliver to
  # a private endpoint; restrict callers with allowed_client_cidrs. Outbound traffic goes through
  # the VNet to the private endpoints.
  public_network_access_enabled                  = true
  virtual_network_subnet_id                      = azurerm_subnet.function.id
  webdeploy_publish_basic_authentication_enabled = false # deploy with Entra ID, not publishing passwords

  identity {
    type         = local.user_assigned ? "UserAssigned" : "SystemAssigned"
    identity_ids = local.user_assigned ? [local.identity_id] : null
  }

  site_config {
    application_insights_connection_string = azurerm_application_insights.this.connection_string
    minimum_tls_version                    = "1.2"
    scm_minimum_tls_version                = "1.2"
    http2_enabled                          = true
    ip_restriction_default_action          = length(var.allowed_client_cidrs) > 0 ? "Deny" : "Allow"

    dynamic "ip_restriction" {
      for_each = var.allowed_client_cidrs
      content {
        name       = "client-${ip_restriction.key}"
        action     = "Allow"
        priority   = 100 + ip_restriction.key
        ip_address = ip_restriction.value
      }
    }

    dynamic "ip_restriction" {
      for_each = length(var.allowed_client_cidrs) > 0 ? ["AzureEventGrid"] : []
      content {
        name        = "event-grid"
        action      = "Allow"
        priority    = 90
        service_tag = ip_restriction.value
      }
    }
  }

  app_settings = local.app_settings
  tags         = local.tags

  depends_on = [
    azurerm_private_endpoint.storage,
    azurerm_private_endpoint.engine_vault,
  ]
}
