"""Create/read/diff/update/delete of each CloudStack object (no Pulumi here).

Every create first looks for an object with the same name (or, for hosts, the
same address; for the public range, the same addresses): a previous run that
died midway left it there, and it is adopted rather than duplicated. Each step
is idempotent, so a transient failure (connection refused, 530, 533) re-runs the
whole step, lookup included.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Mapping

from .base import Kind, Obj, Props, _by, _first, _is_gone, _single, configuration  # noqa: F401
from .client import LOG, Api, CloudStackError, RegistrationError, tear_down  # noqa: F401
from .console_forwards import ConsoleForwards
from .directory import LdapLink, LdapServer, SecretSetting
from .hosts import ClusterHosts, LegacyHost
from .management_servers import ManagementServers

# -- zone ---------------------------------------------------------------------

class Zone(Kind):
    kind = "zone"
    replace_keys = ("networktype",)
    update_keys = ("name", "dns1", "internaldns1", "guestcidraddress")

    def find(self, api, props):
        return _by(api.list("listZones", "zone", name=props["name"]), name=props["name"])

    def make(self, api, props):
        r = api.call("createZone", name=props["name"], networktype=props["networktype"], dns1=props["dns1"],
                     internaldns1=props["internaldns1"], guestcidraddress=props["guestcidraddress"],
                     allocationstate="Disabled")  # enabled last, by zone-enable
        return _single(r, "zone")

    def get(self, api, id_, props):
        return _by(api.list("listZones", "zone", id=id_), id=id_)

    def live(self, obj, props):
        return {k: obj.get(k) for k in ("name", "networktype", "dns1", "internaldns1", "guestcidraddress")}

    def change(self, api, id_, olds, news, changed):
        api.call("updateZone", id=id_, **{k: news[k] for k in changed})

    def remove(self, api, id_, props):
        api.call("deleteZone", id=id_)


class ZoneEnablement(Kind):
    kind = "zone enablement"
    preexisting = True
    replace_keys = ("zoneid",)
    update_keys = ("allocationstate",)

    def label(self, props):
        return f"zone {props.get('zoneid')} allocation state"

    def find(self, api, props):
        return self.get(api, props["zoneid"], props)

    def make(self, api, props):  # find() never misses: the zone exists (dependency)
        raise RegistrationError(f"zone {props['zoneid']} not found")

    def get(self, api, id_, props):
        return _by(api.list("listZones", "zone", id=id_), id=id_)

    probes = True

    def probe_service(self, api, props):
        zone = self.get(api, props["zoneid"], props)
        return zone is None or zone.get("allocationstate") == props["allocationstate"]

    def diff(self, olds, news):
        changed, replaces = super().diff(olds, news)
        if olds.get("service", "ok") != "ok":   # the zone was disabled meanwhile (see PhysicalNetwork)
            changed.append("allocationstate")
        return changed, replaces

    def converge(self, api, obj, props):
        if obj.get("allocationstate") != props["allocationstate"]:
            api.call("updateZone", id=obj["id"], allocationstate=props["allocationstate"])
            obj = self.get(api, obj["id"], props) or obj
        if props["allocationstate"] == "Enabled":
            wait_for_system_vms(api, obj)
        return obj

    def live(self, obj, props):
        return {"zoneid": obj["id"], "allocationstate": obj.get("allocationstate")}

    def change(self, api, id_, olds, news, changed):
        api.call("updateZone", id=id_, allocationstate=news["allocationstate"])

    def delete(self, api, id_, props):
        # Disabling (not deleting) the zone: the zone resource owns its deletion. Then its
        # system VMs go: a Disabled zone gets none again (the capacity scans skip it), and a
        # host running one could never enter maintenance as the cluster's last host.
        def step():
            zone = self.get(api, id_, props)
            if zone is not None and zone.get("allocationstate") != "Disabled":
                api.call("updateZone", id=id_, allocationstate="Disabled")
                LOG.info("disabled zone %s", id_)
        api.retrying(f"disable zone {id_}", step)
        for vm in api.list("listSystemVms", "systemvm", zoneid=id_):
            LOG.info("destroying system VM %s of the disabled zone", vm.get("name"))
            api.retrying(f"destroy {vm.get('name')}", lambda vm=vm: api.job("destroySystemVm", id=vm["id"]))


def wait_for_system_vms(api: Api, zone: Obj) -> None:
    """After the zone is enabled: its secondary storage VM and console proxy must run
    (bounded by timeouts.system_vms); the error says which one and where to look."""
    t = api.timeouts
    deadline = time.monotonic() + t.system_vms
    want = {"secondarystoragevm": "secondary storage VM", "consoleproxy": "console proxy"}
    while True:
        vms = api.list("listSystemVms", "systemvm", zoneid=zone["id"])
        running = {v.get("systemvmtype") for v in vms if v.get("state") == "Running"}
        if set(want) <= running:
            return
        if time.monotonic() > deadline:
            missing = []
            for kind, what in want.items():
                if kind in running:
                    continue
                found = [v for v in vms if v.get("systemvmtype") == kind]
                missing.append(f"{what}: " + (", ".join(f"{v.get('name')} {v.get('state')}" for v in found)
                                              or "not created"))
            raise RegistrationError(
                f"zone {zone.get('name')} is Enabled but after {t.system_vms:g}s (systemVmWaitMinutes) these system "
                f"VMs do not run: {'; '.join(missing)}. Look at the management server log "
                f"(/var/log/cloudstack/management/management-server.log), the system VM template "
                f"(listTemplates templatetype=SYSTEM) and, inside a secondary storage VM, "
                f"/usr/local/cloud/systemvm/ssvm-check.sh")
        api._sleep(t.poll_interval)


# -- physical network, traffic types, providers ---------------------------------

class PhysicalNetwork(Kind):
    kind = "physical network"
    replace_keys = ("zoneid", "name", "isolationmethods", "broadcastdomainrange")
    update_keys = ("vlan", "state")

    def find(self, api, props):
        items = api.list("listPhysicalNetworks", "physicalnetwork", zoneid=props["zoneid"], name=props["name"])
        return _by(items, name=props["name"])

    def make(self, api, props):
        r = api.job("createPhysicalNetwork", zoneid=props["zoneid"], name=props["name"],
                    isolationmethods=props["isolationmethods"], broadcastdomainrange=props["broadcastdomainrange"])
        return _single(r, "physicalnetwork")

    def get(self, api, id_, props):
        return _by(api.list("listPhysicalNetworks", "physicalnetwork", id=id_), id=id_)

    def converge(self, api, obj, props):
        # The guest VLAN range, then Enabled (as the zone wizard does).
        if obj.get("vlan") != props["vlan"] or obj.get("state") != props["state"]:
            api.job("updatePhysicalNetwork", id=obj["id"], vlan=props["vlan"], state=props["state"])
            obj = self.get(api, obj["id"], props) or obj
        return obj

    def live(self, obj, props):
        return {"zoneid": obj.get("zoneid"), "name": obj.get("name"), "vlan": obj.get("vlan"),
                "isolationmethods": obj.get("isolationmethods"),
                "broadcastdomainrange": obj.get("broadcastdomainrange"), "state": obj.get("state")}

    def change(self, api, id_, olds, news, changed):
        api.job("updatePhysicalNetwork", id=id_, vlan=news["vlan"], state=news["state"])

    def remove(self, api, id_, props):
        # NetworkServiceImpl.checkIfPhysicalNetworkIsDeletable refuses while guest networks or
        # allocated public IPs use it: with user VMs that is final (say so); the system VMs'
        # IPs are freed by disabling the zone and destroying them. zone-enable enables the
        # zone again (its diff sees it Disabled) and the system VMs come back.
        vms = [v for v in api.list("listVirtualMachines", "virtualmachine", zoneid=props["zoneid"], listall=True)
               if v.get("state") not in ("Destroyed", "Expunging")]
        if vms:
            raise RegistrationError(
                f"physical network {props.get('name')} cannot be deleted or replaced while zone {props['zoneid']} has "
                f"guest networks: its VMs {', '.join(str(v.get('name')) for v in vms)} use them (CloudStack refuses: "
                f"'there are networks associated to this physical network'). Keep the current value, or remove "
                f"the workloads first.")
        ZoneEnablement().delete(api, props["zoneid"], {"zoneid": props["zoneid"]})
        LOG.info("zone %s disabled for the change of its physical network; zone-enable enables it again",
                 props["zoneid"])
        api.job("deletePhysicalNetwork", id=id_)


class TrafficType(Kind):
    kind = "traffic type"
    replace_keys = ("physicalnetworkid", "traffictype")
    update_keys = ("kvmnetworklabel",)

    def label(self, props):
        return f"{props.get('traffictype')} traffic type"

    def find(self, api, props):
        items = api.list("listTrafficTypes", "traffictype", physicalnetworkid=props["physicalnetworkid"])
        return _by(items, traffictype=props["traffictype"])

    def make(self, api, props):
        r = api.job("addTrafficType", physicalnetworkid=props["physicalnetworkid"],
                    traffictype=props["traffictype"], kvmnetworklabel=props["kvmnetworklabel"])
        return _single(r, "traffictype")

    def get(self, api, id_, props):
        items = api.list("listTrafficTypes", "traffictype", physicalnetworkid=props["physicalnetworkid"])
        return _by(items, id=id_)

    def converge(self, api, obj, props):
        if obj.get("kvmnetworklabel") != props["kvmnetworklabel"]:  # adopted with another label
            api.job("updateTrafficType", id=obj["id"], kvmnetworklabel=props["kvmnetworklabel"])
            obj = self.get(api, obj["id"], props) or obj
        return obj

    def live(self, obj, props):
        return {"traffictype": obj.get("traffictype"), "kvmnetworklabel": obj.get("kvmnetworklabel"),
                "physicalnetworkid": obj.get("physicalnetworkid", props.get("physicalnetworkid"))}

    def change(self, api, id_, olds, news, changed):
        api.job("updateTrafficType", id=id_, kvmnetworklabel=news["kvmnetworklabel"])

    def remove(self, api, id_, props):
        api.job("deleteTrafficType", id=id_)


class NetworkServiceProvider(Kind):
    kind = "network service provider"
    preexisting = True
    replace_keys = ("physicalnetworkid", "name", "element")
    update_keys = ("state",)

    def find(self, api, props):
        items = api.list("listNetworkServiceProviders", "networkserviceprovider",
                         physicalnetworkid=props["physicalnetworkid"], name=props["name"])
        return _by(items, name=props["name"])

    def make(self, api, props):
        # createPhysicalNetwork adds the usual providers itself; add one only if missing.
        r = api.job("addNetworkServiceProvider", physicalnetworkid=props["physicalnetworkid"], name=props["name"])
        return _single(r, "networkserviceprovider")

    def get(self, api, id_, props):
        items = api.list("listNetworkServiceProviders", "networkserviceprovider",
                         physicalnetworkid=props["physicalnetworkid"])
        return _by(items, id=id_)

    def _element(self, api, nsp_id, element):
        if element == "virtualrouter":
            items = api.list("listVirtualRouterElements", "virtualrouterelement", nspid=nsp_id)
            return items[0] if items else None, "configureVirtualRouterElement"
        items = api.list("listInternalLoadBalancerElements", "internalloadbalancerelement", nspid=nsp_id)
        return items[0] if items else None, "configureInternalLoadBalancerElement"

    def converge(self, api, obj, props):
        want = props["state"]
        if want == "Enabled":
            # A provider is enabled only once its element (the VR / internal LB VM) is.
            element, configure = self._element(api, obj["id"], props["element"])
            if element is None:
                raise RegistrationError(f"provider {props['name']}: no {props['element']} element in CloudStack")
            if not element.get("enabled"):
                api.job(configure, id=element["id"], enabled=True)
        if obj.get("state") != want:
            api.job("updateNetworkServiceProvider", id=obj["id"], state=want)
            obj = self.get(api, obj["id"], props) or obj
        return obj

    def live(self, obj, props):
        return {"name": obj.get("name"), "state": obj.get("state"),
                "physicalnetworkid": obj.get("physicalnetworkid", props.get("physicalnetworkid"))}

    def change(self, api, id_, olds, news, changed):
        obj = self.get(api, id_, news)
        if obj is not None:
            self.converge(api, obj, news)

    def remove(self, api, id_, props):
        # Providers belong to the physical network (CloudStack created them): disable, don't delete.
        api.job("updateNetworkServiceProvider", id=id_, state="Disabled")


# -- pod, public range ---------------------------------------------------------

class Pod(Kind):
    kind = "pod"
    replace_keys = ("zoneid",)
    update_keys = ("name", "gateway", "netmask", "startip", "endip")

    def find(self, api, props):
        return _by(api.list("listPods", "pod", zoneid=props["zoneid"], name=props["name"]), name=props["name"])

    def make(self, api, props):
        r = api.call("createPod", zoneid=props["zoneid"], name=props["name"], gateway=props["gateway"],
                     netmask=props["netmask"], startip=props["startip"], endip=props["endip"])
        return _single(r, "pod")

    def get(self, api, id_, props):
        return _by(api.list("listPods", "pod", id=id_), id=id_)

    def live(self, obj, props):
        return {"zoneid": obj.get("zoneid"), "name": obj.get("name"), "gateway": obj.get("gateway"),
                "netmask": obj.get("netmask"), "startip": _first(obj.get("startip")),
                "endip": _first(obj.get("endip"))}

    def change(self, api, id_, olds, news, changed):
        # updatePod takes startip/endip but ignores them (ConfigurationManagerImpl.editPod(UpdatePodCmd)
        # passes null for both): the pod's range is changed with updatePodManagementNetworkIpRange
        # (since 4.16), from the range CloudStack holds now; it refuses a range that leaves out an
        # address already taken (the system VMs' management NICs).
        args = {k: news[k] for k in changed if k not in ("startip", "endip")}
        if args:
            api.call("updatePod", id=id_, **args)
        if "startip" in changed or "endip" in changed:
            live = self.live(self.get(api, id_, news) or {}, news)
            if (live["startip"], live["endip"]) != (news["startip"], news["endip"]):
                api.job("updatePodManagementNetworkIpRange", podid=id_, currentstartip=live["startip"],
                        currentendip=live["endip"], newstartip=news["startip"], newendip=news["endip"])

    def remove(self, api, id_, props):
        api.call("deletePod", id=id_)


class PublicIpRange(Kind):
    """A public IP range; with `forsystemvms` True (the system VMs' public range) CloudStack gives
    its addresses to system VMs only (createVlanIpRange forsystemvms; VlanIpRangeResponse
    `forsystemvms`). Props without the key (the tenants' range of stacks planned before it
    existed) are neither sent nor read back, so their state never shows a change."""

    kind = "public IP range"
    replace_keys = ("zoneid", "physicalnetworkid", "gateway", "netmask", "startip", "endip", "vlan",
                    "forvirtualnetwork", "forsystemvms")

    def label(self, props):
        what = "system VMs' public IP range" if props.get("forsystemvms") else "public IP range"
        return f"{what} {props.get('startip')}-{props.get('endip')}"

    def find(self, api, props):
        items = api.list("listVlanIpRanges", "vlaniprange", zoneid=props["zoneid"])
        return _by(items, startip=props["startip"], endip=props["endip"])

    def make(self, api, props):
        extra = {"forsystemvms": True} if props.get("forsystemvms") else {}
        r = api.call("createVlanIpRange", zoneid=props["zoneid"], physicalnetworkid=props["physicalnetworkid"],
                     gateway=props["gateway"], netmask=props["netmask"], startip=props["startip"],
                     endip=props["endip"], vlan=props["vlan"], forvirtualnetwork=True, **extra)
        return _single(r, "vlan")

    def get(self, api, id_, props):
        return _by(api.list("listVlanIpRanges", "vlaniprange", id=id_), id=id_)

    def live(self, obj, props):
        vlan = str(obj.get("vlan", ""))
        out = {"zoneid": obj.get("zoneid"), "physicalnetworkid": obj.get("physicalnetworkid"),
               "gateway": obj.get("gateway"), "netmask": obj.get("netmask"), "startip": obj.get("startip"),
               "endip": obj.get("endip"), "vlan": vlan.removeprefix("vlan://"),
               "forvirtualnetwork": obj.get("forvirtualnetwork")}
        if "forsystemvms" in props:
            out["forsystemvms"] = bool(obj.get("forsystemvms"))
        return out

    def remove(self, api, id_, props):
        api.call("deleteVlanIpRange", id=id_)


# -- global settings -------------------------------------------------------------

def _secure(obj: Obj) -> bool:
    """listConfigurations answers a setting of the category Secure (ldap.bind.principal, say)
    encrypted, with a new salt each time (ApiResponseHelper.createConfigurationResponse:
    DBEncryptionUtil.encrypt): its value cannot be compared, only set."""
    return obj.get("category") == "Secure"


class GlobalSetting(Kind):
    kind = "global setting"
    preexisting = True
    replace_keys = ("name",)
    update_keys = ("value",)

    def label(self, props):
        return f"global setting {props.get('name')}"

    def _item(self, api, name):
        return configuration(api, name)

    def find(self, api, props):
        item = self._item(api, props["name"])
        if item is None:
            raise CloudStackError(api.endpoint, "listConfigurations", 431,
                                  f"CloudStack has no global setting named {props['name']!r}")
        return {**item, "id": props["name"]}

    def converge(self, api, obj, props):
        if _secure(obj) or obj.get("value") != props["value"]:
            r = api.call("updateConfiguration", name=props["name"], value=props["value"])
            obj = {**r.get("configuration", {}), "id": props["name"]}
        return obj

    def get(self, api, id_, props):
        item = self._item(api, id_)
        return None if item is None else {**item, "id": id_}

    def live(self, obj, props):
        return {"name": obj.get("name"), "value": props.get("value") if _secure(obj) else obj.get("value")}

    def change(self, api, id_, olds, news, changed):
        api.call("updateConfiguration", name=id_, value=news["value"])

    def remove(self, api, id_, props):
        api.call("resetConfiguration", name=id_)  # back to CloudStack's default


# -- cluster, host -----------------------------------------------------------------

class Cluster(Kind):
    kind = "cluster"
    replace_keys = ("zoneid", "podid", "hypervisor", "clustertype")
    update_keys = ("clustername",)

    def label(self, props):
        return f"cluster {props.get('clustername')}"

    def find(self, api, props):
        items = api.list("listClusters", "cluster", zoneid=props["zoneid"], name=props["clustername"])
        return _by(items, name=props["clustername"])

    def make(self, api, props):
        r = api.call("addCluster", zoneid=props["zoneid"], podid=props["podid"], clustername=props["clustername"],
                     hypervisor=props["hypervisor"], clustertype=props["clustertype"])
        return _single(r, "cluster")

    def get(self, api, id_, props):
        return _by(api.list("listClusters", "cluster", id=id_), id=id_)

    def live(self, obj, props):
        return {"zoneid": obj.get("zoneid"), "podid": obj.get("podid"), "clustername": obj.get("name"),
                "hypervisor": obj.get("hypervisortype"), "clustertype": obj.get("clustertype")}

    def change(self, api, id_, olds, news, changed):
        api.call("updateCluster", id=id_, clustername=news["clustername"])

    def remove(self, api, id_, props):
        api.call("deleteCluster", id=id_)


# -- storage -------------------------------------------------------------------------

def _nfs_url(obj: Obj) -> str:
    return f"nfs://{obj.get('ipaddress')}{obj.get('path')}"


class PrimaryStorage(Kind):
    kind = "primary storage"
    replace_keys = ("zoneid", "url", "scope", "hypervisor")
    update_keys = ("name",)

    def find(self, api, props):
        items = api.list("listStoragePools", "storagepool", zoneid=props["zoneid"], name=props["name"])
        return _by(items, name=props["name"])

    def make(self, api, props):
        # The KVM hosts' NFS mount options travel as the pool detail `nfsmountopts`
        # (changing them later needs the pool in maintenance: not done here).
        details = {"nfsmountopts": props["nfsmountopts"]} if props.get("nfsmountopts") else None
        r = api.call("createStoragePool", zoneid=props["zoneid"], name=props["name"], url=props["url"],
                     scope=props["scope"], hypervisor=props["hypervisor"], details=details)
        return _single(r, "storagepool")

    def get(self, api, id_, props):
        return _by(api.list("listStoragePools", "storagepool", id=id_), id=id_)

    def live(self, obj, props):
        return {"zoneid": obj.get("zoneid"), "name": obj.get("name"), "url": _nfs_url(obj),
                "scope": str(obj.get("scope", "")).lower(), "hypervisor": obj.get("hypervisor", props["hypervisor"]),
                "state": obj.get("state")}

    def change(self, api, id_, olds, news, changed):
        api.call("updateStoragePool", id=id_, name=news["name"])

    def remove(self, api, id_, props):
        api.call("deleteStoragePool", id=id_)  # not forced: refused while volumes live on it


#: CapacityManager.ImageStoreNFSVersion: the NFS version system VMs mount secondary storage with.
NFS_VERSION_SETTING = "secstorage.nfs.version"


class ImageStore(Kind):
    kind = "image store"
    replace_keys = ("zoneid", "name", "url", "provider")

    def find(self, api, props):
        items = api.list("listImageStores", "imagestore", zoneid=props["zoneid"], name=props["name"])
        return _by(items, name=props["name"])

    def make(self, api, props):
        self._check_nfs_version(api, props, None)
        r = api.call("addImageStore", zoneid=props["zoneid"], name=props["name"], url=props["url"],
                     provider=props["provider"])
        return _single(r, "imagestore")

    def _check_nfs_version(self, api, props, store_id):
        """EFS serves NFS 4.0 and 4.1 only (AWS, "NFS protocol support" in the EFS user guide):
        a secstorage.nfs.version of 3 (CapacityManager.ImageStoreNFSVersion: global, or the
        store's own value, which wins) makes every system VM's mount of the store fail, and the
        template and the secondary storage VM never come. Refused before the store is added and
        when it is configured again (an update), naming the setting and the fix."""
        item = configuration(api, NFS_VERSION_SETTING) if store_id is None else _by(
            api.list("listConfigurations", "configuration", name=NFS_VERSION_SETTING, imagestoreuuid=store_id),
            name=NFS_VERSION_SETTING)
        value = str((item or {}).get("value") or "").strip()
        if value and not value.startswith("4"):
            scope = "globally" if store_id is None else f"for image store {store_id}"
            fix = "" if store_id is None else f" imagestoreuuid={store_id}"
            raise RegistrationError(
                f"{self.label(props)}: CloudStack's {NFS_VERSION_SETTING} is {value} {scope}, but EFS serves NFS "
                f"4.0 and 4.1 only, so the system VMs could not mount {props['url']}: set it to 4.1 "
                f"(cmk update configuration name={NFS_VERSION_SETTING} value=4.1{fix}) and run `pulumi up` again")

    def get(self, api, id_, props):
        return _by(api.list("listImageStores", "imagestore", id=id_), id=id_)

    def live(self, obj, props):
        return {"zoneid": obj.get("zoneid"), "name": obj.get("name"), "url": obj.get("url"),
                "provider": obj.get("providername")}

    def converge(self, api, obj, props):
        """The KVM system VM template must become Ready in the store (the management server
        seeds it when the zone's first image store is added); bounded by timeouts.system_vms."""
        self._check_nfs_version(api, props, obj["id"])
        t = api.timeouts
        deadline = time.monotonic() + t.system_vms
        while True:
            items = api.list("listTemplates", "template", templatefilter="all", templatetype="SYSTEM",
                             zoneid=props["zoneid"], hypervisor="KVM", listall=True)
            if any(i.get("isready") for i in items):
                return obj
            if time.monotonic() > deadline:
                state = ", ".join(f"{i.get('name')}: {i.get('status')}" for i in items) or "no KVM system VM template"
                raise RegistrationError(
                    f"{self.label(props)}: the KVM system VM template is not Ready after {t.system_vms:g}s "
                    f"(systemVmWaitMinutes): {state}. Look at the management server log "
                    f"(/var/log/cloudstack/management/management-server.log, 'SystemVmTemplateRegistration') and "
                    f"that it can mount {props['url']}")
            api._sleep(t.poll_interval)

    def remove(self, api, id_, props):
        api.call("deleteImageStore", id=id_)


class WorkloadGuard(Kind):
    """Stops `pulumi destroy` before anything on AWS is deleted while CloudStack still has
    user VMs (their disks live on EFS, which the destroy deletes). With
    allow_destroy_with_vms the destroy goes on, and the registration's resources are dropped
    without asking CloudStack (it goes away with the stack)."""

    kind = "workload guard"
    replace_keys = ("zoneid",)
    update_keys = ("allow_destroy_with_vms",)
    connects_lazily = True

    def label(self, props):
        return f"workloads of zone {props.get('zoneid')}"

    def create(self, api, props):
        return str(props["zoneid"]), {**dict(props), "id": str(props["zoneid"])}

    def read(self, api, id_, props):
        return {**dict(props), "id": id_}

    def update(self, connect, id_, olds, news):
        return {**dict(news), "id": id_}

    def delete_lazily(self, connect: Callable[[], Api], id_: str, props: Props) -> None:
        if props.get("allow_destroy_with_vms"):
            LOG.warning("destroyWithRunningVms is set: tearing the cloud down with whatever runs in it")
            tear_down(props["endpoint"])
            return
        api = connect()
        vms = api.list("listVirtualMachines", "virtualmachine", zoneid=id_, listall=True)
        vms = [v for v in vms if v.get("state") not in ("Destroyed", "Expunging")]
        if vms:
            names = ", ".join(f"{v.get('name')} ({v.get('state')})" for v in vms)
            raise RegistrationError(
                f"not destroying: CloudStack zone {id_} still has {len(vms)} VM(s): {names}. Nothing has been "
                f"deleted on AWS. Expunge them in CloudStack, or set `pulumi config set cloudstack-ec2:"
                f"destroyWithRunningVms true` and run `pulumi up` before `pulumi destroy` to delete them with the "
                f"cloud.")
        LOG.info("zone %s has no VM: the destroy goes on", id_)


KINDS: dict[str, Kind] = {
    "zone": Zone(),
    "zone_enablement": ZoneEnablement(),
    "physical_network": PhysicalNetwork(),
    "traffic_type": TrafficType(),
    "network_service_provider": NetworkServiceProvider(),
    "pod": Pod(),
    "public_ip_range": PublicIpRange(),
    "global_setting": GlobalSetting(),
    "cluster": Cluster(),
    "host": LegacyHost(),
    "cluster_hosts": ClusterHosts(),
    "primary_storage": PrimaryStorage(),
    "image_store": ImageStore(),
    "workload_guard": WorkloadGuard(),
    "console_forwards": ConsoleForwards(),
    "secret_setting": SecretSetting(),
    "ldap_server": LdapServer(),
    "ldap_link": LdapLink(),
    "management_servers": ManagementServers(),
}
