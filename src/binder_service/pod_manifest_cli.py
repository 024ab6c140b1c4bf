"""`binder-service pod-manifest REPO --ref REF`: print the build pod the current settings would create (YAML),
without contacting a cluster (builds/kubernetes/manifest.py)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Mapping
from typing import TextIO

HEADER = """\
# The build pod binder-service would create for {repo} at {ref} with the current BINDER_SERVICE_* settings
# (engine {engine}). Not sent anywhere. A real build's pod differs only in its build-id and requester
# annotations{cache_note}.
"""


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "pod-manifest",
        help="print (YAML) the build pod the current settings would create for REPO at REF, without "
        "contacting a cluster; a commit id as REF needs no network either",
    )
    p.add_argument("repo", help="repository URL (or a provider's spec with --provider)")
    p.add_argument(
        "--ref",
        required=True,
        help="commit id (resolved without any network call), or a branch or tag (resolved with the host)",
    )
    p.add_argument("--provider", default=None, help="repository provider (default: detected)")


def run(args: argparse.Namespace, environ: Mapping[str, str], out: TextIO | None = None) -> int:
    """Print the pod; `environ` is the command's environment (where the Kubernetes client looks)."""
    from pydantic import ValidationError

    from .errors import BinderError
    from .settings import Settings, describe_invalid

    out = out or sys.stdout
    try:
        settings = Settings()
    except ValidationError as e:
        print(f"binder-service: {describe_invalid(e)}", file=sys.stderr)
        return 2
    try:
        import yaml

        from .builds.kubernetes.manifest import planned_pod
    except ImportError as e:
        print(
            f"binder-service pod-manifest: needs the kubernetes extra ({e.name} is missing)", file=sys.stderr
        )
        return 2
    if settings.executor != "kubernetes":
        print(
            "binder-service pod-manifest: note: BINDER_SERVICE_EXECUTOR is not kubernetes; this is the pod "
            "the Kubernetes executor would create with these settings",
            file=sys.stderr,
        )
    try:
        pod = asyncio.run(planned_pod(settings, environ, args.repo, args.ref, args.provider))
    except BinderError as e:
        print(f"binder-service pod-manifest: {e.message} [{e.code}]", file=sys.stderr)
        return 1
    except ValueError as e:  # a malformed git credentials entry (without the secret)
        print(f"binder-service pod-manifest: invalid configuration: {e}", file=sys.stderr)
        return 2
    # The one part a real build looks up when it starts: the repository's latest image in the registry.
    cache_note = (
        ", and the --cache-from image when the registry has one of the repository"
        if settings.layer_cache
        else ""
    )
    out.write(HEADER.format(repo=args.repo, ref=args.ref, engine=settings.engine, cache_note=cache_note))
    out.write(yaml.safe_dump(pod, sort_keys=False, width=1000))
    return 0
