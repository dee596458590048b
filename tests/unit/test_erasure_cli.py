"""`rased erasure ...`: argument checks before any call, and the job as scripts read it."""

from __future__ import annotations

import uuid

import pytest
from google.protobuf import timestamp_pb2

from rased.cli.erasure_command import erasure_job_dict
from rased.cli.main import build_parser, main
from rased.v1 import admin_pb2

ORG = str(uuid.uuid4())


def _usage_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(argv)
    assert exited.value.code == 2
    return capsys.readouterr().err


def test_a_request_names_exactly_one_subject() -> None:
    options = build_parser().parse_args(["erasure", "request", ORG.upper(), "--session", "s-1"])
    assert (options.organization_id, options.session, options.user) == (ORG, "s-1", None)
    assert not options.wait
    options = build_parser().parse_args(["erasure", "request", ORG, "--user", "u-1", "--wait"])
    assert (options.session, options.user, options.wait) == (None, "u-1", True)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["erasure", "request", ORG], "one of the arguments --session --user is required"),
        (
            ["erasure", "request", ORG, "--session", "s", "--user", "u"],
            "not allowed with argument",
        ),
        (["erasure", "request", "bank-1", "--session", "s"], "not a UUID: 'bank-1'"),
        (["erasure", "request", ORG, "--session", ""], "must not be empty"),
        (["erasure", "request", ORG, "--user", "u" * 129], "longer than 128 characters"),
        (["erasure", "status", ORG, "job-1"], "argument JOB_ID: not a UUID: 'job-1'"),
        (["erasure", "status", ORG], "the following arguments are required: JOB_ID"),
    ],
)
def test_bad_arguments_are_refused_before_any_call(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    err = _usage_error(argv, capsys)
    assert message in err
    assert "Traceback" not in err


def test_without_a_token_nothing_is_sent(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("RASED_OPERATOR_TOKEN", raising=False)
    code = main(["erasure", "status", ORG, str(uuid.uuid4()), "--target", "127.0.0.1:1"])
    assert code == 2
    assert "no operator token" in capsys.readouterr().err


def test_a_job_reads_as_plain_json_values() -> None:
    created = timestamp_pb2.Timestamp(seconds=1_800_000_000)
    job = admin_pb2.ErasureJob(
        job_id="j",
        organization_id=ORG,
        subject_kind=admin_pb2.SUBJECT_KIND_USER,
        subject_id="u-1",
        status=admin_pb2.ERASURE_STATUS_FAILED,
        erased_counts={"redis_profiles": 1, "cassandra_events": 12},
        error="Cassandra unavailable: NoHostAvailable",
        create_time=created,
    )
    assert erasure_job_dict(job) == {
        "job_id": "j",
        "organization_id": ORG,
        "subject_kind": "user",
        "subject_id": "u-1",
        "status": "failed",
        "erased_counts": {"cassandra_events": 12, "redis_profiles": 1},
        "error": "Cassandra unavailable: NoHostAvailable",
        "create_time": "2027-01-15T08:00:00Z",
        "finish_time": None,
    }
