"""Imports every feature's tables so the metadata is complete (for Alembic and tests)."""

from __future__ import annotations

import importlib

MODEL_MODULES = (
    "ichigen.core.audit",
    "ichigen.core.custom_fields",
    "ichigen.auth.models",
    "ichigen.crm.companies.models",
    "ichigen.crm.contacts.models",
    "ichigen.crm.deals.models",
    "ichigen.crm.activities.models",
    "ichigen.crm.tasks.models",
    "ichigen.collect.models",
    "ichigen.identity.models",
    "ichigen.profiles.models",
)


def import_all_models() -> None:
    for name in MODEL_MODULES:
        importlib.import_module(name)
