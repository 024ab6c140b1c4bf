"""A fake of the Kubernetes core/v1 pods API at the HTTP level, for the real kubernetes-asyncio client.

It serves, on loopback, with Kubernetes' JSON shapes and semantics:
- POST   /api/v1/namespaces/{ns}/pods               201 Pod; 409 Status AlreadyExists
- GET    /api/v1/namespaces/{ns}/pods               PodList (labelSelector, fieldSelector, limit)
- GET    /api/v1/namespaces/{ns}/pods?watch=true    newline-delimited {"type","object"} events from
         resourceVersion (or ADDED for what exists), ending after timeoutSeconds; a resourceVersion older
         than the last compaction gets an ERROR event with Status 410 Expired (as the apiserver does)
- GET    /api/v1/namespaces/{ns}/pods/{name}        Pod; 404 Status NotFound
- DELETE /api/v1/namespaces/{ns}/pods/{name}        200 Pod, DELETED event; 404 Status NotFound
- GET    /api/v1/namespaces/{ns}/pods/{name}/log    text; 400 while the container waits to start;
         follow=true streams new lines until the container ends
Every object it is sent is checked against Kubernetes' OpenAPI schemas, strictly
(tests/support/kube_schemas.py): a field the API server would reject or drop is a 422 Invalid here, recorded
in `rejected`. Every request is recorded. Tests script the pod's life (schedule, start, log lines, succeed,
fail with Kubernetes' reasons) from any thread; or `kubelet` runs each new pod's container as a local process
(its args and env as sent; a hostPath socket volume becomes that path in DOCKER_HOST).

The server runs its own event loop in a thread, so sync tests and a service on another loop can use it.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import os
import signal
import threading
import time
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web

from tests.support.kube_schemas import schema_errors
from tests.support.waiting import wait_until

T = TypeVar("T")
Pod = dict[str, Any]


def now_iso(at: datetime | None = None) -> str:
    return (at or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")


def r2d_line(phase: str, message: str) -> str:
    """One repo2docker `--json-logs` line."""
    return json.dumps({"phase": phase, "message": message})


def status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "details": {},
        "code": code,
    }


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, str]
    body: Any = None


@dataclass
class _Logs:
    lines: list[str] = field(default_factory=list)
    closed: bool = False  # the container ended: followers stop
    drops: int = 0  # bumped to end the current follow streams early (a dropped connection)


def _match_labels(pod: Pod, selector: str) -> bool:
    labels = pod["metadata"].get("labels") or {}
    for term in filter(None, (t.strip() for t in selector.split(","))):
        if "!=" in term:
            k, v = term.split("!=", 1)
            if labels.get(k.strip()) == v.strip():
                return False
        elif "=" in term:
            k, v = term.replace("==", "=").split("=", 1)
            if labels.get(k.strip()) != v.strip():
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


def _match_fields(pod: Pod, selector: str) -> bool:
    values = {
        "metadata.name": pod["metadata"]["name"],
        "metadata.namespace": pod["metadata"]["namespace"],
        "status.phase": pod.get("status", {}).get("phase", ""),
        "spec.nodeName": pod.get("spec", {}).get("nodeName", ""),
    }
    for term in filter(None, (t.strip() for t in selector.split(","))):
        neg = "!=" in term
        k, v = term.replace("!=", "=").replace("==", "=").split("=", 1)
        if k not in values:
            raise ValueError(f'field label not supported: "{k}"')
        if (values[k] == v) == neg:
            return False
    return True


def write_kubeconfig(server: str, path: Path) -> Path:
    """A kubeconfig at `path` whose one context points at `server` (a FakeKube's `url`)."""
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "fake", "cluster": {"server": server}}],
                "users": [{"name": "u", "user": {"token": "fake-token"}}],
                "contexts": [{"name": "c", "context": {"cluster": "fake", "user": "u"}}],
                "current-context": "c",
            }
        )
    )
    return path


class FakeKube:
    """The fake API server. `with FakeKube() as kube:`; `kube.url` for the client's host."""

    def __init__(self, *, kubelet: Kubelet | None = None) -> None:
        self.requests: list[Seen] = []
        self.rejected: list[str] = []  # why each object that failed the schemas was refused
        self.kubelet = kubelet
        self.hang: set[str] = set()  # request kinds (create, get, list, watch, delete, log) that never answer
        self.watch_cap: int | None = None  # end watches after at most this many seconds
        self.secrets: dict[tuple[str, str], dict[str, str]] = {}  # for the kubelet: (ns, name) -> data
        self._pods: dict[tuple[str, str], Pod] = {}
        self._logs: dict[tuple[str, str], _Logs] = {}
        self._events: list[tuple[int, str, Pod]] = []
        self._rv = 1000
        self._compacted = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True, name="fake-k8s")
        self._changed: asyncio.Event | None = None
        self._release: asyncio.Event | None = None
        self._runner: web.AppRunner | None = None
        self.url = ""

    # --- lifecycle ---

    def __enter__(self) -> FakeKube:
        self._thread.start()
        self.url = self._call(self._start())
        return self

    def __exit__(self, *exc: object) -> None:
        self._call(self._stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    async def _start(self) -> str:
        self._changed, self._release = asyncio.Event(), asyncio.Event()
        app = web.Application()
        base = "/api/v1/namespaces/{ns}/pods"
        app.router.add_post(base, self._create)
        app.router.add_get(base, self._list)
        app.router.add_get(base + "/{name}", self._get)
        app.router.add_delete(base + "/{name}", self._delete)
        app.router.add_get(base + "/{name}/log", self._log)
        self._runner = web.AppRunner(app, shutdown_timeout=1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        return f"http://127.0.0.1:{port}"

    async def _stop(self) -> None:
        assert self._release is not None
        assert self._runner is not None
        self._release.set()
        if self.kubelet is not None:
            await self.kubelet.stop_all()
        self._notify()
        await self._runner.cleanup()

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(30)

    # --- state (always changed on the fake's own loop) ---

    def _notify(self) -> None:
        assert self._changed is not None
        self._changed.set()
        self._changed = asyncio.Event()

    def _bump(self, kind: str, pod: Pod) -> None:
        self._rv += 1
        pod["metadata"]["resourceVersion"] = str(self._rv)
        self._events.append((self._rv, kind, copy.deepcopy(pod)))
        self._notify()

    async def _add(self, ns: str, body: Pod) -> Pod:
        pod = copy.deepcopy(body)
        meta = pod.setdefault("metadata", {})
        meta.update(namespace=ns, uid=str(uuid.uuid4()), creationTimestamp=now_iso())
        pod.setdefault("spec", {})
        pod["status"] = {"phase": "Pending", "qosClass": "BestEffort"}
        self._pods[(ns, meta["name"])] = pod
        self._logs[(ns, meta["name"])] = _Logs()
        self._bump("ADDED", pod)
        if self.kubelet is not None:
            self.kubelet.admit(self, ns, copy.deepcopy(pod))
        return pod

    async def _modify(self, ns: str, name: str, change: Callable[[Pod], None]) -> Pod:
        pod = self._pods[(ns, name)]
        change(pod)
        self._bump("MODIFIED", pod)
        containers = pod.get("status", {}).get("containerStatuses") or []
        if pod["status"].get("phase") in ("Succeeded", "Failed") or any(
            "terminated" in c.get("state", {}) for c in containers
        ):
            self._logs[(ns, name)].closed = True
        return copy.deepcopy(pod)

    async def _remove(self, ns: str, name: str) -> Pod | None:
        pod = self._pods.pop((ns, name), None)
        if pod is None:
            return None
        pod["metadata"]["deletionTimestamp"] = now_iso()
        self._logs[(ns, name)].closed = True
        self._bump("DELETED", pod)
        if self.kubelet is not None:
            await self.kubelet.stop(ns, name)
        return pod

    async def _append_log(self, ns: str, name: str, lines: tuple[str, ...]) -> None:
        self._logs[(ns, name)].lines.extend(lines)
        self._notify()

    # --- HTTP handlers ---

    async def _record(self, request: web.Request, kind: str) -> None:
        body = None
        if request.can_read_body:
            raw = await request.read()
            body = json.loads(raw) if raw.strip() else None
        self.requests.append(Seen(request.method, request.path, dict(request.query), body))
        if kind in self.hang:
            assert self._release is not None
            await self._release.wait()

    @staticmethod
    def _error(code: int, reason: str, message: str) -> web.Response:
        return web.json_response(status(code, reason, message), status=code)

    async def _create(self, request: web.Request) -> web.StreamResponse:
        await self._record(request, "create")
        ns = request.match_info["ns"]
        body = self.requests[-1].body
        name = (body.get("metadata") or {}).get("name")
        if not name:
            return self._error(
                422, "Invalid", "Pod is invalid: metadata.name: Required value: name is required"
            )
        errors = schema_errors(body)
        if errors:
            self.rejected.extend(errors)
            return self._error(422, "Invalid", f'Pod "{name}" is invalid: ' + "; ".join(errors))
        if (ns, name) in self._pods:
            return self._error(409, "AlreadyExists", f'pods "{name}" already exists')
        return web.json_response(await self._add(ns, body), status=201)

    async def _get(self, request: web.Request) -> web.StreamResponse:
        await self._record(request, "get")
        ns, name = request.match_info["ns"], request.match_info["name"]
        pod = self._pods.get((ns, name))
        if pod is None:
            return self._error(404, "NotFound", f'pods "{name}" not found')
        return web.json_response(pod)

    async def _delete(self, request: web.Request) -> web.StreamResponse:
        await self._record(request, "delete")
        ns, name = request.match_info["ns"], request.match_info["name"]
        pod = await self._remove(ns, name)
        if pod is None:
            return self._error(404, "NotFound", f'pods "{name}" not found')
        return web.json_response(pod)

    def _selected(self, ns: str, query: dict[str, str]) -> list[Pod]:
        return [
            p
            for (pns, _), p in sorted(self._pods.items())
            if pns == ns
            and _match_labels(p, query.get("labelSelector", ""))
            and _match_fields(p, query.get("fieldSelector", ""))
        ]

    async def _list(self, request: web.Request) -> web.StreamResponse:
        watching = request.query.get("watch") in ("true", "1", "True")
        await self._record(request, "watch" if watching else "list")
        ns, query = request.match_info["ns"], dict(request.query)
        try:
            pods = self._selected(ns, query)
        except ValueError as e:
            return self._error(400, "BadRequest", str(e))
        if watching:
            return await self._watch(request, ns, query)
        limit = int(query.get("limit") or 0)
        return web.json_response(
            {
                "kind": "PodList",
                "apiVersion": "v1",
                "metadata": {"resourceVersion": str(self._rv)},
                "items": pods[:limit] if limit else pods,
            }
        )

    async def _watch(self, request: web.Request, ns: str, query: dict[str, str]) -> web.StreamResponse:
        with contextlib.suppress(ConnectionError):  # the client went away: nothing more to send
            return await self._watch_stream(request, ns, query)
        return web.Response()

    async def _watch_stream(self, request: web.Request, ns: str, query: dict[str, str]) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)

        async def send(kind: str, obj: Pod) -> None:
            await resp.write(json.dumps({"type": kind, "object": obj}).encode() + b"\n")

        timeout = int(query.get("timeoutSeconds") or 1800)
        if self.watch_cap is not None:
            timeout = min(timeout, self.watch_cap)
        deadline = time.monotonic() + timeout
        version = query.get("resourceVersion") or ""
        if version and version != "0":
            if int(version) < self._compacted:
                message = f"too old resource version: {version} ({self._compacted})"
                await send("ERROR", status(410, "Expired", message))
                await resp.write_eof()
                return resp
            cursor = int(version)
        else:
            for pod in self._selected(ns, query):
                await send("ADDED", pod)
            cursor = self._rv
        assert self._release is not None
        while not self._release.is_set():
            changed = self._changed
            assert changed is not None
            for rv, kind, pod in [e for e in self._events if e[0] > cursor]:
                cursor = rv
                if pod["metadata"]["namespace"] == ns and (
                    _match_labels(pod, query.get("labelSelector", ""))
                    and _match_fields(pod, query.get("fieldSelector", ""))
                ):
                    await send(kind, pod)
            left = deadline - time.monotonic()
            if left <= 0:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), left)
        await resp.write_eof()
        return resp

    async def _log(self, request: web.Request) -> web.StreamResponse:
        await self._record(request, "log")
        ns, name = request.match_info["ns"], request.match_info["name"]
        pod = self._pods.get((ns, name))
        if pod is None:
            return self._error(404, "NotFound", f'pods "{name}" not found')
        containers = pod.get("status", {}).get("containerStatuses") or []
        container = request.query.get("container") or pod["spec"]["containers"][0]["name"]
        state: dict[str, Any] = next((c.get("state", {}) for c in containers if c["name"] == container), {})
        if "running" not in state and "terminated" not in state:
            why = state.get("waiting", {}).get("reason", "ContainerCreating")
            return self._error(
                400, "BadRequest", f'container "{container}" in pod "{name}" is waiting to start: {why}'
            )
        with contextlib.suppress(ConnectionError):
            return await self._log_stream(request, self._logs[(ns, name)])
        return web.Response()

    async def _log_stream(self, request: web.Request, logs: _Logs) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/plain"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        sent, drops = 0, logs.drops
        follow = request.query.get("follow") in ("true", "1", "True")
        assert self._release is not None
        while not self._release.is_set():
            changed = self._changed
            assert changed is not None
            for line in logs.lines[sent:]:
                await resp.write(line.encode() + b"\n")
            sent = len(logs.lines)
            if not follow or logs.closed or logs.drops != drops:
                break
            await changed.wait()
        await resp.write_eof()
        return resp

    # --- scripting, from any thread but the fake's ---

    def pod(self, name: str, ns: str = "default") -> Pod | None:
        async def read() -> Pod | None:
            return copy.deepcopy(self._pods.get((ns, name)))

        return self._call(read())

    def pods(self, ns: str = "default") -> list[str]:
        async def read() -> list[str]:
            return [n for (pns, n) in self._pods if pns == ns]

        return self._call(read())

    def wait_for_pod(self, name: str, ns: str = "default", timeout: float = 20) -> Pod:
        return wait_until(lambda: self.pod(name, ns), timeout=timeout, interval=0.02, what=f"pod {name}")

    def add_pod(self, manifest: Pod, ns: str = "default") -> Pod:
        return self._call(self._add(ns, manifest))

    def update(self, name: str, change: Callable[[Pod], None], ns: str = "default") -> Pod:
        return self._call(self._modify(ns, name, change))

    def delete(self, name: str, ns: str = "default") -> None:
        self._call(self._remove(ns, name))

    def log(self, name: str, *lines: str, ns: str = "default") -> None:
        self._call(self._append_log(ns, name, lines))

    def drop_logs(self, name: str, ns: str = "default") -> None:
        """End the pod's open log streams now, as a dropped connection would (the container goes on)."""

        async def run() -> None:
            self._logs[(ns, name)].drops += 1
            self._notify()

        self._call(run())

    def compact(self) -> None:
        """Forget history up to now (etcd compaction): older resourceVersions get 410 Expired."""

        async def run() -> None:
            self._compacted = self._rv
            self._events = [e for e in self._events if e[0] > self._rv]

        self._call(run())

    def kinds(self, *kinds: str) -> list[Seen]:
        """Recorded requests of these kinds: create, get, list, watch, delete, log."""
        out = []
        for r in self.requests:
            if r.method == "POST":
                kind = "create"
            elif r.method == "DELETE":
                kind = "delete"
            elif r.path.endswith("/log"):
                kind = "log"
            elif r.path.endswith("/pods"):
                kind = "watch" if r.query.get("watch") in ("true", "1", "True") else "list"
            else:
                kind = "get"
            if kind in kinds:
                out.append(r)
        return out

    # The life of a pod, in the shapes the kubelet and scheduler write.

    def schedule(self, name: str, node: str = "node-1", ns: str = "default") -> Pod:
        def change(pod: Pod) -> None:
            pod["spec"]["nodeName"] = node
            pod["status"]["conditions"] = [
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": now_iso()}
            ]

        return self.update(name, change, ns)

    def unschedulable(self, name: str, message: str, ns: str = "default") -> Pod:
        def change(pod: Pod) -> None:
            pod["status"]["conditions"] = [
                {
                    "type": "PodScheduled",
                    "status": "False",
                    "reason": "Unschedulable",
                    "message": message,
                    "lastTransitionTime": now_iso(),
                }
            ]

        return self.update(name, change, ns)

    def waiting(self, name: str, reason: str, message: str = "", ns: str = "default") -> Pod:
        return self.update(name, _container_state({"waiting": {"reason": reason, "message": message}}), ns)

    def start(self, name: str, ns: str = "default") -> Pod:
        if not (self.pod(name, ns) or {}).get("spec", {}).get("nodeName"):
            self.schedule(name, ns=ns)

        def change(pod: Pod) -> None:
            pod["status"].update(phase="Running", startTime=now_iso(), podIP="10.0.0.7")
            _container_state({"running": {"startedAt": now_iso()}}, ready=True)(pod)

        return self.update(name, change, ns)

    def finish(
        self,
        name: str,
        exit_code: int = 0,
        reason: str | None = None,
        ns: str = "default",
        pod_status: dict[str, str] | None = None,
    ) -> Pod:
        """The container ends with `exit_code` (and `reason`); `pod_status` sets e.g. the pod's reason."""

        def change(pod: Pod) -> None:
            terminated = {
                "exitCode": exit_code,
                "reason": reason or ("Completed" if exit_code == 0 else "Error"),
                "startedAt": pod["status"].get("startTime", now_iso()),
                "finishedAt": now_iso(),
            }
            _container_state({"terminated": terminated})(pod)
            pod["status"]["phase"] = "Succeeded" if exit_code == 0 else "Failed"
            pod["status"].update(pod_status or {})

        return self.update(name, change, ns)

    def fail_pod(self, name: str, reason: str, message: str, ns: str = "default") -> Pod:
        """The kubelet fails the whole pod (Evicted, DeadlineExceeded): the container is killed."""
        return self.finish(name, 137, "Error", ns, {"reason": reason, "message": message})


def _container_state(state: dict[str, Any], ready: bool = False) -> Callable[[Pod], None]:
    def change(pod: Pod) -> None:
        spec = pod["spec"]["containers"][0]
        pod["status"]["containerStatuses"] = [
            {
                "name": spec["name"],
                "image": spec.get("image", ""),
                "imageID": "",
                "ready": ready,
                "restartCount": 0,
                "started": "running" in state,
                "state": state,
            }
        ]

    return change


class Kubelet:
    """Runs each admitted pod's only container as a local process: its args (after `command`, if any) and
    env, with secretKeyRef resolved from `kube.secrets` and a hostPath Socket volume's mount path in
    `DOCKER_HOST` replaced by the host path. stdout+stderr become the pod's log; the exit code, its end."""

    def __init__(self, path: str, *, held: bool = False) -> None:
        self._path = path
        self.held = held  # containers wait to start until `release`
        self._go: asyncio.Event | None = None
        self._procs: dict[tuple[str, str], asyncio.subprocess.Process] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def admit(self, kube: FakeKube, ns: str, pod: Pod) -> None:
        task = asyncio.get_running_loop().create_task(self._run(kube, ns, pod))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _env(self, kube: FakeKube, ns: str, pod: Pod) -> dict[str, str] | str:
        container = pod["spec"]["containers"][0]
        sockets = {
            v["name"]: v["hostPath"]["path"]
            for v in pod["spec"].get("volumes") or []
            if v.get("hostPath", {}).get("type") == "Socket"
        }
        mounts = {
            m["mountPath"]: sockets[m["name"]]
            for m in container.get("volumeMounts") or []
            if m["name"] in sockets
        }
        env = {"PATH": self._path, "HOME": os.environ.get("HOME", "/root")}
        for item in container.get("env") or []:
            if "value" in item:
                value = str(item["value"])
            else:
                ref = item["valueFrom"]["secretKeyRef"]
                data = kube.secrets.get((ns, ref["name"]))
                if data is None or ref["key"] not in data:
                    return f'secret "{ref["name"]}" not found'
                value = data[ref["key"]]
            for inside, host in mounts.items():
                value = value.replace(f"unix://{inside}", f"unix://{host}")
            env[item["name"]] = value
        return env

    def release(self, kube: FakeKube) -> None:
        """Let held containers (and all later ones) start."""

        def go() -> None:
            self.held = False
            self._go = self._go or asyncio.Event()
            self._go.set()

        kube._loop.call_soon_threadsafe(go)

    async def _run(self, kube: FakeKube, ns: str, pod: Pod) -> None:
        name = pod["metadata"]["name"]
        await kube._modify(ns, name, lambda p: p["spec"].__setitem__("nodeName", "fake-node"))
        if self.held:
            self._go = self._go or asyncio.Event()
            await self._go.wait()
            if (ns, name) not in kube._pods:
                return
        env = self._env(kube, ns, pod)
        if isinstance(env, str):
            await kube._modify(
                ns,
                name,
                _container_state({"waiting": {"reason": "CreateContainerConfigError", "message": env}}),
            )
            return
        proc = await self.start_container(kube, ns, pod, env)
        self._procs[(ns, name)] = proc

        def running(p: Pod) -> None:
            p["status"].update(phase="Running", startTime=now_iso())
            _container_state({"running": {"startedAt": now_iso()}}, ready=True)(p)

        await kube._modify(ns, name, running)
        assert proc.stdout is not None
        async for raw in proc.stdout:
            if (ns, name) not in kube._pods:
                break
            await kube._append_log(ns, name, (raw.decode("utf-8", "replace").rstrip("\n"),))
        code = await proc.wait()
        self._procs.pop((ns, name), None)
        if (ns, name) not in kube._pods:
            return

        def done(p: Pod) -> None:
            terminated = {
                "exitCode": code,
                "reason": "Completed" if code == 0 else "Error",
                "finishedAt": now_iso(),
            }
            _container_state({"terminated": terminated})(p)
            p["status"]["phase"] = "Succeeded" if code == 0 else "Failed"

        await kube._modify(ns, name, done)

    async def start_container(
        self, kube: FakeKube, ns: str, pod: Pod, env: dict[str, str]
    ) -> asyncio.subprocess.Process:
        """The container's process, its stdout and stderr in one pipe: here its args as a local process."""
        container = pod["spec"]["containers"][0]
        argv = [*(container.get("command") or []), *(container.get("args") or [])]
        return await asyncio.create_subprocess_exec(
            *argv,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )

    async def stop(self, ns: str, name: str) -> None:
        proc = self._procs.pop((ns, name), None)
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()

    async def stop_all(self) -> None:
        for ns, name in list(self._procs):
            await self.stop(ns, name)
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks))
