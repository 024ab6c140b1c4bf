"""What a build pod's status means for the build: still waiting, running, done, or failed and why.

Works on the pod as the API serves it (JSON, camelCase), so it reads the same from a GET, a list or a watch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ...errors import BuildError, BuildOutOfMemory, BuildTimeout
from .pod import CONTAINER

# Waiting reasons that will not fix themselves: the build cannot start.
_PULL_FAILURES = {"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull"}
_START_FAILURES = {"CreateContainerConfigError", "CreateContainerError", "RunContainerError"}


@dataclass(frozen=True, slots=True)
class PodState:
    phase: str  # Pending, Running, Succeeded, Failed, Unknown
    started: bool  # the container runs or ran: its log can be read
    waiting: str | None = None  # a message to show while Pending
    unschedulable: bool = False  # no node fits (may change: an autoscaler can add one)
    fatal: BuildError | None = None  # the build cannot go on

    @property
    def finished(self) -> bool:
        return self.phase in ("Succeeded", "Failed")


def _container(pod: dict[str, Any]) -> dict[str, Any]:
    for status in pod.get("status", {}).get("containerStatuses") or []:
        if status.get("name") == CONTAINER:
            return dict(status)
    return {}


def _memory_limit(pod: dict[str, Any]) -> str | None:
    for c in pod.get("spec", {}).get("containers") or []:
        if c.get("name") == CONTAINER:
            limit = (c.get("resources") or {}).get("limits", {}).get("memory")
            return str(limit) if limit else None
    return None


def read_state(pod: dict[str, Any]) -> PodState:
    status = pod.get("status") or {}
    phase = str(status.get("phase") or "Pending")
    container = _container(pod)
    state = container.get("state") or {}
    started = "running" in state or "terminated" in state
    if phase == "Failed":
        return PodState(phase, started, fatal=failure(pod))
    if phase == "Succeeded":
        return PodState(phase, started)
    waiting = state.get("waiting") or {}
    reason, message = waiting.get("reason"), (waiting.get("message") or "").strip()
    if reason in _PULL_FAILURES:
        image = container.get("image") or "the build image"
        return PodState(
            phase, False, fatal=BuildError(f"could not pull the build image {image} ({reason}): {message}")
        )
    if reason in _START_FAILURES:
        return PodState(
            phase, False, fatal=BuildError(f"the build pod could not start repo2docker ({reason}): {message}")
        )
    for cond in status.get("conditions") or []:
        if (cond.get("type"), cond.get("status"), cond.get("reason")) == (
            "PodScheduled",
            "False",
            "Unschedulable",
        ):
            text = f"no node can run the build pod yet: {cond.get('message') or 'unschedulable'}"
            return PodState(phase, False, waiting=text, unschedulable=True)
    if phase == "Pending":
        text = f"build pod is starting ({reason})" if reason else "build pod is waiting to start"
        return PodState(phase, started, waiting=text)
    return PodState(phase, started)


def failure(
    pod: dict[str, Any], log_errors: list[str] | None = None, *, step_killed: bool = False
) -> BuildError:
    """Why a Failed pod failed, as people want to read it. `step_killed`: the log said a RUN step was killed
    (engine buildah: the step ran in the container, so at its memory limit)."""
    status = pod.get("status") or {}
    reason, message = status.get("reason"), (status.get("message") or "").strip()
    if reason == "DeadlineExceeded":
        deadline = pod.get("spec", {}).get("activeDeadlineSeconds")
        return BuildTimeout(f"the build pod ran past its deadline of {deadline} seconds and was stopped")
    if reason == "Evicted":
        return BuildError(f"the build pod was evicted from its node: {message or 'no reason given'}")
    terminated = (_container(pod).get("state") or {}).get("terminated") or {}
    if terminated.get("reason") == "OOMKilled":
        limit = _memory_limit(pod)
        detail = f" (memory limit {limit})" if limit else ""
        # With engine buildah the RUN steps run in this container, so its limit is theirs.
        return BuildOutOfMemory(f"the build ran out of memory and was killed{detail}")
    limit = _memory_limit(pod)
    if step_killed and limit:
        detail = f" ({log_errors[-1]})" if log_errors else ""
        return BuildOutOfMemory(f"a RUN step was killed at the build pod's memory limit of {limit}{detail}")
    if log_errors:
        return BuildError(log_errors[-1])
    code = terminated.get("exitCode")
    if code is not None:
        why = terminated.get("reason")
        return BuildError(f"repo2docker exited with code {code}" + (f" ({why})" if why else ""))
    return BuildError(
        f"the build pod failed: {reason or 'unknown reason'}" + (f": {message}" if message else "")
    )
