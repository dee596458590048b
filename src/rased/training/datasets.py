"""Readers of the public data sets' file formats (DELBOT-Mouse, Balabit), plain or gzip."""

from __future__ import annotations

import csv
import gzip
import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np

from rased.features.adapters import from_balabit, from_delbot
from rased.features.trajectory import PointerAction, Trajectory

DELBOT_COLUMNS = ("label", "source", "session", "res_w", "res_h", "t", "event", "x", "y")
BALABIT_COLUMNS = ("record timestamp", "client timestamp", "button", "state", "x", "y")
DELBOT_LABELS = {"human": 0, "bot": 1}


class DatasetError(ValueError):
    """A data file is missing, unreadable or not in the expected format."""


@dataclass(frozen=True)
class LabelledSession:
    """One recorded session: its trajectory and, for DELBOT, whether a bot made it."""

    session: str
    source: str
    label: int
    trajectory: Trajectory


def open_text(path: Path) -> IO[str]:
    """Open a plain or gzip-compressed text file (by its magic number, not its name)."""
    if not path.is_file():
        raise DatasetError(f"{path}: no such file")
    with path.open("rb") as raw:
        magic = raw.read(2)
    if magic == b"\x1f\x8b":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", newline="")
    return path.open(encoding="utf-8", newline="")


def _check_header(path: Path, header: list[str] | None, expected: tuple[str, ...]) -> list[int]:
    """Return the index of every expected column, or raise naming the missing ones."""
    if header is None:
        raise DatasetError(f"{path}: empty file, expected the columns {', '.join(expected)}")
    names = [h.strip() for h in header]
    missing = [c for c in expected if c not in names]
    if missing:
        raise DatasetError(
            f"{path}: missing column(s) {', '.join(missing)}; expected {', '.join(expected)}"
        )
    return [names.index(c) for c in expected]


def read_delbot(path: Path) -> list[LabelledSession]:
    """Read a DELBOT-Mouse CSV (one row per event) into sessions, in order of appearance.

    Raises:
        DatasetError: the file is missing, a column is missing or a value is malformed.
    """
    rows: dict[tuple[str, str, str], list[list[str]]] = {}
    try:
        with open_text(path) as handle:
            reader = csv.reader(handle)
            idx = _check_header(path, next(reader, None), DELBOT_COLUMNS)
            for line, row in enumerate(reader, start=2):
                if not row:
                    continue
                try:
                    values = [row[i] for i in idx]
                except IndexError:
                    raise DatasetError(f"{path}:{line}: too few columns") from None
                rows.setdefault((values[0], values[1], values[2]), []).append(values)
    except (OSError, UnicodeDecodeError, EOFError, csv.Error) as exc:
        raise DatasetError(f"{path}: unreadable ({exc})") from None
    sessions = []
    for (label, source, session), events in rows.items():
        if label not in DELBOT_LABELS:
            raise DatasetError(f"{path}: session {session}: label {label!r} is not human or bot")
        try:
            trajectory = from_delbot(
                [float(v[5]) for v in events],
                [v[6] for v in events],
                [float(v[7]) for v in events],
                [float(v[8]) for v in events],
                float(events[0][3]),
                float(events[0][4]),
            )
        except ValueError as exc:
            raise DatasetError(f"{path}: session {session}: {exc}") from None
        sessions.append(
            LabelledSession(session, source, DELBOT_LABELS[label], _drop_export_click(trajectory))
        )
    return sessions


def _drop_export_click(trajectory: Trajectory) -> Trajectory:
    """Drop the extra Released events that end a DELBOT recording after the drawing's own.

    The recording page logs the click on its export button as one more Released event, at
    the button and without the movement to it: its delay measures the page (a person
    reaching for the button, a script clicking it at once), not how the pointer moved.
    """
    moving = np.flatnonzero(trajectory.action != PointerAction.UP)
    if not moving.size:
        return trajectory
    return trajectory.slice(0, min(int(moving[-1]) + 2, len(trajectory)))


def read_balabit_session(path: Path) -> Trajectory:
    """Read one Balabit session file (plain or gzip) into a trajectory."""
    try:
        with open_text(path) as handle:
            reader = csv.reader(handle)
            idx = _check_header(path, next(reader, None), BALABIT_COLUMNS)
            cols: list[list[str]] = [[] for _ in idx]
            for row in reader:
                if not row:
                    continue
                for col, i in zip(cols, idx, strict=True):
                    col.append(row[i])
        return from_balabit(
            [float(v) for v in cols[1]],
            cols[2],
            cols[3],
            [float(v) for v in cols[4]],
            [float(v) for v in cols[5]],
        )
    except DatasetError:
        raise
    except (OSError, UnicodeDecodeError, EOFError, csv.Error, ValueError, IndexError) as exc:
        raise DatasetError(f"{path}: unreadable Balabit session ({exc})") from None


def _session_name(path: Path) -> str:
    name = path.name
    for suffix in (".gz", ".csv"):
        name = name.removesuffix(suffix)
    return name


def iter_balabit_dir(root: Path) -> Iterator[tuple[str, str, Path]]:
    """Yield (user, session name, path) for every session under `root/<user>/`, sorted.

    Raises:
        DatasetError: `root` is not a folder or holds no user folder with sessions.
    """
    if not root.is_dir():
        raise DatasetError(f"{root}: no such folder")
    found = False
    for user_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        for path in sorted(user_dir.iterdir()):
            if path.is_file() and not path.name.startswith("."):
                found = True
                yield user_dir.name, _session_name(path), path
    if not found:
        raise DatasetError(f"{root}: no <user>/<session> files (Balabit layout)")


def read_balabit_labels(path: Path) -> dict[str, int]:
    """Read Balabit's `filename,is_illegal` labels into {session name: 0 or 1}."""
    labels: dict[str, int] = {}
    try:
        with open_text(path) as handle:
            reader = csv.reader(handle)
            idx = _check_header(path, next(reader, None), ("filename", "is_illegal"))
            for row in reader:
                if row:
                    labels[_session_name(Path(row[idx[0]].strip()))] = int(row[idx[1]])
    except (OSError, UnicodeDecodeError, csv.Error, ValueError, IndexError) as exc:
        raise DatasetError(f"{path}: unreadable labels ({exc})") from None
    return labels
