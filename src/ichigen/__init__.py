"""ichigen: an open-source customer data hub (CRM and CDP in one product)."""

__version__ = "0.1.0"
