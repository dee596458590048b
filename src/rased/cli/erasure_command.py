"""`rased erasure request|status`: erase a session's or a user's data (GDPR Art. 17)."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from rased.cli.admin_client import Invoke, Noun, uuid_argument
from rased.cli.output import show
from rased.v1 import admin_pb2, admin_pb2_grpc

# The longest session or user id EraseSubject takes (its buf.validate rule).
MAX_SUBJECT_ID = 128


def subject_argument(value: str) -> str:
    """Return a session or user id argument; refuse an empty or too long one."""
    if not value.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    if len(value) > MAX_SUBJECT_ID:
        raise argparse.ArgumentTypeError(f"longer than {MAX_SUBJECT_ID} characters")
    return value


def _add_parser(commands: Any, common: argparse.ArgumentParser) -> None:
    erasure = commands.add_parser("erasure", help="erase a session's or user's data (GDPR)")
    erasure_actions = erasure.add_subparsers(dest="action", required=True, metavar="ACTION")
    request = erasure_actions.add_parser(
        "request", parents=[common], help="start erasing a session or every session of a user"
    )
    request.add_argument("organization_id", metavar="ORG_ID", type=uuid_argument)
    subject = request.add_mutually_exclusive_group(required=True)
    subject.add_argument("--session", metavar="ID", type=subject_argument, help="a session id")
    subject.add_argument("--user", metavar="ID", type=subject_argument, help="a user id")
    request.add_argument(
        "--wait", action="store_true", help="wait until the job has succeeded (failures retry)"
    )
    request.add_argument(
        "--wait-timeout", type=float, default=300.0, help="seconds --wait waits at most (300)"
    )
    request.add_argument(
        "--poll-interval", type=float, default=1.0, help="seconds between checks (1)"
    )
    status = erasure_actions.add_parser(
        "status", parents=[common], help="show where an erasure job stands"
    )
    status.add_argument("organization_id", metavar="ORG_ID", type=uuid_argument)
    status.add_argument("job_id", metavar="JOB_ID", type=uuid_argument)


def erasure_job_dict(job: admin_pb2.ErasureJob) -> dict[str, Any]:
    """Return a job as scripts read it: names in lower case, counts as numbers."""
    return {
        "job_id": job.job_id,
        "organization_id": job.organization_id,
        "subject_kind": admin_pb2.SubjectKind.Name(job.subject_kind)
        .removeprefix("SUBJECT_KIND_")
        .lower(),
        "subject_id": job.subject_id,
        "status": _status_name(job.status),
        "erased_counts": dict(sorted(job.erased_counts.items())),
        "error": job.error,
        "create_time": job.create_time.ToJsonString() if job.HasField("create_time") else None,
        "finish_time": job.finish_time.ToJsonString() if job.HasField("finish_time") else None,
    }


def _status_name(status: admin_pb2.ErasureStatus.ValueType) -> str:
    return admin_pb2.ErasureStatus.Name(status).removeprefix("ERASURE_STATUS_").lower()


def _show_job(options: argparse.Namespace, job: admin_pb2.ErasureJob) -> int:
    shown = erasure_job_dict(job)
    lines = [f"erasure job {job.job_id}: {shown['status']} ({shown['subject_kind']} erasure)"]
    if job.error:
        lines.append(f"last error: {job.error} (retried)")
    lines.extend(f"  {store:<36} {count}" for store, count in shown["erased_counts"].items())
    return show(options, shown, lines)


def _erasure_request(
    stub: admin_pb2_grpc.AdminServiceStub, options: argparse.Namespace, invoke: Invoke
) -> int:
    kind = admin_pb2.SUBJECT_KIND_SESSION if options.session else admin_pb2.SUBJECT_KIND_USER
    reply: admin_pb2.EraseSubjectResponse = invoke(
        stub.EraseSubject,
        admin_pb2.EraseSubjectRequest(
            organization_id=options.organization_id,
            subject_kind=kind,
            subject_id=options.session or options.user,
        ),
    )
    job = reply.job
    if options.wait:
        deadline = time.monotonic() + options.wait_timeout
        while job.status != admin_pb2.ERASURE_STATUS_SUCCEEDED:
            if time.monotonic() >= deadline:
                why = f": {job.error}" if job.error else ""
                print(
                    f"error: erasure job {job.job_id} has not succeeded after "
                    f"{options.wait_timeout:g} s (status {_status_name(job.status)}{why}); "
                    f"it goes on: rased erasure status {options.organization_id} {job.job_id}",
                    file=sys.stderr,
                )
                return 1
            time.sleep(max(0.0, min(options.poll_interval, deadline - time.monotonic())))
            got: admin_pb2.GetErasureJobResponse = invoke(
                stub.GetErasureJob,
                admin_pb2.GetErasureJobRequest(
                    organization_id=options.organization_id, job_id=job.job_id
                ),
            )
            job = got.job
    return _show_job(options, job)


def _erasure_status(
    stub: admin_pb2_grpc.AdminServiceStub, options: argparse.Namespace, invoke: Invoke
) -> int:
    reply: admin_pb2.GetErasureJobResponse = invoke(
        stub.GetErasureJob,
        admin_pb2.GetErasureJobRequest(
            organization_id=options.organization_id, job_id=options.job_id
        ),
    )
    return _show_job(options, reply.job)


NOUN = Noun("erasure", _add_parser, {"request": _erasure_request, "status": _erasure_status})
