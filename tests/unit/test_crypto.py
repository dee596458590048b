"""Envelope encryption (AES-256-GCM keyring): round trip, integrity, AAD binding, rotation."""

from __future__ import annotations

import pytest

from rased.common.crypto import (
    Keyring,
    MasterKeyring,
    SealError,
    generate_key,
    key_spec_entry,
)

AAD = b"org-1:key-1"


def test_round_trip() -> None:
    """A sealed value opens to the same bytes; the ciphertext does not contain the plaintext."""
    ring = Keyring({"k1": generate_key()}, primary_key_id="k1")
    plaintext = b"private key material " * 4

    sealed = ring.seal(plaintext, AAD)

    assert plaintext not in sealed
    assert ring.open(sealed, AAD) == plaintext
    assert ring.open(ring.seal(b"", AAD), AAD) == b""


def test_each_seal_uses_a_fresh_nonce() -> None:
    """Sealing the same bytes twice gives different values (random nonces)."""
    ring = Keyring({"k1": generate_key()}, primary_key_id="k1")
    assert ring.seal(b"same", AAD) != ring.seal(b"same", AAD)


@pytest.mark.parametrize("position", [0, 1, 3, 10, 20, -17, -1])
def test_any_changed_byte_fails(position: int) -> None:
    """Flipping one bit anywhere (header, nonce, ciphertext, tag) makes open fail."""
    ring = Keyring({"k1": generate_key()}, primary_key_id="k1")
    sealed = bytearray(ring.seal(b"secret bytes", AAD))
    sealed[position] ^= 0x01

    with pytest.raises(SealError):
        ring.open(bytes(sealed), AAD)


def test_truncated_or_foreign_values_fail() -> None:
    """Values too short or of another format are refused with SealError, not a crash."""
    ring = Keyring({"k1": generate_key()}, primary_key_id="k1")
    sealed = ring.seal(b"secret bytes", AAD)
    for bad in (b"", b"\x01", sealed[:20], b"\x02" + sealed[1:], b"\x01\x02\xff\xfe" + bytes(40)):
        with pytest.raises(SealError):
            ring.open(bad, AAD)


def test_wrong_associated_data_fails() -> None:
    """A value bound to one row does not open as another's."""
    ring = Keyring({"k1": generate_key()}, primary_key_id="k1")
    sealed = ring.seal(b"secret bytes", AAD)

    with pytest.raises(SealError, match="authentication failed"):
        ring.open(sealed, b"org-2:key-1")
    with pytest.raises(SealError):
        ring.open(sealed, b"")


def test_another_key_with_the_same_id_fails() -> None:
    """A value does not open under a different key that happens to carry the same id."""
    sealed = Keyring({"k1": generate_key()}, primary_key_id="k1").seal(b"x", AAD)
    with pytest.raises(SealError):
        Keyring({"k1": generate_key()}, primary_key_id="k1").open(sealed, AAD)


def test_rotation_keeps_old_values_readable() -> None:
    """After appending a key, the new key seals and values sealed under the old one open."""
    old_key, new_key = generate_key(), generate_key()
    before = MasterKeyring.from_spec(key_spec_entry("2025-01", old_key))
    sealed_before = before.seal(b"old row", AAD)

    after = MasterKeyring.from_spec(
        f"{key_spec_entry('2025-01', old_key)}, {key_spec_entry('2026-01', new_key)}"
    )
    sealed_after = after.seal(b"new row", AAD)

    assert after.primary_key_id == "2026-01"
    assert Keyring.sealed_key_id(sealed_before) == "2025-01"
    assert Keyring.sealed_key_id(sealed_after) == "2026-01"
    assert after.open(sealed_before, AAD) == b"old row"
    assert after.open(sealed_after, AAD) == b"new row"
    # Without the new key the new value cannot be opened: the header names a missing key.
    with pytest.raises(SealError, match="2026-01"):
        before.open(sealed_after, AAD)


def test_spec_accepts_both_base64_alphabets_and_refuses_bad_keys() -> None:
    """Keys in standard or URL-safe base64 parse; short keys, bad ids and empty specs do not."""
    import base64

    key = bytes(range(250, 256)) + bytes(26)  # bytes that differ between the alphabets
    standard = base64.b64encode(key).decode()
    urlsafe = base64.urlsafe_b64encode(key).decode().rstrip("=")
    sealed = MasterKeyring.from_spec(f"a:{standard}").seal(b"x", AAD)
    assert MasterKeyring.from_spec(f"a:{urlsafe}").open(sealed, AAD) == b"x"

    for spec in (
        "",
        " , ",
        "a:" + base64.b64encode(bytes(16)).decode(),
        "nocolon",
        "a:%%%",
        f"bad id:{standard}",
        f"a:{standard},a:{standard}",
    ):
        with pytest.raises(ValueError):
            MasterKeyring.from_spec(spec)


def test_error_messages_do_not_echo_key_material() -> None:
    """A malformed entry's error does not repeat what may be a pasted key."""
    pasted = base64_key = key_spec_entry("x", generate_key()).split(":", 1)[1]
    with pytest.raises(ValueError) as error:
        MasterKeyring.from_spec(pasted)
    assert base64_key not in str(error.value)
