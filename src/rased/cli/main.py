"""The `rased` command line: operator commands for a Rased deployment and its local stack."""

from __future__ import annotations

import argparse
import asyncio
import sys
from importlib import metadata

from pydantic import ValidationError

from rased.cli import admin_command, health_command, models_command, stack_command
from rased.devstack.settings import StackSettings

# Addresses a server binds to that a client cannot connect to as they are.
_WILDCARDS = frozenset({"", "0.0.0.0", "::"})


def stack_target(settings: StackSettings, port: int) -> str:
    """Return the host:port a client reaches one of the local stack's servers at."""
    host = "127.0.0.1" if settings.host in _WILDCARDS else settings.host
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"  # an IPv6 address
    return f"{host}:{port}"


def build_parser(settings: StackSettings | None = None) -> argparse.ArgumentParser:
    """Return the parser of every `rased` subcommand.

    Args:
        settings: the local stack's settings, where the `--target` defaults come from;
            read from the RASED_STACK_* variables when not given.
    """
    settings = StackSettings() if settings is None else settings
    parser = argparse.ArgumentParser(
        prog="rased", description="Operate Rased, the real-time fraud-detection backend."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    commands.add_parser("version", help="print the installed version")

    health = commands.add_parser("health", help="ask a gRPC server for its health (grpc.health.v1)")
    health.add_argument("target", help="host:port of the server, e.g. 127.0.0.1:50051")
    health.add_argument("--service", default="", help="fully qualified service name; empty: all")
    health.add_argument("--timeout", type=float, default=5.0, help="seconds to wait (default 5)")

    stack = commands.add_parser(
        "stack", help="the local stack of real servers (make up/down/status)"
    )
    actions = stack.add_subparsers(dest="action", required=True, metavar="ACTION")
    up = actions.add_parser("up", help="install, start and migrate every server, then the services")
    up.add_argument(
        "--servers-only", action="store_true", help="start the servers, not the Rased services"
    )
    actions.add_parser("down", help="stop everything the stack started, by pid")
    status = actions.add_parser("status", help="show each server's health")
    status.add_argument("--json", action="store_true", help="machine-readable output")

    admin_command.add_parsers(commands, stack_target(settings, settings.admin_port))
    models_command.add_parsers(commands, stack_target(settings, settings.triton_grpc_port))
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one `rased` command; return its exit status."""
    try:
        settings = StackSettings()
    except ValidationError as error:
        problems = "; ".join(
            f"RASED_STACK_{'_'.join(map(str, e['loc'])).upper()}: {e['msg']}"
            for e in error.errors()
        )
        print(f"error: bad stack settings: {problems}", file=sys.stderr)
        return 2
    options = build_parser(settings).parse_args(argv)
    try:
        return _run(options, settings)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _run(options: argparse.Namespace, settings: StackSettings) -> int:
    if options.command == "version":
        print(metadata.version("rased"))
        return 0
    if options.command == "health":
        return asyncio.run(health_command.check(options.target, options.service, options.timeout))
    if options.command in admin_command.COMMANDS:
        return admin_command.run(options)
    if options.command == "models":
        return models_command.run(options)
    return stack_command.run(options, settings)


if __name__ == "__main__":
    sys.exit(main())
