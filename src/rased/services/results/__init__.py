"""The results service: scored results for client backends (get, list, watch)."""
