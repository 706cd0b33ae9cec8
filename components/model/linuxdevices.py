"""The Linux network device names of the overlay on every member, and Linux's limit on them.

Pure module (no Pulumi import). The settings check that a guest VLAN range leaves the KVM
agent's device names within Linux's limit (components/model/settings/network.py); the boot
script userdata/overlay-network.sh creates the bridge and port named here.
"""

from __future__ import annotations

from typing import Optional

#: The overlay bridge (CloudStack's KVM traffic label) and its VXLAN port, as
#: userdata/overlay-network.sh names them (BRIDGE, VXLAN_DEV; a test compares).
#: The port must match the KVM agent's physical-NIC patterns (^eth...,
#: LibvirtComputingResource.ifNamePatterns) and contain neither "vxlan" nor
#: "vnet" (BridgeVifDriver.deleteVnetBr reads those in a bridge's port list).
OVERLAY_BRIDGE = "cloudbr0"
OVERLAY_PORT = "ethovl0"
#: Linux interface names: IFNAMSIZ 16 bytes including the terminating NUL.
LINUX_IFNAME_MAX = 15


def guest_vlan_devices(vlan: int, port: Optional[str] = None) -> tuple[str, str]:
    """(bridge, VLAN device) the KVM agent creates for guest VLAN `vlan` on `port`
    (default OVERLAY_PORT): `br<port>-<vlan>` (BridgeVifDriver.generateVnetBrName)
    and `<port>.<vlan>` (scripts/vm/network/vnet/modifyvlan.sh). Each must fit
    LINUX_IFNAME_MAX."""
    port = port or OVERLAY_PORT
    return f"br{port}-{vlan}", f"{port}.{vlan}"
