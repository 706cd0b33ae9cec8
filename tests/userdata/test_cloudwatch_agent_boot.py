"""The CloudWatch agent at boot (userdata/cloudwatch-agent.sh, run by csec2_cloudwatch_agent):
AWS's package installed only with AWS's signature, its configuration loaded from the role's
parameter; on the management server the exporter's scrape configuration; a failure costs the
logs, never the boot."""

import re

import yaml

from bootlab import BOOT_BUCKET, KVM_HOST, MANAGEMENT, PREFIX, ROUTER, boot_files, is_s3_cp, publish_for_hosts, render
from components import boot as ud
from components.model import monitoring

AGENT_OBJECT = f"{BOOT_BUCKET}/{ud.boot_object(ud.AGENT_OBJECT).key}"


def agent_state(machine) -> dict:
    return machine.state()["cloudwatch_agent"]


def test_management_server_runs_the_signed_agent_with_its_configuration_and_the_exporter_scrape(machine):
    r = machine.run_user_data(render(MANAGEMENT))
    assert r.status == 0, r.output
    state = machine.state()
    assert "amazon-cloudwatch-agent" in state["packages"]
    assert state["cloudwatch_agent"]["running_with"] == f"{PREFIX}/cloudwatch-agent/management"
    downloads = [c["args"][-1] for c in machine.calls() if c["cmd"] == "curl" and "amazoncloudwatch-agent" in c["args"][-1]]
    base = "https://amazoncloudwatch-agent-eu-west-1.s3.eu-west-1.amazonaws.com"
    assert downloads == [f"{base}/assets/amazon-cloudwatch-agent.gpg",
                         f"{base}/ubuntu/amd64/latest/amazon-cloudwatch-agent.deb",
                         f"{base}/ubuntu/amd64/latest/amazon-cloudwatch-agent.deb.sig"]
    # The scrape configuration is where the agent's configuration says, for the exporter on the loopback.
    scrape = yaml.safe_load(machine.file(monitoring.PROMETHEUS_CONFIG_PATH).read_text())
    [job] = scrape["scrape_configs"]
    assert job["job_name"] == monitoring.PROMETHEUS_JOB
    assert job["static_configs"] == [{"targets": [f"{monitoring.EXPORTER_CLIENT}:{monitoring.EXPORTER_PORT}"]}]
    assert f"{scrape['global']['scrape_interval']}" == f"{monitoring.INTERVAL_SECONDS}s"
    # The installer is kept, verified, for re-runs.
    assert machine.file("/usr/local/lib/cloudstack-ec2/cloudwatch-agent.sh").read_text() == \
        boot_files()["cloudwatch-agent.sh"]


def test_router_runs_the_agent_without_a_scrape_configuration(machine):
    r = machine.run_user_data(render(ROUTER))
    assert r.status == 0, r.output
    assert agent_state(machine)["running_with"] == f"{PREFIX}/cloudwatch-agent/router"
    assert not machine.file(monitoring.PROMETHEUS_CONFIG_PATH).exists()


def test_a_key_of_another_fingerprint_installs_nothing_and_the_boot_goes_on(machine):
    machine.update(lambda s: s["cloudwatch_agent"].update(key_fingerprints=["0" * 40]))
    r = machine.run_user_data(render(ROUTER))
    assert r.status == 0, r.output
    assert "amazon-cloudwatch-agent" not in machine.state()["packages"]
    assert "expected 937616F3450B7D806CBD9725D58167303B789C72: not installing" in r.output
    assert "WARNING: no CloudWatch agent" in r.output


def test_a_second_key_in_the_key_file_installs_nothing(machine):
    machine.update(lambda s: s["cloudwatch_agent"]["key_fingerprints"].append("1" * 40))
    assert machine.run_user_data(render(ROUTER)).status == 0
    assert "amazon-cloudwatch-agent" not in machine.state()["packages"]


def test_a_package_without_aws_signature_is_not_installed(machine):
    machine.update(lambda s: s["cloudwatch_agent"].update(signature_good=False))
    r = machine.run_user_data(render(ROUTER))
    assert r.status == 0, r.output
    assert "amazon-cloudwatch-agent" not in machine.state()["packages"]
    assert "does not carry AWS's signature" in r.output


def test_an_installer_object_that_is_not_the_one_named_is_not_run(machine):
    publish_for_hosts(machine)
    machine.update(lambda s: s["s3"]["objects"].update({AGENT_OBJECT: "#!/bin/bash\ntouch /tmp/owned\n"}))
    r = machine.run_user_data(render(KVM_HOST))
    assert r.status == 0, r.output
    assert any(is_s3_cp(c) and c["args"][-2] == f"s3://{AGENT_OBJECT}" for c in machine.calls())
    assert "running_with" not in agent_state(machine)
    assert not any(c["cmd"] == "curl" and "amazoncloudwatch-agent" in c["args"][-1] for c in machine.calls())
    assert "WARNING: no CloudWatch agent" in r.output


def test_a_missing_configuration_parameter_is_reported(machine):
    machine.update(lambda s: s["ssm"].pop(f"{PREFIX}/cloudwatch-agent/router"))
    r = machine.run_user_data(render(ROUTER))
    assert r.status == 0, r.output
    assert f"could not load the configuration ssm:{PREFIX}/cloudwatch-agent/router" in r.output


def test_router_logs_what_its_firewall_refused_once_a_minute(machine):
    """`router.sh forwards` (the timer, once a minute) writes one line per named counter that
    grew since its last run: what the CloudWatch agent ships as the router's drop log."""
    assert machine.run_user_data(render(ROUTER)).status == 0
    counters = {"tenant_refused": [0, 0], "forged_refused": [0, 0], "tenant_new_limited": [0, 0]}
    machine.update(lambda s: s.update(nft_counters=counters))
    assert machine.rerun("router.sh", args=["forwards"]).status == 0
    log = machine.file(monitoring.ROUTER_DROP_LOG)
    assert log.read_text() == ""
    counters.update(tenant_refused=[12, 720], forged_refused=[3, 180])
    machine.update(lambda s: s.update(nft_counters=counters))
    assert machine.rerun("router.sh", args=["forwards"]).status == 0
    lines = log.read_text().splitlines()
    # In nft's order of the counters: compared as a set.
    assert {line.split(" ", 1)[1] for line in lines} == {
        "refused tenant_refused: 12 packet(s) in the last minute (12 in all, 720 bytes)",
        "refused forged_refused: 3 packet(s) in the last minute (3 in all, 180 bytes)"}
    assert all(re.match(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z ", line) for line in lines)
    # Nothing new: nothing written; a counter reset (the table loaded again) counts from zero.
    assert machine.rerun("router.sh", args=["forwards"]).status == 0
    assert len(log.read_text().splitlines()) == 2
    counters.update(tenant_refused=[5, 300])
    machine.update(lambda s: s.update(nft_counters=counters))
    assert machine.rerun("router.sh", args=["forwards"]).status == 0
    assert log.read_text().splitlines()[-1].endswith("refused tenant_refused: 5 packet(s) in the last minute "
                                                     "(5 in all, 300 bytes)")
