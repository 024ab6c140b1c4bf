"""bench/figures.py: each figure beside its recorded value, the change in %, and `--record`."""

from __future__ import annotations

import json
import math
from pathlib import Path

from bench.figures import Figure, Recorded, change, load, report, rows, updated, verdict


def test_change_is_in_percent_of_the_recorded_value() -> None:
    assert change(125.0, 100.0) == 25.0
    assert change(80.0, 100.0) == -20.0
    assert change(1.0, 0.0) is None  # nothing to compare with
    assert change(math.nan, 1.0) is None


def test_a_change_for_the_worse_says_so_in_both_directions() -> None:
    memory = Figure("idle RSS", 125.0, "MiB")  # lower is better
    throughput = Figure("req/s", 75.0, "req/s", better="higher")
    assert verdict(memory, 25.0) == "+25.0% (WORSE)"
    assert verdict(memory, -25.0) == "-25.0% (better)"
    assert verdict(throughput, -25.0) == "-25.0% (WORSE)"
    assert verdict(throughput, 25.0) == "+25.0% (better)"
    assert verdict(memory, 1.0) == "+1.0%"  # within noise: not marked
    assert verdict(memory, None) == "new"


def test_rows_show_value_recorded_and_change() -> None:
    recorded = {"idle RSS": Recorded(100.0, "MiB", "2026-12-01", "abc1234")}
    out = rows([Figure("idle RSS", 125.0, "MiB"), Figure("peak", 3.0, "MiB")], recorded)
    assert out[0] == ["idle RSS", "125.0 MiB", "100.0 (2026-12-01, abc1234)", "+25.0% (WORSE)"]
    assert out[1] == ["peak", "3 MiB", "-", "new"]


def test_a_figure_whose_unit_changed_is_not_compared() -> None:
    recorded = {"cpu": Recorded(1.0, "ms", "2026-12-01", "abc1234")}
    assert rows([Figure("cpu", 900.0, "µs")], recorded)[0][2:] == ["-", "new"]


def test_updated_replaces_only_this_benchmarks_figures() -> None:
    old = {
        "fanout": {"after": Recorded(20.0, "MiB", "d0", "c0")},
        "idle": {"rss": Recorded(100.0, "MiB", "d0", "c0"), "kept": Recorded(1.0, "MiB", "d0", "c0")},
    }
    new = updated(
        old, "idle", [Figure("rss", 70.0, "MiB"), Figure("skipped", math.nan, "MiB")], date="d1", commit="c1"
    )
    assert new["fanout"] == old["fanout"]
    assert new["idle"]["rss"] == Recorded(70.0, "MiB", "d1", "c1")
    assert new["idle"]["kept"] == old["idle"]["kept"]
    assert "skipped" not in new["idle"]  # a figure that was not measured keeps nothing
    assert old["idle"]["rss"].value == 100.0  # the input is not changed


def test_report_prints_and_records(tmp_path: Path) -> None:
    path = tmp_path / "recorded.json"
    first = report("idle", [Figure("rss", 100.0, "MiB")], record=True, path=path)
    assert "new" in first
    assert load(path)["idle"]["rss"].value == 100.0
    second = report("idle", [Figure("rss", 125.0, "MiB")], record=False, path=path)
    assert "+25.0% (WORSE)" in second
    assert json.loads(path.read_text())["idle"]["rss"]["value"] == 100.0  # not recorded without the flag
