"""ichigen.cli."""
