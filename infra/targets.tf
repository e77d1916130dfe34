# Target vaults: existing Key Vaults the engine distributes keys into. Per vault: the app's access
# (a role or an access policy, following the vault's permission model), a private endpoint in this
# VNet (optional), an Event Grid system topic and, once the app code is published, a subscription
# of the keyvault_events function.

locals {
  # Per-vault exceptions to var.target_vault_permission_model, keyed like target_vaults. Names that
  # match no target vault fail the plan (precondition of output target_vault_permission_models).
  target_vault_permission_models = { for name, model in var.target_vault_permission_models : lower(name) => model }

  # Keyed by vault name (unique in the cloud): /subscriptions/<sub>/resourceGroups/<rg>/providers/Microsoft.KeyVault/vaults/<name>
  target_vaults = {
    for id in var.target_key_vault_ids : lower(element(split("/", id), 8)) => {
      id                  = id
      resource_group_name = element(split("/", id), 4)
      location            = lookup(var.target_key_vault_locations, lower(element(split("/", id), 8)), var.location)
      permission_model    = lookup(local.target_vault_permission_models, lower(element(split("/", id), 8)), var.target_vault_permission_model)
    }
  }

  # Exactly one grant per vault, of the vault's own model: Key Vault evaluates either role
  # assignments or access policies, never both, so a grant of the other kind would only be unused
  # privilege.
  target_vaults_rbac          = { for name, vault in local.target_vaults : name => vault if vault.permission_model == "rbac" }
  target_vaults_access_policy = { for name, vault in local.target_vaults : name => vault if vault.permission_model == "access_policy" }

  # Access policy key permissions: exactly the key operations the engine calls on a target vault
  # (README, Target vault permissions). Get (the key exchange key keymgmt-kek; GetDeletedKey),
  # Create (keymgmt-kek only), Import (distribution, rotation), Update (enable and disable
  # versions), Delete (removal, soft delete). List (GetKeyVersions, the reconciler's drift
  # listing) only with target_vault_access_policy_list.
  target_vault_key_permissions = concat(["Create", "Delete", "Get", "Import", "Update"], var.target_vault_access_policy_list ? ["List"] : [])
}

# "rbac" vaults. Key Vault Crypto Officer: distribution creates the BYOK key exchange key and
# imports the wrapped key (create, import), rotation imports new versions, min_enabled_version
# enables and disables versions and sets tags (update), removal deletes (delete); keys/read covers
# get, get deleted and list. Crypto User lacks create/import/delete; Crypto Officer carries no
# secret, certificate or role-management permission.
resource "azurerm_role_assignment" "app_target_vault" {
  for_each             = local.target_vaults_rbac
  scope                = each.value.id
  role_definition_name = var.target_vault_role_definition_name
  principal_id         = local.principal_id
  principal_type       = "ServicePrincipal"
  description          = "keymgmt distributes keys into this vault (BYOK)"
}

# "access_policy" vaults (rbac_authorization_enabled = false on the vault; Terraform cannot check
# it for a vault given by id). One policy entry for the app's identity with only the key
# permissions above: no secret, certificate or storage permission. It is a standalone entry: if
# the vault itself is managed by Terraform with inline access_policy blocks, that configuration
# removes this entry on its next apply (see README).
resource "azurerm_key_vault_access_policy" "app_target_vault" {
  for_each        = local.target_vaults_access_policy
  key_vault_id    = each.value.id
  tenant_id       = local.tenant_id
  object_id       = local.principal_id
  key_permissions = local.target_vault_key_permissions
}

# The engine reaches <vault>.vault.azure.net, which must resolve to a private address from the
# app's subnet: a private endpoint here, registered in the VNet-linked privatelink.vaultcore zone.
resource "azurerm_private_endpoint" "target_vault" {
  for_each            = var.target_vault_private_endpoints ? local.target_vaults : {}
  name                = "pe-${each.key}"
  location            = azurerm_resource_group.this.location
  resource_group_name = azurerm_resource_group.this.name
  subnet_id           = azurerm_subnet.private_endpoints.id
  tags                = local.tags

  private_service_connection {
    name                           = "psc-${each.key}"
    private_connection_resource_id = each.value.id
    subresource_names              = ["vault"]
    is_manual_connection           = false
  }

  private_dns_zone_group {
    name                 = "vault"
    private_dns_zone_ids = [local.private_dns_zone_ids["vault"]]
  }

  depends_on = [azurerm_private_dns_zone_virtual_network_link.this]
}

# One system topic per vault (Azure allows only one per source resource: if the vault already has
# one, import it). It lives in the vault's resource group and region.
resource "azurerm_eventgrid_system_topic" "target_vault" {
  for_each            = local.target_vaults
  name                = "evgt-${each.key}-keymgmt"
  resource_group_name = each.value.resource_group_name
  location            = each.value.location
  source_resource_id  = each.value.id
  topic_type          = "Microsoft.KeyVault.vaults"
  tags                = local.tags
}

# Delivery to the function through Resource Manager (azure_function_endpoint): no function key in
# configuration or state. Event Grid checks the function exists, hence the separate switch.
resource "azurerm_eventgrid_system_topic_event_subscription" "keyvault_events" {
  for_each              = var.event_grid_subscriptions_enabled ? local.target_vaults : {}
  name                  = "keymgmt-${local.suffix}"
  system_topic          = azurerm_eventgrid_system_topic.target_vault[each.key].name
  resource_group_name   = azurerm_eventgrid_system_topic.target_vault[each.key].resource_group_name
  event_delivery_schema = "EventGridSchema"
  included_event_types  = local.keyvault_event_types

  azure_function_endpoint {
    function_id                       = "${azurerm_function_app_flex_consumption.this.id}/functions/keyvault_events"
    max_events_per_batch              = 1
    preferred_batch_size_in_kilobytes = 64
  }

  # Handlers are idempotent; keep retrying for a day (rotation on KeyNearExpiry is not urgent
  # to the minute, but must not be lost while the app is scaled to zero or redeploying).
  retry_policy {
    max_delivery_attempts = 30
    event_time_to_live    = 1440
  }
}
