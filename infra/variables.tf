# ---------------------------------------------------------------------------------------------
# Placement and naming
# ---------------------------------------------------------------------------------------------

variable "location" {
  description = "Azure region for every resource of the deployment (it must offer Flex Consumption: `az functionapp list-flexconsumption-locations`)."
  type        = string
}

variable "environment" {
  description = "Azure cloud. Flows to the engine's AZURE_ENVIRONMENT setting (Key Vault DNS suffix, authority host), to the azurerm provider's `environment` and to the private DNS zone names."
  type        = string
  default     = "AzurePublicCloud"

  validation {
    condition     = contains(["AzurePublicCloud", "AzureUSGovernmentCloud", "AzureChinaCloud"], var.environment)
    error_message = "environment must be AzurePublicCloud, AzureUSGovernmentCloud or AzureChinaCloud. (The engine also understands AzureGermanCloud, but that cloud is closed and the azurerm provider cannot deploy to it.)"
  }
}

variable "name_prefix" {
  description = "Short prefix of every resource name: 2-10 lowercase letters and digits, starting with a letter."
  type        = string
  default     = "keymgmt"

  validation {
    condition     = can(regex("^[a-z][a-z0-9]{1,9}$", var.name_prefix))
    error_message = "name_prefix must be 2-10 lowercase letters and digits, starting with a letter."
  }
}

variable "name_suffix" {
  description = "Suffix that makes the globally unique names (Key Vault, storage account, Function App) unique: 3-6 lowercase letters and digits. Null generates a random one."
  type        = string
  default     = null

  validation {
    condition     = var.name_suffix == null || can(regex("^[a-z0-9]{3,6}$", var.name_suffix))
    error_message = "name_suffix must be 3-6 lowercase letters and digits."
  }
}

variable "resource_group_name" {
  description = "Name of the resource group to create. Null gives rg-<prefix>-<suffix>."
  type        = string
  default     = null
}

variable "tags" {
  description = "Tags applied to every resource that supports them."
  type        = map(string)
  default     = {}
}

# ---------------------------------------------------------------------------------------------
# Network
# ---------------------------------------------------------------------------------------------

variable "vnet_address_space" {
  description = "Address space of the virtual network."
  type        = list(string)
  default     = ["10.40.0.0/22"]

  validation {
    condition     = length(var.vnet_address_space) > 0 && alltrue([for c in var.vnet_address_space : can(cidrhost(c, 0))])
    error_message = "vnet_address_space must be a non-empty list of CIDR blocks."
  }
}

variable "function_subnet_prefix" {
  description = "CIDR of the Function App's VNet integration subnet (delegated to Microsoft.App/environments; Flex Consumption needs at least a /27, a /24 leaves room to scale out)."
  type        = string
  default     = "10.40.0.0/24"

  validation {
    condition     = can(cidrhost(var.function_subnet_prefix, 0)) && tonumber(split("/", var.function_subnet_prefix)[1]) <= 27
    error_message = "function_subnet_prefix must be a CIDR block of /27 or larger."
  }
}

variable "private_endpoint_subnet_prefix" {
  description = "CIDR of the subnet holding the private endpoints (storage blob/queue/table, the engine's Key Vault, the target vaults)."
  type        = string
  default     = "10.40.1.0/26"

  validation {
    condition     = can(cidrhost(var.private_endpoint_subnet_prefix, 0))
    error_message = "private_endpoint_subnet_prefix must be a CIDR block."
  }
}

variable "management_cidrs" {
  description = "CIDR blocks inside the VNet or peered networks (Terraform runner, jump host) allowed to reach the private endpoints on 443. The private-endpoint subnet's NSG denies all other VNet traffic except from the Function App's subnet."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for c in var.management_cidrs : can(cidrhost(c, 0))])
    error_message = "management_cidrs must be CIDR blocks."
  }
}

variable "private_dns_zone_ids" {
  description = "Existing private DNS zones to use instead of creating them (typical with a hub-and-spoke central DNS), keyed by vault, blob, queue, table. Zones not listed are created in the resource group and linked to the VNet; zones you pass must already resolve for this VNet."
  type        = map(string)
  default     = {}

  validation {
    condition     = alltrue([for k in keys(var.private_dns_zone_ids) : contains(["vault", "blob", "queue", "table"], k)])
    error_message = "private_dns_zone_ids keys must be among vault, blob, queue, table."
  }
}

variable "allowed_client_cidrs" {
  description = "Public CIDR blocks allowed to call the API. Empty allows any source (the API still requires a token). When set, everything else is denied except Event Grid (service tag AzureEventGrid), which delivers Key Vault events."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for c in var.allowed_client_cidrs : can(cidrhost(c, 0))])
    error_message = "allowed_client_cidrs must be CIDR blocks."
  }
}

# ---------------------------------------------------------------------------------------------
# Function App (Flex Consumption)
# ---------------------------------------------------------------------------------------------

variable "identity_type" {
  description = "Managed identity of the Function App: \"user\" (a user-assigned identity, created before the app so its roles exist when the app first starts) or \"system\" (system-assigned)."
  type        = string
  default     = "user"

  validation {
    condition     = contains(["user", "system"], var.identity_type)
    error_message = "identity_type must be \"user\" or \"system\"."
  }
}

variable "python_version" {
  description = "Python version of the Flex Consumption runtime (the app pins azure-functions 1.x, which needs Python below 3.13)."
  type        = string
  default     = "3.11"

  validation {
    condition     = contains(["3.11", "3.12"], var.python_version)
    error_message = "python_version must be 3.11 or 3.12."
  }
}

variable "instance_memory_mb" {
  description = "Instance memory of the Flex Consumption app in MB: 512 (0.25 CPU core), 2048 (1 core, the default) or 4096 (2 cores); Microsoft gives CPU in proportion to memory. The engine's Python worker is one process (the v2 programming model allows no more), so its Python code uses one core at most: 4096 MB helps key creation (RSA and EC key generation run outside the GIL) and leaves a core to the Functions host, not reads (docs/performance.md)."
  type        = number
  default     = 2048

  validation {
    condition     = contains([512, 2048, 4096], var.instance_memory_mb)
    error_message = "instance_memory_mb must be 512, 2048 or 4096."
  }
}

variable "maximum_instance_count" {
  description = "Maximum number of instances the app scales out to: 40 to 1000. Microsoft documented 40 as the lowest maximum for Flex Consumption and now documents 1, but azurerm 4.46-4.57, in the pinned range, refuse values below 40 at plan time (4.58 accepts 1). More than about 35 busy instances exceed what one storage account's tables serve (docs/performance.md)."
  type        = number
  default     = 40

  validation {
    condition     = var.maximum_instance_count >= 40 && var.maximum_instance_count <= 1000 && floor(var.maximum_instance_count) == var.maximum_instance_count
    error_message = "maximum_instance_count must be an integer from 40 to 1000 (azurerm 4.46 to 4.57, in the pinned range, refuse a maximum below 40)."
  }
}

variable "always_ready_http_instances" {
  description = "Always-ready instances for the HTTP functions (0 = scale to zero; each one is billed as a baseline but removes cold starts). With zone_redundant = true it must be 0 or at least 2: a zone-redundant app spreads always-ready instances over zones and needs two or more."
  type        = number
  default     = 0

  validation {
    condition     = var.always_ready_http_instances >= 0 && var.always_ready_http_instances <= 20 && floor(var.always_ready_http_instances) == var.always_ready_http_instances
    error_message = "always_ready_http_instances must be an integer from 0 to 20."
  }

  validation {
    condition     = !var.zone_redundant || var.always_ready_http_instances != 1
    error_message = "always_ready_http_instances = 1 does not work with zone_redundant = true: a zone-redundant Flex Consumption app needs at least 2 always-ready instances (or 0)."
  }
}

variable "http_per_instance_concurrency" {
  description = "Most HTTP requests one instance runs at once (Flex Consumption's per-instance HTTP concurrency, `http_concurrency`); the platform adds instances beyond it. The Python worker's thread pool (PYTHON_THREADPOOL_THREAD_COUNT) is set to the same number, so every admitted request has a thread. Microsoft's default for Python apps is 1 at every instance size. 4 is where one instance is busy: a read holds the CPU for about a quarter of its time and waits on Table Storage for the rest, so about four in flight fill the one core the worker can use, and more only queue behind the GIL (measurements in docs/performance.md). With instance_memory_mb = 512 (a quarter core) use 1 or 2."
  type        = number
  default     = 4

  validation {
    condition     = var.http_per_instance_concurrency >= 1 && var.http_per_instance_concurrency <= 1000 && floor(var.http_per_instance_concurrency) == var.http_per_instance_concurrency
    error_message = "http_per_instance_concurrency must be an integer from 1 to 1000 (the range Flex Consumption and the azurerm provider accept)."
  }
}

variable "zone_redundant" {
  description = "Zone-redundant Flex Consumption plan. Set false in regions where Flex Consumption has no availability-zone support."
  type        = bool
  default     = true
}

# ---------------------------------------------------------------------------------------------
# Storage and monitoring
# ---------------------------------------------------------------------------------------------

variable "storage_replication_type" {
  description = "Replication of the storage account that holds the engine's tables (all key material, sealed) and the host's blobs. GZRS keeps a copy in the paired region; use ZRS or GRS where GZRS is not offered."
  type        = string
  default     = "GZRS"

  validation {
    condition     = contains(["LRS", "ZRS", "GRS", "RAGRS", "GZRS", "RAGZRS"], var.storage_replication_type)
    error_message = "storage_replication_type must be LRS, ZRS, GRS, RAGRS, GZRS or RAGZRS."
  }
}

variable "log_retention_days" {
  description = "Retention of the Log Analytics workspace behind Application Insights and the audit logs."
  type        = number
  default     = 90

  validation {
    condition     = var.log_retention_days >= 30 && var.log_retention_days <= 730
    error_message = "log_retention_days must be from 30 to 730."
  }
}

# ---------------------------------------------------------------------------------------------
# Audit devices (KEYMGMT_AUDIT_DEVICES) and their WORM container (audit.tf)
# ---------------------------------------------------------------------------------------------

variable "audit_container_name" {
  description = "Name of the blob container, in the app's storage account, that holds the audit log (one append blob per UTC day or hour) under a time-based immutability (WORM) policy."
  type        = string
  default     = "audit"

  validation {
    # Azure's container naming rules: 3-63 lowercase letters, digits and single dashes, starting
    # and ending with a letter or digit.
    condition     = can(regex("^[a-z0-9](-?[a-z0-9])+$", var.audit_container_name)) && length(var.audit_container_name) >= 3 && length(var.audit_container_name) <= 63
    error_message = "audit_container_name must be 3-63 lowercase letters, digits and single dashes, starting and ending with a letter or digit (Azure's container naming rules)."
  }
}

variable "audit_retention_days" {
  description = "Days each audit blob stays immutable (no overwrite, no delete; appends only) after it is created: the container's time-based retention policy. 365 by default: PCI DSS v4.0 requirement 10.5.1 asks for 12 months of audit log history, and Microsoft's security benchmark (LT-6) leaves the period to the compliance regime. Retention counts from each blob's creation, so with daily blobs the last line of a day is kept at least this many days minus one. Azure allows 1 to 146000 days; once the policy is locked it can only be extended (README, Audit log)."
  type        = number
  default     = 365

  validation {
    condition     = var.audit_retention_days >= 1 && var.audit_retention_days <= 146000 && floor(var.audit_retention_days) == var.audit_retention_days
    error_message = "audit_retention_days must be a whole number of days from 1 to 146000 (Azure's range for a time-based retention policy)."
  }
}

variable "audit_retention_locked" {
  description = "Lock the audit container's immutability policy. IRREVERSIBLE: a locked policy can never be unlocked or deleted, its retention can only be extended (at most five times), protected append writes can no longer be changed, and the container, the storage account and the resource group cannot be deleted until every audit blob's retention has expired. Microsoft recommends an unlocked policy only for testing: compliance regimes (SEC 17a-4(f) and the like) need it locked. Lock it once a deployment is known to work (README, Audit log)."
  type        = bool
  default     = false
  nullable    = false
}

variable "audit_blob_rotate" {
  description = "How often the blob audit device starts a new append blob (<path>/<yyyy>/<mm>/<dd>[/<hh>].log, UTC): \"day\" or \"hour\". An append blob takes at most 50,000 appends, so choose \"hour\" when the API serves more than about 25,000 requests a day (each request writes a request and a response entry). Used by the default audit_devices."
  type        = string
  default     = "day"
  nullable    = false

  validation {
    condition     = contains(["day", "hour"], var.audit_blob_rotate)
    error_message = "audit_blob_rotate must be \"day\" or \"hour\"."
  }
}

variable "audit_devices" {
  description = "Audit devices of the engine (KEYMGMT_AUDIT_DEVICES, shown by `bao audit list`): a list of {path, type (\"blob\", \"log\" or \"file\"), description, options (string => string)}. Null (the default): a \"blob\" device writing to audit_container_name with rotate = audit_blob_rotate, and a \"log\" device (JSON lines on the process log, shipped to Application Insights). A request is refused when no device can record it, so with both a storage outage leaves only the log device recording; list the blob device alone to refuse requests whenever the WORM container cannot be written. Options of every type: log_raw, hmac_accessor, elide_list_responses; blob: container (it must be audit_container_name), rotate; file: file_path (required), mode."
  type = list(object({
    path        = string
    type        = string
    description = optional(string, "")
    options     = optional(map(string), {})
  }))
  default = null

  validation {
    condition     = var.audit_devices == null || length(coalesce(var.audit_devices, [])) > 0
    error_message = "audit_devices must list at least one device (null gives the default blob and log devices): the engine audits every request."
  }

  validation {
    condition     = alltrue([for d in coalesce(var.audit_devices, []) : can(regex("^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$", d.path))])
    error_message = "audit_devices paths must be 1-64 letters, digits, dots, dashes and underscores, starting with a letter or digit (no slash: `bao audit list` shows \"<path>/\")."
  }

  validation {
    condition     = length(distinct([for d in coalesce(var.audit_devices, []) : d.path])) == length(coalesce(var.audit_devices, []))
    error_message = "audit_devices paths must be unique."
  }

  validation {
    condition     = alltrue([for d in coalesce(var.audit_devices, []) : contains(["blob", "log", "file"], d.type)])
    error_message = "audit_devices types must be \"blob\", \"log\" or \"file\"."
  }

  validation {
    # A misspelt option would otherwise fall back to its default without a word.
    condition = alltrue(flatten([for d in coalesce(var.audit_devices, []) : [
      for name in keys(d.options) : contains(concat(["log_raw", "hmac_accessor", "elide_list_responses"], lookup({ blob = ["container", "rotate"], file = ["file_path", "mode"] }, d.type, [])), name)
    ]]))
    error_message = "audit_devices options must be among log_raw, hmac_accessor and elide_list_responses, plus container and rotate for \"blob\", file_path and mode for \"file\"."
  }

  validation {
    condition     = alltrue([for d in coalesce(var.audit_devices, []) : d.type != "file" || trimspace(lookup(d.options, "file_path", "")) != ""])
    error_message = "audit_devices of type \"file\" need options.file_path (a path, or \"stdout\")."
  }

  validation {
    condition     = alltrue([for d in coalesce(var.audit_devices, []) : d.type != "blob" || contains(["day", "hour"], lookup(d.options, "rotate", "day"))])
    error_message = "audit_devices of type \"blob\": options.rotate must be \"day\" or \"hour\"."
  }

  validation {
    # Only the WORM container is append-only, and only it carries the app's audit role.
    condition     = alltrue([for d in coalesce(var.audit_devices, []) : d.type != "blob" || lookup(d.options, "container", "audit") == var.audit_container_name])
    error_message = "audit_devices of type \"blob\" must write to the WORM container: options.container must be audit_container_name (\"audit\" when unset)."
  }
}

# ---------------------------------------------------------------------------------------------
# Auth methods
# ---------------------------------------------------------------------------------------------

variable "auth_azure_resource" {
  description = "Default `resource` of the auth/azure method (app setting AZURE_AD_RESOURCE, the environment fallback Vault's azure plugin reads; `bao write auth/azure/config resource=...` overrides it): the audience (`aud`) a login token must carry, compared byte for byte (a trailing slash matters). Use the identifier URI of the app registration that represents this API (e.g. api://keymgmt-prod: auth/azure takes v1.0 tokens, whose aud is the URI requested; v2.0 tokens, whose aud is the client id GUID, belong to auth/jwt), or \"https://management.azure.com/\" for roles bound to subscriptions or resource groups (auth/azure refuses bound_locations and bound_scale_sets: they need Resource Manager reads it does not make): Entra ID adds the xms_mirid claim those bindings need only to tokens for first-party Microsoft resources such as Azure Resource Manager. Empty (the default): the setting is left out and auth/azure/config must set resource. AZURE_TENANT_ID and AZURE_ENVIRONMENT, the fallbacks for tenant_id and environment, are always set (the deployment's tenant and var.environment)."
  type        = string
  default     = ""
  nullable    = false

  validation {
    condition     = var.auth_azure_resource == "" || can(regex("^(https://[^\\s]+|api://[^\\s]+|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})$", var.auth_azure_resource))
    error_message = "auth_azure_resource must be empty, an https:// or api:// identifier URI without spaces, or an application (client) id GUID."
  }
}

# ---------------------------------------------------------------------------------------------
# The engine's own Key Vault: seal key and root token
# ---------------------------------------------------------------------------------------------

variable "key_vault_soft_delete_retention_days" {
  description = "Soft-delete retention of the engine's Key Vault. With purge protection, the vault's name stays reserved for this many days after deletion."
  type        = number
  default     = 90

  validation {
    condition     = var.key_vault_soft_delete_retention_days >= 7 && var.key_vault_soft_delete_retention_days <= 90
    error_message = "key_vault_soft_delete_retention_days must be from 7 to 90."
  }
}

variable "manage_vault_data_plane" {
  description = "Create the seal key and the root token secret with Terraform. These are data-plane operations on a vault that only accepts traffic through its private endpoint: Terraform must run from a host that resolves and reaches it (inside the VNet or a peered one). Set false to apply from outside and create both from inside the VNet with the az commands in infra/README.md."
  type        = bool
  default     = true
}

variable "deployer_principal_type" {
  description = "Principal type of the identity running Terraform (it gets Key Vault Crypto Officer and Secrets Officer on the engine's vault to create the seal key and the root token secret): User, Group or ServicePrincipal."
  type        = string
  default     = "User"

  validation {
    condition     = contains(["User", "Group", "ServicePrincipal"], var.deployer_principal_type)
    error_message = "deployer_principal_type must be User, Group or ServicePrincipal."
  }
}

variable "seal_key_name" {
  description = "Name of the seal key (RSA-HSM, wrapKey/unwrapKey only) in the engine's vault; the engine wraps its data keys with it."
  type        = string
  default     = "keymgmt-seal"

  validation {
    condition     = can(regex("^[0-9A-Za-z-]{1,127}$", var.seal_key_name))
    error_message = "seal_key_name must be 1-127 letters, digits and dashes."
  }
}

variable "seal_key_size" {
  description = "RSA size of the seal key."
  type        = number
  default     = 3072

  validation {
    condition     = contains([3072, 4096], var.seal_key_size)
    error_message = "seal_key_size must be 3072 or 4096."
  }
}

variable "root_token" {
  description = "Root token to use instead of a generated one (at least 32 characters). Null generates 48 random characters. Either way the value is stored in Terraform state: use a protected backend."
  type        = string
  default     = null
  sensitive   = true

  validation {
    condition     = var.root_token == null || length(coalesce(var.root_token, "x")) >= 32
    error_message = "root_token must be at least 32 characters."
  }
}

variable "root_token_delivery" {
  description = "How the app learns the root token. Only \"sha256\": the app setting KEYMGMT_ROOT_TOKEN_SHA256 holds its SHA-256 digest (not secret; the app needs no access to secrets). \"keyvault_reference\" is refused: Key Vault references cannot resolve on Flex Consumption when the vault is network-restricted, even with VNet integration (Microsoft's Flex Consumption documentation), and the engine's vault is private; nor does any azurerm 4.x offer key_vault_reference_identity_id on this resource."
  type        = string
  default     = "sha256"

  validation {
    condition     = var.root_token_delivery == "sha256"
    error_message = "root_token_delivery must be \"sha256\". \"keyvault_reference\" cannot work here: on Flex Consumption, Key Vault references cannot be resolved from a network-restricted vault (even with VNet integration), and this module's vault is private; azurerm 4.x has no key_vault_reference_identity_id on azurerm_function_app_flex_consumption either."
  }
}

variable "root_token_secret_name" {
  description = "Name of the Key Vault secret holding the root token in the engine's vault."
  type        = string
  default     = "keymgmt-root-token"

  validation {
    condition     = can(regex("^[0-9A-Za-z-]{1,127}$", var.root_token_secret_name))
    error_message = "root_token_secret_name must be 1-127 letters, digits and dashes."
  }
}

# ---------------------------------------------------------------------------------------------
# Engine settings
# ---------------------------------------------------------------------------------------------

variable "table_prefix" {
  description = "Prefix of the engine's table names (KEYMGMT_TABLE_PREFIX). The engine creates its tables at start."
  type        = string
  default     = "keymgmt"

  validation {
    condition     = can(regex("^[A-Za-z][A-Za-z0-9]{0,39}$", var.table_prefix))
    error_message = "table_prefix must be 1-40 ASCII letters and digits, starting with a letter."
  }
}

variable "default_mounts" {
  description = "Mounts enabled at start (KEYMGMT_DEFAULT_MOUNTS), e.g. [\"keymgmt\"]. Empty: enable them with `bao secrets enable keymgmt`."
  type        = list(string)
  default     = ["keymgmt"]
}

variable "rotation_schedule" {
  description = "NCRONTAB schedule (6 fields, UTC) of the rotation sweep (KEYMGMT_ROTATION_SCHEDULE)."
  type        = string
  default     = "0 */5 * * * *"

  validation {
    condition     = length(split(" ", trimspace(var.rotation_schedule))) == 6
    error_message = "rotation_schedule must be an NCRONTAB expression with 6 fields (second first)."
  }
}

variable "reconcile_schedule" {
  description = "NCRONTAB schedule (6 fields, UTC) of the reconciler (KEYMGMT_RECONCILE_SCHEDULE)."
  type        = string
  default     = "0 0 * * * *"

  validation {
    condition     = length(split(" ", trimspace(var.reconcile_schedule))) == 6
    error_message = "reconcile_schedule must be an NCRONTAB expression with 6 fields (second first)."
  }
}

variable "token_tidy_schedule" {
  description = "NCRONTAB schedule (6 fields, UTC) of the token tidy, which removes the rows of expired tokens (KEYMGMT_TOKEN_TIDY_SCHEDULE). Expired tokens are refused whether or not it has run."
  type        = string
  default     = "0 */10 * * * *"

  validation {
    condition     = length(split(" ", trimspace(var.token_tidy_schedule))) == 6
    error_message = "token_tidy_schedule must be an NCRONTAB expression with 6 fields (second first)."
  }
}

variable "keyvault_url_overrides" {
  description = "Optional Key Vault URL overrides for custom DNS (KEYMGMT_KEYVAULT_URLS): vault name => https://host[:port]."
  type        = map(string)
  default     = {}

  validation {
    condition     = alltrue([for u in values(var.keyvault_url_overrides) : startswith(u, "https://")])
    error_message = "keyvault_url_overrides values must start with https://."
  }
}

variable "private_ranges" {
  description = "CIDR blocks the engine's private-endpoint check treats as private (KEYMGMT_PRIVATE_RANGES). Empty keeps the engine's default (RFC 1918)."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for c in var.private_ranges : can(cidrhost(c, 0))])
    error_message = "private_ranges must be CIDR blocks."
  }
}

variable "disable_foreign_versions" {
  description = "Disable Key Vault versions of engine keys that were created outside the engine (KEYMGMT_DISABLE_FOREIGN_VERSIONS)."
  type        = bool
  default     = false
}

# ---------------------------------------------------------------------------------------------
# Target vaults (where the engine distributes keys)
# ---------------------------------------------------------------------------------------------

variable "target_key_vault_ids" {
  description = "Resource ids of existing Key Vaults the engine distributes keys into (the key_collection of `bao write keymgmt/kms/...`). The app's identity gets access to each according to target_vault_permission_model: a role (target_vault_role_definition_name) or an access policy."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for id in var.target_key_vault_ids : can(regex("(?i)^/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft\\.KeyVault/vaults/[0-9A-Za-z-]{3,24}$", id))])
    error_message = "target_key_vault_ids must be Key Vault resource ids: /subscriptions/<sub>/resourceGroups/<rg>/providers/Microsoft.KeyVault/vaults/<name>."
  }
}

variable "target_key_vault_locations" {
  description = "Region of target vaults that are not in var.location, keyed by vault name (the Event Grid system topic must be in the vault's region)."
  type        = map(string)
  default     = {}
}

variable "target_vault_private_endpoints" {
  description = "Create a private endpoint (in this VNet, registered in its privatelink.vaultcore zone) for each target vault. Turn off only if the target vaults are already reachable and resolvable privately from this VNet (peering and central DNS)."
  type        = bool
  default     = true
}

variable "target_vault_role_definition_name" {
  description = "Role of the app's identity on each target vault with the \"rbac\" permission model (unused for \"access_policy\" vaults). Null (the default): a custom role this module creates with exactly the data actions the engine uses (keys/read, create, import, update, delete: infra/README.md, Target vault permissions), assignable in the target vaults' resource groups; creating it needs Microsoft.Authorization/roleDefinitions/write there. Or the name of a built-in role, such as \"Key Vault Crypto Officer\" (broader: keys/* on every key of the vault and its rotation policies)."
  type        = string
  default     = null

  validation {
    condition     = var.target_vault_role_definition_name == null || !contains(["Owner", "Contributor", "Key Vault Administrator", "User Access Administrator"], coalesce(var.target_vault_role_definition_name, "-"))
    error_message = "target_vault_role_definition_name must not be a broad role (Owner, Contributor, Key Vault Administrator, User Access Administrator)."
  }
}

variable "target_vault_private_endpoint_approval" {
  description = "How target-vault private endpoints are approved. \"automatic\" (default): approved on creation, which needs the deployer to hold approval rights on each target vault (Microsoft.KeyVault/vaults/privateEndpointConnectionsApproval/action, e.g. Owner or Contributor). \"manual\": the connection is created Pending with a request message, and the vault's owner approves it (infra/README.md)."
  type        = string
  default     = "automatic"
  nullable    = false

  validation {
    condition     = contains(["automatic", "manual"], var.target_vault_private_endpoint_approval)
    error_message = "target_vault_private_endpoint_approval must be \"automatic\" or \"manual\"."
  }
}

variable "target_vault_permission_model" {
  description = "How the app's identity gets access to the target vaults; it must match each vault's own permission model, which Terraform cannot read from a vault given by id. \"rbac\" (vaults with Azure RBAC, rbac_authorization_enabled = true): a role assignment of target_vault_role_definition_name. \"access_policy\" (vaults with vault access policies, rbac_authorization_enabled = false): an access policy with the key permissions Create, Delete, Get, Import and Update, plus List with target_vault_access_policy_list. Key Vault ignores a grant of the other model, and the engine then gets 403s. Per-vault exceptions: target_vault_permission_models."
  type        = string
  default     = "rbac"
  nullable    = false

  validation {
    condition     = contains(["rbac", "access_policy"], var.target_vault_permission_model)
    error_message = "target_vault_permission_model must be \"rbac\" (a role assignment, for vaults that use Azure RBAC) or \"access_policy\" (an access policy, for vaults that use vault access policies)."
  }
}

variable "target_vault_permission_models" {
  description = "Per-vault exceptions to target_vault_permission_model, keyed by vault name (the last segment of its id in target_key_vault_ids): \"rbac\" or \"access_policy\". A name that is not one of the target vaults fails the plan."
  type        = map(string)
  default     = {}
  nullable    = false

  validation {
    condition     = alltrue([for model in values(var.target_vault_permission_models) : contains(["rbac", "access_policy"], model)])
    error_message = "target_vault_permission_models values must be \"rbac\" or \"access_policy\"."
  }
}

variable "target_vault_access_policy_list" {
  description = "Add the List key permission to the access policy of \"access_policy\" vaults, so the reconciler can list every version of a distributed key (full drift detection). Without it the reconciler checks only the latest version and reports the missing permission; distribution and rotation work fully. There is no RBAC equivalent: Microsoft.KeyVault/vaults/keys/read grants get and list together."
  type        = bool
  default     = false
  nullable    = false
}

variable "event_grid_subscriptions_enabled" {
  description = "Subscribe the keyvault_events function to each target vault's Event Grid system topic. Event Grid validates the function when the subscription is created, so enable this on the second apply, after the app code is published (see README)."
  type        = bool
  default     = false
}
