"""The Kubernetes executor against a fake API server (tests/support/fake_k8s.py) via kubernetes-asyncio."""

from __future__ import annotations

import asyncio
import functools
import json
import os
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from kubernetes_asyncio.client import ApiClient, Configuration

from binder_service.builds.executor import SHUTDOWN, BuildJob
from binder_service.builds.kubernetes.executor import KubernetesExecutor
from binder_service.builds.kubernetes.pod import ENTRY_SCRIPT, PodTemplate, build_pod, rendezvous
from binder_service.errors import BuildError, BuildOutOfMemory, BuildTimeout, EngineUnavailable
from binder_service.events import Phase
from binder_service.images.naming import build_pod_name
from binder_service.providers import ResolvedRepo
from tests.support.fake_k8s import FakeKube, Kubelet, now_iso, r2d_line, write_kubeconfig
from tests.support.repos import buildable_repo
from tests.support.service import running_service, sse_messages
from tests.support.waiting import await_until

NS = "binder"
SHA = "3f9c0a1b2c3d4e5f60718293a4b5c6d7e8f90123"
IMAGE = f"127.0.0.1:5055/binder-git-hello-0123456789:{SHA}"
POD = build_pod_name(IMAGE)
LABELS = {"app.kubernetes.io/instance": "mybinder"}
SELECTOR = ",".join(
    [
        "app.kubernetes.io/component=build",
        "app.kubernetes.io/instance=mybinder",
        "app.kubernetes.io/name=binder-service",
    ]
)


def job(image: str = IMAGE, requester: str | None = "alice") -> BuildJob:
    repo = ResolvedRepo(
        provider="git",
        repo_url="https://user:s3cret@git.example.org/hello.git",
        ref="main",
        commit=SHA,
        build_slug="git-https://git.example.org/hello.git",
    )
    return BuildJob(build_id="b1", image_name=image, repo=repo, push=True, requester=requester)


def template(**overrides: Any) -> PodTemplate:
    values: dict[str, Any] = {
        "image": "quay.io/jupyterhub/repo2docker:2026.4.0",
        "docker_socket": "/var/run/docker-api/docker.sock",
        "deadline": 3600.0,
        "allowed_git_protocols": ["https", "git"],
        "labels": LABELS,
    }
    values.update(overrides)
    return PodTemplate(**values)


@pytest.fixture
def kube() -> Iterator[FakeKube]:
    with FakeKube() as k:
        yield k


@pytest.fixture
async def make(kube: FakeKube) -> AsyncIterator[Callable[..., KubernetesExecutor]]:
    """Executors (each with its own ApiClient, like separate replicas) pointed at the fake."""
    made: list[tuple[ApiClient, KubernetesExecutor]] = []

    def new(tpl: PodTemplate | None = None, **kw: Any) -> KubernetesExecutor:
        api = ApiClient(configuration=Configuration(host=kube.url))
        options: dict[str, Any] = {
            "namespace": NS,
            "template": tpl or template(),
            "api_timeout": 2.0,
            "reap_interval": 3600,
            "finished_grace": 0,
            "unschedulable_grace": 0,
        }
        options.update(kw)
        ex = KubernetesExecutor(api, **options)
        made.append((api, ex))
        return ex

    yield new
    for api, ex in made:
        await ex.aclose()
        await api.close()


class Events:
    def __init__(self) -> None:
        self.items: list[tuple[Phase, str]] = []

    def __call__(self, phase: Phase, message: str) -> None:
        self.items.append((phase, message))

    def text(self) -> str:
        return "".join(m for _, m in self.items)


def _on_node(node: str, pod: dict[str, Any]) -> None:
    pod["spec"]["nodeName"] = node


async def until(check: Callable[[], object], timeout: float = 15) -> None:
    await await_until(check, timeout=timeout)


def pod_exists(kube: FakeKube, name: str = POD) -> Callable[[], bool]:
    return lambda: kube.pod(name, NS) is not None


def started(ex: KubernetesExecutor, events: Events, j: BuildJob | None = None) -> asyncio.Task[None]:
    return asyncio.create_task(ex.run(j or job(), events))


async def test_the_exact_pod_spec(kube: FakeKube, make: Callable[..., KubernetesExecutor]) -> None:
    tpl = template(
        extra_args=["--cache-from", "c"],
        push_secret="registry-config",
        git_credentials_secret="git-creds",
        node_selector={"binder/docker-api": "true"},
        tolerations=[{"key": "binder", "operator": "Exists", "effect": "NoSchedule"}],
        affinity={"podAntiAffinity": {}},
        resources={"requests": {"memory": "1Gi"}, "limits": {"memory": "4Gi"}},
    )
    task = started(make(tpl), Events())
    await until(pod_exists(kube))
    sent = kube.kinds("create")[0]
    assert sent.path == f"/api/v1/namespaces/{NS}/pods"
    assert sent.body == {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": POD,
            "labels": {
                "app.kubernetes.io/instance": "mybinder",
                "app.kubernetes.io/name": "binder-service",
                "app.kubernetes.io/component": "build",
            },
            "annotations": {
                "binder-service/image": IMAGE,
                "binder-service/build-id": "b1",
                "binder-service/provider": "git",
                "binder-service/repo": "https://git.example.org/hello.git",  # no credentials
                "binder-service/ref": "main",
                "binder-service/commit": SHA,
                "binder-service/build-slug": "git-https://git.example.org/hello.git",
                "binder-service/content-provider": "Git",
                "binder-service/requester": "alice",
            },
        },
        "spec": {
            "restartPolicy": "Never",
            "activeDeadlineSeconds": 3600,
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "containers": [
                {
                    "name": "repo2docker",
                    "image": "quay.io/jupyterhub/repo2docker:2026.4.0",
                    "args": [
                        "/bin/sh",
                        "-c",
                        ENTRY_SCRIPT,
                        "repo2docker",
                        "--json-logs",
                        "--no-run",
                        "--user-id",
                        "1000",
                        "--user-name",
                        "jovyan",
                        "--image-name",
                        IMAGE,
                        "--ref",
                        SHA,
                        "--push",
                        "--cache-from",
                        "c",
                        "--",
                        "https://user:s3cret@git.example.org/hello.git",
                    ],
                    "env": [
                        {
                            "name": "BINDER_R2D_CONFIG",
                            "value": "from repo2docker.contentproviders import Git\n"
                            "c.Repo2Docker.content_providers = [Git]\n",
                        },
                        {"name": "DOCKER_HOST", "value": "unix:///var/run/docker.sock"},
                        {"name": "GIT_TERMINAL_PROMPT", "value": "0"},
                        {"name": "GIT_ALLOW_PROTOCOL", "value": "https:git"},
                        {"name": "PYTHONUNBUFFERED", "value": "1"},
                        {"name": "DOCKER_CONFIG", "value": "/etc/binder-service/docker-config"},
                        {
                            "name": "GIT_CREDENTIAL_ENV",
                            "valueFrom": {"secretKeyRef": {"name": "git-creds", "key": "credentials"}},
                        },
                    ],
                    "volumeMounts": [
                        {"name": "docker-socket", "mountPath": "/var/run/docker.sock"},
                        {
                            "name": "docker-config",
                            "mountPath": "/etc/binder-service/docker-config",
                            "readOnly": True,
                        },
                    ],
                    "resources": {"requests": {"memory": "1Gi"}, "limits": {"memory": "4Gi"}},
                }
            ],
            "volumes": [
                {
                    "name": "docker-socket",
                    "hostPath": {"path": "/var/run/docker-api/docker.sock", "type": "Socket"},
                },
                {
                    "name": "docker-config",
                    "secret": {
                        "secretName": "registry-config",
                        "items": [{"key": "config.json", "path": "config.json"}],
                    },
                },
            ],
            "nodeSelector": {"binder/docker-api": "true"},
            "tolerations": [{"key": "binder", "operator": "Exists", "effect": "NoSchedule"}],
            "affinity": {"podAntiAffinity": {}},
        },
    }
    task.cancel()
    await asyncio.wait([task])


def test_pod_args_match_the_local_command_line(tmp_path: Any) -> None:
    from binder_service.builds.local import LocalExecutor

    local = LocalExecutor(
        docker_host="unix:///x.sock",
        docker_config=None,
        command=["repo2docker"],
        extra_args=["--cache-from", "c"],
        allowed_git_protocols=["https"],
        allow_local=False,
        environ={"PATH": "/usr/bin"},
        docker_timeout=1,
    )
    argv = local.argv(job())
    args = build_pod(job(), template(extra_args=["--cache-from", "c"]))["spec"]["containers"][0]["args"]
    # Local: repo2docker --config FILE <rest>; pod: sh -c SCRIPT repo2docker <rest> (the script: --config).
    assert args[4:] == argv[3:]
    assert "$BINDER_R2D_CONFIG" in ENTRY_SCRIPT
    assert "--config" in ENTRY_SCRIPT


async def test_success_turns_the_log_into_events_and_deletes_the_pod(
    kube: FakeKube, make: Callable[..., KubernetesExecutor]
) -> None:
    events = Events()
    task = started(make(), events)
    await until(lambda: kube.kinds("watch"))  # from here on, every change reaches the executor
    kube.schedule(POD, ns=NS)
    kube.waiting(POD, "ContainerCreating", ns=NS)
    kube.start(POD, ns=NS)
    await until(lambda: kube.kinds("log"))
    kube.log(
        POD,
        r2d_line("fetching", "Picked Git content provider.\n"),
        r2d_line("building", "Step 1/3 : FROM busybox\n"),
        r2d_line("building", "#7 pushing 127.0.0.1:5055/x:y with docker\n"),
        r2d_line("building", "#7 DONE 0.1s\n"),
        "not json at all",
        r2d_line("pushing", "Successfully pushed\n"),
        ns=NS,
    )
    await until(lambda: "Successfully pushed" in events.text())
    kube.finish(POD, 0, ns=NS)
    await asyncio.wait_for(task, 15)
    assert events.items == [
        (Phase.WAITING, f"Build pod {POD} created\n"),
        (Phase.WAITING, "build pod is waiting to start\n"),
        (Phase.WAITING, "build pod is starting (ContainerCreating)\n"),
        (Phase.FETCHING, "Picked Git content provider.\n"),
        (Phase.BUILDING, "Step 1/3 : FROM busybox\n"),
        (Phase.PUSHING, "#7 pushing 127.0.0.1:5055/x:y with docker\n"),
        (Phase.PUSHING, "#7 DONE 0.1s\n"),  # once pushing, buildx lines stay there
        (Phase.PUSHING, "not json at all\n"),
        (Phase.PUSHING, "Successfully pushed\n"),
    ]
    assert kube.pod(POD, NS) is None
    assert [r.path for r in kube.kinds("delete")] == [f"/api/v1/namespaces/{NS}/pods/{POD}"]
    log_request = kube.kinds("log")[0]
    assert log_request.query["follow"] in ("true", "True")
    assert log_request.query["container"] == "repo2docker"
    watch = kube.kinds("watch")[0]
    assert watch.query["fieldSelector"] == f"metadata.name={POD}"
    assert "timeoutSeconds" in watch.query
    assert "s3cret" not in events.text()


def _pull(kube: FakeKube) -> None:
    kube.schedule(POD, ns=NS)
    kube.waiting(POD, "ImagePullBackOff", 'Back-off pulling image "quay.io/jupyterhub/repo2docker:x"', ns=NS)


def _config_error(kube: FakeKube) -> None:
    kube.waiting(POD, "CreateContainerConfigError", 'secret "git-creds" not found', ns=NS)


def _unschedulable(kube: FakeKube) -> None:
    kube.unschedulable(POD, "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity.", ns=NS)


def _oom(kube: FakeKube) -> None:
    kube.start(POD, ns=NS)
    kube.finish(POD, 137, "OOMKilled", ns=NS)


def _evicted(kube: FakeKube) -> None:
    kube.start(POD, ns=NS)
    kube.fail_pod(POD, "Evicted", "The node was low on resource: ephemeral-storage.", ns=NS)


def _deadline(kube: FakeKube) -> None:
    kube.start(POD, ns=NS)
    kube.fail_pod(
        POD, "DeadlineExceeded", "Pod was active on the node longer than the specified deadline", NS
    )


def _r2d_error(kube: FakeKube) -> None:
    kube.start(POD, ns=NS)
    kube.log(
        POD, r2d_line("fetching", "Cloning\n"), r2d_line("failed", "Failed to clone: no such ref\n"), ns=NS
    )
    kube.finish(POD, 1, ns=NS)


STEP_ERROR = 'Error: building at STEP "RUN python make_big.py": exit status 1'


def _step_killed(kube: FakeKube) -> None:
    """Engine buildah: a RUN step in the build container killed at its memory limit (buildah's words)."""
    kube.start(POD, ns=NS)
    kube.log(
        POD,
        r2d_line("building", "STEP 2/5: RUN python make_big.py\n"),
        r2d_line("building", "subprocess exited on killed\n"),
        r2d_line("building", "subprocess exited with status 1\n"),
        r2d_line("building", STEP_ERROR + "\n"),
        ns=NS,
    )
    kube.finish(POD, 1, ns=NS)


def _exit_code(kube: FakeKube) -> None:
    kube.start(POD, ns=NS)
    kube.finish(POD, 2, ns=NS)


@pytest.mark.parametrize(
    ("script", "error", "message"),
    [
        (_pull, BuildError, "could not pull the build image quay.io/jupyterhub/repo2docker:2026.4.0 "
         '(ImagePullBackOff): Back-off pulling image "quay.io/jupyterhub/repo2docker:x"'),
        (_config_error, BuildError, 'the build pod could not start repo2docker (CreateContainerConfigError): '
         'secret "git-creds" not found'),
        (_unschedulable, BuildError, "no node can run the build pod yet: 0/3 nodes are available: 3 node(s) "
         "didn't match Pod's node affinity."),
        (_oom, BuildOutOfMemory, "the build ran out of memory and was killed (memory limit 2Gi)"),
        (_evicted, BuildError, "the build pod was evicted from its node: The node was low on resource: "
         "ephemeral-storage."),
        (_deadline, BuildTimeout, "the build pod ran past its deadline of 3600 seconds and was stopped"),
        (_r2d_error, BuildError, "Failed to clone: no such ref"),
        (_step_killed, BuildOutOfMemory, "a RUN step was killed at the build pod's memory limit of 2Gi "
         f"({STEP_ERROR})"),
        (_exit_code, BuildError, "repo2docker exited with code 2 (Error)"),
    ],
)  # fmt: skip
async def test_kubernetes_failures_become_readable_errors(
    kube: FakeKube,
    make: Callable[..., KubernetesExecutor],
    script: Callable[[FakeKube], None],
    error: type[BuildError],
    message: str,
) -> None:
    ex = make(template(resources={"limits": {"memory": "2Gi"}}))
    task = started(ex, Events())
    await until(pod_exists(kube))
    await asyncio.to_thread(script, kube)
    with pytest.raises(error) as info:
        await asyncio.wait_for(task, 15)
    assert type(info.value) is error
    assert info.value.message == message
    assert kube.pod(POD, NS) is None  # a failed build's pod is removed


async def test_a_killed_step_without_a_memory_limit_is_not_called_out_of_memory(
    kube: FakeKube, make: Callable[..., KubernetesExecutor]
) -> None:
    task = started(make(template()), Events())
    await until(pod_exists(kube))
    await asyncio.to_thread(_step_killed, kube)
    with pytest.raises(BuildError) as info:
        await asyncio.wait_for(task, 15)
    assert type(info.value) is BuildError
    assert info.value.message == STEP_ERROR


async def test_conflict_attaches_to_the_running_build(
    kube: FakeKube, make: Callable[..., KubernetesExecutor]
) -> None:
    kube.add_pod(build_pod(job(requester="bob"), template()), NS)
    kube.start(POD, ns=NS)
    kube.log(POD, r2d_line("building", "Step 1/2\n"), ns=NS)
    events = Events()
    task = started(make(), events)
    await until(lambda: len(events.items) >= 2)
    assert len(kube.kinds("create")) == 1  # the one attempt, answered 409
    assert kube.pods(NS) == [POD]
    kube.log(POD, r2d_line("building", "Step 2/2\n"), ns=NS)
    kube.finish(POD, 0, ns=NS)
    await asyncio.wait_for(task, 15)
    assert events.items == [
        (Phase.WAITING, f"Attached to the running build pod {POD}\n"),
        (Phase.BUILDING, "Step 1/2\n"),  # the log from its start: a late requester misses nothing
        (Phase.BUILDING, "Step 2/2\n"),
    ]
    assert kube.pods(NS) == []


async def test_a_pod_of_another_image_is_left_alone(
    kube: FakeKube, make: Callable[..., KubernetesExecutor]
) -> None:
    other = build_pod(job(image="elsewhere/x:1"), template())
    other["metadata"]["name"] = POD  # a (64-bit) hash collision
    kube.add_pod(other, NS)
    with pytest.raises(BuildError, match="builds another image"):
        await make().run(job(), Events())
    assert kube.pod(POD, NS) is not None
    assert kube.kinds("delete") == []


async def test_a_stale_failed_pod_is_replaced(
    kube: FakeKube, make: Callable[..., KubernetesExecutor]
) -> None:
    kube.add_pod(build_pod(job(), template()), NS)
    kube.start(POD, ns=NS)
    kube.finish(POD, 1, ns=NS)
    old_uid = kube.pod(POD, NS)["metadata"]["uid"]  # type: ignore[index]
    task = started(make(), Events())
    await until(lambda: (kube.pod(POD, NS) or {}).get("metadata", {}).get("uid") not in (None, old_uid))
    assert len(kube.kinds("create")) == 2
    kube.start(POD, ns=NS)
    kube.finish(POD, 0, ns=NS)
    await asyncio.wait_for(task, 15)


async def test_two_replicas_racing_for_one_image_make_one_pod(
    kube: FakeKube, make: Callable[..., KubernetesExecutor]
) -> None:
    a, b = make(), make()
    ea, eb = Events(), Events()
    tasks = [started(a, ea), started(b, eb)]
    await until(lambda: len(kube.kinds("create")) == 2 and len(kube.kinds("watch")) >= 2)
    assert kube.pods(NS) == [POD]
    kube.start(POD, ns=NS)
    kube.log(POD, r2d_line("building", "Step 1/1\n"), ns=NS)
    await until(
        lambda: (Phase.BUILDING, "Step 1/1\n") in ea.items and (Phase.BUILDING, "Step 1/1\n") in eb.items
    )
    kube.finish(POD, 0, ns=NS)
    await asyncio.wait_for(asyncio.gather(*tasks), 15)  # both see the build succeed
    firsts = sorted([ea.items[0][1], eb.items[0][1]])
    assert firsts == [f"Attached to the running build pod {POD}\n", f"Build pod {POD} created\n"]
    assert kube.pods(NS) == []


async def test_a_restarted_service_reattaches_mid_build(
    kube: FakeKube, make: Callable[..., KubernetesExecutor]
) -> None:
    first = make()
    task = started(first, Events())
    await until(pod_exists(kube))
    kube.start(POD, ns=NS)
    kube.log(POD, r2d_line("building", "Step 1/2\n"), ns=NS)
    await until(lambda: kube.kinds("log"))
    task.cancel(SHUTDOWN)  # what the build manager does when the service stops
    await asyncio.wait([task])
    await first.aclose()
    assert kube.pod(POD, NS) is not None  # the build goes on without us
    assert kube.kinds("delete") == []

    events = Events()
    again = started(make(), events)
    await until(lambda: (Phase.BUILDING, "Step 1/2\n") in events.items)
    kube.log(POD, r2d_line("pushing", "Pushing\n"), ns=NS)
    kube.finish(POD, 0, ns=NS)
    await asyncio.wait_for(again, 15)
    assert events.items[0] == (Phase.WAITING, f"Attached to the running build pod {POD}\n")
    assert events.items[-1] == (Phase.PUSHING, "Pushing\n")


async def test_cancel_deletes_the_pod(kube: FakeKube, make: Callable[..., KubernetesExecutor]) -> None:
    task = started(make(), Events())
    await until(pod_exists(kube))
    kube.start(POD, ns=NS)
    await until(lambda: kube.kinds("log"))
    task.cancel()
    await asyncio.wait([task])
    assert task.cancelled()
    assert kube.pod(POD, NS) is None


async def test_watches_reopen_after_their_timeout(
    kube: FakeKube, make: Callable[..., KubernetesExecutor]
) -> None:
    kube.watch_cap = 1  # the server ends every watch after a second
    task = started(make(), Events())
    await until(pod_exists(kube))
    kube.start(POD, ns=NS)
    version = kube.pod(POD, NS)["metadata"]["resourceVersion"]  # type: ignore[index]
    await until(lambda: len(kube.kinds("watch")) >= 3)
    kube.finish(POD, 0, ns=NS)
    await asyncio.wait_for(task, 15)
    # Re-opened from where it was: the pod's last version, not from scratch.
    assert kube.kinds("watch")[2].query["resourceVersion"] == version


async def test_a_watch_gone_410_reads_the_pod_afresh(
    kube: FakeKube, make: Callable[..., KubernetesExecutor]
) -> None:
    kube.watch_cap = 1
    task = started(make(), Events())
    await until(pod_exists(kube))
    kube.start(POD, ns=NS)
    await until(lambda: kube.kinds("watch"))
    # Other pods change (the version moves on), then etcd compacts: our watch's version is too old.
    kube.add_pod({"metadata": {"name": "unrelated"}, "spec": {"containers": [{"name": "c"}]}}, NS)
    kube.compact()
    gets_before = len(kube.kinds("get"))
    await until(lambda: len(kube.kinds("get")) > gets_before)  # the 410 made it read the pod again
    await until(lambda: len(kube.kinds("watch")) >= 3)
    kube.finish(POD, 0, ns=NS)
    await asyncio.wait_for(task, 15)


async def test_a_deleted_pod_fails_the_build(kube: FakeKube, make: Callable[..., KubernetesExecutor]) -> None:
    task = started(make(), Events())
    await until(pod_exists(kube))
    kube.start(POD, ns=NS)
    await until(lambda: kube.kinds("watch"))
    kube.delete(POD, ns=NS)
    with pytest.raises(BuildError, match="was deleted before the build finished"):
        await asyncio.wait_for(task, 15)


async def test_the_sweep_deletes_finished_and_over_age_pods(
    kube: FakeKube, make: Callable[..., KubernetesExecutor]
) -> None:
    def add(name: str, *, age: float = 0, labels: dict[str, str] | None = None) -> None:
        pod = build_pod(job(image=f"x/{name}:1"), template())
        pod["metadata"]["name"] = name
        if labels is not None:
            pod["metadata"]["labels"] = labels
        kube.add_pod(pod, NS)
        if age:
            created = now_iso(datetime.now(UTC) - timedelta(seconds=age))
            kube.update(name, lambda p: p["metadata"].__setitem__("creationTimestamp", created), NS)

    add("finished")
    kube.start("finished", ns=NS)
    kube.finish("finished", 0, ns=NS)
    add("running")
    kube.start("running", ns=NS)
    add("stuck", age=4000)  # older than deadline (3600) + 300
    kube.start("stuck", ns=NS)
    add("other-release", labels={"app.kubernetes.io/component": "build"})
    kube.start("other-release", ns=NS)
    kube.finish("other-release", 0, ns=NS)

    ex = make()
    assert sorted(await ex.reap()) == ["finished", "stuck"]
    assert sorted(kube.pods(NS)) == ["other-release", "running"]
    assert kube.kinds("list")[0].query["labelSelector"] == SELECTOR

    # In the background too, started by the first build or explicitly.
    kube.finish("running", 1, ns=NS)
    background = make(reap_interval=0.05)
    background.start()
    await until(lambda: kube.pods(NS) == ["other-release"])


async def test_the_sweep_spares_a_finished_pod_being_followed_here(
    kube: FakeKube, make: Callable[..., KubernetesExecutor]
) -> None:
    ex = make()
    task = started(ex, Events())
    await until(pod_exists(kube))
    kube.start(POD, ns=NS)
    await until(lambda: kube.kinds("log"))
    kube.update(
        POD, lambda p: p["status"].__setitem__("phase", "Succeeded"), NS
    )  # status before the log ends
    assert await ex.reap() == []
    kube.finish(POD, 0, ns=NS)
    await asyncio.wait_for(task, 15)


async def test_check(kube: FakeKube, make: Callable[..., KubernetesExecutor]) -> None:
    await make().check()
    assert kube.kinds("list")[-1].query == {"labelSelector": SELECTOR, "limit": "1"}


@pytest.mark.parametrize("kind", ["create", "get", "watch", "list"])
async def test_a_hanging_api_is_a_clear_error_not_a_hang(
    kube: FakeKube, make: Callable[..., KubernetesExecutor], kind: str
) -> None:
    kube.hang.add(kind)
    ex = make(api_timeout=0.3)
    if kind == "list":
        with pytest.raises(EngineUnavailable, match=r"did not answer listing pods within 0.3 s"):
            await ex.check()
        return
    if kind != "create":
        kube.add_pod(build_pod(job(), template()), NS)  # attach: then get and watch run
    with pytest.raises(EngineUnavailable, match=r"the Kubernetes API did not answer .* within 0.3 s"):
        await asyncio.wait_for(ex.run(job(), Events()), 30)


async def test_an_unreachable_api_is_a_clear_error(make: Callable[..., KubernetesExecutor]) -> None:
    api = ApiClient(configuration=Configuration(host="http://127.0.0.1:9"))
    try:
        ex = KubernetesExecutor(api, namespace=NS, template=template(), api_timeout=1)
        with pytest.raises(EngineUnavailable, match="could not be reached"):
            await ex.check()
    finally:
        await api.close()


async def test_sticky_builds_prefer_one_docker_api_node(
    kube: FakeKube, make: Callable[..., KubernetesExecutor]
) -> None:
    nodes = ["node-a", "node-b", "node-c"]
    for node in nodes:
        kube.add_pod(
            {"metadata": {"name": f"docker-api-{node}", "labels": {"component": "docker-api"}},
             "spec": {"containers": [{"name": "dind"}]}},
            NS,
        )  # fmt: skip
        kube.start(f"docker-api-{node}", ns=NS)
        kube.update(f"docker-api-{node}", functools.partial(_on_node, node), NS)
    ex = make(sticky_selector="component=docker-api")
    task = started(ex, Events())
    await until(pod_exists(kube))
    key = job().repo.build_slug
    chosen = rendezvous(key, nodes)
    preferred = kube.pod(POD, NS)["spec"]["affinity"]["nodeAffinity"]  # type: ignore[index]
    assert preferred["preferredDuringSchedulingIgnoredDuringExecution"] == [
        {
            "weight": 100,
            "preference": {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [chosen]}]},
        }
    ]
    task.cancel()
    await asyncio.wait([task])
    # Rendezvous hashing: losing another node does not move this repository.
    assert all(
        rendezvous(key, [n for n in nodes if n != other]) == chosen for other in nodes if other != chosen
    )


def kube_environ(kube: FakeKube, tmp_path: Path) -> dict[str, str]:
    """The service's environment outside a cluster: a kubeconfig (KUBECONFIG) that points at the fake."""
    kubeconfig = write_kubeconfig(kube.url, tmp_path / "kubeconfig")
    environ = {k: v for k, v in os.environ.items() if not k.startswith("KUBERNETES_")}
    environ["KUBECONFIG"] = str(kubeconfig)
    return environ


def kubelet() -> Kubelet:
    return Kubelet(path=f"{Path(sys.executable).parent}:{os.environ['PATH']}")


@pytest.mark.docker
def test_the_whole_service_builds_through_a_pod(
    make_settings: Callable[..., Any],
    world_env: dict[str, str],
    git_root: Path,
    git_daemon_url: str,
    tmp_path: Path,
) -> None:
    """create_app with executor=kubernetes (client from a kubeconfig, as outside a cluster), a build request
    through the native API; the fake's kubelet runs the pod's container (real repo2docker, the world's dockerd
    through the hostPath socket) and the image lands in the world's registry."""
    socket = world_env["DOCKER_HOST"].removeprefix("unix://")  # the "node's" docker socket
    settings = make_settings(
        executor="kubernetes", k8s_api_timeout=5.0, k8s_namespace=NS, k8s_docker_socket=socket
    )
    with FakeKube(kubelet=kubelet()) as kube:
        environ = kube_environ(kube, tmp_path)
        name, commit = buildable_repo(git_root)
        with running_service(settings, environ=environ) as url:
            health = httpx.get(f"{url}health", timeout=30).json()
            assert "Kubernetes API" in json.dumps(health)
            r = httpx.post(
                f"{url}api/v1/builds", json={"repo": git_daemon_url + name, "ref": "main"}, timeout=30
            )
            assert r.status_code == 201, r.text
            build = r.json()
            events = sse_messages(str(httpx.URL(url).join(build["events_url"])))
        assert events[-1]["phase"] == "ready", events[-3:]
        assert events[-1]["image_name"] == build["image_name"]
        phases = [e["phase"] for e in events]
        assert "waiting" in phases
        assert "building" in phases
        pod_name = build_pod_name(build["image_name"])
        assert any(f"Build pod {pod_name} created" in e["message"] for e in events)
        (created,) = kube.kinds("create")
        assert created.body["metadata"]["annotations"]["binder-service/commit"] == commit
        assert kube.pods(NS) == []  # deleted when done
        assert all(r.path.startswith(f"/api/v1/namespaces/{NS}/") for r in kube.requests)


@pytest.mark.docker
def test_a_restarted_service_adopts_the_running_build_pod(
    make_settings: Callable[..., Any],
    world_env: dict[str, str],
    git_root: Path,
    git_daemon_url: str,
    tmp_path: Path,
) -> None:
    """Service A starts a build and stops (its pod waits to start); service B starts, finds the pod by its
    labels, reads the build from its annotations, attaches, and the build ends `ready` in B."""
    socket = world_env["DOCKER_HOST"].removeprefix("unix://")
    settings = make_settings(
        executor="kubernetes", k8s_api_timeout=5.0, k8s_namespace=NS, k8s_docker_socket=socket
    )
    lets_go = kubelet()
    lets_go.held = True
    with FakeKube(kubelet=lets_go) as kube:
        environ = kube_environ(kube, tmp_path)
        name, commit = buildable_repo(git_root)
        with running_service(settings, environ=environ) as url:
            r = httpx.post(
                f"{url}api/v1/builds", json={"repo": git_daemon_url + name, "ref": "main"}, timeout=30
            )
            assert r.status_code == 201, r.text
            image = r.json()["image_name"]
            kube.wait_for_pod(build_pod_name(image), NS)
        assert kube.pods(NS) == [build_pod_name(image)]  # shutdown left it

        with running_service(settings, environ=environ) as url:
            (adopted,) = httpx.get(f"{url}api/v1/builds", timeout=30).json()["builds"]
            assert adopted["image_name"] == image
            assert adopted["commit"] == commit
            lets_go.release(kube)
            events = sse_messages(str(httpx.URL(url).join(adopted["events_url"])))
        assert events[-1]["phase"] == "ready", events[-3:]
        assert any("Attached to the running build pod" in e["message"] for e in events)
        assert len(kube.kinds("create")) == 2  # A's, and B's that met 409
        assert kube.pods(NS) == []


async def test_running_builds_are_read_back_from_annotations(
    kube: FakeKube, make: Callable[..., KubernetesExecutor]
) -> None:
    kube.add_pod(build_pod(job(), template()), NS)
    kube.start(POD, ns=NS)
    done = build_pod(job(image="x/done:1"), template())
    kube.add_pod(done, NS)
    kube.start(done["metadata"]["name"], ns=NS)
    kube.finish(done["metadata"]["name"], 0, ns=NS)
    (found,) = await make().running_builds()
    assert found.image_name == IMAGE
    assert found.requester == "alice"
    assert found.repo.commit == SHA
    assert found.repo.ref == "main"
    assert found.repo.repo_url == "https://git.example.org/hello.git"
    assert found.repo.build_slug == job().repo.build_slug
    # The pod the read-back job would make is the one that runs (same name: asking again attaches).
    assert build_pod(found, template())["metadata"]["name"] == POD


async def test_a_dropped_log_stream_is_read_again_without_repeats(
    kube: FakeKube, make: Callable[..., KubernetesExecutor]
) -> None:
    events = Events()
    task = started(make(), events)
    await until(pod_exists(kube))
    kube.start(POD, ns=NS)
    kube.log(POD, r2d_line("building", "one\n"), r2d_line("building", "two\n"), ns=NS)
    await until(lambda: "two\n" in events.text())
    kube.drop_logs(POD, ns=NS)
    await until(lambda: len(kube.kinds("log")) == 2)
    kube.log(POD, r2d_line("pushing", "three\n"), ns=NS)
    await until(lambda: "three\n" in events.text())
    kube.finish(POD, 0, ns=NS)
    await asyncio.wait_for(task, 15)
    assert [m for _, m in events.items if m in ("one\n", "two\n", "three\n")] == ["one\n", "two\n", "three\n"]


def _native_until(url: str, done: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
    """A native stream's events (with "_id") up to the first for which `done` is true."""
    out: list[dict[str, Any]] = []
    with httpx.stream("GET", url, headers={"Accept": "text/event-stream"}, timeout=120) as r:
        assert r.status_code == 200, r.read()
        event_id = None
        for line in r.iter_lines():
            if line.startswith("id:"):
                event_id = int(line[3:])
            elif line.startswith("data:"):
                out.append({**json.loads(line[5:]), "_id": event_id})
                if done(out[-1]):
                    break
    return out


@pytest.mark.docker
def test_last_event_id_resumes_across_a_replica_restart(
    make_settings: Callable[..., Any],
    world_env: dict[str, str],
    git_root: Path,
    git_daemon_url: str,
    tmp_path: Path,
) -> None:
    """Service A's build pod runs its first step when A stops; B (same build store) finds the pod by its
    labels and keeps the build's id (the pod's annotation): a client that read A's stream reconnects to B
    with Last-Event-ID and gets exactly the events it missed (no log line twice), then the rest, to ready."""
    socket = world_env["DOCKER_HOST"].removeprefix("unix://")
    settings = make_settings(
        executor="kubernetes",
        k8s_api_timeout=5.0,
        k8s_namespace=NS,
        k8s_docker_socket=socket,
        state_dir=tmp_path / "state",  # one build store for both services
    )
    lets_go = kubelet()
    with FakeKube(kubelet=lets_go) as kube:
        environ = kube_environ(kube, tmp_path)
        name, _ = buildable_repo(git_root, run="sleep 4")
        with running_service(settings, environ=environ) as url:
            r = httpx.post(
                f"{url}api/v1/builds", json={"repo": git_daemon_url + name, "ref": "main"}, timeout=30
            )
            assert r.status_code == 201, r.text
            build = r.json()
            seen = _native_until(
                str(httpx.URL(url).join(build["events_url"])), lambda e: e["phase"] == "building"
            )
        assert kube.pods(NS) == [build_pod_name(build["image_name"])]  # shutdown left it building
        with running_service(settings, environ=environ) as url:
            again = httpx.get(f"{url}api/v1/builds/{build['id']}", timeout=30)
            assert again.status_code == 200, again.text
            assert again.json()["status"] == "running"  # the same build, not a failed record and a new one
            events_url = str(httpx.URL(url).join(build["events_url"]))
            rest = sse_messages(events_url, headers={"Last-Event-ID": str(seen[-1]["_id"])})
            whole = sse_messages(events_url)
        assert [e["_id"] for e in rest] == list(range(seen[-1]["_id"] + 1, seen[-1]["_id"] + 1 + len(rest)))
        assert rest[-1]["phase"] == "ready", rest[-3:]
        assert rest[-1]["image_name"] == build["image_name"]
        assert [e["_id"] for e in whole] == list(range(1, len(whole) + 1))
        # The pod's log is read again from its start by B: the lines A had stored are not said twice.
        messages = [e["message"] for e in whole]
        for once in ("Picked Git content provider", "HEAD is now at", "load build definition"):
            assert sum(once in m for m in messages) == 1, (once, messages)
        assert any("following the build pod again" in e["message"] for e in rest)
        assert len(kube.kinds("create")) == 2  # A's, and B's that met 409
        assert kube.pods(NS) == []
