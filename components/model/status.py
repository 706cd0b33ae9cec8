"""The live state of the zone as `cloudstack-ec2 status` reports it, from CloudStack's API
answers: management servers, hosts, system VMs, capacity per type, open alerts.

Pure module: components/cli/status.py makes the calls; this one shapes and prints them.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

#: Capacity types (api/src/main/java/com/cloud/capacity/Capacity.java CAPACITY_TYPE_*).
CAPACITY_TYPES = {
    0: "memory", 1: "CPU", 2: "primary storage used", 3: "primary storage allocated", 4: "public IPs",
    5: "private IPs", 6: "secondary storage", 7: "VLANs", 8: "direct attached public IPs", 9: "local storage",
    10: "GPU", 19: "GPU", 90: "CPU cores", 1000: "virtual network IPv6 subnets",
}
#: A host in any other state needs a look (com.cloud.host.Status: Up is the one working state).
HOST_OK = "Up"


def _host(h: Mapping[str, Any], vms: Mapping[str, int]) -> dict:
    return {"name": h.get("name", ""), "state": h.get("state", ""), "resourcestate": h.get("resourcestate", ""),
            "version": h.get("version", ""), "cluster": h.get("clustername", ""), "ip": h.get("ipaddress", ""),
            "vms": vms.get(h.get("id", ""), 0)}


def _capacity(c: Mapping[str, Any]) -> dict:
    kind = int(c.get("type", -1))
    return {"type": CAPACITY_TYPES.get(kind, f"type {kind}"), "used": c.get("capacityused", 0),
            "total": c.get("capacitytotal", 0), "percent": float(c.get("percentused", 0) or 0)}


def zone_report(endpoint: str, servers: Sequence[Mapping], hosts: Sequence[Mapping], vms: Mapping[str, int],
                system_vms: Sequence[Mapping], capacity: Sequence[Mapping], alerts: Sequence[Mapping]) -> dict:
    """The report (JSON-ready). `vms`: host id -> VMs on it (listVirtualMachines hostid=...).
    `healthy`: every management server and host Up, every system VM Running, no alert."""
    report = {
        "endpoint": endpoint,
        "managementServers": [{"name": s.get("name", ""), "state": s.get("state", ""), "version": s.get("version", ""),
                               "ip": s.get("ipaddress") or s.get("serviceip", "")} for s in servers],
        "hosts": [_host(h, vms) for h in hosts],
        "systemVms": [{"name": v.get("name", ""), "type": v.get("systemvmtype", ""), "state": v.get("state", ""),
                       "host": v.get("hostname", ""), "publicIp": v.get("publicip", "")} for v in system_vms],
        "capacity": [_capacity(c) for c in capacity],
        "alerts": [{"sent": a.get("sent", ""), "type": a.get("name") or str(a.get("type", "")),
                    "description": a.get("description", "")} for a in alerts],
    }
    report["healthy"] = (all(s["state"] == "Up" for s in report["managementServers"])
                         and bool(report["managementServers"])
                         and all(h["state"] == HOST_OK for h in report["hosts"])
                         and all(v["state"] == "Running" for v in report["systemVms"])
                         and not report["alerts"])
    return report


def _table(title: str, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    rows = [[str(x) for x in r] for r in rows]
    if not rows:
        return [f"{title}: none", ""]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    return [f"{title}:", "  " + line(header), *("  " + line(r) for r in rows), ""]


def render(report: Mapping[str, Any]) -> str:
    """The report as tables, a verdict line first."""
    verdict = "healthy" if report["healthy"] else "NEEDS ATTENTION"
    out = [f"CloudStack at {report['endpoint']}: {verdict}", ""]
    out += _table("Management servers", ("name", "state", "version", "address"),
                  ((s["name"], s["state"], s["version"], s["ip"]) for s in report["managementServers"]))
    out += _table("Hosts", ("name", "state", "resource", "version", "cluster", "VMs"),
                  ((h["name"], h["state"], h["resourcestate"], h["version"], h["cluster"], h["vms"])
                   for h in report["hosts"]))
    out += _table("System VMs", ("name", "type", "state", "host"),
                  ((v["name"], v["type"], v["state"], v["host"]) for v in report["systemVms"]))
    out += _table("Capacity", ("type", "used", "total", "used %"),
                  ((c["type"], c["used"], c["total"], f"{c['percent']:.1f}") for c in report["capacity"]))
    out += _table("Open alerts", ("sent", "type", "description"),
                  ((a["sent"], a["type"], a["description"]) for a in report["alerts"]))
    return "\n".join(out).rstrip() + "\n"
