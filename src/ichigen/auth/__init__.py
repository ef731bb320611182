"""ichigen.auth."""
