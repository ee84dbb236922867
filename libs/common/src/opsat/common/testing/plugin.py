"""pytest plugin: real Kafka and PostgreSQL fixtures."""
