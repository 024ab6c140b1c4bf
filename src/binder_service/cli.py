"""`binder-service serve` runs the service; `binder-service build REPO` drives it, showing the build live."""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import logging
import os
import socket
import sys
from typing import Any, TextIO

from . import housekeeping_cli, pod_manifest_cli

SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"
# The service runs on glibc's allocator: after a burst of streams its memory goes back to the system
# (trimmed by api/release_memory.py), where pymalloc's arenas stay pinned by a few long-lived objects
# (bench/fanout.py: +19 MB after 1,000 subscribers, against +26 MB; CPU per event the same).
ALLOCATOR = "malloc"
# Marks the process that `_on_service_allocator` started (`-X` options reach no child, unlike variables).
ALLOCATOR_MARK = "binder-service-allocator"


def _on_service_allocator(command: list[str]) -> None:
    """Start this command again with `PYTHONMALLOC` set (it is read only when Python starts); an
    operator's own `PYTHONMALLOC` (e.g. `pymalloc`) is kept as it is."""
    if os.environ.get("PYTHONMALLOC"):
        return
    env = {**os.environ, "PYTHONMALLOC": ALLOCATOR}
    # The same program again, with the command line it was given (a list: no shell).
    argv = [sys.executable, "-X", ALLOCATOR_MARK, "-m", "binder_service.cli", *command]
    os.execve(sys.executable, argv, env)  # noqa: S606


def _children_on_their_own_allocator() -> None:
    """The allocator is the service's choice, not its children's: repo2docker, git and the rest start
    with the environment the operator gave (on glibc's malloc, repo2docker spent ~0.1 s more CPU on its
    imports alone). Python read the variable at start: this process keeps the allocator it runs on."""
    if ALLOCATOR_MARK in sys._xoptions:
        os.environ.pop("PYTHONMALLOC", None)


def serve(args: argparse.Namespace) -> int:
    """Run the service. Whatever can stop it is tried before anything changes (docs/state.md): the
    settings, the port (bound here), the ownership of the state directory and SQLite store, then the
    store itself; only then are running builds adopted and background work started (the app's lifespan)."""
    # Modules the service never uses, which libraries import when they can (issue 16, idle memory):
    # httpx's command line (click, rich, pygments where pytest or Sphinx brought them: ~5 MB) and
    # pydantic's v1 layer, which FastAPI imports only to check that no route uses a v1 model (~2 MB).
    # A None entry fails the import, as where they are not installed, and each library does without.
    _children_on_their_own_allocator()
    for unused in ("httpx._main", "pydantic.v1"):
        sys.modules.setdefault(unused, None)  # type: ignore[arg-type]  # None: "cannot be imported"
    import uvicorn
    from pydantic import ValidationError

    from .app import create_app
    from .server import server_config
    from .settings import Settings, describe_invalid, unknown_variables

    for warning in unknown_variables(os.environ):  # first: a misspelling may be why Settings refuse
        print(f"binder-service: warning: {warning}", file=sys.stderr)
    try:
        overrides = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
        settings = Settings(**overrides)
    except ValidationError as e:
        print(f"binder-service: {describe_invalid(e)}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    # No format here shows a record's thread, process or caller, and working them out costs every request
    # (the access log's record) ~25k instructions: the logging HOWTO's "Optimization" switches.
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    logging._srcfile = None  # documented there: no caller lookup (findCaller walks the stack)
    from .store import StoreOpenError, check_store
    from .store.ownership import claim, lock_files

    try:
        sock = _listen(settings.host, settings.port)
    except OSError as e:
        print(
            f"binder-service: cannot listen on {settings.host}:{settings.port}: {e.strerror}", file=sys.stderr
        )
        return 2
    with sock:
        address = f"http://{_shown_host(settings.host)}:{sock.getsockname()[1]}{settings.base_url}"
        try:
            # Held for the life of this process (the kernel drops it when the process dies).
            claim(lock_files(settings.resolved_state_dir(), settings.resolved_db_url()), address=address)
            # Here, not in the lifespan: a corrupt or locked store is one clear line, not a traceback.
            asyncio.run(check_store(settings.resolved_db_url(), op_timeout=settings.db_timeout))
        except StoreOpenError as e:
            print(f"binder-service: cannot open the build store: {e}", file=sys.stderr)
            return 2
        try:
            # this process's environment: what repo2docker, git and the Kubernetes client are given
            app = create_app(settings, environ=os.environ)
        except ValueError as e:
            print(f"binder-service: invalid configuration: {e}", file=sys.stderr)
            return 2
        config = server_config(
            app,
            host=settings.host,
            port=settings.port,
            send_timeout=settings.send_timeout,
            shutdown_grace=settings.shutdown_grace,
        )
        server = uvicorn.Server(config)
        # What the imports made lives as long as the process: out of the collector's sight, so the
        # collection before each heap trim (api/release_memory.py) looks only at what came later.
        gc.collect()
        gc.freeze()
        server.run(sockets=[sock])
        return 0 if server.started else 3  # as uvicorn.run: the lifespan failed


def _listen(host: str, port: int) -> socket.socket:
    """The service's listening socket, bound before anything else happens (a busy port changes nothing).
    Connections made while the service starts wait in the backlog. Not inherited by build processes."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)  # uvicorn's default backlog
    except OSError:
        sock.close()
        raise
    return sock


def _shown_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


class Progress:
    """Prints log lines as they come; on a terminal, a spinner with the phase while nothing is printed."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.tty = out.isatty()
        self.phase = "waiting"
        self.status = ""
        self._spin = itertools.cycle(SPINNER)
        self._shown = False

    def _clear(self) -> None:
        if self._shown:
            self.out.write("\r\x1b[2K")
            self._shown = False

    def event(self, event: dict[str, Any]) -> None:
        phase = event["phase"]
        message = str(event.get("message", ""))
        self._clear()
        if phase != self.phase:
            self.out.write(f"── {phase} ──\n")
            self.phase = phase
        if event.get("queue_position"):
            self.status = f"queued, position {event['queue_position']}"
        elif phase in ("fetching", "building", "pushing"):
            self.status = phase
        if message.strip():
            self.out.write(message if message.endswith("\n") else message + "\n")
        self.out.flush()

    def tick(self) -> None:
        if self.tty and self.phase not in ("ready", "failed"):
            self._clear()
            self.out.write(f"{next(self._spin)} {self.status or self.phase}")
            self._shown = True
            self.out.flush()


async def _build(args: argparse.Namespace, out: TextIO) -> int:
    from binder_service_client import BinderServiceError, BuildClient  # only this command needs it

    token = args.token or os.environ.get("BINDER_SERVICE_TOKEN")
    progress = Progress(out)

    async def spin() -> None:
        while True:
            await asyncio.sleep(0.1)
            progress.tick()

    spinner = asyncio.create_task(spin())
    final: dict[str, Any] = {}
    try:
        # The hub extension's client: the one event-stream client (httpx only) everybody shares.
        async with BuildClient(args.url, token=(lambda: token) if token else None) as client:
            build = await client.create_build(args.repo, args.ref, args.provider)
            out.write(f"build {build['id']}: {build['image_name']} ({build['status']})\n")
            async for event in client.events(build["id"]):
                progress.event(event)
                final = event
    except BinderServiceError as e:
        progress._clear()
        print(f"error: {e.message} [{e.code}]", file=sys.stderr)
        return 1
    finally:
        spinner.cancel()
    progress._clear()
    if final.get("phase") == "ready":
        out.write(f"ready: {final.get('image_name')}\n")
        return 0
    print(f"failed: {str(final.get('message', '')).strip()} [{final.get('code')}]", file=sys.stderr)
    return 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="binder-service", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p_serve = sub.add_parser("serve", help="run the service (configured by BINDER_SERVICE_* variables)")
    p_serve.add_argument("--host", help="interface to listen on (default 127.0.0.1)")
    p_serve.add_argument("--port", type=int, help="port to listen on (default 8585)")
    p_build = sub.add_parser("build", help="build REPO at REF with a running service, showing progress")
    p_build.add_argument("repo", help="repository URL")
    p_build.add_argument("--ref", default="HEAD", help="branch, tag or commit (default HEAD)")
    p_build.add_argument("--provider", default=None, help="repository provider (default: detected)")
    p_build.add_argument("--url", default="http://127.0.0.1:8585/", help="the service's URL")
    p_build.add_argument("--token", default=None, help="API token (or BINDER_SERVICE_TOKEN)")
    housekeeping_cli.add_parsers(sub)  # gc, prune-engine
    pod_manifest_cli.add_parser(sub)
    args = parser.parse_args(argv)
    if args.command == "serve":
        if argv is None:  # the process is ours (the console script), not a caller's
            _on_service_allocator(sys.argv[1:])
        return serve(args)
    if args.command in ("gc", "prune-engine"):
        return housekeeping_cli.run(args)
    if args.command == "pod-manifest":
        return pod_manifest_cli.run(args, os.environ)
    return asyncio.run(_build(args, sys.stdout))


if __name__ == "__main__":
    sys.exit(main())
