"""The scoring worker: ai_processing -> features -> Triton -> PostgreSQL -> client_notification."""
