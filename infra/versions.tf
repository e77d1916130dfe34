terraform {
  # 1.9: variable validations that refer to other variables (always_ready_http_instances checks
  # zone_redundant); 1.6 brought `import` blocks and stable `terraform test`.
  required_version = ">= 1.9"

  required_providers {
    azurerm = {
      source = "hashicorp/azurerm"
      # 4.46 introduced `http_concurrency` on azurerm_function_app_flex_consumption (the per-instance
      # HTTP concurrency, function_app.tf; hashicorp/terraform-provider-azurerm #29678); 4.42 had
      # brought `rbac_authorization_enabled` on azurerm_key_vault (replacing the deprecated
      # `enable_rbac_authorization`). Below 5.0: Application Insights' `local_authentication_disabled`
      # is deprecated from 4.78 and removed in 5.0, and its replacement exists only from 4.78
      # (monitoring.tf).
      version = ">= 4.46, < 5.0"
    }
    random = {
      source  = "hashicorp/random"
      version = ">= 3.6, < 4.0"
    }
    time = {
      source  = "hashicorp/time"
      version = ">= 0.11, < 1.0"
    }
  }
}
