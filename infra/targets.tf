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

# "rbac" vaults. By default a custom role with exactly the data actions the engine calls
# (docs/kvemu.md, "Permissions per engine call"): keys/read (get, get deleted, list), create
# (the BYOK key exchange key, once per vault), import (distribution, rotation), update (enable
# and disable versions), delete (removal). Key Vault Crypto Officer would also grant keys/* on
# every key of the vault (sign, decrypt, purge, release...) and its rotation policies.
locals {
  target_vault_data_actions = [
    "Microsoft.KeyVault/vaults/keys/read",
    "Microsoft.KeyVault/vaults/keys/create/action",
    "Microsoft.KeyVault/vaults/keys/import/action",
    "Microsoft.KeyVault/vaults/keys/update/action",
    "Microsoft.KeyVault/vaults/keys/delete",
  ]
  custom_target_role = var.target_vault_role_definition_name == null && length(local.target_vaults_rbac) > 0
  # A custom role is assignable where its assignable scopes say: the target vaults' resource groups.
  target_vault_resource_groups = distinct([
    for vault in local.target_vaults_rbac : join("/", slice(split("/", vault.id), 0, 5))
  ])
}

resource "azurerm_role_definition" "target_vault" {
  count             = local.custom_target_role ? 1 : 0
  name              = "keymgmt key distributor (${local.base_name})"
  scope             = local.target_vault_resource_groups[0]
  description       = "azure-keymgmt: read, create, import, update and delete keys in target vaults; nothing else."
  assignable_scopes = local.target_vault_resource_groups

  permissions {
    actions      = []
    data_actions = local.target_vault_data_actions
  }
}

resource "azurerm_role_assignment" "app_target_vault" {
  for_each             = local.target_vaults_rbac
  scope                = each.value.id
  role_definition_id   = local.custom_target_role ? azurerm_role_definition.target_vault[0].role_definition_resource_id : null
  role_definition_name = local.custom_target_role ? null : var.target_vault_role_definition_name
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

  # Automatic approval needs the deployer to hold approval rights on the target vault
  # (Microsoft.KeyVault/vaults/privateEndpointConnectionsApproval/action, e.g. as its owner);
  # otherwise choose "manual": the connection waits as Pending until the vault's owner approves
  # it (infra/README.md, Target vault private endpoints).
  private_service_connection {
    name                           = "psc-${each.key}"
    private_connection_resource_id = each.value.id
    subresource_names              = ["vault"]
    is_manual_connection           = var.target_vault_private_endpoint_approval == "manual"
    request_message                = var.target_vault_private_endpoint_approval == "manual" ? "azure-keymgmt ${local.base_name}: private access for key distribution (BYOK)" : null
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

  # Writes undeliverable events to the dead-letter container (Entra ID: the account has no keys).
  identity {
    type = "SystemAssigned"
  }
}

resource "azurerm_role_assignment" "eventgrid_dead_letter" {
  for_each             = local.target_vaults
  scope                = azurerm_storage_container.dead_letter.id
  role_definition_name = "Storage Blob Data Contributor"
  principal_id         = azurerm_eventgrid_system_topic.target_vault[each.key].identity[0].principal_id
  principal_type       = "ServicePrincipal"
  description          = "Event Grid dead-letters undeliverable Key Vault events"
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

  # After that, the event is kept in the app's storage instead of dropped (infra/README.md, Event
  # Grid). The reconciler covers what a lost event would have done: it reports foreign versions
  # (drift) on every run, and keys rotate on their auto_rotate_period without any event.
  dead_letter_identity {
    type = "SystemAssigned"
  }

  storage_blob_dead_letter_destination {
    storage_account_id          = azurerm_storage_account.this.id
    storage_blob_container_name = azurerm_storage_container.dead_letter.name
  }

  depends_on = [azurerm_role_assignment.eventgrid_dead_letter]
}
