# The engine's audit trail (KEYMGMT_AUDIT_DEVICES): Vault-style JSON lines, written before a
# request acts and after it answers, to append blobs in a WORM container of the app's storage
# account, and to the process log. The app's role on the container is in rbac.tf.

locals {
  # The devices as `GET sys/audit` shows them (OpenBao's config-declared devices): path, type,
  # description and string options. By default one blob device on the WORM container and one log
  # device; var.audit_devices replaces the list.
  audit_devices = var.audit_devices != null ? [
    for d in var.audit_devices : {
      path        = d.path
      type        = d.type
      description = d.description
      options     = d.options
    }
    ] : [
    {
      path        = "blob"
      type        = "blob"
      description = "Append blobs in the WORM container ${var.audit_container_name} of the app's storage account"
      options     = tomap({ container = var.audit_container_name, rotate = var.audit_blob_rotate })
    },
    {
      path        = "log"
      type        = "log"
      description = "JSON lines on the process log (logger keymgmt.audit), shipped to Application Insights"
      options     = tomap({})
    },
  ]
}

# Private, like every container here (the account also forbids public blobs). Created through
# Resource Manager (storage_account_id), so Terraform needs no data-plane access.
resource "azurerm_storage_container" "audit" {
  #checkov:skip=CKV2_AZURE_21:As for the other containers: the check wants azurerm_log_analytics_storage_insights, which needs a storage account key; shared keys are disabled here. Every read, write and delete of the audit blobs is logged by the blobServices diagnostic setting (monitoring.tf).
  name                  = var.audit_container_name
  storage_account_id    = azurerm_storage_account.this.id
  container_access_type = "private"

  lifecycle {
    # Replacing the container (a new name, say) means deleting it with the audit trail in it
    # (which Azure refuses while blobs are under retention, after Terraform has planned it).
    prevent_destroy = true
  }
}

# Time-based retention (container-level WORM) with protected append writes: for
# audit_retention_days after a blob is created nobody (the app's identity, an account owner) can
# overwrite or delete it, but Append Block still adds to append blobs, so the engine can keep
# writing its daily or hourly blob.
# https://learn.microsoft.com/azure/storage/blobs/immutable-time-based-retention-policy-overview
#
# How the account's settings (storage.tf) meet the policy:
# - Versioning stays off: a container-level policy needs none (version-level WORM does).
#   https://learn.microsoft.com/azure/storage/blobs/immutable-version-level-worm-policies
# - Blob and container soft delete (7 days) work alongside: a blob under retention cannot be
#   deleted, so soft delete only ever holds blobs whose retention has expired; a container with a
#   WORM policy must be empty before it can be deleted.
#   https://learn.microsoft.com/azure/storage/blobs/immutable-container-level-worm-policies
# - Shared keys are off: the engine appends with its managed identity (Entra ID), which
#   immutability does not care about; the policy itself is set through Resource Manager.
# - Network rules (deny, private endpoints): the engine reaches the blob endpoint through the
#   existing blob private endpoint; the policy is a control-plane setting, not data-plane traffic.
# - protected_append_writes_enabled covers append blobs only (the engine writes nothing else);
#   the "all" variant would also let blocks be committed to block blobs, which the engine does
#   not need. The two are mutually exclusive.
# - Each append blob takes at most 50,000 Append Block calls: audit_blob_rotate = "hour" for
#   busy deployments.
#   https://learn.microsoft.com/rest/api/storageservices/understanding-block-blobs--append-blobs--and-page-blobs
resource "azurerm_storage_container_immutability_policy" "audit" {
  storage_container_resource_manager_id = azurerm_storage_container.audit.id
  immutability_period_in_days           = var.audit_retention_days
  protected_append_writes_enabled       = true
  protected_append_writes_all_enabled   = false

  # Locking is one-way and makes the container, the account and the resource group undeletable
  # until every blob's retention has expired; only longer retention can follow (at most five
  # extensions). Unlocked, anyone with control-plane rights on the account can delete the policy
  # and then the blobs, so Microsoft treats unlocked policies as a testing state.
  # https://learn.microsoft.com/azure/storage/blobs/immutable-policy-configure-container-scope#lock-a-time-based-retention-policy
  locked = var.audit_retention_locked

  lifecycle {
    # An unlocked policy can be deleted, and with it the protection of every audit blob: a
    # destroy or a replacement must be a deliberate act (README, Tear down).
    prevent_destroy = true
  }
}
