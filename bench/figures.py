"""The last recorded figures (bench/recorded.json), and each new figure printed beside its recorded value.

Figures slipped for a whole round once without anyone seeing it (issue 16). So every benchmark hands its
headline figures to `report`, which prints each one beside the value last recorded in the repository and
the change in %, marking a change for the worse past `NOTICE` (e.g. a figure that costs 25% more says
`25.0% worse`). `--record` (every benchmark's flag) writes the new values, with the date and the commit,
into recorded.json: commit that file with the change that moved the figures.

Nothing here measures; nothing here asserts on timings.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

RECORDED = Path(__file__).resolve().parent / "recorded.json"
NOTICE = 5.0  # % worse than recorded: marked, so a regression is seen when it lands


@dataclass(frozen=True)
class Figure:
    """One headline figure of a benchmark: `name` is unique within the benchmark."""

    name: str
    value: float
    unit: str
    better: Literal["lower", "higher"] = "lower"


@dataclass(frozen=True)
class Recorded:
    value: float
    unit: str
    date: str
    commit: str


def load(path: Path = RECORDED) -> dict[str, dict[str, Recorded]]:
    """{benchmark: {figure name: its recorded value}}; empty when nothing is recorded yet."""
    if not path.exists():
        return {}
    raw = json.loads(path.read_text())
    return {
        bench: {name: Recorded(**entry) for name, entry in figures.items()} for bench, figures in raw.items()
    }


def change(value: float, recorded: float) -> float | None:
    """`value` against `recorded`, in % of `recorded` (None when there is nothing to compare with)."""
    if recorded == 0 or math.isnan(value) or math.isnan(recorded):
        return None
    return (value - recorded) / abs(recorded) * 100.0


def verdict(figure: Figure, pct: float | None) -> str:
    """`+25.0% (worse)`, `-10.0% (better)`, `+1.2%` (within NOTICE), or `new` when nothing was recorded."""
    if pct is None:
        return "new"
    worse = pct > 0 if figure.better == "lower" else pct < 0
    text = f"{pct:+.1f}%"
    if abs(pct) < NOTICE:
        return text
    return f"{text} ({'WORSE' if worse else 'better'})"


def _number(value: float) -> str:
    if math.isnan(value):
        return "n/a"
    return f"{value:.3g}" if abs(value) < 10 else f"{value:.1f}"


def rows(figures: list[Figure], recorded: dict[str, Recorded]) -> list[list[str]]:
    """One row per figure: name, value now, recorded value (and when), change."""
    out = []
    for f in figures:
        old = recorded.get(f.name)
        if old is not None and old.unit != f.unit:
            old = None  # a unit changed: not comparable
        pct = change(f.value, old.value) if old is not None else None
        was = f"{_number(old.value)} ({old.date}, {old.commit})" if old is not None else "-"
        out.append([f.name, f"{_number(f.value)} {f.unit}", was, verdict(f, pct)])
    return out


def table(figures: list[Figure], recorded: dict[str, Recorded]) -> str:
    headers = ["figure", "now", "recorded", "change"]
    body = rows(figures, recorded)
    widths = [max(len(h), *(len(r[i]) for r in body)) if body else len(h) for i, h in enumerate(headers)]
    fmt = " | ".join(f"{{:{'<' if i == 0 else '>'}{w}}}" for i, w in enumerate(widths))
    lines = [fmt.format(*headers), "-+-".join("-" * w for w in widths)]
    lines += [fmt.format(*r) for r in body]
    return "\n".join(lines)


def updated(
    all_recorded: dict[str, dict[str, Recorded]], bench: str, figures: list[Figure], *, date: str, commit: str
) -> dict[str, dict[str, Recorded]]:
    """The recorded figures with `bench`'s new values in (other benchmarks and figures kept)."""
    merged = {b: dict(f) for b, f in all_recorded.items()}
    mine = merged.setdefault(bench, {})
    for f in figures:
        if not math.isnan(f.value):
            mine[f.name] = Recorded(round(f.value, 4), f.unit, date, commit)
    return merged


def save(all_recorded: dict[str, dict[str, Recorded]], path: Path = RECORDED) -> None:
    data = {
        bench: {name: vars(r) for name, r in sorted(figures.items())}
        for bench, figures in sorted(all_recorded.items())
    }
    path.write_text(json.dumps(data, indent=1) + "\n")


def current_commit() -> str:
    """The measured code's commit (`+dirty` when src/ has uncommitted changes). When the service runs a
    copy of the package (`--service-env PYTHONPATH=...`), BENCH_SRC_COMMIT names that copy's commit."""
    if os.environ.get("BENCH_SRC_COMMIT"):
        return os.environ["BENCH_SRC_COMMIT"]

    def git(*args: str) -> str:
        root = Path(__file__).resolve().parent.parent
        proc = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, check=False)
        return proc.stdout.strip()

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    return commit + ("+dirty" if git("status", "--porcelain", "--", "src") else "")


def report(bench: str, figures: list[Figure], *, record: bool, path: Path = RECORDED) -> str:
    """The table of `bench`'s figures beside the recorded ones; with `record`, also write them."""
    recorded = load(path)
    text = f"== {bench}: figures against the last recorded (bench/recorded.json) ==\n"
    text += table(figures, recorded.get(bench, {}))
    if record:
        stamp = datetime.now(UTC).strftime("%Y-%m-%d")
        save(updated(recorded, bench, figures, date=stamp, commit=current_commit()), path)
        text += f"\nrecorded in {path.name}"
    return text
