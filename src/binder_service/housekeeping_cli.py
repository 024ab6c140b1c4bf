"""`binder-service gc` and `binder-service prune-engine`: the registry's and the engine's housekeeping
as commands (a CronJob, the docker-api DaemonSet's sidecar, an operator by hand)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from .settings import Settings


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p_gc = sub.add_parser(
        "gc",
        help="delete images this service built that nobody requested within "
        "BINDER_SERVICE_REGISTRY_RETENTION",
    )
    p_gc.add_argument("--dry-run", action="store_true", help="list what would be deleted; delete nothing")
    p_prune = sub.add_parser(
        "prune-engine",
        help="keep the Docker engine at DOCKER_HOST under BINDER_SERVICE_ENGINE_DISK_BUDGET",
    )
    p_prune.add_argument("--once", action="store_true", help="one pass, then exit (default: every interval)")


def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    # Imported here: `binder-service build` needs none of it.
    from .errors import BinderError
    from .settings import Settings

    try:
        overrides: dict[str, Any] = {}  # everything from BINDER_SERVICE_* variables
        settings = Settings(**overrides)
    except ValueError as e:
        print(f"binder-service: invalid configuration:\n{e}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    out = out or sys.stdout
    try:
        if args.command == "gc":
            return asyncio.run(gc(settings, dry_run=args.dry_run, out=out))
        return asyncio.run(prune_engine(settings, once=args.once, out=out))
    except BinderError as e:
        print(f"binder-service {args.command}: {e.message} [{e.code}]", file=sys.stderr)
        return 1
    except RuntimeError as e:  # the build store could not be opened (StoreOpenError)
        print(f"binder-service {args.command}: {e}", file=sys.stderr)
        return 1


async def gc(settings: Settings, *, dry_run: bool, out: TextIO) -> int:
    from .housekeeping import collect_registry

    if not settings.registry_url or not settings.registry_retention:
        print(
            "binder-service gc: needs BINDER_SERVICE_REGISTRY_URL and BINDER_SERVICE_REGISTRY_RETENTION",
            file=sys.stderr,
        )
        return 2
    report = await collect_registry(settings, dry_run=dry_run)
    verb = "would delete" if dry_run else "deleted"
    for image in report.deleted:
        out.write(f"{verb} {image}\n")
    summary = "would be deleted" if dry_run else "deleted"
    for image in report.kept_shared:
        out.write(f"kept {image} (another tag points at the same manifest)\n")
    for error in report.errors:
        out.write(f"error {error}\n")
    out.write(f"{len(report.deleted)} image(s) {summary}, {len(report.already_gone)} already gone\n")
    if report.cache_deleted:
        out.write(f"{len(report.cache_deleted)} layer-cache tag(s) (buildah) {summary}\n")
    return 1 if report.errors else 0


async def prune_engine(settings: Settings, *, once: bool, out: TextIO) -> int:
    from .images.engine.disk import EngineDisk
    from .units import format_size

    budget = settings.amounts.engine_disk_budget_bytes
    if budget is None:
        print("binder-service prune-engine: needs BINDER_SERVICE_ENGINE_DISK_BUDGET", file=sys.stderr)
        return 2
    disk = EngineDisk(
        settings.docker_host,
        budget=budget,
        pinned=settings.engine_pinned_images,
        timeout=max(settings.docker_timeout, 30.0),
    )
    try:
        if not once:
            await disk.run_forever(settings.engine_prune_interval)
        report = await disk.enforce()
    finally:
        await disk.aclose()
    out.write(
        f"engine: {format_size(report.usage_before)} -> {format_size(report.usage_after)} "
        f"(budget {format_size(report.budget)}), {len(report.removed)} removed\n"
    )
    return 0 if report.under_budget else 1
