"""Secrets of the local stack's services: made once per state folder, never committed."""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass

from rased.common.crypto import generate_key, key_spec_entry
from rased.devstack.settings import StackSettings


@dataclass(frozen=True)
class DevSecrets:
    """The keys a local deployment needs; production supplies its own from a secret store."""

    session_token_secret: str
    master_keys: str
    operator_token: str  # the admin service's operator credential (`rased org ...`)


def load_dev_secrets(settings: StackSettings) -> DevSecrets:
    """Return the stack's secrets, creating them (readable by the owner only) the first time."""
    path = settings.state_dir / "dev-secrets.json"
    if not path.exists():
        settings.state_dir.mkdir(parents=True, exist_ok=True)
        values = {
            "session_token_secret": secrets.token_urlsafe(48),
            "master_keys": key_spec_entry("local-1", generate_key()),
            "operator_token": secrets.token_urlsafe(48),
        }
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(values, out)
    loaded = json.loads(path.read_text())
    if "operator_token" not in loaded:
        # A state folder made before the admin service existed: add its token, keep the rest
        # (replacing the file whole, so a reader never sees it half written).
        loaded["operator_token"] = secrets.token_urlsafe(48)
        fresh = path.with_name(path.name + ".new")
        fd = os.open(fresh, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(loaded, out)
        os.replace(fresh, path)
    return DevSecrets(
        loaded["session_token_secret"], loaded["master_keys"], loaded["operator_token"]
    )
