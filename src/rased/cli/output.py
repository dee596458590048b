"""How the `rased` AdminService commands print: JSON for scripts, lines of text for people.

With `--json` an action prints one JSON value (indented, sorted keys), otherwise its text
lines. A key's or signing secret's text is printed once, where the service returns it, with
`shown_once`'s reminder under it in text.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable
from typing import Any

from google.protobuf import json_format, message, timestamp_pb2


def as_dict(msg: message.Message) -> dict[str, Any]:
    """Return a message as the REST API shows it, with its field names and every plain field."""
    return json_format.MessageToDict(
        msg, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )


def print_json(value: object) -> None:
    """Print what scripts read: indented JSON with sorted keys."""
    print(json.dumps(value, indent=2, sort_keys=True))


def show(options: argparse.Namespace, record: object, lines: Iterable[str]) -> int:
    """Print `record` as JSON with `--json`, else the text `lines`; return 0, the exit status."""
    if options.json:
        print_json(record)
    else:
        for line in lines:
            print(line)
    return 0


def show_page(
    options: argparse.Namespace,
    name: str,
    items: list[Any],
    token: str,
    lines: Iterable[str],
) -> int:
    """Print a page as `{name: [...], "next_page_token": ...}`, or its lines and where more is."""
    show(options, {name: [as_dict(item) for item in items], "next_page_token": token}, lines)
    if token and not options.json:
        print(f"more: --page-token {token} (or --all)", file=sys.stderr)
    return 0


def shown_once(secret: str, *, plural: bool = False) -> str:
    """Return the line printed under a key's or secret's text: it is not shown again."""
    if plural:
        return f"The {secret} are shown once: store them now."
    return f"The {secret} is shown once: store it now."


def when(stamp: timestamp_pb2.Timestamp, unset: str = "-") -> str:
    """Return a timestamp as RFC 3339 in UTC, or `unset` when it is the zero timestamp."""
    return stamp.ToJsonString() if stamp.seconds or stamp.nanos else unset


def enum_word(name: str, prefix: str) -> str:
    """Return an enum value's name as a word: `DELIVERY_STATUS_DEAD_LETTERED` -> `dead-lettered`."""
    return name.removeprefix(prefix).lower().replace("_", "-")
