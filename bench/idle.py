"""Idle memory: the service's RSS right after it started, on a new build store and on a restart.

`binder-service serve` as an operator runs it (the console script, which re-executes itself with
PYTHONMALLOC=malloc; the default SQLite store in a state directory of its own), `--rounds` times each,
alternating: a new store (the first start: the schema is created by a migrating child process) and a
restart on the store the previous round left. RSS is read 1 s after `/health` first answered (the start
waits for it). Prints every round and the medians, beside bench/recorded.json. Target (issue 16): <= 70 MB.

    .venv/bin/python bench/idle.py [--rounds 5] [--service-env KEY=VALUE] [--record]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as c
import figures


def idle_rss(env: dict[str, str]) -> float:
    with c.Service(prefix=f"bench-idle-{c.run_id()}/", env=env) as service:
        time.sleep(1.0)
        return c.rss_mib(service.pid)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--service-env", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--record", action="store_true", help="write the figures to bench/recorded.json")
    args = p.parse_args()
    extra = dict(kv.split("=", 1) for kv in args.service_env)
    c.world_up()
    new, restart = [], []
    with tempfile.TemporaryDirectory(prefix="bench-idle-") as tmp:
        for i in range(args.rounds):
            state = Path(tmp) / f"state-{i}"  # a new store, then a restart on it
            new.append(idle_rss({**extra, "BINDER_SERVICE_STATE_DIR": str(state)}))
            restart.append(idle_rss({**extra, "BINDER_SERVICE_STATE_DIR": str(state)}))
            c.log(f"round {i + 1}: new store {new[-1]:.1f} MiB, restart {restart[-1]:.1f} MiB")
    print(
        c.describe_src() + (f"; service environment additions: {' '.join(args.service_env)}" if extra else "")
    )
    print(
        c.table(
            ["start", "median MiB", "min", "max", "rounds"],
            [
                [
                    name,
                    f"{c.median(v):.1f}",
                    f"{min(v):.1f}",
                    f"{max(v):.1f}",
                    " ".join(f"{x:.1f}" for x in v),
                ]
                for name, v in (("new store", new), ("restart", restart))
            ],
        )
    )
    figs = [
        figures.Figure("idle RSS, new store (median)", c.median(new), "MiB"),
        figures.Figure("idle RSS, restart (median)", c.median(restart), "MiB"),
    ]
    print()
    print(figures.report("idle", figs, record=args.record))
    return 0


if __name__ == "__main__":
    sys.exit(main())
