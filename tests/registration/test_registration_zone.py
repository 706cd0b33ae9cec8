"""The registration against the CloudStack API emulator: full zone, crash + re-run,
refresh/drift, diff, API down then up, transient and permanent errors, bad keys, trace."""

from __future__ import annotations

import json
import threading
import time

import boto3
import pytest
from registration_specs import FAST, REGION, SECRET_ID
from emulator.server import COMMANDS
from registration_engine import Crash, Engine
from registration_specs import make_spec

from components.registration.client import AuthError, RegistrationError, forget_connections
from components.registration.provider import CloudStackObjectProvider
from components.registration.spec import EFS_NFS_MOUNT_OPTIONS, Timeouts


def counts(emu):
    return {"zones": len(emu.zones), "physnets": len(emu.physnets), "traffic": len(emu.traffictypes),
            "pods": len(emu.pods), "vlans": len(emu.vlans), "clusters": len(emu.clusters),
            "hosts": len(emu.hosts), "pools": len(emu.pools), "imagestores": len(emu.imagestores)}


# vlans: the public range and the system VMs' public range (forsystemvms)
EXPECTED_ONE_HOST = {"zones": 1, "physnets": 1, "traffic": 3, "pods": 1, "vlans": 2, "clusters": 1, "hosts": 1,
                     "pools": 1, "imagestores": 1}


def test_full_zone_from_nothing_traced(emulator, api_secret, tmp_path, monkeypatch):
    trace = tmp_path / "trace.jsonl"
    monkeypatch.setenv("CLOUDSTACK_API_TRACE", str(trace))
    spec = make_spec(1, timeouts=FAST)
    engine = Engine(emulator.url, api_secret, REGION)
    engine.up(spec)

    assert counts(emulator) == EXPECTED_ONE_HOST
    zone = next(iter(emulator.zones.values()))
    assert zone["allocationstate"] == "Enabled" and zone["networktype"] == "Advanced"
    assert zone["dns1"] == zone["internaldns1"] == "10.0.0.2"   # VPC base + 2, never 169.254.169.253
    physnet = next(iter(emulator.physnets.values()))
    assert physnet["state"] == "Enabled" and physnet["vlan"] == "1000-1999"
    assert sorted(t["traffictype"] for t in emulator.traffictypes.values()) == ["Guest", "Management", "Public"]
    assert {t["kvmnetworklabel"] for t in emulator.traffictypes.values()} == {"cloudbr0"}
    enabled = {n["name"] for n in emulator.nsps.values() if n["state"] == "Enabled"}
    assert {"VirtualRouter", "VpcVirtualRouter", "InternalLbVm"} <= enabled
    pod = next(iter(emulator.pods.values()))
    assert (pod["gateway"], pod["netmask"], pod["startip"], pod["endip"]) == \
        ("10.100.0.1", "255.255.0.0", "10.100.64.1", "10.100.64.250")
    vlan = next(iter(emulator.vlans.values()))
    assert (vlan["gateway"], vlan["vlan"], vlan["forvirtualnetwork"]) == ("10.100.0.1", "vlan://untagged", True)
    host = emulator.host_by_ip("10.100.0.10")
    assert host["state"] == "Up" and host["resourcestate"] == "Enabled"
    pool = next(iter(emulator.pools.values()))
    assert (pool["ipaddress"], pool["path"], pool["scope"]) == \
        ("fs-1.efs.eu-west-1.amazonaws.com", "/zone1/primary", "ZONE")
    # KVM hosts mount EFS with AWS's options (pool detail nfsmountopts, CloudStack 4.20+)
    assert pool["nfsmountopts"] == EFS_NFS_MOUNT_OPTIONS
    assert {"noresvport", "hard", "timeo=600", "retrans=2", "vers=4.1"} <= set(pool["nfsmountopts"].split(","))
    store = next(iter(emulator.imagestores.values()))
    assert store["url"] == "nfs://fs-1.efs.eu-west-1.amazonaws.com/zone1/secondary"
    # the KVM cluster existed when the first image store came: the system VM template is registered
    assert emulator.system_templates[zone["id"]] == {"KVM"}
    assert emulator.config["storage.overprovisioning.factor"] == "1"
    assert emulator.config["host"] == "10.100.0.2"
    assert emulator.config["management.network.cidr"] == "10.100.0.0/16"

    # order of the creating calls: the installation guide's chapter 6, changed as
    # components/registration/plan.py says why
    creating = [r["command"] for r in emulator.accepted_calls()]
    first = {c: creating.index(c) for c in ("createZone", "createPhysicalNetwork", "addTrafficType",
                                            "createPod", "createVlanIpRange", "addCluster", "addHost",
                                            "createStoragePool", "addImageStore")}
    assert list(first) == sorted(first, key=first.get)
    host_setting = next(i for i, r in enumerate(emulator.accepted_calls())
                        if r["command"] == "updateConfiguration" and r["params"].get("name") == "host")
    assert host_setting < first["addHost"]
    enable = [i for i, r in enumerate(emulator.accepted_calls())
              if r["command"] == "updateZone" and r["params"].get("allocationstate") == "Enabled"]
    assert enable and enable[0] > first["addImageStore"]

    # the trace: one JSON object per call, only commands and parameters the contract accepts
    records = [json.loads(line) for line in trace.read_text().splitlines()]
    assert len(records) == len(emulator.requests) > 30
    for r in records:
        assert set(r) == {"command", "params", "status"}
        assert r["status"] == 200, r
        assert r["command"] in COMMANDS
        known = COMMANDS[r["command"]]["params"]
        for k, v in r["params"].items():
            if k.lower() in ("apikey", "signature"):
                assert v == "<redacted>"
            elif k not in ("response", "signatureVersion", "expires"):
                assert k.split("[")[0] in known, (r["command"], k)
        assert set(COMMANDS[r["command"]]["required"]) <= set(r["params"])
    text = trace.read_text()
    assert emulator.secretkey not in text and emulator.apikey not in text
    assert not any(r["command"] == "deleteHost" for r in records)


def test_rerun_is_a_no_op(emulator, api_secret):
    spec = make_spec(2, timeouts=FAST)
    engine = Engine(emulator.url, api_secret, REGION)
    engine.up(spec)
    engine.log.clear()
    before = len(emulator.requests)
    engine.up(spec)
    assert engine.log == []
    mutating = [r["command"] for r in emulator.requests[before:] if not r["command"].startswith(("list", "query"))]
    assert mutating == []


@pytest.mark.parametrize("crash_after", ["physical-network", "provider-virtualrouter", "cluster-0", "hosts-1",
                                         "image-store"])
def test_crash_midway_then_rerun_converges_without_duplicates(emulator, api_secret, crash_after):
    spec = make_spec(3, hosts_per_cluster=2, timeouts=FAST)
    engine = Engine(emulator.url, api_secret, REGION)
    with pytest.raises(Crash):
        engine.up(spec, crash_after=crash_after)
    assert crash_after not in engine.state   # the object exists in CloudStack, not in the state
    engine.up(spec)
    assert counts(emulator) == {**EXPECTED_ONE_HOST, "clusters": 2, "hosts": 3}
    assert next(iter(emulator.zones.values()))["allocationstate"] == "Enabled"
    # and with the whole state lost: everything is adopted, nothing duplicated
    lost = Engine(emulator.url, api_secret, REGION)
    lost.up(spec)
    assert {op for op, _ in lost.log} == {"create"}
    assert counts(emulator) == {**EXPECTED_ONE_HOST, "clusters": 2, "hosts": 3}
    assert {n: s["id"] for n, s in lost.state.items()} == {n: s["id"] for n, s in engine.state.items()}


def test_refresh_detects_drift_and_objects_deleted_outside(emulator, api_secret):
    spec = make_spec(1, timeouts=FAST)
    engine = Engine(emulator.url, api_secret, REGION)
    engine.up(spec)
    zone = next(iter(emulator.zones.values()))
    with emulator.lock:
        zone["dns1"] = "8.8.8.8"                                   # changed in the UI
        emulator.config["storage.overprovisioning.factor"] = "2"   # reset by someone
        emulator.imagestores.clear()                               # deleted outside
    report = engine.refresh()
    assert report["zone"] == "drift" and engine.state["zone"]["outs"]["dns1"] == "8.8.8.8"
    assert report["setting-storage-overprovisioning-factor"] == "drift"
    assert report["image-store"] == "gone" and "image-store" not in engine.state
    assert report["pod"] == "same" and report["hosts-0"] == "same"
    engine.log.clear()
    engine.up(spec)
    assert ("update", "zone") in engine.log and ("create", "image-store") in engine.log
    assert ("update", "setting-storage-overprovisioning-factor") in engine.log
    assert zone["dns1"] == "10.0.0.2" and emulator.config["storage.overprovisioning.factor"] == "1"
    assert len(emulator.imagestores) == 1


def test_diff_says_what_replaces_and_what_updates(emulator, api_secret):
    engine = Engine(emulator.url, api_secret, REGION)
    engine.up(make_spec(1, timeouts=FAST))

    def diff(name, /, **changes):
        s = engine.state[name]
        return CloudStackObjectProvider(s["kind"]).diff(s["id"], s["outs"], {**s["outs"], **changes})

    d = diff("zone", dns1="10.0.0.3")
    assert d.changes and not d.replaces
    d = diff("zone", networktype="Basic")
    assert d.replaces == ["networktype"] and d.delete_before_replace
    d = diff("physical-network", vlan="1000-2999")
    assert d.changes and not d.replaces
    assert diff("physical-network", isolationmethods="VXLAN").replaces == ["isolationmethods"]
    assert diff("traffic-guest", kvmnetworklabel="cloudbr1").replaces == []
    assert diff("pod", endip="10.100.64.200").replaces == []
    assert diff("public-range", endip="10.100.129.0").replaces == ["endip"]
    assert diff("cluster-0", clustername="other").replaces == []
    assert diff("hosts-0", clusterid="another").replaces == ["clusterid"]
    d = diff("hosts-0", hosts=[{"index": 0, "ipaddress": "10.100.0.10", "instance": ""},
                               {"index": 1, "ipaddress": "10.100.0.11", "instance": ""}])
    assert d.changes and not d.replaces   # a host more: an update of the cluster's hosts
    d = diff("hosts-0", username="root")
    assert d.changes and not d.replaces
    assert diff("primary-storage", url="nfs://fs-2/zone1/primary").replaces == ["url"]
    assert diff("primary-storage", name="renamed").replaces == []
    assert diff("image-store", url="nfs://fs-2/zone1/secondary").replaces == ["url"]
    assert diff("setting-host", value="10.100.0.3").replaces == []
    # new connection details are stored by an update that writes nothing to CloudStack
    d = diff("zone", endpoint="http://elsewhere:8080/client/api", timeouts={"api_wait": 1})
    assert d.changes and not d.replaces
    s = engine.state["zone"]
    requests_before = len(emulator.requests)
    moved = {**s["outs"], "endpoint": "http://127.0.0.1:9/client/api",
             "timeouts": {**s["outs"]["timeouts"], "api_wait": 7}}
    # Not even reachable: storing the new endpoint asks CloudStack nothing.
    r = CloudStackObjectProvider("zone").update(s["id"], s["outs"], moved)
    assert r.outs["timeouts"]["api_wait"] == 7 and r.outs["endpoint"] == "http://127.0.0.1:9/client/api"
    assert r.outs["id"] == s["outs"]["id"]
    assert len(emulator.requests) == requests_before
    # and an update really applies
    s = engine.state["pod"]
    r = CloudStackObjectProvider("pod").update(s["id"], s["outs"], {**s["outs"], "endip": "10.100.64.200"})
    assert r.outs["endip"] == "10.100.64.200" and next(iter(emulator.pods.values()))["endip"] == "10.100.64.200"


def test_api_down_then_up(aws, emulator, api_secret, caplog):
    # the management server is still booting: connections refused, then the web
    # container answers 503 without the API, then the API comes up
    emulator.refuse_connections_for(0.6)
    emulator.unavailable_for(1.0)
    spec = make_spec(1, timeouts=FAST)
    engine = Engine(emulator.url, api_secret, REGION)
    start = time.monotonic()
    engine.up(spec)
    assert time.monotonic() - start >= 0.6
    assert counts(emulator) == EXPECTED_ONE_HOST
    assert any("waiting for the CloudStack API" in r.getMessage() for r in caplog.records)


def test_api_never_up_fails_bounded(aws, api_secret, emulator):
    emulator.stop()
    t = Timeouts(**{**FAST.as_dict(), "api_wait": 0.5})
    engine = Engine(emulator.url, api_secret, REGION)
    start = time.monotonic()
    with pytest.raises(RegistrationError, match=r"not up after .*timeouts.api_wait") as e:
        engine.up(make_spec(1, timeouts=t))
    assert emulator.url in str(e.value)
    assert time.monotonic() - start < 5


def test_transient_errors_are_retried(emulator, api_secret):
    # 429 from the api-limit plugin, 503 from a starting web container, and a 530 whose text
    # names a passing state (ResourceManagerImpl.discoverHosts) are retried; nothing else
    emulator.inject_http_error("createPod", 429, count=1,
                               text="The given user has reached his/her account api limit, please retry later")
    emulator.inject_http_error("addCluster", 503, count=1, text="Service Unavailable")
    emulator.inject_http_error("addHost", 530, count=2, text="Guid is not updated for cluster with specified "
                               "cluster id; need to wait for hosts in this cluster to come up")
    engine = Engine(emulator.url, api_secret, REGION)
    engine.up(make_spec(1, timeouts=FAST))
    assert counts(emulator) == EXPECTED_ONE_HOST
    failed = [(r["command"], r["status"]) for r in emulator.requests if r["status"] != 200]
    assert failed == [("createPod", 429), ("addCluster", 503), ("addHost", 530), ("addHost", 530)]


@pytest.mark.parametrize("command, code, text", [
    # 530 is CloudStack's answer to every internal exception (ApiErrorCode.INTERNAL_ERROR)
    ("addCluster", 530, "Unable to create cluster zone1-cluster-0 in pod and data center with specified ids"),
    ("createPod", 533, "insufficient capacity"),
    ("createZone", 530, "java.lang.NullPointerException"),
])
def test_internal_errors_fail_at_once_naming_command_and_errortext(emulator, api_secret, command, code, text):
    emulator.inject_http_error(command, code, count=5, text=text)
    engine = Engine(emulator.url, api_secret, REGION)
    start = time.monotonic()
    with pytest.raises(RegistrationError) as e:
        engine.up(make_spec(1, timeouts=FAST))
    assert time.monotonic() - start < 2
    assert command in str(e.value) and f"errorcode {code}" in str(e.value) and text in str(e.value)
    assert sum(1 for r in emulator.requests if r["command"] == command) == 1


def test_failed_job_with_a_permanent_error_fails_at_once(emulator, api_secret):
    emulator.inject_job_failure("addTrafficType", count=5, code=530, text="Failed to add traffic type")
    with pytest.raises(RegistrationError, match="addTrafficType job .*Failed to add traffic type"):
        Engine(emulator.url, api_secret, REGION).up(make_spec(1, timeouts=FAST))
    assert sum(1 for r in emulator.requests if r["command"] == "addTrafficType") == 1


def test_a_missing_object_counts_as_gone(emulator, api_secret):
    from emulator.server import ApiError

    engine = Engine(emulator.url, api_secret, REGION)
    engine.up(make_spec(1, timeouts=FAST))
    real_delete = emulator._cmd_deleteImageStore

    def deleted_meanwhile(a):   # someone deleted it between our read and our delete
        real_delete(a)
        raise ApiError(530, f"Image store {a['id']} does not exist")

    emulator._cmd_deleteImageStore = deleted_meanwhile
    with emulator.lock:
        emulator.vms.clear()
    engine.destroy()
    assert counts(emulator) == {k: 0 for k in EXPECTED_ONE_HOST}
    assert [r["status"] for r in emulator.requests if r["command"] == "deleteImageStore"] == [530]


def test_permanent_error_fails_at_once_with_errortext(emulator, api_secret):
    emulator.inject_http_error("createPod", 431, count=5, text="Invalid parameter gateway")
    engine = Engine(emulator.url, api_secret, REGION)
    with pytest.raises(RegistrationError, match="createPod.*errorcode 431.*Invalid parameter gateway"):
        engine.up(make_spec(1, timeouts=FAST))
    assert sum(1 for r in emulator.requests if r["command"] == "createPod") == 1


def test_bad_keys_give_a_clear_error_naming_the_endpoint(aws, emulator):
    boto3.client("secretsmanager", region_name=REGION).create_secret(
        Name=SECRET_ID, SecretString=json.dumps({"apikey": emulator.apikey, "secretkey": "wrong"}))
    engine = Engine(emulator.url, SECRET_ID, REGION)
    start = time.monotonic()
    with pytest.raises(AuthError) as e:
        engine.up(make_spec(1, timeouts=Timeouts(**{**FAST.as_dict(), "api_wait": 30})))
    assert time.monotonic() - start < 5          # not waiting for the API: the keys are wrong
    msg = str(e.value)
    assert emulator.url in msg and "401" in msg and SECRET_ID in msg
    assert "clock" in msg   # signatureVersion 3 requests expire: a clock far behind is refused too
    assert "wrong" not in msg
    assert emulator.zones == {}


def test_waits_for_the_secret_value_then_registers(aws, emulator, caplog):
    sm = boto3.client("secretsmanager", region_name=REGION)
    sm.create_secret(Name=SECRET_ID)   # as the stack creates it: no value until the mgmt server writes it

    def write_later():
        time.sleep(0.5)
        sm.put_secret_value(SecretId=SECRET_ID,
                            SecretString=json.dumps({"apikey": emulator.apikey, "secretkey": emulator.secretkey}))

    threading.Thread(target=write_later, daemon=True).start()
    engine = Engine(emulator.url, SECRET_ID, REGION)
    engine.up(make_spec(1, timeouts=FAST))
    assert counts(emulator) == EXPECTED_ONE_HOST
    messages = [r.getMessage() for r in caplog.records]
    assert any("waiting for the management server to write" in m for m in messages)
    assert not any(emulator.secretkey in m for m in messages)


def test_secret_never_written_times_out_clearly(aws, emulator):
    boto3.client("secretsmanager", region_name=REGION).create_secret(Name=SECRET_ID)
    t = Timeouts(**{**FAST.as_dict(), "secret_wait": 0.4})
    with pytest.raises(RegistrationError, match=r"has no value after .*timeouts.secret_wait"):
        Engine(emulator.url, SECRET_ID, REGION).up(make_spec(1, timeouts=t))


def test_malformed_secret_is_refused_without_echoing_it(aws, emulator):
    boto3.client("secretsmanager", region_name=REGION).create_secret(
        Name=SECRET_ID, SecretString=json.dumps({"apikey": "k", "secret": "hunter2"}))
    with pytest.raises(RegistrationError) as e:
        Engine(emulator.url, SECRET_ID, REGION).up(make_spec(1, timeouts=FAST))
    assert "apikey" in str(e.value) and "hunter2" not in str(e.value)


def test_provider_pickles_without_state():
    import dill

    p = CloudStackObjectProvider("host")
    restored = dill.loads(dill.dumps(p, recurse=True))
    assert restored.kind == "host" and vars(restored) == {"kind": "host"}
    forget_connections()


def test_destroy_removes_everything_in_reverse_order(emulator, api_secret, tmp_path, monkeypatch):
    trace = tmp_path / "trace.jsonl"
    monkeypatch.setenv("CLOUDSTACK_API_TRACE", str(trace))
    engine = Engine(emulator.url, api_secret, REGION)
    engine.up(make_spec(2, timeouts=FAST))
    emulator.add_vm(emulator.host_by_ip("10.100.0.10")["id"], "vm")
    before = counts(emulator)
    # a VM still exists: the destroy stops first thing (the guard is deleted before anything
    # else, AWS resources included), naming it, with nothing deleted
    with pytest.raises(RegistrationError, match=r"not destroying: .* 1 VM\(s\): vm \(Running\).*"
                                                r"destroyWithRunningVms"):
        engine.destroy()
    assert counts(emulator) == before and emulator.lost_vms == []
    assert [op for op in engine.log if op[0] == "delete"] == []
    with emulator.lock:
        emulator.vms.clear()   # the user removed the VM
    engine.destroy()
    assert counts(emulator) == {k: 0 for k in EXPECTED_ONE_HOST}
    assert emulator.config["storage.overprovisioning.factor"] == "2"   # reset to the default
    records = [json.loads(line) for line in trace.read_text().splitlines()]
    assert all(r["command"] in COMMANDS for r in records)
    assert not any(r["command"] == "deleteHost" and "forced" in r["params"] for r in records)


def test_zone_enable_waits_until_the_system_vms_run(emulator, api_secret):
    emulator.system_vm_delay = 0.5
    Engine(emulator.url, api_secret, REGION).up(make_spec(1, timeouts=FAST))
    assert sorted((v["type"], v["state"]) for v in emulator.vms.values()) == [
        ("ConsoleProxy", "Running"), ("SecondaryStorageVm", "Running")]


def test_a_system_vm_that_never_runs_is_named_with_where_to_look(emulator, api_secret):
    emulator.stuck_system_vms = {"SecondaryStorageVm"}
    t = Timeouts(**{**FAST.as_dict(), "system_vms": 0.5})
    with pytest.raises(RegistrationError, match=r"secondary storage VM: s-1-VM Starting.*ssvm-check") as e:
        Engine(emulator.url, api_secret, REGION).up(make_spec(1, timeouts=t))
    assert "console proxy" not in str(e.value)


def test_system_vm_template_that_never_gets_ready_fails_bounded(emulator, api_secret):
    emulator.template_delay = 60
    t = Timeouts(**{**FAST.as_dict(), "system_vms": 0.5})
    with pytest.raises(RegistrationError, match=r"KVM system VM template is not Ready after 0.5s.*Installing"):
        Engine(emulator.url, api_secret, REGION).up(make_spec(1, timeouts=t))
    assert next(iter(emulator.zones.values()))["allocationstate"] == "Disabled"   # never enabled


def test_destroy_with_running_vms_allowed_tears_down_without_asking_cloudstack(emulator, api_secret):
    import dataclasses

    ready = "/cloudstack-ec2/test/host-ready"
    ssm = boto3.client("ssm", region_name=REGION)
    for ip in ("10.100.0.10", "10.100.0.11"):
        ssm.put_parameter(Name=f"{ready}/{ip}", Value="x", Type="String")
    engine = Engine(emulator.url, api_secret, REGION)
    engine.deferred["host_ready_prefix"] = ready
    spec = dataclasses.replace(make_spec(2, timeouts=FAST), allow_destroy_with_vms=True)
    engine.up(spec)
    emulator.add_vm(emulator.host_by_ip("10.100.0.10")["id"], "doomed")
    before = len(emulator.requests)
    engine.destroy()
    assert engine.state == {} and emulator.requests[before:] == []   # CloudStack goes with the stack
    assert ssm.get_parameters_by_path(Path=ready)["Parameters"] == []  # nothing left behind on AWS


def test_replacing_the_physical_network_of_an_enabled_zone(emulator, api_secret):
    """CloudStack refuses to delete a physical network with allocated public IPs (the system
    VMs'): the zone is disabled, its system VMs destroyed, and enabled again afterwards."""
    import dataclasses

    engine = Engine(emulator.url, api_secret, REGION)
    spec = make_spec(1, timeouts=FAST)
    engine.up(spec)
    old = next(iter(emulator.physnets))
    renamed = dataclasses.replace(spec, physical_network=dataclasses.replace(spec.physical_network, name="physnet2"))
    engine.up(renamed)
    assert list(emulator.physnets) != [old] and len(emulator.physnets) == 1
    assert next(iter(emulator.zones.values()))["allocationstate"] == "Enabled"
    assert sorted((v["type"], v["state"]) for v in emulator.vms.values()) == [
        ("ConsoleProxy", "Running"), ("SecondaryStorageVm", "Running")]
    assert counts(emulator) == EXPECTED_ONE_HOST


def test_replacing_the_physical_network_under_running_vms_is_refused_clearly(emulator, api_secret):
    import dataclasses

    engine = Engine(emulator.url, api_secret, REGION)
    spec = make_spec(1, timeouts=FAST)
    engine.up(spec)
    emulator.add_vm(emulator.host_by_ip("10.100.0.10")["id"], "web")
    renamed = dataclasses.replace(spec, physical_network=dataclasses.replace(spec.physical_network, name="physnet2"))
    with pytest.raises(RegistrationError, match="cannot be deleted or replaced while zone .* web"):
        engine.up(renamed)
    assert next(iter(emulator.zones.values()))["allocationstate"] == "Enabled" and len(emulator.physnets) == 1


def test_refresh_returns_the_inputs_as_cloudstack_has_them(emulator, api_secret):
    engine = Engine(emulator.url, api_secret, REGION)
    engine.up(make_spec(1, timeouts=FAST))
    with emulator.lock:
        next(iter(emulator.zones.values()))["dns1"] = "8.8.8.8"
    s = engine.state["zone"]
    r = CloudStackObjectProvider("zone").read(s["id"], s["outs"])
    assert r.inputs["dns1"] == "8.8.8.8" and "id" not in r.inputs
    assert set(r.inputs) == set(s["outs"]) - {"id"}
    h = engine.state["hosts-0"]
    r = CloudStackObjectProvider("cluster_hosts").read(h["id"], h["outs"])
    assert "host_ids" not in r.inputs and r.inputs["hosts"] == h["outs"]["hosts"]


def test_an_nfs_version_3_for_secondary_storage_is_refused_with_the_fix(emulator, api_secret):
    # EFS serves NFS 4.0/4.1 only: with secstorage.nfs.version 3 every system VM mount of the
    # store fails. Refused before the store is added, naming the setting, its value and the fix.
    emulator.seed_configuration("secstorage.nfs.version", "3")
    engine = Engine(emulator.url, api_secret, REGION)
    with pytest.raises(Exception) as err:
        engine.up(make_spec(1, timeouts=FAST))
    text = str(err.value)
    assert "secstorage.nfs.version is 3 globally" in text and "NFS 4.0 and 4.1 only" in text
    assert "value=4.1" in text and emulator.imagestores == {}
    # Fixed globally, but the store (added by an earlier run that stopped, adopted now) has a 3 of
    # its own, which wins (SystemVmTemplateRegistration.getNfsVersion): refused too.
    emulator.seed_configuration("secstorage.nfs.version", "4.1")
    from cs import CloudStack

    c = CloudStack(endpoint=emulator.url, key=emulator.apikey, secret=emulator.secretkey, method="post")
    zone = next(iter(emulator.zones.values()))
    spec = make_spec(1, timeouts=FAST)
    store = c.addImageStore(zoneid=zone["id"], name=spec.storage.secondary_name, provider="NFS",
                            url=f"nfs://{engine.deferred['efs_dns']}{spec.storage.secondary_path}")["imagestore"]
    c.updateConfiguration(name="secstorage.nfs.version", value="3", imagestoreuuid=store["id"])
    assert c.listConfigurations(name="secstorage.nfs.version")["configuration"][0]["value"] == "4.1"
    with pytest.raises(Exception, match=f"is 3 for image store {store['id']}.*imagestoreuuid={store['id']}"):
        engine.up(spec)
    c.updateConfiguration(name="secstorage.nfs.version", value="4.1", imagestoreuuid=store["id"])
    engine.up(spec)
    assert list(emulator.imagestores) == [store["id"]]
