"""Ingestion settings refuse what the service could not run with, naming the setting."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from rased.services.ingestion.settings import IngestionSettings

REQUIRED = {"session_token_secret": "s" * 40, "master_keys": "k1:" + "A" * 43 + "="}


@pytest.mark.parametrize("value", ["fast", "0/second", "10/fortnight", ""])
def test_a_malformed_rate_limit_is_refused_with_its_name(value: str) -> None:
    with pytest.raises(ValidationError) as refused:
        IngestionSettings(rate_limit_per_session=value, **REQUIRED)  # type: ignore[arg-type]
    assert "rate_limit_per_session" in str(refused.value)
    assert "<batches>/<second|minute|hour|day>" in str(refused.value)


def test_rate_limits_in_the_limits_notation_are_accepted() -> None:
    settings = IngestionSettings(
        rate_limit_per_organization="600 per minute",
        rate_limit_per_session="5/second",
        **REQUIRED,  # type: ignore[arg-type]
    )
    assert (settings.rate_limit_per_organization, settings.rate_limit_per_session) == (
        "600 per minute",
        "5/second",
    )
