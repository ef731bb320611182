"""ichigen.web."""
