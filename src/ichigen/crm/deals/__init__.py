"""Deals."""
