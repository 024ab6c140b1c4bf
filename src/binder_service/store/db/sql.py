"""Statements as the store writes them (`:name` parameters) as the drivers take them (numbered ones).

`WHERE id = :id` becomes `WHERE id = ?1` (SQLite) or `WHERE id = $1` (asyncpg); a name used twice is
one parameter. A list or tuple is expanded where it stands, for `IN (:ids)`: `IN (?1, ?2, ?3)`, and an
empty one is `IN (NULL)`, which holds for no row. Quoted text ('…', "…") and PostgreSQL's `::type` casts
are left alone. Each form is translated once and cached.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

_TOKENS = re.compile(r"""'(?:[^']|'')*'|"(?:[^"]|"")*"|(?<![:\w]):([A-Za-z_]\w*)""")

Slot = tuple[str, int]  # a parameter's name, and its item's index in a list (-1: the value itself)


@lru_cache(maxsize=1024)
def _compile(sql: str, mark: str, sizes: tuple[tuple[str, int], ...]) -> tuple[str, tuple[Slot, ...]]:
    lengths = dict(sizes)
    numbers: dict[Slot, int] = {}
    slots: list[Slot] = []

    def number(slot: Slot) -> str:
        if slot not in numbers:
            slots.append(slot)
            numbers[slot] = len(slots)
        return f"{mark}{numbers[slot]}"

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name is None:  # quoted text
            return match.group(0)
        size = lengths.get(name)
        if size is None:
            return number((name, -1))
        if size == 0:
            return "NULL"
        return ", ".join(number((name, i)) for i in range(size))

    return _TOKENS.sub(replace, sql), tuple(slots)


def bind(sql: str, params: Mapping[str, Any], mark: str) -> tuple[str, list[Any]]:
    """The statement with numbered parameters, and their values in order."""
    sizes = tuple(sorted((k, len(v)) for k, v in params.items() if isinstance(v, list | tuple)))
    text, slots = _compile(sql, mark, sizes)
    return text, [params[name] if i < 0 else params[name][i] for name, i in slots]


def bind_many(sql: str, rows: Sequence[Mapping[str, Any]], mark: str) -> tuple[str, list[list[Any]]]:
    """`bind` for one statement run once per row (no list parameters)."""
    if not rows:
        return _compile(sql, mark, ())[0], []
    text, slots = _compile(sql, mark, ())
    return text, [[row[name] for name, _ in slots] for row in rows]
