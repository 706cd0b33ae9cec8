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

from .client import LOG, Api, CloudStackError, RegistrationError
from .plan import CONNECTION_KEYS

Props = Mapping[str, Any]
Obj = dict[str, Any]

_GONE_MARKERS = ("not found", "does not exist", "unable to find", "invalid parameter id", "cannot find",
                 "couldn't find")


def _is_gone(e: CloudStackError) -> bool:
    return e.code == 431 and any(m in e.text.lower() for m in _GONE_MARKERS)


def _first(v: Any) -> Any:
    # Newer releases answer some scalars (a pod's startip/endip) as one-element lists.
    if isinstance(v, list):
        return v[0] if v else None
    return v


def _single(resp: Any, key: str) -> Obj:
    v = resp.get(key) if isinstance(resp, dict) else None
    if isinstance(v, list):
        v = v[0] if v else None
    if not isinstance(v, dict) or "id" not in v:
        raise RegistrationError(f"unexpected CloudStack answer: no {key!r} object in {sorted(resp or {})}")
    return v


class Kind:
    """One kind of CloudStack object. Subclasses fill in the API specifics."""

    kind = ""
    #: CloudStack has the object already (settings, providers, the zone's state): found ≠ adopted.
    preexisting = False
    replace_keys: tuple[str, ...] = ()
    update_keys: tuple[str, ...] = ()

    # -- to implement ----------------------------------------------------
    def label(self, props: Props) -> str:
        return f"{self.kind} {props.get('name', '')}".strip()

    def find(self, api: Api, props: Props) -> Obj | None:
        raise NotImplementedError

    def make(self, api: Api, props: Props) -> Obj:
        raise NotImplementedError

    def get(self, api: Api, id_: str, props: Props) -> Obj | None:
        raise NotImplementedError

    def live(self, obj: Obj, props: Props) -> dict[str, Any]:
        """The inputs' keys as CloudStack reports them (drift shows against these)."""
        return {}

    def converge(self, api: Api, obj: Obj, props: Props) -> Obj:
        """Bring an existing (new or adopted) object to the wanted state; returns it fresh."""
        return obj

    def change(self, api: Api, id_: str, olds: Props, news: Props, changed: list[str]) -> None:
        raise RegistrationError(f"{self.kind}: {changed} cannot be updated in place")

    def remove(self, api: Api, id_: str, props: Props) -> None:
        raise NotImplementedError

    # -- generic ---------------------------------------------------------
    def outs(self, obj: Obj, props: Props) -> dict[str, Any]:
        return {**dict(props), **self.live(obj, props), "id": str(obj["id"])}

    def create(self, api: Api, props: Props) -> tuple[str, dict[str, Any]]:
        label = self.label(props)

        def step() -> Obj:
            found = self.find(api, props)
            if found is not None:
                if not self.preexisting:
                    LOG.info("%s exists already (id %s): adopting it", label, found["id"])
                return found
            made = self.make(api, props)
            LOG.info("created %s (id %s)", label, made["id"])
            return made

        obj = api.retrying(f"create {label}", step)
        obj = api.retrying(f"configure {label}", lambda: self.converge(api, obj, props))
        return str(obj["id"]), self.outs(obj, props)

    def read(self, api: Api, id_: str, props: Props) -> dict[str, Any] | None:
        obj = api.retrying(f"read {self.label(props)}", lambda: self.get(api, id_, props))
        return None if obj is None else self.outs(obj, props)

    def diff(self, olds: Props, news: Props) -> tuple[list[str], list[str]]:
        """(changed keys, keys forcing replacement). A changed connection key (a new
        endpoint, say) is an update that touches nothing in CloudStack: it only stores
        the new value, so later reads and deletes use it."""
        changed = [k for k in (*self.replace_keys, *self.update_keys)
                   if k not in CONNECTION_KEYS and olds.get(k) != news.get(k)]
        changed += [k for k in CONNECTION_KEYS if olds.get(k) != news.get(k)]
        return changed, [k for k in changed if k in self.replace_keys]

    def update(self, connect: Callable[[], Api], id_: str, olds: Props, news: Props) -> dict[str, Any]:
        """`connect` gives the Api; it is called only when CloudStack must be asked."""
        changed, replaces = self.diff(olds, news)
        if replaces:
            raise RegistrationError(f"{self.label(news)}: {replaces} need a replacement, not an update")
        label = self.label(news)
        changed = [k for k in changed if k not in CONNECTION_KEYS]
        if not changed:
            # Only how to reach CloudStack changed: store it, ask CloudStack nothing
            # (the API need not even be reachable for this).
            return {**olds, **{k: news[k] for k in CONNECTION_KEYS if k in news}}
        api = connect()
        api.retrying(f"update {label}", lambda: self.change(api, id_, olds, news, changed))
        LOG.info("updated %s: %s", label, ", ".join(changed))
        obj = api.retrying(f"read {label}", lambda: self.get(api, id_, news))
        if obj is None:
            raise RegistrationError(f"{label} (id {id_}) disappeared during the update; run `pulumi refresh`")
        obj = api.retrying(f"configure {label}", lambda: self.converge(api, obj, news))
        return self.outs(obj, news)

    def delete(self, api: Api, id_: str, props: Props) -> None:
        label = self.label(props)

        def step() -> None:
            if self.get(api, id_, props) is None:
                LOG.info("%s (id %s) is gone already", label, id_)
                return
            try:
                self.remove(api, id_, props)
            except CloudStackError as e:
                if not _is_gone(e):
                    raise
            LOG.info("deleted %s (id %s)", label, id_)

        api.retrying(f"delete {label}", step)


def _by(items: list[Obj], **match: Any) -> Obj | None:
    hits = [i for i in items if all(str(i.get(k)) == str(v) for k, v in match.items())]
    if len(hits) > 1:
        raise RegistrationError(f"{len(hits)} CloudStack objects match {match}: cannot tell which one to adopt")
    return hits[0] if hits else None


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

    def converge(self, api, obj, props):
        if obj.get("allocationstate") != props["allocationstate"]:
            api.call("updateZone", id=obj["id"], allocationstate=props["allocationstate"])
            obj = self.get(api, obj["id"], props) or obj
        return obj

    def live(self, obj, props):
        return {"zoneid": obj["id"], "allocationstate": obj.get("allocationstate")}

    def change(self, api, id_, olds, news, changed):
        api.call("updateZone", id=id_, allocationstate=news["allocationstate"])

    def delete(self, api, id_, props):
        # Disabling (not deleting) the zone: the zone resource owns its deletion.
        def step():
            zone = self.get(api, id_, props)
            if zone is not None and zone.get("allocationstate") != "Disabled":
                api.call("updateZone", id=id_, allocationstate="Disabled")
                LOG.info("disabled zone %s", id_)
        api.retrying(f"disable zone {id_}", step)


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
        args = {k: news[k] for k in changed}
        if "startip" in args or "endip" in args:  # updatePod wants both ends of the range
            args.update(startip=news["startip"], endip=news["endip"])
        api.call("updatePod", id=id_, **args)

    def remove(self, api, id_, props):
        api.call("deletePod", id=id_)


class PublicIpRange(Kind):
    kind = "public IP range"
    replace_keys = ("zoneid", "physicalnetworkid", "gateway", "netmask", "startip", "endip", "vlan",
                    "forvirtualnetwork")

    def label(self, props):
        return f"public IP range {props.get('startip')}-{props.get('endip')}"

    def find(self, api, props):
        items = api.list("listVlanIpRanges", "vlaniprange", zoneid=props["zoneid"])
        return _by(items, startip=props["startip"], endip=props["endip"])

    def make(self, api, props):
        r = api.call("createVlanIpRange", zoneid=props["zoneid"], physicalnetworkid=props["physicalnetworkid"],
                     gateway=props["gateway"], netmask=props["netmask"], startip=props["startip"],
                     endip=props["endip"], vlan=props["vlan"], forvirtualnetwork=True)
        return _single(r, "vlan")

    def get(self, api, id_, props):
        return _by(api.list("listVlanIpRanges", "vlaniprange", id=id_), id=id_)

    def live(self, obj, props):
        vlan = str(obj.get("vlan", ""))
        return {"zoneid": obj.get("zoneid"), "physicalnetworkid": obj.get("physicalnetworkid"),
                "gateway": obj.get("gateway"), "netmask": obj.get("netmask"), "startip": obj.get("startip"),
                "endip": obj.get("endip"), "vlan": vlan.removeprefix("vlan://"),
                "forvirtualnetwork": obj.get("forvirtualnetwork")}

    def remove(self, api, id_, props):
        api.call("deleteVlanIpRange", id=id_)


# -- global settings -------------------------------------------------------------

class GlobalSetting(Kind):
    kind = "global setting"
    preexisting = True
    replace_keys = ("name",)
    update_keys = ("value",)

    def label(self, props):
        return f"global setting {props.get('name')}"

    def _item(self, api, name):
        return _by(api.list("listConfigurations", "configuration", name=name), name=name)

    def find(self, api, props):
        item = self._item(api, props["name"])
        if item is None:
            raise CloudStackError(api.endpoint, "listConfigurations", 431,
                                  f"CloudStack has no global setting named {props['name']!r}")
        return {**item, "id": props["name"]}

    def converge(self, api, obj, props):
        if obj.get("value") != props["value"]:
            r = api.call("updateConfiguration", name=props["name"], value=props["value"])
            obj = {**r.get("configuration", {}), "id": props["name"]}
        return obj

    def get(self, api, id_, props):
        item = self._item(api, id_)
        return None if item is None else {**item, "id": id_}

    def live(self, obj, props):
        return {"name": obj.get("name"), "value": obj.get("value")}

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


#: resourcestate values from which deleteHost (without forced) is accepted.
DELETABLE_HOST_STATES = ("Maintenance", "Degraded")


class Host(Kind):
    kind = "host"
    replace_keys = ("zoneid", "podid", "clusterid", "url", "ipaddress", "hypervisor")
    # The username matters only when the host is added: a change is recorded, not applied.
    update_keys = ("username",)

    def label(self, props):
        return f"host {props.get('ipaddress')}"

    def find(self, api, props):
        items = api.list("listHosts", "host", zoneid=props["zoneid"], type="Routing")
        found = _by(items, ipaddress=props["ipaddress"])
        if found is not None and found.get("clusterid") != props["clusterid"]:
            raise RegistrationError(
                f"host {props['ipaddress']} is registered in cluster {found.get('clustername')} "
                f"({found.get('clusterid')}), not in {props['clusterid']}: CloudStack cannot move a host between "
                f"clusters; put it into maintenance and delete it in CloudStack, then run `pulumi up` again")
        return found

    def make(self, api, props):
        # No password: since 4.16.1 the management server logs in with its own SSH key,
        # which the host's boot script put into the user's authorized_keys.
        r = api.call("addHost", zoneid=props["zoneid"], podid=props["podid"], clusterid=props["clusterid"],
                     hypervisor=props["hypervisor"], url=props["url"], username=props["username"])
        return _single(r, "host")

    def get(self, api, id_, props):
        return _by(api.list("listHosts", "host", id=id_), id=id_)

    def converge(self, api, obj, props):
        t = api.timeouts
        if obj.get("resourcestate") in ("Maintenance", "ErrorInMaintenance", "PrepareForMaintenance"):
            # Adopted from an interrupted scale-in that the user has since reverted.
            LOG.info("%s is in %s: cancelling the maintenance", self.label(props), obj.get("resourcestate"))
            api.job("cancelHostMaintenance", id=obj["id"])
        deadline = time.monotonic() + t.host_up
        while True:
            fresh = self.get(api, obj["id"], props)
            if fresh is None:
                raise RegistrationError(f"{self.label(props)} (id {obj['id']}) vanished while waiting for it")
            if fresh.get("state") == "Up":
                return fresh
            if time.monotonic() > deadline:
                raise RegistrationError(
                    f"{self.label(props)} is {fresh.get('state')} after {t.host_up:g}s (timeouts.host_up): the "
                    f"agent did not connect to the management server; check cloudstack-agent on the host and "
                    f"that the host user's authorized_keys has the management server's key")
            api._sleep(t.poll_interval)

    def live(self, obj, props):
        return {"zoneid": obj.get("zoneid"), "podid": obj.get("podid"), "clusterid": obj.get("clusterid"),
                "ipaddress": obj.get("ipaddress"), "hostname": obj.get("name"), "state": obj.get("state"),
                "resourcestate": obj.get("resourcestate")}

    def change(self, api, id_, olds, news, changed):
        LOG.info("%s: %s recorded; it applies only when a host is added", self.label(news), ", ".join(changed))

    def vms_on(self, api: Api, host_id: str) -> list[str]:
        vms = api.list("listVirtualMachines", "virtualmachine", hostid=host_id, listall=True)
        return [f"{v.get('name')} ({v.get('state')})" for v in vms]

    def delete(self, api, id_, props):
        """Scale-in: maintenance, wait for the VMs to move off, then delete (never forced)."""
        label = self.label(props)
        t = api.timeouts
        host = api.retrying(f"read {label}", lambda: self.get(api, id_, props))
        if host is None:
            LOG.info("%s (id %s) is gone already", label, id_)
            return
        state = host.get("resourcestate")
        if state not in DELETABLE_HOST_STATES:
            if state == "ErrorInMaintenance":
                api.retrying(f"cancel maintenance of {label}", lambda: api.job("cancelHostMaintenance", id=id_))
            if state != "PrepareForMaintenance":
                LOG.info("%s: entering maintenance (its VMs live-migrate away)", label)
                api.retrying(f"maintenance of {label}", lambda: api.job("prepareHostForMaintenance", id=id_))
            deadline = time.monotonic() + t.maintenance
            while True:
                host = api.retrying(f"read {label}", lambda: self.get(api, id_, props)) or {}
                state = host.get("resourcestate")
                if state in DELETABLE_HOST_STATES:
                    break
                if state == "ErrorInMaintenance" or time.monotonic() > deadline:
                    vms = api.retrying(f"list VMs on {label}", lambda: self.vms_on(api, id_))
                    why = ("CloudStack could not migrate its VMs (ErrorInMaintenance)" if state ==
                           "ErrorInMaintenance" else
                           f"it is still {state} after {t.maintenance:g}s (timeouts.maintenance)")
                    try:
                        api.retrying(f"cancel maintenance of {label}",
                                     lambda: api.job("cancelHostMaintenance", id=id_))
                        back = "the host is back in service"
                    except RegistrationError as e:
                        back = f"cancelling its maintenance failed too ({e}); cancel it in CloudStack"
                    raise RegistrationError(
                        f"not deleting {label} (id {id_}): {why}; VMs still on it: "
                        f"{', '.join(vms) if vms else 'none listed'}. Nothing was deleted and {back}. Make room "
                        f"(another Up host in the cluster, or migrate/stop these VMs), then run `pulumi up` again.")
                api._sleep(t.poll_interval)
        api.retrying(f"delete {label}", lambda: self._delete_host(api, id_))
        LOG.info("deleted %s (id %s)", label, id_)

    def _delete_host(self, api: Api, id_: str) -> None:
        try:
            api.call("deleteHost", id=id_)  # never forced: forced stops the VMs
        except CloudStackError as e:
            if not _is_gone(e):
                raise


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


class ImageStore(Kind):
    kind = "image store"
    replace_keys = ("zoneid", "name", "url", "provider")

    def find(self, api, props):
        items = api.list("listImageStores", "imagestore", zoneid=props["zoneid"], name=props["name"])
        return _by(items, name=props["name"])

    def make(self, api, props):
        r = api.call("addImageStore", zoneid=props["zoneid"], name=props["name"], url=props["url"],
                     provider=props["provider"])
        return _single(r, "imagestore")

    def get(self, api, id_, props):
        return _by(api.list("listImageStores", "imagestore", id=id_), id=id_)

    def live(self, obj, props):
        return {"zoneid": obj.get("zoneid"), "name": obj.get("name"), "url": obj.get("url"),
                "provider": obj.get("providername")}

    def remove(self, api, id_, props):
        api.call("deleteImageStore", id=id_)


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
    "host": Host(),
    "primary_storage": PrimaryStorage(),
    "image_store": ImageStore(),
}
