"""Redis adapters: the per-transaction event buffer."""

from rased.adapters.redis.event_buffer import RedisEventBuffer

__all__ = ["RedisEventBuffer"]
