"""One adapter per external system: PostgreSQL's client tools, local disk, S3."""
