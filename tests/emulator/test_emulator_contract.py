"""The emulator itself: it must refuse what the real server refuses, or the registration
tests would prove nothing."""

from __future__ import annotations

import socket
import time
from datetime import datetime, timedelta, timezone

import pytest
import requests
from cs import CloudStack

from emulator.server import COMMANDS, TEMPLATES, Emulator, signature_of


@pytest.fixture
def emu():
    e = Emulator().start()
    yield e
    e.stop()


def signed(emu, secret=None, expires_in=600, **params):
    p = {"apiKey": emu.apikey, "response": "json", "signatureVersion": "3",
         "expires": (datetime.now(timezone.utc) + timedelta(seconds=expires_in)).strftime("%Y-%m-%dT%H:%M:%S%z"),
         **params}
    p["signature"] = signature_of(p, secret or emu.secretkey)
    return p


def post(emu, params):
    r = requests.post(emu.url, data=params, timeout=5)
    return r.status_code, r.json()


def test_contract_copy_is_complete():
    assert len(COMMANDS) > 800 and COMMANDS["addHost"]["required"] == ["hypervisor", "podid", "url", "zoneid"]


def test_signature_checked_like_the_real_server(emu):
    assert post(emu, signed(emu, command="listZones"))[0] == 200
    status, body = post(emu, signed(emu, secret="wrong", command="listZones"))
    assert status == 401 and body["listzonesresponse"]["errorcode"] == 401
    assert post(emu, signed(emu, expires_in=-60, command="listZones"))[0] == 401
    tampered = signed(emu, command="listZones")
    tampered["name"] = "x"   # added after signing
    assert post(emu, tampered)[0] == 401
    assert post(emu, {"command": "listZones", "response": "json"})[0] == 401
    # the cs client's own signing (GET and POST) is accepted
    for method in ("get", "post"):
        assert CloudStack(endpoint=emu.url, key=emu.apikey, secret=emu.secretkey, method=method).listZones() == {}
    # special characters: space, '/', ':', '+', '=' (URLEncoder encodes them like quote)
    ok = post(emu, signed(emu, command="listZones", keyword="a b/c:d+e=f"))
    assert ok[0] == 200


def test_unknown_command_unknown_and_missing_parameters(emu):
    status, body = post(emu, signed(emu, command="deployEverything"))
    assert status == 432 and "does not exist" in body["deployeverythingresponse"]["errortext"]
    status, body = post(emu, signed(emu, command="listZones", colour="blue"))
    assert status == 431 and "colour" in body["listzonesresponse"]["errortext"]
    status, body = post(emu, signed(emu, command="addHost", podid="p", url="http://1.2.3.4", zoneid="z"))
    assert status == 431 and "missing parameter hypervisor" in body["addhostresponse"]["errortext"]
    status, _ = post(emu, signed(emu, command="listZones", available="maybe"))
    assert status == 431


def test_answers_in_the_captured_shapes(emu):
    c = CloudStack(endpoint=emu.url, key=emu.apikey, secret=emu.secretkey, method="post")
    z = c.createZone(name="z", networktype="Advanced", dns1="10.0.0.2", internaldns1="10.0.0.2")["zone"]
    p = c.createPod(zoneid=z["id"], name="p", gateway="10.100.0.1", netmask="255.255.0.0",
                    startip="10.100.64.1", endip="10.100.64.9")["pod"]
    cl = c.addCluster(zoneid=z["id"], podid=p["id"], clustername="c", hypervisor="KVM",
                      clustertype="CloudManaged")
    assert set(cl) == {"count", "cluster"} and set(TEMPLATES["cluster"]) <= set(cl["cluster"][0])
    h = c.addHost(zoneid=z["id"], podid=p["id"], clusterid=cl["cluster"][0]["id"], hypervisor="KVM",
                  url="http://10.100.0.10", username="cloudstack")
    assert set(h) == {"count", "host"} and set(TEMPLATES["host"]) <= set(h["host"][0])
    listed = c.listHosts(id=h["host"][0]["id"])
    assert listed["count"] == 1 and listed["host"][0]["ipaddress"] == "10.100.0.10"
    job = c.createPhysicalNetwork(zoneid=z["id"], name="pn")
    assert set(job) == {"jobid", "id"}
    time.sleep(0.05)
    r = c.queryAsyncJobResult(jobid=job["jobid"])
    assert r["jobstatus"] == 1 and r["jobresultcode"] == 0 and "jobprocstatus" in r
    assert r["jobresult"]["physicalnetwork"]["id"] == job["id"]


def test_maintenance_needs_another_up_host_in_the_cluster(emu):
    c = CloudStack(endpoint=emu.url, key=emu.apikey, secret=emu.secretkey, method="post", fetch_result=True,
                   poll_interval=0.02)
    z = c.createZone(name="z", networktype="Advanced", dns1="10.0.0.2", internaldns1="10.0.0.2")["zone"]
    p = c.createPod(zoneid=z["id"], name="p", gateway="10.100.0.1", netmask="255.255.0.0",
                    startip="10.100.64.1", endip="10.100.64.9")["pod"]
    ids = []
    for name in ("a", "b"):
        cid = c.addCluster(zoneid=z["id"], podid=p["id"], clustername=name, hypervisor="KVM",
                           clustertype="CloudManaged")["cluster"][0]["id"]
        ids.append(c.addHost(zoneid=z["id"], podid=p["id"], clusterid=cid, hypervisor="KVM",
                             url=f"http://10.100.0.1{len(ids)}", username="u")["host"][0]["id"])
    time.sleep(0.05)
    emu.add_vm(ids[0], "vm")
    refused = requests.post(emu.url, data=signed(emu, command="deleteHost", id=ids[0]), timeout=5)
    assert refused.status_code == 530 and "not in maintenance mode" in refused.text
    # the only other host is in another cluster and migrate.vm.across.clusters is false: the
    # job fails (doMaintain is false after the transition) and the host ends ErrorInMaintenance
    with pytest.raises(Exception, match="Unable to prepare for maintenance host"):
        c.prepareHostForMaintenance(id=ids[0])
    time.sleep(0.1)
    assert c.listHosts(id=ids[0])["host"][0]["resourcestate"] == "ErrorInMaintenance"
    c.cancelHostMaintenance(id=ids[0])
    c.updateConfiguration(name="migrate.vm.across.clusters", value="true")
    c.prepareHostForMaintenance(id=ids[0])
    time.sleep(0.1)
    assert c.listHosts(id=ids[0])["host"][0]["resourcestate"] == "Maintenance"
    assert c.listVirtualMachines(hostid=ids[1])["virtualmachine"][0]["name"] == "vm"
    assert c.deleteHost(id=ids[0]) == {"success": True}


def test_host_state_machine_rules(emu):
    """ResourceManagerImpl / ResourceState / LibvirtServerDiscoverer rules, one by one."""
    c = CloudStack(endpoint=emu.url, key=emu.apikey, secret=emu.secretkey, method="post", fetch_result=True,
                   poll_interval=0.02)
    z = c.createZone(name="Zone-A", networktype="Advanced", dns1="10.0.0.2", internaldns1="10.0.0.2")["zone"]
    assert c.listZones(name="zone-a")["zone"][0]["id"] == z["id"]     # case-insensitive substring
    p = c.createPod(zoneid=z["id"], name="p", gateway="10.100.0.1", netmask="255.255.0.0",
                    startip="10.100.64.1", endip="10.100.64.9")["pod"]
    cid = c.addCluster(zoneid=z["id"], podid=p["id"], clustername="a", hypervisor="KVM",
                       clustertype="CloudManaged")["cluster"][0]["id"]
    add = dict(zoneid=z["id"], podid=p["id"], clusterid=cid, hypervisor="KVM", username="u")
    ids = [c.addHost(url=f"http://10.100.0.{10 + i}", **add)["host"][0]["id"] for i in range(3)]
    # a second addHost of a known address: find() swallows "already in the database" → 530
    with pytest.raises(Exception, match="530.*Cannot find the server resources"):
        c.addHost(url="http://10.100.0.10", **add)
    emu.unready_hosts["10.100.0.20"] = "no-key"
    with pytest.raises(Exception, match="Authentication error"):
        c.addHost(url="http://10.100.0.20", **add)
    emu.add_vm(ids[0], "vm-0")
    emu.add_vm(ids[1], "vm-1")
    emu.maintenance_delay = 5
    c.prepareHostForMaintenance(id=ids[0])
    with pytest.raises(Exception, match="other servers attempting migrations"):   # one per cluster
        c.prepareHostForMaintenance(id=ids[1])
    c.cancelHostMaintenance(id=ids[0])
    c.updateHost(id=ids[1], allocationstate="Disable")
    with pytest.raises(Exception, match="No next resource state.*Disabled"):      # enable first
        c.prepareHostForMaintenance(id=ids[1])
    with pytest.raises(Exception, match="not in maintenance mode"):
        c.deleteHost(id=ids[1])
    with pytest.raises(Exception, match="when host is in Up status"):            # only dead hosts
        c.declareHostAsDegraded(id=ids[2])
    emu.kill_host("10.100.0.12")
    c.declareHostAsDegraded(id=ids[2])
    assert c.deleteHost(id=ids[2]) == {"success": True}


def test_add_host_blocks_until_the_agent_is_up(emu):
    c = CloudStack(endpoint=emu.url, key=emu.apikey, secret=emu.secretkey, method="post")
    z = c.createZone(name="z", networktype="Advanced", dns1="10.0.0.2", internaldns1="10.0.0.2")["zone"]
    p = c.createPod(zoneid=z["id"], name="p", gateway="10.100.0.1", netmask="255.255.0.0",
                    startip="10.100.64.1", endip="10.100.64.9")["pod"]
    cid = c.addCluster(zoneid=z["id"], podid=p["id"], clustername="a", hypervisor="KVM",
                       clustertype="CloudManaged")["cluster"][0]["id"]
    emu.add_host_delay = 0.4
    start = time.monotonic()
    host = c.addHost(zoneid=z["id"], podid=p["id"], clusterid=cid, hypervisor="KVM", username="u",
                     url="http://10.100.0.10")["host"][0]
    assert time.monotonic() - start >= 0.4 and host["state"] == "Up"


def test_injected_faults(emu):
    c = CloudStack(endpoint=emu.url, key=emu.apikey, secret=emu.secretkey, method="post")
    emu.inject_http_error("listZones", 533, count=1)
    with pytest.raises(Exception, match="533"):
        c.listZones()
    assert c.listZones() == {}
    emu.refuse_connections_for(0.3)
    with pytest.raises(requests.ConnectionError):
        c.listZones()
    time.sleep(0.6)
    assert c.listZones() == {}
    emu.unavailable_for(0.2)
    r = requests.get(emu.url, timeout=5)
    assert r.status_code == 503 and r.headers["Content-Type"].startswith("text/html")


def test_listens_on_loopback_only(emu):
    s = emu._server.socket
    assert s.getsockname()[0] == "127.0.0.1" and s.family == socket.AF_INET


def test_integer_settings_refuse_a_non_integer_like_the_real_server(emu):
    # ConfigKey<Integer> (NetworkService.VRPublicInterfaceMtu): updateConfiguration
    # refuses a value that is not an integer.
    status, body = post(emu, signed(emu, command="updateConfiguration", name="vr.public.interface.max.mtu",
                                    value="8446 bytes"))
    assert status == 431 and "valid integer" in body["updateconfigurationresponse"]["errortext"]
    assert post(emu, signed(emu, command="updateConfiguration", name="vr.public.interface.max.mtu",
                            value="8446"))[0] == 200


def test_tls_front_end_settings_are_known_and_booleans_refuse_anything_else(emu):
    from components.model.frontend import tls_settings

    for name, value, _why in tls_settings("https://cloud.example.com", ["10.0.253.128/26", "10.0.253.192/26"]):
        status, body = post(emu, signed(emu, command="updateConfiguration", name=name, value=value))
        assert status == 200, body
        assert body["updateconfigurationresponse"]["configuration"]["value"] == value
    # ConfigKey<Boolean> (ApiServer EnableSecureSessionCookie): only "true" or "false".
    status, body = post(emu, signed(emu, command="updateConfiguration", name="enable.secure.session.cookie",
                                    value="yes"))
    assert status == 431 and "'true' or 'false'" in body["updateconfigurationresponse"]["errortext"]


def test_nfs_mount_options_detail_is_checked_like_the_real_server(emu):
    # StorageManagerImpl.checkNFSMountOptionsForCreate (4.20+, PR #8947).
    c = CloudStack(endpoint=emu.url, key=emu.apikey, secret=emu.secretkey, method="post")
    zone = c.createZone(name="z", networktype="Advanced", dns1="10.0.0.2", internaldns1="10.0.0.2")["zone"]
    base = dict(zoneid=zone["id"], name="p", url="nfs://fs.example/zone1/primary", scope="zone")
    for hypervisor, url, opts, words in [
        ("XenServer", base["url"], "vers=4.1", "can not be set for the hypervisor type XenServer"),
        ("KVM", "rbd://mon.example/pool", "vers=4.1", "only be set on pool type NetworkFilesystem"),
        ("KVM", base["url"], "vers=4.1,nconnect=4, vers=4.2", "Duplicate"),
        ("KVM", base["url"], "vers=4.1=2,", "Invalid NFS mount option"),
    ]:
        status, body = post(emu, signed(emu, command="createStoragePool", **{**base, "url": url},
                                        hypervisor=hypervisor, **{"details[0].nfsmountopts": opts}))
        assert status == 431 and words in body["createstoragepoolresponse"]["errortext"], body


def _zone_with_system_vms(emu, public_end="10.100.128.3", pod_end="10.100.64.9", forsystemvms=None):
    """A zone that is ready for its system VMs (template, primary storage, an Up host),
    enabled; public range 10.100.128.1-<public_end>, pod range 10.100.64.1-<pod_end>."""
    c = CloudStack(endpoint=emu.url, key=emu.apikey, secret=emu.secretkey, method="post", fetch_result=True,
                   poll_interval=0.02)
    z = c.createZone(name="z", networktype="Advanced", dns1="10.0.0.2", internaldns1="10.0.0.2")["zone"]
    pn = c.createPhysicalNetwork(zoneid=z["id"], name="pn")["physicalnetwork"]
    c.addTrafficType(physicalnetworkid=pn["id"], traffictype="Public")
    c.updatePhysicalNetwork(id=pn["id"], state="Enabled")
    p = c.createPod(zoneid=z["id"], name="p", gateway="10.100.0.1", netmask="255.255.0.0",
                    startip="10.100.64.1", endip=pod_end)["pod"]
    c.createVlanIpRange(zoneid=z["id"], physicalnetworkid=pn["id"], gateway="10.100.0.1", netmask="255.255.0.0",
                        startip="10.100.128.1", endip=public_end, forvirtualnetwork=True)
    if forsystemvms:
        c.createVlanIpRange(zoneid=z["id"], physicalnetworkid=pn["id"], gateway="10.100.0.1",
                            netmask="255.255.0.0", startip=forsystemvms[0], endip=forsystemvms[1],
                            forvirtualnetwork=True, forsystemvms=True)
    cid = c.addCluster(zoneid=z["id"], podid=p["id"], clustername="a", hypervisor="KVM",
                       clustertype="CloudManaged")["cluster"][0]["id"]
    c.addHost(zoneid=z["id"], podid=p["id"], clusterid=cid, hypervisor="KVM", username="u", url="http://10.100.0.10")
    time.sleep(0.05)
    c.createStoragePool(zoneid=z["id"], name="ps", url="nfs://fs/primary", scope="zone", hypervisor="KVM")
    c.addImageStore(zoneid=z["id"], name="ss", url="nfs://fs/secondary", provider="NFS")
    c.updateZone(id=z["id"], allocationstate="Enabled")
    return c, z


def _system_vms(c, deadline=2.0, **filters):
    end = time.monotonic() + deadline
    while True:
        vms = c.listSystemVms(**filters).get("systemvm", [])
        if (vms and all(v["state"] == "Running" for v in vms)) or time.monotonic() > end:
            return {v["systemvmtype"]: v for v in vms}
        time.sleep(0.05)


def test_system_vms_get_the_first_free_public_and_pod_addresses(emu):
    # PublicNetworkGuru.getIp → IpAddressManagerImpl.assignPublicIpAddress: a Free address of a
    # VirtualNetwork range; the management NIC an address of the pod's reserved range.
    c, z = _zone_with_system_vms(emu)
    vms = _system_vms(c, zoneid=z["id"])
    ssvm, cpvm = vms["secondarystoragevm"], vms["consoleproxy"]
    assert (ssvm["publicip"], cpvm["publicip"]) == ("10.100.128.1", "10.100.128.2")
    assert (ssvm["privateip"], cpvm["privateip"]) == ("10.100.64.1", "10.100.64.2")
    assert ssvm["linklocalip"] != cpvm["linklocalip"] and cpvm["linklocalip"].startswith("169.254.")
    # SystemVmResponse's names (SerializedName), nulls left out
    for key in ("id", "name", "systemvmtype", "state", "zoneid", "zonename", "podid", "hostid", "hypervisor",
                "publicip", "publicnetmask", "gateway", "privateip", "privatenetmask", "linklocalip", "dns1"):
        assert key in cpvm, key
    assert cpvm["gateway"] == "10.100.0.1" and cpvm["publicnetmask"] == "255.255.0.0"
    assert cpvm["activeviewersessions"] == 0 and "activeviewersessions" not in ssvm
    only = c.listSystemVms(systemvmtype="consoleproxy", zoneid=z["id"])
    assert [v["name"] for v in only["systemvm"]] == [cpvm["name"]]


def test_system_vms_prefer_a_range_for_system_vms(emu):
    # listAvailablePublicIps: for system VMs the forsystemvms ranges come first.
    c, z = _zone_with_system_vms(emu, forsystemvms=("10.100.129.1", "10.100.129.5"))
    vms = _system_vms(c, zoneid=z["id"])
    assert sorted(v["publicip"] for v in vms.values()) == ["10.100.129.1", "10.100.129.2"]
    assert emu.hold_public_ip(z["id"]) == "10.100.128.1"   # anything else: the other ranges only


def test_a_system_vm_without_a_free_public_address_never_runs(emu):
    # InsufficientAddressCapacityException: the VM stays, Stopped, without addresses.
    c, z = _zone_with_system_vms(emu, public_end="10.100.128.1")
    vms = _system_vms(c, deadline=0.5, zoneid=z["id"])
    assert vms["secondarystoragevm"]["state"] == "Running" and vms["secondarystoragevm"]["publicip"] == "10.100.128.1"
    assert vms["consoleproxy"]["state"] == "Stopped" and "publicip" not in vms["consoleproxy"]
    assert "hostid" not in vms["consoleproxy"]
    # destroying the secondary storage VM frees its address: the console proxy takes it, and the
    # new secondary storage VM has none left
    c.destroySystemVm(id=vms["secondarystoragevm"]["id"])
    time.sleep(0.3)
    vms = {v["systemvmtype"]: v for v in c.listSystemVms(zoneid=z["id"])["systemvm"]}
    assert vms["consoleproxy"]["state"] == "Running" and vms["consoleproxy"]["publicip"] == "10.100.128.1"
    assert vms["secondarystoragevm"]["state"] == "Stopped" and "publicip" not in vms["secondarystoragevm"]


def test_a_relaunched_console_proxy_may_get_another_address(emu):
    c, z = _zone_with_system_vms(emu)
    cpvm = _system_vms(c, zoneid=z["id"])["consoleproxy"]
    emu.destroy_system_vm(cpvm["id"])          # its address is free again ...
    assert emu.hold_public_ip(z["id"]) == cpvm["publicip"]   # ... and a guest network's router takes it
    new = _system_vms(c, zoneid=z["id"])["consoleproxy"]
    assert new["id"] != cpvm["id"] and new["publicip"] == "10.100.128.3" and new["state"] == "Running"
    # deleteVlanAndPublicIpRange: not while addresses of the range are allocated
    vlan = c.listVlanIpRanges(zoneid=z["id"])["vlaniprange"][0]
    status, body = post(emu, signed(emu, command="deleteVlanIpRange", id=vlan["id"]))
    assert status == 431 and "3  Ips are in use" in body["deletevlaniprangeresponse"]["errortext"]


def test_console_settings_have_the_current_defaults(emu):
    c = CloudStack(endpoint=emu.url, key=emu.apikey, secret=emu.secretkey, method="post")
    values = {i["name"]: i["value"] for i in c.listConfigurations(name="consoleproxy")["configuration"]}
    assert values["consoleproxy.url.domain"] == "" and values["consoleproxy.sslEnabled"] == "false"
    assert c.listConfigurations(name="novnc.console.port")["configuration"][0]["value"] == "8080"
    status, _ = post(emu, signed(emu, command="updateConfiguration", name="novnc.console.port", value="80 80"))
    assert status == 431
    assert values["consoleproxy.launch.max"] == "10"    # ConsoleProxyManager.ConsoleProxyLaunchMax
    status, _ = post(emu, signed(emu, command="updateConfiguration", name="consoleproxy.launch.max", value="one"))
    assert status == 431


def test_console_url_domain_must_be_a_domain_name(emu):
    # Config.ConsoleProxyUrlDomain's range "domainName": ConfigurationManagerImpl
    # .validateConfigurationValue matches DOMAIN_NAME_PATTERN (the last label letters only).
    for bad in ("203.0.113.7", "-bad.example.com", "console", "a..example.com"):
        status, body = post(emu, signed(emu, command="updateConfiguration", name="consoleproxy.url.domain",
                                        value=bad))
        assert status == 431, bad
        assert "valid string for domain name" in body["updateconfigurationresponse"]["errortext"]
    for good in ("console.example.com", "*.example.com", ""):
        assert post(emu, signed(emu, command="updateConfiguration", name="consoleproxy.url.domain",
                                value=good))[0] == 200, good


def test_static_console_settings_are_absent_until_the_boot_inserts_them(emu):
    # consoleproxy.static.publicIp/port have no Config/ConfigKey entry (ConsoleProxyManagerImpl
    # .configure reads them with configDao.getValue): no row until the boot's INSERT.
    c = CloudStack(endpoint=emu.url, key=emu.apikey, secret=emu.secretkey, method="post")
    assert c.listConfigurations(name="consoleproxy.static") == {}
    status, body = post(emu, signed(emu, command="updateConfiguration", name="consoleproxy.static.publicIp",
                                    value="203.0.113.7"))
    assert status == 431 and "doesn't exist" in body["updateconfigurationresponse"]["errortext"]
    emu.seed_configuration("consoleproxy.static.publicIp", "203.0.113.7")
    emu.seed_configuration("consoleproxy.static.port", "80")
    values = {i["name"]: i["value"] for i in c.listConfigurations(name="consoleproxy.static")["configuration"]}
    assert values == {"consoleproxy.static.publicIp": "203.0.113.7", "consoleproxy.static.port": "80"}


def test_zone_scoped_settings_with_zoneid(emu):
    # listConfigurations zoneid=: only Zone-scoped keys, each with the zone's value or the global one
    # (ConfigurationListingServiceImpl.searchForConfigurations); updateConfiguration zoneid= sets the
    # zone's own value and refuses a key without Zone scope.
    c = CloudStack(endpoint=emu.url, key=emu.apikey, secret=emu.secretkey, method="post")
    z = c.createZone(name="z", networktype="Advanced", dns1="10.0.0.2", internaldns1="10.0.0.2")["zone"]
    emu.seed_configuration("consoleproxy.static.port", "80")
    in_zone = {i["name"]: i["value"] for i in c.listConfigurations(name="consoleproxy", zoneid=z["id"])
               ["configuration"]}
    assert in_zone == {"consoleproxy.url.domain": "", "consoleproxy.sslEnabled": "false",
                       "consoleproxy.launch.max": "10"}
    c.updateConfiguration(name="consoleproxy.sslEnabled", value="true", zoneid=z["id"])
    assert c.listConfigurations(name="consoleproxy.sslEnabled", zoneid=z["id"])["configuration"][0]["value"] == "true"
    assert c.listConfigurations(name="consoleproxy.sslEnabled")["configuration"][0]["value"] == "false"
    status, body = post(emu, signed(emu, command="updateConfiguration", name="host", value="10.1.1.1",
                                    zoneid=z["id"]))
    assert status == 431 and "Invalid scope id" in body["updateconfigurationresponse"]["errortext"]


def test_a_range_for_system_vms_is_listed_as_such(emu):
    # VlanIpRangeResponse `forsystemvms` (ApiConstants.FOR_SYSTEM_VMS)
    c, z = _zone_with_system_vms(emu, forsystemvms=("10.100.192.1", "10.100.192.8"))
    flags = {v["startip"]: v["forsystemvms"] for v in c.listVlanIpRanges(zoneid=z["id"])["vlaniprange"]}
    assert flags == {"10.100.128.1": False, "10.100.192.1": True}



@pytest.mark.parametrize("strict", ["false", "true"])
def test_tenants_get_a_range_for_system_vms_only_without_the_strict_reservation(emu, strict):
    # IpAddressManagerImpl: the forSystemVms filter applies only when
    # system.vm.public.ip.reservation.mode.strictness is true; otherwise the search is merely
    # ordered, and a tenant gets a system VMs' address once the rest is taken
    # (apache/cloudstack #4310, #5902). The registration sets it to true.
    emu.config["system.vm.public.ip.reservation.mode.strictness"] = strict
    c, z = _zone_with_system_vms(emu, public_end="10.100.128.1", forsystemvms=("10.100.129.1", "10.100.129.5"))
    _system_vms(c, zoneid=z["id"])                      # both system VMs in the system range
    assert emu.hold_public_ip(z["id"]) == "10.100.128.1"  # the tenants' range first
    if strict == "true":
        with pytest.raises(ValueError, match="no free public address"):
            emu.hold_public_ip(z["id"])
    else:
        assert emu.hold_public_ip(z["id"]) == "10.100.129.3"


@pytest.mark.parametrize("strict", ["false", "true"])
def test_system_vms_fall_back_to_the_tenants_range_only_without_the_strict_reservation(emu, strict):
    # IpAddressManagerImpl: strict, a system VM takes only the forsystemvms ranges (none free:
    # Insufficient address capacity, the VM never runs); not strict, it falls back.
    emu.config["system.vm.public.ip.reservation.mode.strictness"] = strict
    c, z = _zone_with_system_vms(emu, forsystemvms=("10.100.129.1", "10.100.129.1"))
    vms = _system_vms(c, deadline=0.5, zoneid=z["id"])
    addresses = sorted(v.get("publicip", "none") for v in vms.values())
    if strict == "true":
        assert addresses == ["10.100.129.1", "none"]
        assert sorted(v["state"] for v in vms.values()) == ["Running", "Stopped"]
    else:
        assert addresses == ["10.100.128.1", "10.100.129.1"]


def test_update_pod_ignores_its_range_and_the_management_range_command_changes_it(emu):
    # ConfigurationManagerImpl.editPod(UpdatePodCmd) passes null for startIp/endIp: the call
    # succeeds and the range stays; updatePodManagementNetworkIpRange changes it, never leaving
    # out an address a system VM holds (checkIpRangeContainsTakenAddresses).
    c, z = _zone_with_system_vms(emu)
    _system_vms(c, zoneid=z["id"])
    pod = c.listPods(zoneid=z["id"])["pod"][0]
    c.updatePod(id=pod["id"], startip="10.100.64.1", endip="10.100.64.200", name="renamed")
    after = c.listPods(id=pod["id"])["pod"][0]
    assert (after["name"], after["startip"], after["endip"]) == ("renamed", pod["startip"], pod["endip"])
    with pytest.raises(Exception, match="already been taken"):
        c.updatePodManagementNetworkIpRange(podid=pod["id"], currentstartip=pod["startip"][0],
                                            currentendip=pod["endip"][0], newstartip="10.100.64.2",
                                            newendip="10.100.64.200")
    with pytest.raises(Exception, match="is not present"):
        c.updatePodManagementNetworkIpRange(podid=pod["id"], currentstartip="10.100.64.5",
                                            currentendip=pod["endip"][0], newendip="10.100.64.200")
    c.updatePodManagementNetworkIpRange(podid=pod["id"], currentstartip=pod["startip"][0],
                                        currentendip=pod["endip"][0], newendip="10.100.64.200")
    assert c.listPods(id=pod["id"])["pod"][0]["endip"] == ["10.100.64.200"]
