# One storage account for the Functions host (deployment package, timer leases, keys) and the
# engine's tables. Entra ID only: no shared keys, no public network, private endpoints for blob,
# queue and table.
resource "azurerm_storage_account" "this" {
  #checkov:skip=CKV2_AZURE_1:Every secret in the engine's tables is already sealed with AES-256-GCM under data keys wrapped by the HSM seal key; a customer-managed key on the account would add a second dependency on the same vault for no added protection. Platform encryption (plus infrastructure encryption) stays on.
  #checkov:skip=CKV_AZURE_33:Queue logging needs queue_properties, a data-plane call the provider cannot make to a private, key-less account (data_plane_available = false); queue reads and writes are logged by the diagnostic setting on queueServices below.
  name                     = local.names.storage
  resource_group_name      = azurerm_resource_group.this.name
  location                 = azurerm_resource_group.this.location
  account_kind             = "StorageV2"
  account_tier             = "Standard"
  account_replication_type = var.storage_replication_type

  min_tls_version                   = "TLS1_2"
  https_traffic_only_enabled        = true
  shared_access_key_enabled         = false # identity-based access only
  default_to_oauth_authentication   = true
  public_network_access_enabled     = false # private endpoints only
  allow_nested_items_to_be_public   = false
  local_user_enabled                = false
  infrastructure_encryption_enabled = true

  network_rules {
    default_action = "Deny"
    bypass         = ["AzureServices"]
  }

  # Shared keys are off, so only user-delegation SAS could exist; keep any of them short-lived.
  sas_policy {
    expiration_period = "00.01:00:00"
    expiration_action = "Log"
  }

  blob_properties {
    delete_retention_policy {
      days = 7
    }
    container_delete_retention_policy {
      days = 7
    }
  }

  tags = local.tags
}

# Flex Consumption deploys the app package from this container (created through Resource Manager).
resource "azurerm_storage_container" "deployment" {
  #checkov:skip=CKV2_AZURE_21:The check wants azurerm_log_analytics_storage_insights, which needs a storage account key; shared keys are disabled here. Blob reads are logged by the StorageRead category of the blobServices diagnostic setting (monitoring.tf).
  name                  = "app-package"
  storage_account_id    = azurerm_storage_account.this.id
  container_access_type = "private"
}

# Key Vault events Event Grid could not deliver within its retry policy (targets.tf).
resource "azurerm_storage_container" "dead_letter" {
  #checkov:skip=CKV2_AZURE_21:As for the deployment container: the check wants azurerm_log_analytics_storage_insights, which needs a storage account key; blob access is logged by the blobServices diagnostic setting (monitoring.tf).
  name                  = "eventgrid-deadletter"
  storage_account_id    = azurerm_storage_account.this.id
  container_access_type = "private"
}

resource "azurerm_private_endpoint" "storage" {
  for_each            = toset(["blob", "queue", "table"])
  name                = "pe-${local.names.storage}-${each.key}"
  location            = azurerm_resource_group.this.location
  resource_group_name = azurerm_resource_group.this.name
  subnet_id           = azurerm_subnet.private_endpoints.id
  tags                = local.tags

  private_service_connection {
    name                           = "psc-${local.names.storage}-${each.key}"
    private_connection_resource_id = azurerm_storage_account.this.id
    subresource_names              = [each.key]
    is_manual_connection           = false
  }

  private_dns_zone_group {
    name                 = each.key
    private_dns_zone_ids = [local.private_dns_zone_ids[each.key]]
  }

  depends_on = [azurerm_private_dns_zone_virtual_network_link.this]
}
