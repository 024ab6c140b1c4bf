"""Which connections rendered NetworkPolicies allow, by the rules of the Kubernetes API (NetworkPolicy v1).

A connection from pod A to port P of pod B is allowed when A's egress allows it (no policy selects A for
Egress, or a rule of one that does matches B and P) and B's ingress allows it (likewise).
`ipblock_selects_pods` picks how a plugin treats ipBlock peers for pod addresses: Calico matches pod IPs
against them; Cilium (GKE Dataplane v2) does not, which is why z2jh's `privateIPs` rule does not let its
pods reach other pods there.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Pod:
    name: str
    namespace: str
    labels: dict[str, str]
    ip: str = "10.1.0.10"
    ports: dict[str, int] = field(default_factory=dict)  # named container ports
    namespace_labels: dict[str, str] = field(default_factory=dict)

    def ns_labels(self) -> dict[str, str]:
        return {"kubernetes.io/metadata.name": self.namespace, **self.namespace_labels}


def pods_from(docs: list[dict[str, Any]], namespace: str) -> dict[str, Pod]:
    """The pods that the Deployments and DaemonSets among `docs` make, one each, by workload name."""
    pods: dict[str, Pod] = {}
    for i, doc in enumerate(docs):
        if doc["kind"] not in ("Deployment", "DaemonSet", "StatefulSet"):
            continue
        template = doc["spec"]["template"]
        ports = {
            p["name"]: int(p["containerPort"])
            for c in template["spec"]["containers"]
            for p in c.get("ports", [])
            if "name" in p
        }
        name = doc["metadata"]["name"]
        labels = {k: str(v) for k, v in template["metadata"]["labels"].items()}
        pods[name] = Pod(name, namespace, labels, ip=f"10.1.0.{10 + i}", ports=ports)
    return pods


def _selects(selector: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    selector = selector or {}
    if any(labels.get(k) != str(v) for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values", [])
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and labels.get(key) in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def _peer_matches(peer: dict[str, Any], policy_ns: str, pod: Pod, ipblock_selects_pods: bool) -> bool:
    if "ipBlock" in peer:
        if not ipblock_selects_pods:
            return False
        block = peer["ipBlock"]
        ip = ipaddress.ip_address(pod.ip)
        if ip.version != ipaddress.ip_network(block["cidr"]).version:
            return False
        inside = ip in ipaddress.ip_network(block["cidr"])
        return inside and not any(
            ip in ipaddress.ip_network(e)
            for e in block.get("except", [])
            if ipaddress.ip_network(e).version == ip.version
        )
    if "namespaceSelector" in peer:
        if not _selects(peer["namespaceSelector"], pod.ns_labels()):
            return False
    elif pod.namespace != policy_ns:
        return False  # a podSelector alone means the policy's own namespace
    return "podSelector" not in peer or _selects(peer["podSelector"], pod.labels)


def _port_matches(ports: list[dict[str, Any]] | None, port: int, protocol: str, dest: Pod) -> bool:
    if not ports:
        return True
    for entry in ports:
        if entry.get("protocol", "TCP") != protocol:
            continue
        want = entry.get("port")
        if want is None:
            return True
        number = dest.ports.get(want) if isinstance(want, str) else int(want)
        if number is not None and (number == port or number <= port <= int(entry.get("endPort", number))):
            return True
    return False


def _direction_allows(
    policies: list[dict[str, Any]],
    direction: str,
    subject: Pod,
    other: Pod,
    port: int,
    protocol: str,
    dest: Pod,
    ipblock_selects_pods: bool,
) -> bool:
    kind, peers_key = ("Egress", "to") if direction == "egress" else ("Ingress", "from")
    selecting = [
        p
        for p in policies
        if p["metadata"].get("namespace", subject.namespace) == subject.namespace
        and _selects(p["spec"].get("podSelector"), subject.labels)
        and kind in p["spec"].get("policyTypes", ["Ingress"])
    ]
    if not selecting:
        return True  # not isolated in this direction
    for policy in selecting:
        ns = policy["metadata"].get("namespace", subject.namespace)
        for rule in policy["spec"].get(direction) or []:
            peers = rule.get(peers_key)
            if peers and not any(_peer_matches(peer, ns, other, ipblock_selects_pods) for peer in peers):
                continue
            if _port_matches(rule.get("ports"), port, protocol, dest):
                return True
    return False


def allowed(
    policies: list[dict[str, Any]],
    source: Pod,
    dest: Pod,
    port: int,
    protocol: str = "TCP",
    *,
    ipblock_selects_pods: bool,
) -> bool:
    """Whether `source` may open a connection to `port` of `dest`."""
    policies = [p for p in policies if p["kind"] == "NetworkPolicy"]
    return _direction_allows(
        policies, "egress", source, dest, port, protocol, dest, ipblock_selects_pods
    ) and _direction_allows(policies, "ingress", dest, source, port, protocol, dest, ipblock_selects_pods)
