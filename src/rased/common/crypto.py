"""Envelope encryption with AES-256-GCM under a keyring of named keys.

A sealed value carries its own header, so it can be opened after the keyring has grown:

    version (1 byte) | key id length (1 byte) | key id (ASCII) | nonce (12 bytes) | ciphertext+tag

The header is authenticated together with the caller's associated data (which binds a sealed
value to where it belongs, e.g. an organization and a key id: a value copied to another row
does not open). Rotation adds a key: the newest key seals, every key opens, and rows sealed
under an old key stay readable until they are re-sealed.

Nonces are random (96 bits). NIST SP 800-38D bounds random nonces to 2**32 seals per key;
callers sealing at high volume (per-event payloads) rotate their data keys well before that.
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
from collections.abc import Mapping

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEY_BYTES = 32  # AES-256
NONCE_BYTES = 12
_FORMAT_VERSION = 1
_KEY_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class SealError(Exception):
    """A sealed value could not be opened: unknown key id, malformed, tampered or wrong AAD."""


class Keyring:
    """AES-256-GCM keys by id: the primary (newest) key seals, every key opens."""

    def __init__(self, keys: Mapping[str, bytes], primary_key_id: str) -> None:
        if not keys:
            raise ValueError("a keyring needs at least one key")
        for key_id, key in keys.items():
            if not _KEY_ID.match(key_id):
                raise ValueError(f"key id {key_id!r}: use 1 to 64 characters of A-Z a-z 0-9 . _ -")
            if len(key) != KEY_BYTES:
                raise ValueError(f"key {key_id!r} has {len(key)} bytes; AES-256 needs 32")
        if primary_key_id not in keys:
            raise ValueError(f"primary key id {primary_key_id!r} is not in the keyring")
        self._ciphers = {key_id: AESGCM(key) for key_id, key in keys.items()}
        self._primary = primary_key_id

    @property
    def primary_key_id(self) -> str:
        """Return the id of the key that seals new values."""
        return self._primary

    @property
    def key_ids(self) -> frozenset[str]:
        """Return the ids of every key that can open values."""
        return frozenset(self._ciphers)

    def seal(self, plaintext: bytes, associated_data: bytes) -> bytes:
        """Encrypt `plaintext` under the primary key, bound to `associated_data`."""
        key_id = self._primary.encode("ascii")
        nonce = secrets.token_bytes(NONCE_BYTES)
        header = bytes([_FORMAT_VERSION, len(key_id)]) + key_id + nonce
        ciphertext = self._ciphers[self._primary].encrypt(
            nonce, plaintext, header + associated_data
        )
        return header + ciphertext

    def open(self, sealed: bytes, associated_data: bytes) -> bytes:
        """Return the plaintext of a sealed value; raise SealError if it cannot be opened."""
        key_id, header, ciphertext = self._split(sealed)
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            raise SealError(f"sealed with key {key_id!r}, which is not in the keyring")
        try:
            # The header is authenticated too: changing the key id or nonce fails the tag.
            return cipher.decrypt(header[-NONCE_BYTES:], ciphertext, header + associated_data)
        except InvalidTag:
            raise SealError(
                "authentication failed: tampered value or wrong associated data"
            ) from None

    @staticmethod
    def sealed_key_id(sealed: bytes) -> str:
        """Return the id of the key a value was sealed with (to find values to re-seal)."""
        return Keyring._split(sealed)[0]

    @staticmethod
    def _split(sealed: bytes) -> tuple[str, bytes, bytes]:
        """Split a sealed value into key id, header and ciphertext."""
        if len(sealed) < 2 or sealed[0] != _FORMAT_VERSION:
            raise SealError("not a sealed value of a known format")
        header_len = 2 + sealed[1] + NONCE_BYTES
        # GCM appends a 16-byte tag, so even an empty plaintext makes a longer value.
        if len(sealed) < header_len + 16:
            raise SealError("sealed value is truncated")
        try:
            key_id = sealed[2 : 2 + sealed[1]].decode("ascii")
        except UnicodeDecodeError:
            raise SealError("sealed value has a malformed key id") from None
        return key_id, sealed[:header_len], sealed[header_len:]


class MasterKeyring(Keyring):
    """The service's master keys, from settings; they seal other keys (envelope encryption).

    The setting lists `id:key` entries separated by commas, oldest first, each key 32 bytes
    in base64 (standard or URL-safe alphabet). The last entry seals; rotating means
    appending a new entry, and dropping an old one only after its rows are re-sealed.
    """

    @classmethod
    def from_spec(cls, spec: str) -> MasterKeyring:
        """Parse `id1:base64key1,id2:base64key2` (oldest first; the last one seals)."""
        keys: dict[str, bytes] = {}
        for raw_entry in spec.split(","):
            entry = raw_entry.strip()
            if not entry:
                continue
            key_id, sep, encoded = entry.partition(":")
            if not sep:
                # Never echo the entry: it may be a key pasted without its id.
                raise ValueError("master key entries are written id:base64key")
            if key_id in keys:
                raise ValueError(f"master key id {key_id!r} appears twice")
            keys[key_id] = _decode_key(key_id, encoded.strip())
        if not keys:
            raise ValueError("no master key configured")
        return cls(keys, primary_key_id=list(keys)[-1])


def generate_key() -> bytes:
    """Return a fresh random 256-bit key."""
    return secrets.token_bytes(KEY_BYTES)


def key_spec_entry(key_id: str, key: bytes) -> str:
    """Return the `id:base64key` entry of a master key, as MasterKeyring.from_spec reads it."""
    return f"{key_id}:{base64.urlsafe_b64encode(key).decode('ascii')}"


def _decode_key(key_id: str, encoded: str) -> bytes:
    """Decode a base64 key of either alphabet, padded or not."""
    padded = encoded + "=" * (-len(encoded) % 4)
    try:
        key = base64.b64decode(padded.replace("-", "+").replace("_", "/"), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"master key {key_id!r} is not valid base64") from None
    if len(key) != KEY_BYTES:
        raise ValueError(f"master key {key_id!r} has {len(key)} bytes; AES-256 needs 32")
    return key
