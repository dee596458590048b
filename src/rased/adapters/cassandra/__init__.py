"""Cassandra adapters: an asyncio bridge over the DataStax driver, and the event store."""
