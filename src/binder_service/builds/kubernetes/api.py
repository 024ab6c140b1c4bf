"""The few pod calls the Kubernetes executor makes, each with a timeout, in the API's own JSON.

kubernetes-asyncio's generated methods do the HTTP (auth, TLS, URLs); answers are read raw
(`_preload_content=False`) so a pod looks the same from a GET, a list and a watch. Errors are
translated here, once: Kubernetes' Status objects become `errors.KubeStatus` with their reason
(AlreadyExists, NotFound, Expired, ...), transport failures `EngineUnavailable`; both are
`BinderError`s, so callers catch one tree.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
from kubernetes_asyncio.client import ApiClient, CoreV1Api

from ...errors import EngineUnavailable, KubeStatus
from ..r2d_logs import read_lines

log = logging.getLogger(__name__)

__all__ = ["KubeStatus", "Pods"]

WATCH_RETRIES = 3  # consecutive failures to re-open a watch before the build gives up


def _status(code: int, body: bytes) -> KubeStatus:
    try:
        data = json.loads(body)
    except ValueError:
        data = {}
    if not isinstance(data, dict):
        data = {}
    return KubeStatus(code, str(data.get("reason") or ""), str(data.get("message") or "")[:500])


class Pods:
    """Pods of one namespace through one ApiClient; every call ends within `timeout` seconds."""

    def __init__(self, api: ApiClient, namespace: str, *, timeout: float, watch_timeout: int = 300) -> None:
        self._core = CoreV1Api(api)
        self.namespace = namespace
        self._timeout = timeout
        self._watch_timeout = watch_timeout

    def _unavailable(self, what: str, e: BaseException) -> EngineUnavailable:
        if isinstance(e, TimeoutError):
            return EngineUnavailable(
                f"the Kubernetes API did not answer {what} within {self._timeout:g} seconds"
            )
        return EngineUnavailable(f"the Kubernetes API could not be reached ({what}): {type(e).__name__}")

    async def _call(self, what: str, method: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        try:
            async with asyncio.timeout(self._timeout):
                resp = await method(*args, _preload_content=False, _request_timeout=self._timeout, **kwargs)
                try:
                    body = await resp.read()
                finally:
                    resp.release()
        except (TimeoutError, aiohttp.ClientError) as e:
            raise self._unavailable(what, e) from None
        if not 200 <= resp.status < 300:
            raise _status(resp.status, body)
        data = json.loads(body)
        return data if isinstance(data, dict) else {}

    async def create(self, pod: dict[str, Any]) -> dict[str, Any]:
        return await self._call("creating a pod", self._core.create_namespaced_pod, self.namespace, pod)

    async def get(self, name: str) -> dict[str, Any] | None:
        """The pod, or None when there is none."""
        try:
            return await self._call("reading a pod", self._core.read_namespaced_pod, name, self.namespace)
        except KubeStatus as e:
            if e.api_status == 404:
                return None
            raise

    async def list(self, label_selector: str, *, limit: int | None = None) -> list[dict[str, Any]]:
        extra = {"limit": limit} if limit else {}
        data = await self._call(
            "listing pods",
            self._core.list_namespaced_pod,
            self.namespace,
            label_selector=label_selector,
            **extra,
        )
        return list(data.get("items") or [])

    async def delete(self, name: str) -> bool:
        """Delete the pod; False when it was already gone."""
        try:
            await self._call("deleting a pod", self._core.delete_namespaced_pod, name, self.namespace)
        except KubeStatus as e:
            if e.api_status == 404:
                return False
            raise
        return True

    @asynccontextmanager
    async def _stream(
        self, what: str, method: Any, *args: Any, total: float | None, **kwargs: Any
    ) -> AsyncIterator[aiohttp.StreamReader]:
        # Connecting and the answer's head are bounded by the API timeout; the body by `total`.
        timeout = aiohttp.ClientTimeout(total=total, sock_connect=self._timeout)
        try:
            async with asyncio.timeout(self._timeout):
                resp = await method(*args, _preload_content=False, _request_timeout=timeout, **kwargs)
                if not 200 <= resp.status < 300:
                    try:
                        raise _status(resp.status, await resp.read())
                    finally:
                        resp.release()
        except (TimeoutError, aiohttp.ClientError) as e:
            raise self._unavailable(what, e) from None
        try:
            yield resp.content
        finally:
            resp.close()  # an abandoned stream must not go back to the pool half-read

    def log(self, name: str, container: str) -> Any:
        """`async with pods.log(name, c) as body`: the container's log from its start, followed until it ends.

        No overall limit (a build may run for hours); the caller stops reading when the pod is done."""
        return self._stream(
            "reading a build log",
            self._core.read_namespaced_pod_log,
            name,
            self.namespace,
            container=container,
            follow=True,
            total=None,
        )

    async def watch(self, name: str) -> AsyncGenerator[dict[str, Any] | None, None]:
        """The pod now and after every change; None once it is gone (deleted or never there).

        Watches end after `watch_timeout` (server side, and client side a little later) and are re-opened
        from the last resourceVersion; on 410 Gone/Expired the pod is read afresh and watched from there.
        """
        pod = await self.get(name)
        yield pod
        if pod is None:
            return
        version = str(pod["metadata"]["resourceVersion"])
        failures = 0
        last: dict[str, Any] = pod
        while True:
            try:
                async with self._stream(
                    "watching a pod",
                    self._core.list_namespaced_pod,
                    self.namespace,
                    field_selector=f"metadata.name={name}",
                    watch=True,
                    resource_version=version,
                    allow_watch_bookmarks=True,
                    timeout_seconds=self._watch_timeout,
                    total=self._watch_timeout + self._timeout,
                ) as body:
                    async for line in read_lines(body):
                        if not line.strip():
                            continue
                        event = json.loads(line)
                        kind, obj = event.get("type"), event.get("object") or {}
                        if kind == "ERROR":
                            raise KubeStatus(
                                int(obj.get("code") or 500), str(obj.get("reason")), str(obj.get("message"))
                            )
                        version = str(obj.get("metadata", {}).get("resourceVersion") or version)
                        if kind == "DELETED":
                            yield None
                            return
                        if kind in ("ADDED", "MODIFIED"):
                            failures, last = 0, obj
                            yield obj
                log.debug("watch ended; re-opening", extra={"pod": name})
                yield last  # unchanged, but time went by: the caller re-judges (how long unschedulable)
            except KubeStatus as e:
                if e.api_status != 410:
                    raise
                log.info("watch expired; reading the pod afresh", extra={"pod": name})
                pod = await self.get(name)
                yield pod
                if pod is None:
                    return
                version, last = str(pod["metadata"]["resourceVersion"]), pod
            except (EngineUnavailable, TimeoutError, aiohttp.ClientError) as e:
                failures += 1
                if failures > WATCH_RETRIES:
                    if isinstance(e, EngineUnavailable):
                        raise
                    raise self._unavailable("watching a pod", e) from None
                log.warning("watch failed; re-opening", extra={"pod": name, "error": str(e)})
                await asyncio.sleep(0.2 * 2**failures)
