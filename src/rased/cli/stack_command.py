"""`rased stack up|down|status`: the local stack behind `make up`, `make down`, `make status`."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from dataclasses import asdict

from rased.devstack import orchestrator
from rased.devstack.base import StackError
from rased.devstack.services import load_services
from rased.devstack.settings import StackSettings


def run(options: argparse.Namespace, settings: StackSettings) -> int:
    """Run one stack action with the stack's settings; return the exit status."""
    progress = orchestrator.timed_progress()
    try:
        if options.action == "up":
            return _up(settings, progress, servers_only=options.servers_only)
        if options.action == "down":
            for service in reversed(load_services(settings)):
                service.stop(progress)
            orchestrator.down(settings, progress)
            return 0
        return _status(settings, as_json=options.json)
    except StackError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


def _up(settings: StackSettings, progress: orchestrator.Progress, servers_only: bool) -> int:
    started = time.monotonic()
    progress(f"state folder: {settings.state_dir}")
    servers = asyncio.run(orchestrator.up(settings, progress))
    services = [] if servers_only else load_services(settings)
    if servers_only:
        progress("servers ready; Rased services not started (--servers-only)")
    elif not services:
        progress(
            "no Rased service exists yet to start: ingestion, persistence, scoring, "
            "notification, results and admin arrive with their issues"
        )
    else:
        asyncio.run(orchestrator.start_services(services, progress))
    print(f"\nRased local stack is up ({time.monotonic() - started:.0f} s):")
    for server in servers:
        ports = ", ".join(
            f"{name.removesuffix('_port')} {port}" for name, port in server.ports.items()
        )
        print(f"  {server.name:<11} {settings.host}  ({ports})  log: {server.log_file}")
    for service in services:
        where = f"{service.endpoint()}  ({service.protocol})"
        print(f"  {service.name:<11} {where}  log: {service.log_file}")
    if any(service.name == "admin" for service in services):
        secrets_file = settings.state_dir / "dev-secrets.json"
        print(
            "Admin: export RASED_OPERATOR_TOKEN=\"$(python3 -c 'import json,sys; "
            'print(json.load(open(sys.argv[1]))["operator_token"])\' '
            f'{secrets_file})" && rased org create NAME --json'
        )
    print("Stop it with `make down`; check it with `make status`.")
    return 0


def _status(settings: StackSettings, as_json: bool) -> int:
    report = asyncio.run(orchestrator.status(settings))
    if as_json:
        print(json.dumps([asdict(s) for s in report], indent=2))
    else:
        for s in report:
            state = "healthy" if s.healthy else "DOWN"
            pid = f"pid {s.pid}" if s.pid else "not started by the stack"
            print(f"  {s.name:<12} {state:<8} {s.endpoint:<16} {pid:<26} {s.detail}")
    return 0 if all(s.healthy for s in report) else 1
