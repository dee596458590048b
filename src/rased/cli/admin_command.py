"""`rased org|key|webhook|delivery|encryption-key|audit|erasure ...`: AdminService, over gRPC.

Each noun lives in its own module; what they share (options, credential, errors, output)
is in `admin_client` and `output`. `--json` prints what scripts read; a key's or signing
secret's text is printed once, where the service returns it, and never again.
"""

from __future__ import annotations

import argparse
from typing import Any

from rased.cli import (
    audit_command,
    delivery_command,
    encryption_key_command,
    erasure_command,
    key_command,
    org_command,
    webhook_command,
)
from rased.cli.admin_client import Noun, common_options
from rased.cli.admin_client import run as run_action

NOUNS: dict[str, Noun] = {
    noun.name: noun
    for noun in (
        org_command.NOUN,
        key_command.NOUN,
        webhook_command.NOUN,
        delivery_command.NOUN,
        encryption_key_command.NOUN,
        audit_command.NOUN,
        erasure_command.NOUN,
    )
}
# The `rased` subcommands this module runs.
COMMANDS = frozenset(NOUNS)


def add_parsers(commands: Any, target: str) -> None:
    """Add every AdminService noun's subcommands, `--target` defaulting to `target`."""
    common = common_options(target)
    for noun in NOUNS.values():
        noun.add_parser(commands, common)


def run(options: argparse.Namespace) -> int:
    """Run one AdminService action; return the exit status."""
    noun = NOUNS[options.command]
    return run_action(options, noun.handlers[options.action], noun.checks.get(options.action))
