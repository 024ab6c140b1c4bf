"""The Kubernetes executor: one build pod per image, the API server as the lock and the record.

- `executor`: `KubernetesExecutor` (create → 409 attaches, watch, follow logs, cancel, adopt).
- `pod`: the build pod's manifest from a `BuildJob` and the operator's `PodTemplate`.
- `pod_status`: a pod's status read as a build phase or a failure.
- `api`: the thin client over kubernetes-asyncio (timeouts, errors translated once).
- `setup`: building the executor from `Settings` and adopting running pods at start-up.

Nothing is imported here, so `import binder_service` does not load kubernetes-asyncio.
"""
