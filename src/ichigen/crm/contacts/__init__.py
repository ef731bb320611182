"""ichigen.crm.contacts."""
