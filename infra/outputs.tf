output "resource_group_name" {
  description = "Resource group of the deployment."
  value       = azurerm_resource_group.this.name
}

output "function_app_name" {
  description = "Name of the Function App (for `func azure functionapp publish` and `az functionapp deployment source config-zip`)."
  value       = azurerm_function_app_flex_consumption.this.name
}

output "function_app_url" {
  description = "Base URL of the Function App; set VAULT_ADDR / BAO_ADDR to it (the API lives under /v1)."
  value       = "https://${azurerm_function_app_flex_consumption.this.default_hostname}"
}

output "health_url" {
  description = "Health endpoint of the engine."
  value       = "https://${azurerm_function_app_flex_consumption.this.default_hostname}/v1/sys/health"
}

output "identity_principal_id" {
  description = "Object (principal) id of the app's managed identity: grant it roles on further target vaults."
  value       = local.principal_id
}

output "identity_client_id" {
  description = "Client id of the user-assigned identity (null with a system-assigned identity)."
  value       = local.identity_client_id
}

output "tenant_id" {
  description = "Tenant of the app's identity: the credentials=tenant_id=... of `bao write keymgmt/kms/...`."
  value       = local.tenant_id
}

output "key_vault_name" {
  description = "Name of the engine's own Key Vault (seal key and root token)."
  value       = azurerm_key_vault.engine.name
}

output "key_vault_uri" {
  description = "URI of the engine's own Key Vault."
  value       = azurerm_key_vault.engine.vault_uri
}

output "seal_key_id" {
  description = "Versionless id of the seal key (KEYMGMT_SEAL_KEY_ID)."
  value       = local.seal_key_id
}

output "root_token_secret_uri" {
  description = "Versionless URI of the Key Vault secret holding the root token (read it from inside the VNet)."
  value       = local.root_token_secret_uri
}

output "root_token" {
  description = "The root token (sensitive; it is in state anyway). Prefer reading it from the vault: `terraform output -raw root_token` only when the vault is out of reach."
  value       = local.root_token
  sensitive   = true
}

output "storage_account_name" {
  description = "Storage account holding the engine's tables and the host's blobs."
  value       = azurerm_storage_account.this.name
}

output "virtual_network_id" {
  description = "Id of the VNet (peer it, or link further private DNS zones to it)."
  value       = azurerm_virtual_network.this.id
}

output "private_endpoint_subnet_id" {
  description = "Id of the private-endpoint subnet."
  value       = azurerm_subnet.private_endpoints.id
}

output "target_vault_private_ips" {
  description = "Private IP address of each target vault's private endpoint: `nslookup <vault>.<vault DNS suffix>` from inside the VNet must return it."
  value       = { for name, pe in azurerm_private_endpoint.target_vault : name => pe.private_service_connection[0].private_ip_address }
}

output "keyvault_dns_suffix" {
  description = "Key Vault DNS suffix of the selected cloud."
  value       = local.cloud.vault_dns_suffix
}

output "event_grid_system_topic_ids" {
  description = "Event Grid system topic of each target vault."
  value       = { for name, topic in azurerm_eventgrid_system_topic.target_vault : name => topic.id }
}

output "target_vault_permission_models" {
  description = "Permission model of each target vault: \"rbac\" (role assignment) or \"access_policy\" (access policy). It must match the vault's own setting: `az keyvault show -n <vault> --query properties.enableRbacAuthorization` is true for rbac, false for access_policy."
  value       = { for name, vault in local.target_vaults : name => vault.permission_model }

  # Cross-variable check (a variable's validation can only see itself before Terraform 1.9): an
  # exception for a vault that is not a target is a typo that would silently grant the default.
  precondition {
    condition     = alltrue([for name in keys(local.target_vault_permission_models) : contains(keys(local.target_vaults), name)])
    error_message = "target_vault_permission_models names a vault that is not in target_key_vault_ids (keys are vault names, the last segment of the vault's resource id)."
  }
}
