"""PostgreSQL adapters (asyncpg): organizations, API keys and encryption keys."""
