terraform {
  # 1.6: stable `terraform test`, `import` blocks and the validation features used in variables.tf.
  required_version = ">= 1.6"

  required_providers {
    azurerm = {
      source = "hashicorp/azurerm"
      # 4.42 introduced `rbac_authorization_enabled` on azurerm_key_vault (replacing the deprecated
      # `enable_rbac_authorization`); 5.0 will remove the deprecated `storage_*` arguments of
      # azurerm_function_app_flex_consumption that this module uses (see function_app.tf).
      version = ">= 4.42, < 5.0"
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
