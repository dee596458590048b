"""The Lua scripts shipped in this package's `lua/` folder."""

from __future__ import annotations

from functools import cache
from importlib import resources


@cache
def lua_source(name: str) -> str:
    """Return the text of `lua/<name>` (read once per process)."""
    return (resources.files(__package__) / "lua" / name).read_text(encoding="utf-8")
