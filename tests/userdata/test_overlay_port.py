"""The overlay port's name against the CloudStack KVM agent's rules (item: guest VLAN bridges)."""

from __future__ import annotations

import re
from importlib import resources

from components.model import linuxdevices

# plugins/hypervisors/kvm/.../LibvirtComputingResource.java: ifNamePatterns, joined
# as "|(<p>.*)" and matched against the whole name (String.matches).
AGENT_PIF_PATTERNS = ("^eth", "^bond", "^vlan", "^vx", "^em", "^ens", "^eno", "^enp", "^team", "^enx",
                      r"^p\d+p\d+")


def script_constant(name: str) -> str:
    text = resources.files("userdata").joinpath("overlay-network.sh").read_text()
    m = re.search(rf"^readonly {name}=(\S+)$", text, re.M)
    assert m, f"{name} not found in overlay-network.sh"
    return m.group(1)


def test_script_and_python_name_the_same_port_and_bridge():
    assert script_constant("VXLAN_DEV") == linuxdevices.OVERLAY_PORT
    # The KVM host's firewall exempts the overlay port from its VM-port rules.
    host = resources.files("userdata").joinpath("kvm-host.sh").read_text()
    assert re.findall(r"^OVERLAY_PORT=(\S+)$", host, re.M) == [linuxdevices.OVERLAY_PORT]
    # ... and frames carrying an infrastructure node's MAC, which the overlay script derives.
    assert re.findall(r"^INFRA_MAC_PREFIX=(\S+)$", host, re.M) == [script_constant("INFRA_MAC_PREFIX")]
    # The management server admits the router's forward by that prefix.
    management = resources.files("userdata").joinpath("management-server.sh").read_text()
    assert re.findall(r"^INFRA_MAC_PREFIX=(\S+)$", management, re.M) == [script_constant("INFRA_MAC_PREFIX")]
    assert script_constant("BRIDGE") == linuxdevices.OVERLAY_BRIDGE


def test_port_is_a_physical_nic_to_the_agent_and_not_one_of_its_own_devices():
    port = linuxdevices.OVERLAY_PORT
    assert port.startswith("eth")
    assert re.fullmatch("|".join(f"({p}.*)" for p in AGENT_PIF_PATTERNS), port)
    # BridgeVifDriver.deleteVnetBr: "vxlan" in a bridge's port list means a
    # CloudStack VXLAN bridge, "vnet" a VM still plugged in.
    assert "vxlan" not in port and "vnet" not in port


def test_every_vlan_bridge_and_device_fits_linux_names():
    for vlan in (1, 1000, 1999, 4094):
        bridge, device = linuxdevices.guest_vlan_devices(vlan)
        assert bridge == f"br{linuxdevices.OVERLAY_PORT}-{vlan}" and device == f"{linuxdevices.OVERLAY_PORT}.{vlan}"
        assert len(bridge) <= 15 and len(device) <= 15, (bridge, device)
    # The former name: 16 characters with the default range's first VLAN.
    assert len(linuxdevices.guest_vlan_devices(1000, "ethvxlan0")[0]) == 16
