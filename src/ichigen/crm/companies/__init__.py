"""ichigen.crm.companies."""
