"""The admin service: organizations, API keys, encryption keys and the audit log."""
