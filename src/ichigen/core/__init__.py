"""Settings, database, ids, clock, pagination and filters, errors, audit log, custom fields."""
