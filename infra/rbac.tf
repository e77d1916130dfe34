# Least-privilege roles of the app's identity (local.principal_id). Every assignment names its
# principal type so Azure does not have to look the principal up (which fails for a brand-new
# identity that has not replicated yet).

# The Functions host keeps its deployment package, timer-singleton leases and function keys in
# blobs; Storage Blob Data Owner is the role the host documents for identity-based
# AzureWebJobsStorage (Contributor lacks the lease/ACL operations it needs).
resource "azurerm_role_assignment" "app_storage_blob" {
  scope                = azurerm_storage_account.this.id
  role_definition_name = "Storage Blob Data Owner"
  principal_id         = local.principal_id
  principal_type       = "ServicePrincipal"
  description          = "Functions host storage (AzureWebJobsStorage, deployment package)"
}

# The engine's tables (it creates them at start). Account scope because the tables do not exist
# yet; no queue role: the app has no queue-triggered functions, and the host's timers use blobs.
resource "azurerm_role_assignment" "app_storage_table" {
  scope                = azurerm_storage_account.this.id
  role_definition_name = "Storage Table Data Contributor"
  principal_id         = local.principal_id
  principal_type       = "ServicePrincipal"
  description          = "keymgmt engine tables"
}

# The audit log (audit.tf): create append blobs and append to them, in the audit container only.
# Storage Blob Data Contributor is the narrowest built-in role that writes blobs (the other blob
# data roles are Reader and Delegator, which cannot write, and Owner, which adds POSIX ACLs):
# https://learn.microsoft.com/azure/role-based-access-control/built-in-roles/storage. What it
# also allows, overwrite and delete, the container's WORM policy refuses to every principal for
# audit_retention_days. This assignment does not narrow what the identity can do today (it holds
# Storage Blob Data Owner on the whole account, above, for the Functions host), but it keeps the
# audit trail's grant explicit and correct if the host's storage moves to another account.
resource "azurerm_role_assignment" "app_audit_blob" {
  scope                = azurerm_storage_container.audit.id
  role_definition_name = "Storage Blob Data Contributor"
  principal_id         = local.principal_id
  principal_type       = "ServicePrincipal"
  description          = "keymgmt audit log: create and append blobs in the audit container"
}

# Seal key: read, wrapKey and unwrapKey, nothing else (no create, delete, sign, secrets). Vault
# scope, because the vault holds no other key and the key may be created outside Terraform
# (manage_vault_data_plane = false), after this assignment.
resource "azurerm_role_assignment" "app_seal_key" {
  scope                = azurerm_key_vault.engine.id
  role_definition_name = "Key Vault Crypto Service Encryption User"
  principal_id         = local.principal_id
  principal_type       = "ServicePrincipal"
  description          = "keymgmt seal key: wrapKey/unwrapKey"
}

# Telemetry with Entra ID auth to Application Insights (local auth is disabled).
resource "azurerm_role_assignment" "app_insights" {
  scope                = azurerm_application_insights.this.id
  role_definition_name = "Monitoring Metrics Publisher"
  principal_id         = local.principal_id
  principal_type       = "ServicePrincipal"
  description          = "Application Insights ingestion with Entra ID"
}
