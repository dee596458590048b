"""Scoring a compiled transaction: evidence from its events, the user's profile, the rules."""
