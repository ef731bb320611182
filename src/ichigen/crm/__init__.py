"""ichigen.crm."""
