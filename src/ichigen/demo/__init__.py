"""ichigen.demo."""
