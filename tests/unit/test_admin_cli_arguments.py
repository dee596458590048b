"""`rased` AdminService commands: what is refused before any call, and what is sent."""

from __future__ import annotations

import argparse
import socket
import uuid

import pytest

from rased.cli.admin_client import duration_argument, url_argument
from rased.cli.main import build_parser, main
from rased.devstack.settings import StackSettings

ORG = str(uuid.uuid4())
OTHER = str(uuid.uuid4())
# Nothing listens here: a command that got as far as a call would fail with exit status 1.
NOWHERE = ["--target", "127.0.0.1:1", "--timeout", "1"]


def _usage_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(argv)
    assert exited.value.code == 2
    return capsys.readouterr().err


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90s", 90),
        ("15m", 900),
        ("24h", 86400),
        ("7d", 7 * 86400),
        ("1h30m", 5400),
        ("1d12h", 129600),
        ("3600", 3600),
        ("30d", 2592000),
        (" 2H ", 7200),
    ],
)
def test_durations_read_as_seconds(text: str, seconds: int) -> None:
    assert duration_argument(text) == seconds


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "not a duration: ''"),
        ("soon", "not a duration: 'soon' (e.g. 90s, 15m, 24h, 7d, 1h30m)"),
        ("1.5h", "not a duration"),
        ("-5m", "not a duration"),
        ("30m1h", "not a duration"),
        ("0", "must be at least 1s (leave it out for the default, 24h)"),
        ("0s", "must be at least 1s"),
        ("31d", "longer than 30 days: '31d'"),
        ("2592001", "longer than 30 days"),
    ],
)
def test_bad_durations_are_refused(text: str, message: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError) as refused:
        duration_argument(text)
    assert message in str(refused.value)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("hooks.example.com/rased", "not an http(s) URL with a host"),
        ("ftp://hooks.example.com/", "not an http(s) URL with a host"),
        ("https:///path", "not an http(s) URL with a host"),
        ("https://user:pw@hooks.example.com/", "must not carry credentials"),
        ("https://[::1/", "not a URL"),
        ("https://h.example/" + "a" * 2048, "longer than 2048 characters"),
    ],
)
def test_bad_urls_are_refused(url: str, message: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError) as refused:
        url_argument(url)
    assert message in str(refused.value)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["org", "get", "bank-1"], "argument ORG_ID: not a UUID: 'bank-1'"),
        (["org", "retention", ORG, "0"], "argument DAYS: must be from 1 to 3650: '0'"),
        (["org", "retention", ORG, "ninety"], "not a whole number: 'ninety'"),
        (["org", "retention", ORG], "the following arguments are required: DAYS"),
        (["org", "create", ""], "argument name: must not be empty"),
        (["org", "create", "b", "--retention-days", "3651"], "must be from 1 to 3650"),
        (["org", "list", "--page-size", "501"], "must be from 1 to 500: '501'"),
        (["org", "list", "--page-size", "0"], "must be from 1 to 500"),
        (["org", "list", "--all", "--page-token", "t"], "not allowed with argument"),
        (["org", "list", "--page-token", "t" * 513], "longer than 512 characters"),
        (["org", "get", ORG, "--timeout", "0"], "must be positive: '0'"),
        (["key", "list", "k"], "argument ORG_ID: not a UUID: 'k'"),
        (["key", "revoke", ORG, "key-1"], "argument KEY_ID: not a UUID: 'key-1'"),
        (["key", "rotate", ORG, OTHER, "--overlap", "a day"], "not a duration: 'a day'"),
        (["key", "rotate", ORG, OTHER, "--overlap", "0"], "must be at least 1s"),
        (["key", "create", ORG, "--kind", "secret", "--origin", "pay.example"], "--origin"),
        (["key", "create", ORG, "--kind", "private"], "invalid choice: 'private'"),
        (["webhook", "create", ORG, "hooks.example.com"], "argument URL: not an http(s) URL"),
        (["webhook", "create", ORG, "https://h.example", "--event", ""], "must not be empty"),
        (["webhook", "create", ORG, "https://h.example", "--event", "e" * 65], "longer than 64"),
        (["webhook", "list", "x"], "argument ORG_ID: not a UUID: 'x'"),
        (["webhook", "update", ORG, "hook-1", "--enable"], "argument ENDPOINT_ID: not a UUID"),
        (["webhook", "update", ORG, OTHER, "--enable", "--disable"], "not allowed with argument"),
        (
            ["webhook", "update", ORG, OTHER, "--event", "a", "--all-events"],
            "not allowed with argument",
        ),
        (["webhook", "update", ORG, OTHER, "--url", "ftp://h.example"], "not an http(s) URL"),
        (["webhook", "delete", ORG], "the following arguments are required: ENDPOINT_ID"),
        (["webhook", "rotate-secret", ORG, OTHER, "--overlap", "31d"], "longer than 30 days"),
        (["webhook", "rotate"], "invalid choice: 'rotate'"),
        (["delivery", "list", ORG, "--status", "dead"], "invalid choice: 'dead'"),
        (["delivery", "list", ORG, "--all", "--page-token", "t"], "not allowed with argument"),
        (["delivery", "redeliver", ORG, "d-1"], "argument DELIVERY_ID: not a UUID: 'd-1'"),
        (["encryption-key", "get", "org"], "argument ORG_ID: not a UUID: 'org'"),
        (["encryption-key", "rotate", ORG, "--overlap", "1w"], "not a duration: '1w'"),
        (["audit", "list", "org"], "argument ORG_ID: not a UUID: 'org'"),
        (["audit", "list", ORG, "--page-size", "-1"], "must be from 1 to 500"),
    ],
)
def test_bad_arguments_are_refused_before_any_call(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    err = _usage_error(argv, capsys)
    assert message in err
    assert "Traceback" not in err


def test_ids_are_sent_in_canonical_form() -> None:
    options = build_parser().parse_args(["key", "rotate", ORG.upper(), OTHER, "--overlap", "1h"])
    assert (options.organization_id, options.key_id, options.overlap) == (ORG, OTHER, 3600)
    options = build_parser().parse_args(["key", "rotate", ORG, OTHER])
    assert options.overlap == 0  # the contract's "default" (24 hours)


def test_a_webhook_update_names_only_what_changes() -> None:
    options = build_parser().parse_args(["webhook", "update", ORG, OTHER, "--disable"])
    assert (options.url, options.enabled, options.include_scores, options.events) == (
        None,
        False,
        None,
        None,
    )
    options = build_parser().parse_args(
        ["webhook", "update", ORG, OTHER, "--no-include-scores", "--event", "a", "--event", "b"]
    )
    assert (options.enabled, options.include_scores, options.events) == (None, False, ["a", "b"])


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["webhook", "update", ORG, OTHER],
            "error: nothing to change: pass --url, --enable or --disable, "
            "--include-scores or --no-include-scores, --event or --all-events\n",
        ),
        (
            ["webhook", "create", ORG, "https://h.example", *("--event", "e") * 21],
            "error: at most 20 --event types, got 21\n",
        ),
        (
            ["webhook", "update", ORG, OTHER, *("--event", "e") * 21],
            "error: at most 20 --event types, got 21\n",
        ),
        (
            [
                "key",
                "create",
                ORG,
                "--kind",
                "publishable",
                *("--origin", "https://shop.example") * 51,
            ],
            "error: at most 50 --origin values, got 51\n",
        ),
    ],
)
def test_arguments_that_conflict_together_are_refused_before_any_call(
    argv: list[str],
    message: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Refused even with a token and an address set: nothing is sent.
    monkeypatch.setenv("RASED_OPERATOR_TOKEN", "op-token")
    assert main([*argv, *NOWHERE]) == 2
    captured = capsys.readouterr()
    assert (captured.out, captured.err) == ("", message)


@pytest.mark.parametrize(
    "argv",
    [
        ["org", "get", ORG],
        ["org", "retention", ORG, "30"],
        ["key", "rotate", ORG, OTHER],
        ["webhook", "create", ORG, "https://h.example"],
        ["webhook", "list", ORG],
        ["webhook", "update", ORG, OTHER, "--enable"],
        ["webhook", "delete", ORG, OTHER],
        ["webhook", "rotate-secret", ORG, OTHER],
        ["delivery", "list", ORG],
        ["delivery", "redeliver", ORG, OTHER],
        ["encryption-key", "get", ORG],
        ["encryption-key", "rotate", ORG],
        ["audit", "list", ORG, "--all"],
    ],
)
def test_without_a_credential_nothing_is_sent(
    argv: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("RASED_OPERATOR_TOKEN", raising=False)
    assert main([*argv, *NOWHERE]) == 2
    assert capsys.readouterr().err == (
        "error: no operator token: set $RASED_OPERATOR_TOKEN or pass --token\n"
    )


def test_an_unreachable_service_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RASED_OPERATOR_TOKEN", "op-token")
    assert main(["audit", "list", ORG, *NOWHERE]) == 1
    assert capsys.readouterr().err == (
        "error: cannot reach the admin service at 127.0.0.1:1 (UNAVAILABLE)\n"
    )


def _closed_port() -> int:
    """Return a local port with nothing listening on it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_the_default_target_is_the_stacks_admin_port(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    port = _closed_port()
    monkeypatch.setenv("RASED_STACK_ADMIN_PORT", str(port))
    monkeypatch.setenv("RASED_OPERATOR_TOKEN", "op-token")
    # `RASED_STACK_ADMIN_PORT=... rased org list` calls that port (nothing listens there).
    assert main(["org", "list", "--timeout", "1"]) == 1
    assert capsys.readouterr().err == (
        f"error: cannot reach the admin service at 127.0.0.1:{port} (UNAVAILABLE)\n"
    )
    # --help says which default is in force, and where it comes from.
    with pytest.raises(SystemExit):
        build_parser().parse_args(["org", "list", "--help"])
    shown = " ".join(capsys.readouterr().out.split())
    assert (
        f"admin service host:port (127.0.0.1:{port}, from $RASED_STACK_HOST and "
        "$RASED_STACK_ADMIN_PORT)" in shown
    )
    # An explicit --target wins.
    options = build_parser().parse_args(["org", "list", "--target", "10.1.2.3:7000"])
    assert options.target == "10.1.2.3:7000"


@pytest.mark.parametrize(
    ("host", "admin", "triton"),
    [
        ("127.0.0.1", "127.0.0.1:51053", "127.0.0.1:18001"),
        ("10.0.0.5", "10.0.0.5:51053", "10.0.0.5:18001"),
        ("0.0.0.0", "127.0.0.1:51053", "127.0.0.1:18001"),  # bound everywhere: reach it locally
        ("::1", "[::1]:51053", "[::1]:18001"),
    ],
)
def test_default_targets_follow_the_stack_settings(host: str, admin: str, triton: str) -> None:
    settings = StackSettings(host=host, admin_port=51053, triton_grpc_port=18001)
    parser = build_parser(settings)
    assert parser.parse_args(["key", "list", ORG]).target == admin
    assert parser.parse_args(["erasure", "status", ORG, OTHER]).target == admin
    assert parser.parse_args(["models", "smoke"]).target == triton
    assert parser.parse_args(["models", "smoke", "--target", "h:1"]).target == "h:1"


def test_bad_stack_settings_are_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RASED_STACK_ADMIN_PORT", "fifty")
    assert main(["org", "list"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("error: bad stack settings: RASED_STACK_ADMIN_PORT: ")
    assert len(captured.err.splitlines()) == 1
