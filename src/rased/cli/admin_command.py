"""`rased org|key|erasure ...`: the operator's side of AdminService, over gRPC.

The operator token comes from `--token` or the `RASED_OPERATOR_TOKEN` environment variable.
`--json` prints what scripts read; a new key's text is printed once and never again.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

import grpc
from google.protobuf import json_format, message

from rased.v1 import admin_pb2, admin_pb2_grpc

DEFAULT_TARGET = "127.0.0.1:50053"
TOKEN_ENV = "RASED_OPERATOR_TOKEN"  # noqa: S105 - the variable's name, not a token
_KINDS = {
    "publishable": admin_pb2.API_KEY_KIND_PUBLISHABLE,
    "secret": admin_pb2.API_KEY_KIND_SECRET,
}
# The longest session or user id EraseSubject takes (its buf.validate rule).
MAX_SUBJECT_ID = 128


def uuid_argument(value: str) -> str:
    """Return an id argument in canonical form; refuse what is not a UUID."""
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a UUID: {value!r}") from None


def subject_argument(value: str) -> str:
    """Return a session or user id argument; refuse an empty or too long one."""
    if not value.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    if len(value) > MAX_SUBJECT_ID:
        raise argparse.ArgumentTypeError(f"longer than {MAX_SUBJECT_ID} characters")
    return value


def add_parsers(commands: Any) -> None:
    """Add the `org` and `key` subcommands to the `rased` parser."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--target", default=DEFAULT_TARGET, help=f"admin service host:port ({DEFAULT_TARGET})"
    )
    common.add_argument("--token", help=f"operator token (default: ${TOKEN_ENV})")
    common.add_argument("--timeout", type=float, default=10.0, help="seconds to wait (10)")
    common.add_argument("--json", action="store_true", help="machine-readable output")

    org = commands.add_parser("org", help="organizations (operator)")
    org_actions = org.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = org_actions.add_parser(
        "create", parents=[common], help="create an organization and its first keys"
    )
    create.add_argument("name", help="display name")
    create.add_argument("--retention-days", type=int, default=0, help="days kept (default 90)")
    org_actions.add_parser("list", parents=[common], help="list organizations")

    key = commands.add_parser("key", help="API keys of an organization")
    key_actions = key.add_subparsers(dest="action", required=True, metavar="ACTION")
    key_create = key_actions.add_parser("create", parents=[common], help="create an API key")
    key_create.add_argument("organization_id", metavar="ORG_ID")
    key_create.add_argument("--kind", choices=sorted(_KINDS), required=True)
    key_create.add_argument(
        "--origin", action="append", default=[], help="allowed origin (publishable; repeatable)"
    )
    key_create.add_argument("--label", default="", help="free-text label")
    key_list = key_actions.add_parser("list", parents=[common], help="list API keys (no secrets)")
    key_list.add_argument("organization_id", metavar="ORG_ID")
    key_list.add_argument("--all", action="store_true", help="include revoked and expired keys")
    revoke = key_actions.add_parser("revoke", parents=[common], help="revoke an API key")
    revoke.add_argument("organization_id", metavar="ORG_ID")
    revoke.add_argument("key_id", metavar="KEY_ID")

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


def run(options: argparse.Namespace) -> int:
    """Run one `org`, `key` or `erasure` action; return the exit status."""
    token = options.token or os.environ.get(TOKEN_ENV, "")
    if not token:
        print(f"error: no operator token: set ${TOKEN_ENV} or pass --token", file=sys.stderr)
        return 2
    handler = _HANDLERS[(options.command, options.action)]
    metadata = (("authorization", f"Bearer {token}"),)
    try:
        with grpc.insecure_channel(options.target) as channel:
            stub = admin_pb2_grpc.AdminServiceStub(channel)
            return handler(
                stub,
                options,
                lambda call, request: call(request, metadata=metadata, timeout=options.timeout),
            )
    except grpc.RpcError as error:
        print(_explain(error, options.target), file=sys.stderr)
        return 1


Invoke = Callable[[Any, message.Message], Any]


def _explain(error: grpc.RpcError, target: str) -> str:
    code = error.code() if isinstance(error, grpc.Call) else grpc.StatusCode.UNKNOWN
    details = error.details() if isinstance(error, grpc.Call) else ""
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        return f"error: cannot reach the admin service at {target} ({code.name})"
    if code == grpc.StatusCode.UNAUTHENTICATED:
        return f"error: the admin service refused the credential ({details}); check ${TOKEN_ENV}"
    if code == grpc.StatusCode.PERMISSION_DENIED:
        return f"error: not allowed: {details}"
    return f"error: {code.name}: {details}"


def _as_dict(msg: message.Message) -> dict[str, Any]:
    return json_format.MessageToDict(msg, preserving_proto_field_name=True)


def _print_json(value: object) -> None:
    print(json.dumps(value, indent=2, sort_keys=True))


def _org_create(
    stub: admin_pb2_grpc.AdminServiceStub, options: argparse.Namespace, invoke: Invoke
) -> int:
    reply: admin_pb2.CreateOrganizationResponse = invoke(
        stub.CreateOrganization,
        admin_pb2.CreateOrganizationRequest(
            name=options.name, retention_days=options.retention_days
        ),
    )
    org = reply.organization
    if options.json:
        _print_json(
            {
                "organization_id": org.organization_id,
                "name": org.name,
                "retention_days": org.retention_days,
                "publishable_key": reply.publishable_key.secret,
                "publishable_key_id": reply.publishable_key.key.key_id,
                "secret_key": reply.secret_key.secret,
                "secret_key_id": reply.secret_key.key.key_id,
            }
        )
        return 0
    print(f"organization {org.organization_id} ({org.name}, {org.retention_days} days)")
    print(f"publishable key {reply.publishable_key.key.key_id}: {reply.publishable_key.secret}")
    print(f"secret key      {reply.secret_key.key.key_id}: {reply.secret_key.secret}")
    print("The keys are shown once: store them now.")
    return 0


def _org_list(
    stub: admin_pb2_grpc.AdminServiceStub, options: argparse.Namespace, invoke: Invoke
) -> int:
    organizations: list[admin_pb2.Organization] = []
    token = ""
    while True:
        reply: admin_pb2.ListOrganizationsResponse = invoke(
            stub.ListOrganizations,
            admin_pb2.ListOrganizationsRequest(page_size=500, page_token=token),
        )
        organizations += reply.organizations
        token = reply.next_page_token
        if not token:
            break
    if options.json:
        _print_json([_as_dict(o) for o in organizations])
        return 0
    for o in organizations:
        print(f"{o.organization_id}  {o.retention_days:>4} days  {o.name}")
    return 0


def _key_create(
    stub: admin_pb2_grpc.AdminServiceStub, options: argparse.Namespace, invoke: Invoke
) -> int:
    reply: admin_pb2.CreateApiKeyResponse = invoke(
        stub.CreateApiKey,
        admin_pb2.CreateApiKeyRequest(
            organization_id=options.organization_id,
            kind=_KINDS[options.kind],
            allowed_origins=options.origin,
            label=options.label,
        ),
    )
    if options.json:
        _print_json({"key": _as_dict(reply.api_key.key), "secret": reply.api_key.secret})
        return 0
    print(f"{options.kind} key {reply.api_key.key.key_id}: {reply.api_key.secret}")
    print("The key is shown once: store it now.")
    return 0


def _key_list(
    stub: admin_pb2_grpc.AdminServiceStub, options: argparse.Namespace, invoke: Invoke
) -> int:
    reply: admin_pb2.ListApiKeysResponse = invoke(
        stub.ListApiKeys,
        admin_pb2.ListApiKeysRequest(
            organization_id=options.organization_id, include_inactive=options.all
        ),
    )
    if options.json:
        _print_json([_as_dict(k) for k in reply.api_keys])
        return 0
    for k in reply.api_keys:
        kind = admin_pb2.ApiKeyKind.Name(k.kind).removeprefix("API_KEY_KIND_").lower()
        state = "revoked" if k.HasField("revoke_time") else "active"
        if k.HasField("expire_time"):
            state += f", expires {k.expire_time.ToDatetime().isoformat()}Z"
        print(f"{k.key_id}  {kind:<11}  {k.prefix}...  {state}  {k.label}")
    return 0


def _key_revoke(
    stub: admin_pb2_grpc.AdminServiceStub, options: argparse.Namespace, invoke: Invoke
) -> int:
    reply: admin_pb2.RevokeApiKeyResponse = invoke(
        stub.RevokeApiKey,
        admin_pb2.RevokeApiKeyRequest(
            organization_id=options.organization_id, key_id=options.key_id
        ),
    )
    if options.json:
        _print_json(_as_dict(reply.api_key))
        return 0
    print(f"revoked key {reply.api_key.key_id}")
    return 0


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


def _print_job(job: admin_pb2.ErasureJob, as_json: bool) -> None:
    if as_json:
        _print_json(erasure_job_dict(job))
        return
    shown = erasure_job_dict(job)
    print(f"erasure job {job.job_id}: {shown['status']} ({shown['subject_kind']} erasure)")
    if job.error:
        print(f"last error: {job.error} (retried)")
    for store, count in shown["erased_counts"].items():
        print(f"  {store:<36} {count}")


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
    _print_job(job, options.json)
    return 0


def _erasure_status(
    stub: admin_pb2_grpc.AdminServiceStub, options: argparse.Namespace, invoke: Invoke
) -> int:
    reply: admin_pb2.GetErasureJobResponse = invoke(
        stub.GetErasureJob,
        admin_pb2.GetErasureJobRequest(
            organization_id=options.organization_id, job_id=options.job_id
        ),
    )
    _print_job(reply.job, options.json)
    return 0


_Handler = Callable[[admin_pb2_grpc.AdminServiceStub, argparse.Namespace, Invoke], int]
_HANDLERS: dict[tuple[str, str], _Handler] = {
    ("org", "create"): _org_create,
    ("org", "list"): _org_list,
    ("key", "create"): _key_create,
    ("key", "list"): _key_list,
    ("key", "revoke"): _key_revoke,
    ("erasure", "request"): _erasure_request,
    ("erasure", "status"): _erasure_status,
}
