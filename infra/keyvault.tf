# The engine's own vault: holds the seal key (wraps the data keys that seal every table row) and
# the root token. Premium for HSM-backed keys, RBAC only, purge protection, private endpoint only.
resource "azurerm_key_vault" "engine" {
  name                          = local.names.key_vault
  location                      = azurerm_resource_group.this.location
  resource_group_name           = azurerm_resource_group.this.name
  tenant_id                     = local.tenant_id
  sku_name                      = "premium"
  rbac_authorization_enabled    = true
  purge_protection_enabled      = true
  soft_delete_retention_days    = var.key_vault_soft_delete_retention_days
  public_network_access_enabled = false

  network_acls {
    default_action = "Deny"
    # Nothing needs the trusted-services exception: the app and the operators come in through
    # the private endpoint.
    bypass = "None"
  }

  tags = local.tags
}

resource "azurerm_private_endpoint" "engine_vault" {
  name                = "pe-${local.names.key_vault}"
  location            = azurerm_resource_group.this.location
  resource_group_name = azurerm_resource_group.this.name
  subnet_id           = azurerm_subnet.private_endpoints.id
  tags                = local.tags

  private_service_connection {
    name                           = "psc-${local.names.key_vault}"
    private_connection_resource_id = azurerm_key_vault.engine.id
    subresource_names              = ["vault"]
    is_manual_connection           = false
  }

  private_dns_zone_group {
    name                 = "vault"
    private_dns_zone_ids = [local.private_dns_zone_ids["vault"]]
  }

  depends_on = [azurerm_private_dns_zone_virtual_network_link.this]
}

# ---------------------------------------------------------------------------------------------
# Data plane: the seal key and the root token secret. Terraform talks to
# https://<vault>.vault.azure.net here, which only answers through the private endpoint: run
# Terraform from inside the VNet (or a peered network resolving privatelink.vaultcore), or set
# manage_vault_data_plane = false and create both by hand (README).
# ---------------------------------------------------------------------------------------------

# The deployer creates the key and the secret. It can already assign roles (it creates every role
# assignment here), so these two grants add no privilege it could not give itself.
resource "azurerm_role_assignment" "deployer_crypto_officer" {
  count                = var.manage_vault_data_plane ? 1 : 0
  scope                = azurerm_key_vault.engine.id
  role_definition_name = "Key Vault Crypto Officer"
  principal_id         = data.azurerm_client_config.current.object_id
  principal_type       = var.deployer_principal_type
  description          = "Terraform creates the keymgmt seal key"
}

resource "azurerm_role_assignment" "deployer_secrets_officer" {
  count                = var.manage_vault_data_plane ? 1 : 0
  scope                = azurerm_key_vault.engine.id
  role_definition_name = "Key Vault Secrets Officer"
  principal_id         = data.azurerm_client_config.current.object_id
  principal_type       = var.deployer_principal_type
  description          = "Terraform writes the keymgmt root token secret"
}

# Role assignments take a while to reach the Key Vault data plane.
resource "time_sleep" "deployer_roles" {
  count           = var.manage_vault_data_plane ? 1 : 0
  create_duration = "90s"
  depends_on = [
    azurerm_role_assignment.deployer_crypto_officer,
    azurerm_role_assignment.deployer_secrets_officer,
    azurerm_private_endpoint.engine_vault,
  ]
}

resource "azurerm_key_vault_key" "seal" {
  #checkov:skip=CKV_AZURE_40:An expiry date would stop the seal key from wrapping new data keys and put every sealed row at risk; the seal key is long-lived by design, protected by HSM, RBAC, purge protection and the audit log.
  count        = var.manage_vault_data_plane ? 1 : 0
  name         = var.seal_key_name
  key_vault_id = azurerm_key_vault.engine.id
  key_type     = "RSA-HSM"
  key_size     = var.seal_key_size
  # The engine only wraps and unwraps data keys with it.
  key_opts = ["wrapKey", "unwrapKey"]

  lifecycle {
    # Destroying the seal key makes every sealed row unreadable. Tearing down on purpose: see README.
    prevent_destroy = true
  }

  depends_on = [time_sleep.deployer_roles]
}

# Generated root token. Its value lives in Terraform state (unavoidable with random_password and
# with a supplied var.root_token): keep state in a protected backend.
resource "random_password" "root_token" {
  length  = 48
  special = false
}

locals {
  root_token = var.root_token != null ? var.root_token : random_password.root_token.result

  # Versionless ids, derived rather than read from the key/secret resources, so the app settings
  # are the same whether Terraform or an operator (manage_vault_data_plane = false) creates them.
  seal_key_id           = "${azurerm_key_vault.engine.vault_uri}keys/${var.seal_key_name}"
  root_token_secret_uri = "${azurerm_key_vault.engine.vault_uri}secrets/${var.root_token_secret_name}"
}

resource "azurerm_key_vault_secret" "root_token" {
  #checkov:skip=CKV_AZURE_41:The root token has no natural expiry and Key Vault does not enforce secret expiry; rotate it by changing var.root_token (or tainting random_password.root_token) and re-applying.
  count        = var.manage_vault_data_plane ? 1 : 0
  name         = var.root_token_secret_name
  value        = local.root_token
  content_type = "text/plain"
  key_vault_id = azurerm_key_vault.engine.id

  depends_on = [time_sleep.deployer_roles]
}
