"""`rased models smoke` against the real Triton: each served model answers as expected."""

from __future__ import annotations

import pytest

from rased.cli.main import main
from rased.devstack.base import ManagedServer


def test_every_model_passes_its_smoke_check(
    triton_server: ManagedServer, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = triton_server.settings
    status = main(["models", "smoke", "--target", f"{settings.host}:{settings.triton_grpc_port}"])
    out = capsys.readouterr().out
    assert status == 0, out
    assert "bot_detection    OK" in out
    assert "session_scores   OK" in out
    assert "stack_check      OK" in out


def test_an_unreachable_triton_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["models", "smoke", "--target", "127.0.0.1:9", "--timeout", "2"])
    assert status == 2
    assert "127.0.0.1:9" in capsys.readouterr().err
