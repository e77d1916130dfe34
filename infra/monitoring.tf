resource "azurerm_log_analytics_workspace" "this" {
  name                = local.names.log_analytics
  location            = azurerm_resource_group.this.location
  resource_group_name = azurerm_resource_group.this.name
  sku                 = "PerGB2018"
  retention_in_days   = var.log_retention_days
  tags                = local.tags
}

# Workspace-based Application Insights with local (instrumentation-key) auth disabled: the app
# sends telemetry with its managed identity (APPLICATIONINSIGHTS_AUTHENTICATION_STRING), which
# needs Monitoring Metrics Publisher (rbac.tf). `local_authentication_disabled` is the argument
# every azurerm 4.x in the pinned range (>= 4.46, < 5.0) has; its replacement
# `local_authentication_enabled` exists only from 4.78, where this one is deprecated (a warning)
# before 5.0 removes it, which versions.tf excludes. Moving to 5.0 means switching to the new one.
resource "azurerm_application_insights" "this" {
  name                          = local.names.app_insights
  location                      = azurerm_resource_group.this.location
  resource_group_name           = azurerm_resource_group.this.name
  workspace_id                  = azurerm_log_analytics_workspace.this.id
  application_type              = "web"
  local_authentication_disabled = true
  tags                          = local.tags
}

# Audit trail of every access to the seal key and the root token.
resource "azurerm_monitor_diagnostic_setting" "key_vault" {
  name                       = "audit-to-log-analytics"
  target_resource_id         = azurerm_key_vault.engine.id
  log_analytics_workspace_id = azurerm_log_analytics_workspace.this.id

  enabled_log {
    category_group = "audit"
  }
}

# Reads, writes and deletes on the blobs, queues and tables (the sealed key material lives in tables).
resource "azurerm_monitor_diagnostic_setting" "storage" {
  for_each                   = toset(["blobServices", "queueServices", "tableServices"])
  name                       = "storage-logs-to-log-analytics"
  target_resource_id         = "${azurerm_storage_account.this.id}/${each.key}/default"
  log_analytics_workspace_id = azurerm_log_analytics_workspace.this.id

  enabled_log {
    category = "StorageRead"
  }
  enabled_log {
    category = "StorageWrite"
  }
  enabled_log {
    category = "StorageDelete"
  }
}
