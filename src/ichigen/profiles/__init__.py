"""Unified customer profiles: traits and their precedence, and the 360° view."""
