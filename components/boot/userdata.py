"""The two overlay facts components/model/settings.py checks the guest VLAN range with
(the bridge and VLAN device names the KVM agent derives, and Linux's name limit).

They live in components/boot/overlay.py; the settings module reads them from here until
it takes them from components.model, and then this module goes. Nothing else imports it.
"""

from components.boot.overlay import LINUX_IFNAME_MAX, guest_vlan_devices

__all__ = ["LINUX_IFNAME_MAX", "guest_vlan_devices"]
