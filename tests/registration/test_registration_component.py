"""CloudStackRegistration under Pulumi mocks: the children, their parent and their dependencies."""

from __future__ import annotations

import pulumi
import pytest
from pulumi.runtime.mocks import MockMonitor
from registration_specs import make_spec

from components.registration.component import CloudStackRegistration, CloudStackRegistrationArgs


class Mocks(pulumi.runtime.Mocks):
    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        outs = dict(args.inputs)
        if "hosts" in outs:   # a cluster's hosts: the provider reports host index → CloudStack id
            outs["host_ids"] = {str(int(h["index"])): f"{args.name}-{int(h['index'])}" for h in outs["hosts"]}
        return f"{args.name}-id", outs

    def call(self, args: pulumi.runtime.MockCallArgs):
        return {}


class RecordingMonitor(MockMonitor):
    def __init__(self, mocks):
        super().__init__(mocks)
        self.registered: dict[str, dict] = {}

    def RegisterResource(self, request):
        self.registered[request.name] = {"type": request.type, "parent": request.parent,
                                         "dependencies": list(request.dependencies)}
        return super().RegisterResource(request)


@pytest.fixture
def monitor():
    mocks = Mocks()
    mon = RecordingMonitor(mocks)
    pulumi.runtime.set_mocks(mocks, preview=False, monitor=mon)
    return mon


class Instance(pulumi.CustomResource):
    def __init__(self, name):
        super().__init__("aws:ec2/instance:Instance", name, {})


def short(urn: str) -> str:
    return urn.rsplit("::", 1)[-1]


@pulumi.runtime.test
def test_component_declares_children_in_order_with_dependencies(monitor):
    spec = make_spec(17, hosts_per_cluster=16)
    mgmt = Instance("mgmt")
    database = Instance("rds")
    hosts = {i: Instance(f"kvm-{i}") for i in range(17)}
    reg = CloudStackRegistration("reg", CloudStackRegistrationArgs(
        spec=spec, api_url="http://203.0.113.10:8080/client/api", api_keys_secret_id="/cloudstack-ec2/dev/api-keys",
        region="eu-west-1", efs_dns=pulumi.Output.from_input("fs-1.efs.eu-west-1.amazonaws.com"),
        host_dependencies=hosts, depends_on=[mgmt], guarded=[database]))

    def check(_):
        r = monitor.registered
        comp = r["reg"]
        assert comp["type"] == "cloudstack-ec2:registration:CloudStackRegistration"
        children = {n: v for n, v in r.items() if n.startswith("reg-")}
        expected = {"reg-zone", "reg-physical-network", "reg-traffic-management", "reg-traffic-guest",
                    "reg-traffic-public", "reg-provider-virtualrouter", "reg-provider-vpcvirtualrouter",
                    "reg-provider-internallbvm", "reg-pod", "reg-public-range", "reg-system-public-range",
                    "reg-cluster-0", "reg-cluster-1",
                    "reg-primary-storage", "reg-image-store", "reg-zone-enable",
                    "reg-setting-storage-overprovisioning-factor", "reg-setting-host",
                    "reg-setting-management-network-cidr", "reg-setting-migrate-vm-across-clusters",
                    "reg-setting-vr-public-interface-max-mtu", "reg-setting-vr-private-interface-max-mtu",
                    "reg-setting-consoleproxy-launch-max",
                    "reg-setting-system-vm-public-ip-reservation-mode-strictness",
                    "reg-setting-indirect-agent-lb-algorithm", "reg-management-servers",
                    "reg-hosts-0", "reg-hosts-1", "reg-workload-guard"}
        assert set(children) == expected
        for v in children.values():
            assert v["parent"].endswith("cloudstack-ec2:registration:CloudStackRegistration::reg")
            assert v["type"].startswith("pulumi-python:dynamic/cloudstack:")
            assert any(short(d) == "mgmt" for d in v["dependencies"])   # the component's depends_on

        def deps(name):
            return {short(d) for d in children[name]["dependencies"]}

        # one resource per cluster, depending on its hosts' instances (and only those)
        assert {"reg-cluster-1", "kvm-16", "reg-setting-host"} <= deps("reg-hosts-1")
        assert "kvm-3" in deps("reg-hosts-0") and "kvm-16" not in deps("reg-hosts-0")
        assert "kvm-3" not in deps("reg-hosts-1")
        # a leaving management server is drained once the agents have the new list
        assert {"reg-setting-host", "reg-setting-indirect-agent-lb-algorithm"} <= deps("reg-management-servers")
        assert "reg-hosts-0" in deps("reg-primary-storage")
        assert {"reg-cluster-0", "reg-primary-storage"} <= deps("reg-image-store")
        assert {"reg-image-store", "reg-primary-storage"} <= deps("reg-zone-enable")
        assert "reg-zone" in deps("reg-physical-network")
        order = list(r)
        assert order.index("reg-cluster-0") < order.index("reg-image-store")
        assert order.index("reg-hosts-0") < order.index("reg-primary-storage")
        assert order[-1] == "reg-workload-guard" and order[-2] == "reg-zone-enable"
        # the guard depends on every other part of the stack: `pulumi destroy` deletes it first
        assert {"rds", "reg-zone-enable", "reg-hosts-0", "reg-hosts-1"} <= deps("reg-workload-guard")
        assert all("rds" not in deps(n) for n in children if n != "reg-workload-guard")

    return pulumi.Output.all(*[c.id for c in reg.children.values()]).apply(check)


@pulumi.runtime.test
def test_component_inputs_resolve(monitor):
    spec = make_spec(2)
    reg = CloudStackRegistration("r2", CloudStackRegistrationArgs(
        spec=spec, api_url="http://x:8080/client/api", api_keys_secret_id="s", region="eu-west-1",
        efs_dns="fs-9.efs"))
    store = reg.children["image-store"]
    hosts = reg.children["hosts-0"]

    def check(args):
        url, cluster, ids = args
        assert url == "nfs://fs-9.efs/zone1/secondary"
        assert cluster == "r2-cluster-0-id"
        assert ids == {"0": "r2-hosts-0-0", "1": "r2-hosts-0-1"}
        # no secret in the inputs: only where to find it
        assert "secretkey" not in str(monitor.registered)

    return pulumi.Output.all(store.url, hosts.clusterid, reg.host_ids).apply(check)


def test_unknown_host_dependency_is_refused(monitor):
    with pytest.raises(ValueError, match=r"host_dependencies has indexes \[5\]"):
        CloudStackRegistration("r3", CloudStackRegistrationArgs(
            spec=make_spec(2), api_url="u", api_keys_secret_id="s", region="r", efs_dns="e",
            host_dependencies={5: Instance("x")}))


@pulumi.runtime.test
def test_console_forwards_are_planned_with_a_parameter_and_guarded(monitor):
    param = pulumi.Output.from_input("/cloudstack-ec2/dev/console-forwards")
    reg = CloudStackRegistration("r4", CloudStackRegistrationArgs(
        spec=make_spec(1), api_url="http://x:8080/client/api", api_keys_secret_id="s", region="eu-west-1",
        efs_dns="fs-9.efs", console_forwards_parameter=param, console_address="203.0.113.20"))
    child = reg.children["console-forwards"]

    def check(args):
        name, address, zoneid = args[:3]
        assert (name, address, zoneid) == ("/cloudstack-ec2/dev/console-forwards", "203.0.113.20", "r4-zone-id")
        r = monitor.registered
        assert r["r4-console-forwards"]["type"] == "pulumi-python:dynamic/cloudstack:ConsoleForwards"
        assert "r4-zone-enable" in {short(d) for d in r["r4-console-forwards"]["dependencies"]}
        assert "r4-console-forwards" in {short(d) for d in r["r4-workload-guard"]["dependencies"]}

    return pulumi.Output.all(child.parameter_name, child.console_address, child.zoneid,
                             *[c.id for c in reg.children.values()]).apply(check)


def test_no_console_forwards_without_a_parameter(monitor):
    reg = CloudStackRegistration("r5", CloudStackRegistrationArgs(
        spec=make_spec(1), api_url="u", api_keys_secret_id="s", region="r", efs_dns="e"))
    assert "console-forwards" not in reg.children and reg.console_proxy_ip is None
