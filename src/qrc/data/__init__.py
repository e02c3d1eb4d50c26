"""Data at rest under keys the service manages: the envelope SDK, SQLAlchemy columns, Redis
values, files in the age format, logs and backups."""
