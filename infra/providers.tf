provider "azurerm" {
  # Sovereign clouds: the provider's endpoints follow var.environment (see locals.tf).
  environment = local.cloud.provider_environment

  # The storage account has shared keys disabled: everything Terraform does on it must use Entra ID.
  storage_use_azuread = true

  features {
    storage {
      # The storage account accepts no public traffic. Containers are created through Azure Resource
      # Manager (storage_account_id), so the provider never needs the blob/queue data plane.
      data_plane_available = false
    }
    key_vault {
      # Purge protection is on: a purge would fail anyway, and a soft-deleted vault must stay
      # recoverable because it holds the seal key of every row in Table Storage.
      purge_soft_delete_on_destroy          = false
      recover_soft_deleted_key_vaults       = true
      purge_soft_deleted_keys_on_destroy    = false
      purge_soft_deleted_secrets_on_destroy = false
    }
  }
}

provider "random" {}

provider "time" {}
