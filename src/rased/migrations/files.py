"""Versioned migration files (`NNNN_lower_case_name.<ext>`), shared by both runners."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path


class MigrationError(RuntimeError):
    """The migrations on disk and those recorded in the database do not agree."""


@dataclass(frozen=True)
class MigrationFile:
    """One migration file: its version, name and path."""

    version: str
    name: str
    path: Path


def versioned_files(folder: Path, extension: str) -> list[MigrationFile]:
    """List a folder's `NNNN_name.<extension>` files in version order; refuse odd names."""
    pattern = re.compile(rf"^(?P<version>\d{{4}})_(?P<name>[a-z0-9_]+)\.{extension}$")
    found: dict[str, MigrationFile] = {}
    for path in sorted(folder.glob(f"*.{extension}")):
        match = pattern.match(path.name)
        if match is None:
            # A misnamed file would otherwise be skipped silently and never applied.
            raise MigrationError(
                f"{path}: migration files are named NNNN_lower_case_name.{extension}"
            )
        version = match["version"]
        if version in found:
            raise MigrationError(f"{path} and {found[version].path} both have version {version}")
        found[version] = MigrationFile(version, match["name"], path)
    return [found[version] for version in sorted(found)]
