"""The admin service's erasure settings: what `make up` gives it, and what it refuses."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from rased.devstack.services import SERVICE_ENTRIES, RasedService
from rased.devstack.settings import StackSettings
from rased.services.admin.settings import AdminSettings
from rased.services.ingestion.settings import IngestionSettings
from rased.services.scoring.settings import ScoringSettings

REQUIRED = {"master_keys": "k1:" + "A" * 43 + "=", "operator_token": "t" * 40}


def test_erasure_looks_where_ingestion_and_scoring_write_by_default() -> None:
    # Erasure finds buffers and profiles by key prefix: a mismatch would erase nothing.
    admin = AdminSettings.model_fields
    assert (
        admin["redis_buffer_prefix"].default
        == IngestionSettings.model_fields["redis_key_prefix"].default
    )
    assert (
        admin["redis_profile_prefix"].default
        == ScoringSettings.model_fields["redis_key_prefix"].default
    )


def test_the_local_stack_points_admin_at_its_redis_and_cassandra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack = StackSettings(
        state_dir=tmp_path, redis_port=16379, cassandra_port=19042, cassandra_keyspace="ks1"
    )
    (entry,) = [e for e in SERVICE_ENTRIES if e.name == "admin"]
    for name, value in RasedService(stack, entry).environment().items():
        monkeypatch.setenv(name, value)
    settings = AdminSettings()  # type: ignore[call-arg]  # read from the environment
    assert settings.redis_url == f"redis://{stack.host}:16379/0"
    assert settings.cassandra_contact_points == [stack.host]
    assert (settings.cassandra_port, settings.cassandra_keyspace) == (19042, "ks1")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {
                "erasure_retry_initial": timedelta(minutes=5),
                "erasure_retry_max": timedelta(seconds=1),
            },
            "erasure_retry_initial must not exceed erasure_retry_max",
        ),
        ({"erasure_lease": timedelta(0)}, "erasure_lease must be positive"),
        ({"redis_buffer_prefix": "a{b}:"}, "redis_buffer_prefix must not contain"),
    ],
)
def test_bad_erasure_settings_are_refused(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        AdminSettings(**REQUIRED, **changes)  # type: ignore[arg-type]
