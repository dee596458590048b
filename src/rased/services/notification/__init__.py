"""Notification worker: result notifications to signed, retried webhooks."""
