data "azurerm_client_config" "current" {}

resource "random_string" "suffix" {
  count   = var.name_suffix == null ? 1 : 0
  length  = 6
  lower   = true
  upper   = false
  numeric = true
  special = false
}

locals {
  # Per-cloud names. The engine derives the Key Vault DNS suffix from AZURE_ENVIRONMENT itself;
  # Terraform needs the private DNS zone names, which differ per cloud.
  clouds = {
    AzurePublicCloud = {
      provider_environment = "public"
      vault_dns_suffix     = "vault.azure.net"
      private_dns_zones = {
        vault = "privatelink.vaultcore.azure.net"
        blob  = "privatelink.blob.core.windows.net"
        queue = "privatelink.queue.core.windows.net"
        table = "privatelink.table.core.windows.net"
      }
    }
    AzureUSGovernmentCloud = {
      provider_environment = "usgovernment"
      vault_dns_suffix     = "vault.usgovcloudapi.net"
      private_dns_zones = {
        vault = "privatelink.vaultcore.usgovcloudapi.net"
        blob  = "privatelink.blob.core.usgovcloudapi.net"
        queue = "privatelink.queue.core.usgovcloudapi.net"
        table = "privatelink.table.core.usgovcloudapi.net"
      }
    }
    AzureChinaCloud = {
      provider_environment = "china"
      vault_dns_suffix     = "vault.azure.cn"
      private_dns_zones = {
        vault = "privatelink.vaultcore.azure.cn"
        blob  = "privatelink.blob.core.chinacloudapi.cn"
        queue = "privatelink.queue.core.chinacloudapi.cn"
        table = "privatelink.table.core.chinacloudapi.cn"
      }
    }
  }
  cloud = local.clouds[var.environment]

  suffix    = coalesce(var.name_suffix, one(random_string.suffix[*].result))
  base_name = "${var.name_prefix}-${local.suffix}"

  names = {
    resource_group = coalesce(var.resource_group_name, "rg-${local.base_name}")
    vnet           = "vnet-${local.base_name}"
    nsg_function   = "nsg-${local.base_name}-func"
    nsg_pe         = "nsg-${local.base_name}-pe"
    storage        = "st${var.name_prefix}${local.suffix}" # 3-24 lowercase letters and digits
    key_vault      = "kv-${local.base_name}"               # at most 3 + 10 + 1 + 6 = 20 characters
    log_analytics  = "log-${local.base_name}"
    app_insights   = "appi-${local.base_name}"
    identity       = "id-${local.base_name}"
    plan           = "asp-${local.base_name}"
    function_app   = "func-${local.base_name}" # at most 22 characters: below the 32 that keep host ids unique
  }

  tenant_id     = data.azurerm_client_config.current.tenant_id
  user_assigned = var.identity_type == "user"

  # Event types the keyvault_events function handles.
  keyvault_event_types = [
    "Microsoft.KeyVault.KeyNewVersionCreated",
    "Microsoft.KeyVault.KeyNearExpiry",
    "Microsoft.KeyVault.KeyExpired",
  ]

  tags = merge({ application = "azure-keymgmt" }, var.tags)
}
