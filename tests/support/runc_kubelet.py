"""A kubelet for the Kubernetes API fake that runs each pod's container under runc, with exactly what the
pod spec grants (tests/support/oci.py), in a root filesystem unpacked from the pod's image: the whole path
from the service's executor through the API to a build running as the pod says."""

from __future__ import annotations

import asyncio
import shutil
import uuid
from pathlib import Path
from typing import Any

from tests.support.fake_k8s import FakeKube, Kubelet, Pod
from tests.support.oci import prepare_bundle

RUNC = shutil.which("runc", path="/usr/sbin:/usr/bin:/sbin:/bin")


class RuncKubelet(Kubelet):
    """`images` maps an image name to (root filesystem, image Config); a pod of another image fails to
    start, as with a pull error."""

    def __init__(
        self, images: dict[str, tuple[Path, dict[str, Any]]], work: Path, seccomp_root: Path
    ) -> None:
        super().__init__(path="/usr/sbin:/usr/bin:/sbin:/bin")
        self._images = images
        self._work = work
        self._seccomp_root = seccomp_root
        self._containers: dict[tuple[str, str], tuple[Path, str]] = {}  # -> (runc state dir, container id)

    async def start_container(
        self, kube: FakeKube, ns: str, pod: Pod, env: dict[str, str]
    ) -> asyncio.subprocess.Process:
        assert RUNC is not None
        name = pod["metadata"]["name"]
        (container,) = pod["spec"]["containers"]
        rootfs, image_config = self._images[container["image"]]
        secrets = {ref: data for (sns, ref), data in kube.secrets.items() if sns == ns}
        dest = self._work / f"{name}-{uuid.uuid4().hex[:8]}"
        bundle = await asyncio.to_thread(
            prepare_bundle,
            pod,
            image_config,
            rootfs=rootfs,
            dest=dest,
            seccomp_root=self._seccomp_root,
            secrets=secrets,
        )
        state, cid = dest / "runc", f"bsw-{uuid.uuid4().hex[:12]}"
        self._containers[(ns, name)] = (state, cid)
        return await asyncio.create_subprocess_exec(
            RUNC, "--root", str(state), "run", "--bundle", str(bundle), cid,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip

    async def stop(self, ns: str, name: str) -> None:
        found = self._containers.pop((ns, name), None)
        if found is not None and RUNC is not None:
            state, cid = found
            # The container's processes are not runc's children: runc removes them.
            delete = await asyncio.create_subprocess_exec(
                RUNC, "--root", str(state), "delete", "--force", cid,
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
            )  # fmt: skip
            await delete.wait()
        await super().stop(ns, name)
