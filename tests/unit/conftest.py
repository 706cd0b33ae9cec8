"""Fixtures of the component tests: the real program run under Pulumi mocks (components.cli.offline).

`deploy(**overrides)` runs `components.program.build` with the dev stack's config
(Pulumi.dev.yaml, hostCount 3) plus `overrides` (config keys without the namespace)
and returns a `Deployed`: the recorded registrations (with their resource options)
and the resolved stack outputs. Runs are cached per config: the program is
deterministic under the mocks and a run takes well under a second.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Callable, Iterable

import pytest
import yaml

from components.cli import offline
from components.model.settings import NAMESPACE

REPO = Path(__file__).resolve().parents[2]
PROJECT = "cloudstack-ec2"
SECRET_SIG_KEY = "4dabf18193072939515e22adb298388d"  # Pulumi's marker of a secret value on the wire

INSTANCE = "aws:ec2/instance:Instance"
ROUTE = "aws:ec2/route:Route"
ROUTE_TABLE = "aws:ec2/routeTable:RouteTable"
SECURITY_GROUP = "aws:ec2/securityGroup:SecurityGroup"
ROLE = "aws:iam/role:Role"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"


def dev_config() -> dict[str, Any]:
    return dict((yaml.safe_load((REPO / "Pulumi.dev.yaml").read_text()) or {})["config"])


class Deployed:
    """One offline run of the program, with lookups the tests share."""

    def __init__(self, run: offline.OfflineRun, config: dict[str, Any]):
        self.run = run
        self.config = config
        self.registrations = run.registrations
        self.outputs = run.outputs
        self.settings = run.result.settings
        self._by_urn = {r.urn: r for r in run.registrations}

    # --- lookups -------------------------------------------------------------
    def of_type(self, typ: str) -> list[offline.Registration]:
        return self.run.of_type(typ)

    def get(self, typ: str, name: str) -> offline.Registration:
        found = [r for r in self.registrations if r.type == typ and r.name == name]
        assert len(found) == 1, f"expected one {typ} named {name!r}, found {len(found)}"
        return found[0]

    def instance(self, name: str) -> offline.Registration:
        return self.get(INSTANCE, name)

    def instances(self) -> list[offline.Registration]:
        return self.of_type(INSTANCE)

    def host_instances(self) -> list[offline.Registration]:
        return sorted((r for r in self.instances() if r.name.startswith("kvm-host-")),
                      key=lambda r: int(r.name.rsplit("-", 1)[1]))

    def by_urn(self, urn: str) -> offline.Registration:
        return self._by_urn[urn]

    def value(self, reg: offline.Registration, key: str) -> Any:
        """An input, else the mocked state (ids and attributes AWS would compute)."""
        if key in reg.inputs:
            return reg.inputs[key]
        return reg.state.get(key)

    def ref(self, reg: offline.Registration) -> str:
        """The value another resource's input holds when it refers to `reg` (its id)."""
        return reg.id

    def children(self, parent: offline.Registration) -> list[offline.Registration]:
        return [r for r in self.registrations if r.parent_urn == parent.urn]

    def descendants(self, urn: str) -> set[str]:
        out: set[str] = set()
        todo = [urn]
        while todo:
            u = todo.pop()
            for r in self.registrations:
                if r.parent_urn == u and r.urn not in out:
                    out.add(r.urn)
                    todo.append(r.urn)
        return out

    def depends_on(self, reg: offline.Registration) -> set[str]:
        """Every URN `reg` waits for: its dependencies and theirs, and its parents'
        dependencies (a parent is registered first; its children are NOT waited for).
        A dependency on a component stands for all of that component's children."""
        seen: set[str] = set()
        visited: set[str] = set()
        todo = [reg.urn]
        while todo:
            urn = todo.pop()
            if urn in visited:
                continue
            visited.add(urn)
            current = self._by_urn.get(urn)
            if current is None:
                continue
            if current.parent_urn in self._by_urn:
                todo.append(current.parent_urn)  # its options, not its other children
            for dep in current.dependencies:
                for u in (dep, *self.descendants(dep)):
                    if u not in seen:
                        seen.add(u)
                        todo.append(u)
        return seen

    def depends_on_names(self, reg: offline.Registration) -> set[tuple[str, str]]:
        return {(self._by_urn[u].type, self._by_urn[u].name) for u in self.depends_on(reg) if u in self._by_urn}

    def placement(self, inst: offline.Registration) -> dict[str, Any]:
        """Where an instance is: subnetId, vpcSecurityGroupIds, associatePublicIpAddress,
        sourceDestCheck, from the instance or, when it launches on a network interface of
        its own (primaryNetworkInterface), from that interface."""
        eni_id = (inst.inputs.get("primaryNetworkInterface") or {}).get("networkInterfaceId")
        if not eni_id:
            return {k: inst.inputs.get(k) for k in ("subnetId", "vpcSecurityGroupIds", "associatePublicIpAddress",
                                                    "sourceDestCheck")}
        [eni] = [r for r in self.of_type("aws:ec2/networkInterface:NetworkInterface") if r.id == eni_id]
        # An interface has no public address of its own (CreateNetworkInterface has none to ask).
        return {"subnetId": eni.inputs.get("subnetId"), "vpcSecurityGroupIds": eni.inputs.get("securityGroups"),
                "associatePublicIpAddress": False, "sourceDestCheck": eni.inputs.get("sourceDestCheck")}

    def policy_document(self, role_prefix: str, which: str = "policy") -> dict:
        policies = [r for r in self.of_type(ROLE_POLICY) if r.name == f"{role_prefix}-{which}"]
        assert len(policies) == 1, f"expected one inline policy {role_prefix}-{which}, found {len(policies)}"
        return json.loads(policies[0].inputs["policy"])

    def secret_inputs(self) -> list[str]:
        """Where an input is a Pulumi secret ("<resource>.<input path>"): a value the stack's
        state would hold (encrypted, but readable by whoever can decrypt the state)."""
        found: list[str] = []

        def walk(value: Any, where: str) -> None:
            if self.is_secret(value):
                found.append(where)
            elif isinstance(value, dict):
                for k, v in value.items():
                    walk(v, f"{where}.{k}")
            elif isinstance(value, list):
                for i, v in enumerate(value):
                    walk(v, f"{where}[{i}]")

        for reg in self.registrations:
            inputs = dict(reg.inputs)
            if reg.type == "aws:ssm/parameter:Parameter" and inputs.get("type") == "String":
                # pulumi-aws marks every parameter's value secret, whatever it holds; the
                # String parameters hold endpoints, names and ARNs (components/model/naming.py).
                inputs.pop("value", None)
            # A dynamic provider's pickled code, which Pulumi always marks secret
            # (pulumi.dynamic serializes the provider as a secret input).
            inputs.pop("__provider", None)
            walk(inputs, reg.name)
        return found

    # --- value helpers (static: the tests cannot import this conftest by name) --
    @staticmethod
    def unwrap_secret(value: Any) -> Any:
        if isinstance(value, dict) and SECRET_SIG_KEY in value:
            return value["value"]
        return value

    @staticmethod
    def is_secret(value: Any) -> bool:
        return isinstance(value, dict) and SECRET_SIG_KEY in value

    @staticmethod
    def ingress(sg: offline.Registration) -> list[dict]:
        return list(sg.inputs.get("ingress") or [])

    @staticmethod
    def ports(rule: dict) -> tuple[int, int]:
        return int(rule.get("fromPort", 0)), int(rule.get("toPort", 0))

    @staticmethod
    def boot_script(inst: offline.Registration) -> str:
        from components.boot import decode_user_data

        return decode_user_data(inst.inputs["userDataBase64"])

    @staticmethod
    def boot_env(inst: offline.Registration) -> dict[str, str]:
        """The KEY="value" lines of the rendered boot.env and overlay.env in the user data."""
        script = Deployed.boot_script(inst)
        return {m.group(1): m.group(2) for m in re.finditer(r'^([A-Z][A-Z0-9_]*)="([^"]*)"$', script, re.M)}

    @staticmethod
    def strings(value: Any) -> Iterable[str]:
        """Every string inside a value (keys included), however nested."""
        if isinstance(value, str):
            yield value
        elif isinstance(value, dict):
            for k, v in value.items():
                yield str(k)
                yield from Deployed.strings(v)
        elif isinstance(value, (list, tuple)):
            for v in value:
                yield from Deployed.strings(v)


def run_program(overrides: dict[str, Any], stack: str = "dev", secret_keys: Iterable[str] = ()) -> Deployed:
    config = dev_config()
    config[f"{NAMESPACE}:hostCount"] = 3
    for key, value in overrides.items():
        config[key if ":" in key else f"{NAMESPACE}:{key}"] = value
    from components.program import build

    run = offline.run_offline(build, config, project=PROJECT, stack=stack,
                              region=str(config.get("aws:region", "us-east-1")),
                              subnet_cidrs={"cloudstack": str(config[f"{NAMESPACE}:cloudstackSubnetCidr"])},
                              secret_keys=[k if ":" in k else f"{NAMESPACE}:{k}" for k in secret_keys])
    return Deployed(run, config)


_CACHE: dict[str, Deployed] = {}


@pytest.fixture(scope="session")
def deploy() -> Callable[..., Deployed]:
    """deploy(stack="dev", **config overrides) -> Deployed (cached per stack and config)."""

    def _deploy(stack: str = "dev", **overrides: Any) -> Deployed:
        key = json.dumps([stack, overrides], sort_keys=True, default=str)
        if key not in _CACHE:
            _CACHE[key] = run_program(overrides, stack=stack)
        return _CACHE[key]

    return _deploy


@pytest.fixture(scope="session")
def dev(deploy) -> Deployed:
    """The dev stack with three KVM hosts."""
    return deploy()
