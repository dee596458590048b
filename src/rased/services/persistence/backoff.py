"""Backoff of the persistence worker's retries (moved to `rased.common.backoff`, shared)."""

from rased.common.backoff import Backoff

__all__ = ["Backoff"]
