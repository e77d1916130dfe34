resource "azurerm_resource_group" "this" {
  name     = local.names.resource_group
  location = var.location
  tags     = local.tags
}

resource "azurerm_virtual_network" "this" {
  name                = local.names.vnet
  location            = azurerm_resource_group.this.location
  resource_group_name = azurerm_resource_group.this.name
  address_space       = var.vnet_address_space
  tags                = local.tags
}

# Outbound VNet integration of the Flex Consumption app. Flex requires the delegation to
# Microsoft.App/environments (and the Microsoft.App resource provider registered).
resource "azurerm_subnet" "function" {
  name                 = "snet-function"
  resource_group_name  = azurerm_resource_group.this.name
  virtual_network_name = azurerm_virtual_network.this.name
  address_prefixes     = [var.function_subnet_prefix]

  delegation {
    name = "flex-consumption"
    service_delegation {
      name    = "Microsoft.App/environments"
      actions = ["Microsoft.Network/virtualNetworks/subnets/join/action"]
    }
  }
}

resource "azurerm_subnet" "private_endpoints" {
  name                 = "snet-private-endpoints"
  resource_group_name  = azurerm_resource_group.this.name
  virtual_network_name = azurerm_virtual_network.this.name
  address_prefixes     = [var.private_endpoint_subnet_prefix]

  # Network policies on, so the NSG below actually filters traffic to the private endpoints.
  private_endpoint_network_policies = "Enabled"
}

# The integration subnet carries only the app's outbound traffic; inbound requests reach the app
# through the App Service front ends, not this subnet. The default rules are kept.
resource "azurerm_network_security_group" "function" {
  name                = local.names.nsg_function
  location            = azurerm_resource_group.this.location
  resource_group_name = azurerm_resource_group.this.name
  tags                = local.tags
}

resource "azurerm_subnet_network_security_group_association" "function" {
  subnet_id                 = azurerm_subnet.function.id
  network_security_group_id = azurerm_network_security_group.function.id
}

# Only the app's subnet (and the management CIDRs, e.g. the Terraform runner) may reach the
# private endpoints, and only on 443.
resource "azurerm_network_security_group" "private_endpoints" {
  name                = local.names.nsg_pe
  location            = azurerm_resource_group.this.location
  resource_group_name = azurerm_resource_group.this.name
  tags                = local.tags

  security_rule {
    name                       = "allow-function-https"
    priority                   = 100
    direction                  = "Inbound"
    access                     = "Allow"
    protocol                   = "Tcp"
    source_port_range          = "*"
    destination_port_range     = "443"
    source_address_prefix      = var.function_subnet_prefix
    destination_address_prefix = var.private_endpoint_subnet_prefix
  }

  dynamic "security_rule" {
    for_each = length(var.management_cidrs) > 0 ? [1] : []
    content {
      name                       = "allow-management-https"
      priority                   = 110
      direction                  = "Inbound"
      access                     = "Allow"
      protocol                   = "Tcp"
      source_port_range          = "*"
      destination_port_range     = "443"
      source_address_prefixes    = var.management_cidrs
      destination_address_prefix = var.private_endpoint_subnet_prefix
    }
  }

  security_rule {
    name                       = "deny-other-vnet-inbound"
    priority                   = 4000
    direction                  = "Inbound"
    access                     = "Deny"
    protocol                   = "*"
    source_port_range          = "*"
    destination_port_range     = "*"
    source_address_prefix      = "VirtualNetwork"
    destination_address_prefix = "*"
  }
}

resource "azurerm_subnet_network_security_group_association" "private_endpoints" {
  subnet_id                 = azurerm_subnet.private_endpoints.id
  network_security_group_id = azurerm_network_security_group.private_endpoints.id
}

# ---------------------------------------------------------------------------------------------
# Private DNS: one zone per service, linked to the VNet, unless an existing zone is passed in.
# ---------------------------------------------------------------------------------------------

resource "azurerm_private_dns_zone" "this" {
  for_each            = { for k, zone in local.cloud.private_dns_zones : k => zone if !contains(keys(var.private_dns_zone_ids), k) }
  name                = each.value
  resource_group_name = azurerm_resource_group.this.name
  tags                = local.tags
}

resource "azurerm_private_dns_zone_virtual_network_link" "this" {
  for_each              = azurerm_private_dns_zone.this
  name                  = "link-${local.names.vnet}"
  resource_group_name   = azurerm_resource_group.this.name
  private_dns_zone_name = each.value.name
  virtual_network_id    = azurerm_virtual_network.this.id
  registration_enabled  = false
  tags                  = local.tags
}

locals {
  private_dns_zone_ids = merge({ for k, zone in azurerm_private_dns_zone.this : k => zone.id }, var.private_dns_zone_ids)
}
