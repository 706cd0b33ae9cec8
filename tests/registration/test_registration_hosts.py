"""Adding hosts: long addHost calls, hosts not ready yet, concurrency per cluster, and the
scale-out benchmark (run it with `-m benchmark`)."""

from __future__ import annotations

import time

import pytest
from registration_engine import Engine
from registration_specs import FAST, REGION, make_spec

from components.registration.client import RegistrationError
from components.registration.spec import Timeouts


def test_slow_add_host_is_looked_up_after_the_timeout_never_sent_twice(emulator, api_secret):
    # addHost answers only once the agent is Up (LibvirtServerDiscoverer.find): here 1.6 s,
    # longer than its HTTP timeout; the host is found by address once it appears.
    emulator.add_host_delay = 1.6
    t = Timeouts(**{**FAST.as_dict(), "add_host_http": 1, "host_up": 10})
    engine = Engine(emulator.url, api_secret, REGION)
    engine.up(make_spec(1, timeouts=t))
    assert [h["state"] for h in emulator.hosts.values()] == ["Up"]
    assert sum(1 for r in emulator.requests if r["command"] == "addHost") <= 1   # the timed-out one is not logged
    assert emulator.duplicate_adds == []


def test_add_host_that_never_appears_fails_without_a_second_add(emulator, api_secret):
    emulator.add_host_delay = 4
    t = Timeouts(**{**FAST.as_dict(), "add_host_http": 1, "host_up": 1.5})
    with pytest.raises(RegistrationError, match=r"did not answer addHost within 1s.*Not sending addHost again"):
        Engine(emulator.url, api_secret, REGION).up(make_spec(1, timeouts=t))
    assert emulator.duplicate_adds == []


def test_host_not_ready_yet_is_retried_within_host_up(emulator, api_secret):
    # the management server's key is not authorized yet: addHost fails "Authentication error"
    emulator.unready_hosts["10.100.0.11"] = "no-key"

    def ready_later():
        time.sleep(0.5)
        emulator.unready_hosts.clear()

    import threading
    threading.Thread(target=ready_later, daemon=True).start()
    Engine(emulator.url, api_secret, REGION).up(make_spec(2, timeouts=FAST))
    assert sorted(h["ipaddress"] for h in emulator.hosts.values()) == ["10.100.0.10", "10.100.0.11"]


def test_host_never_ready_fails_naming_the_agent_and_the_key(emulator, api_secret):
    emulator.unready_hosts["10.100.0.10"] = "no-agent"
    t = Timeouts(**{**FAST.as_dict(), "host_up": 0.5})
    with pytest.raises(RegistrationError, match=r"host 10.100.0.10 is not Up after 0.5s.*cloudstack-agent.*"
                                                r"authorized_keys"):
        Engine(emulator.url, api_secret, REGION).up(make_spec(1, timeouts=t))


def test_a_cluster_adds_its_hosts_concurrently(emulator, api_secret):
    emulator.add_host_delay = 0.3
    engine = Engine(emulator.url, api_secret, REGION, workers=4)
    engine.up(make_spec(6, timeouts=FAST))
    assert len(emulator.hosts) == 6 and emulator.most_adding == 6 and emulator.duplicate_adds == []


def test_replaced_instance_re_registers_its_host(emulator, api_secret):
    engine = Engine(emulator.url, api_secret, REGION)
    engine.deferred.update({"instance-0": "i-0", "instance-1": "i-1"})
    engine.up(make_spec(2, timeouts=FAST))
    old_id = emulator.host_by_ip("10.100.0.11")["id"]
    emulator.kill_host("10.100.0.11")            # the instance was lost, Pulumi made a new one
    engine.deferred["instance-1"] = "i-1b"
    engine.up(make_spec(2, timeouts=FAST))
    host = emulator.host_by_ip("10.100.0.11")
    assert host["id"] != old_id and host["state"] == "Up" and len(emulator.hosts) == 2


@pytest.mark.benchmark
def test_benchmark_scale_out_cost_grows_with_clusters_not_hosts(api_secret):
    """Wall time of `pulumi up` adding 4 vs 32 hosts (a fresh cloud each), every addHost taking
    the same time, under an engine that runs at most 4 provider calls at once (the dynamic
    provider host)."""
    from emulator.server import Emulator

    from components.registration.client import forget_connections

    times = {}
    for n in (4, 32):
        emu = Emulator(add_host_delay=1.0).start()
        try:
            forget_connections()
            engine = Engine(emu.url, api_secret, REGION, workers=4)
            start = time.monotonic()
            engine.up(make_spec(n, timeouts=Timeouts(**{**FAST.as_dict(), "host_up": 60, "add_host_http": 30})))
            times[n] = time.monotonic() - start
            assert len(emu.hosts) == n and emu.duplicate_adds == []
        finally:
            emu.stop()
    print(f"\nscale-out: 4 hosts {times[4]:.2f}s, 32 hosts {times[32]:.2f}s, ratio {times[32] / times[4]:.2f} "
          f"(each addHost 1s; with one resource per host it would be about 32/4 = 8)")


READY = "/cloudstack-ec2/test/host-ready"


def test_add_host_waits_for_the_hosts_readiness_signal(emulator, api_secret):
    import threading

    import boto3

    added_before_signal = []

    def boot_finishes():
        time.sleep(0.6)
        added_before_signal.append(any(r["command"] == "addHost" for r in emulator.requests))
        boto3.client("ssm", region_name=REGION).put_parameter(Name=f"{READY}/10.100.0.10", Value="x",
                                                              Type="String", Overwrite=True)

    threading.Thread(target=boot_finishes, daemon=True).start()
    engine = Engine(emulator.url, api_secret, REGION)
    engine.deferred["host_ready_prefix"] = READY
    engine.up(make_spec(1, timeouts=FAST))
    assert added_before_signal == [False] and len(emulator.hosts) == 1


def ssm_as_instance(instance: str):
    """An SSM client with the credentials EC2 gives instance `instance`: a session of the hosts'
    role named by the instance id (AWS EC2 User Guide, "IAM roles for Amazon EC2")."""
    import boto3

    creds = boto3.client("sts", region_name=REGION).assume_role(
        RoleArn="arn:aws:iam::123456789012:role/kvm-host-role", RoleSessionName=instance)["Credentials"]
    return boto3.client("ssm", region_name=REGION, aws_access_key_id=creds["AccessKeyId"],
                        aws_secret_access_key=creds["SecretAccessKey"], aws_session_token=creds["SessionToken"])


def run_instance() -> str:
    import boto3

    return boto3.client("ec2", region_name=REGION).run_instances(
        ImageId="ami-12c6146b", MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]


def test_a_replaced_instance_does_not_pass_on_its_predecessors_signal(emulator, api_secret):
    old, instance = run_instance(), run_instance()
    ssm_as_instance(old).put_parameter(Name=f"{READY}/10.100.0.10", Value="old", Type="String")
    engine = Engine(emulator.url, api_secret, REGION)
    engine.deferred.update({"host_ready_prefix": READY, "instance-0": instance})
    with pytest.raises(RegistrationError, match="has not signalled readiness yet"):
        engine.up(make_spec(1, timeouts=Timeouts(**{**FAST.as_dict(), "host_up": 0.5})))
    assert not any(r["command"] == "addHost" for r in emulator.requests)
    ssm_as_instance(instance).put_parameter(Name=f"{READY}/10.100.0.10", Value="new", Type="String", Overwrite=True)
    engine.up(make_spec(1, timeouts=FAST))
    assert len(emulator.hosts) == 1


@pytest.mark.parametrize("writer", ["another host", "another principal"])
def test_a_marker_the_hosts_own_instance_did_not_write_is_not_accepted(emulator, api_secret, caplog, writer):
    """The hosts' role may write every host-ready name: a marker counts only when the host's own
    instance wrote it (LastModifiedUser names its role session, the instance id)."""
    import boto3

    instance, other = run_instance(), run_instance()
    ssm = ssm_as_instance(other) if writer == "another host" else boto3.client("ssm", region_name=REGION)
    ssm.put_parameter(Name=f"{READY}/10.100.0.10", Value="x", Type="String")
    engine = Engine(emulator.url, api_secret, REGION)
    engine.deferred.update({"host_ready_prefix": READY, "instance-0": instance})
    with pytest.raises(RegistrationError, match="has not signalled readiness yet"):
        engine.up(make_spec(1, timeouts=Timeouts(**{**FAST.as_dict(), "host_up": 0.5})))
    assert not any(r["command"] == "addHost" for r in emulator.requests)
    principal = (f"arn:aws:sts::123456789012:assumed-role/kvm-host-role/{other}" if writer == "another host"
                 else "arn:aws:sts::123456789012:user/moto")
    assert f"was written by {principal}, not by the host's instance {instance}" in caplog.text


def test_the_newest_writer_counts_whatever_describe_parameters_pages_show(emulator, api_secret, monkeypatch):
    """DescribeParameters is best-effort: a page may be empty with a NextToken while the
    parameter exists (AWS Systems Manager API Reference, DescribeParameters). The readiness
    check reads the parameter's own history, whose newest version names the last writer."""
    from moto.ssm.responses import ActionResult, SimpleSystemManagerResponse

    def empty_page(self):
        return ActionResult({"Parameters": [], "NextToken": "more"})

    monkeypatch.setattr(SimpleSystemManagerResponse, "describe_parameters", empty_page)
    instance, other = run_instance(), run_instance()
    ssm_as_instance(instance).put_parameter(Name=f"{READY}/10.100.0.10", Value="x", Type="String")
    ssm_as_instance(other).put_parameter(Name=f"{READY}/10.100.0.10", Value="y", Type="String", Overwrite=True)
    engine = Engine(emulator.url, api_secret, REGION)
    engine.deferred.update({"host_ready_prefix": READY, "instance-0": instance})
    with pytest.raises(RegistrationError, match="has not signalled readiness yet"):
        engine.up(make_spec(1, timeouts=Timeouts(**{**FAST.as_dict(), "host_up": 0.5})))
    ssm_as_instance(instance).put_parameter(Name=f"{READY}/10.100.0.10", Value="z", Type="String", Overwrite=True)
    engine.up(make_spec(1, timeouts=FAST))
    assert len(emulator.hosts) == 1


def test_scale_in_deletes_the_readiness_parameter(emulator, api_secret):
    import boto3

    ssm = boto3.client("ssm", region_name=REGION)
    for ip in ("10.100.0.10", "10.100.0.11"):
        ssm.put_parameter(Name=f"{READY}/{ip}", Value="x", Type="String")
    engine = Engine(emulator.url, api_secret, REGION)
    engine.deferred["host_ready_prefix"] = READY
    engine.up(make_spec(2, timeouts=FAST))
    engine.up(make_spec(1, timeouts=FAST))
    names = [p["Name"] for p in ssm.get_parameters_by_path(Path=READY)["Parameters"]]
    assert names == [f"{READY}/10.100.0.10"]


def test_slow_add_image_store_is_looked_up_by_name_never_sent_twice(emulator, api_secret):
    emulator.add_image_store_delay = 2.5
    t = Timeouts(**{**FAST.as_dict(), "storage_http": 1})
    Engine(emulator.url, api_secret, REGION).up(make_spec(1, timeouts=t))
    assert len(emulator.imagestores) == 1
    assert sum(1 for r in emulator.requests if r["command"] == "addImageStore") <= 1
