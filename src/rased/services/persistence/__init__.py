"""The persistence worker: compiled transactions from Kafka into Cassandra, encrypted at rest."""
