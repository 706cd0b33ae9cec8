"""Guest-facing MTUs the program sets leave room for a VLAN tag inside VXLAN."""

from __future__ import annotations

from components.model.settings import TGW_MAX_MTU, VXLAN_OVERHEAD

VLAN_TAG = 4  # 802.1Q
MTU_KEYS = ("vr.public.interface.max.mtu", "vr.private.interface.max.mtu")


def test_registration_caps_router_mtus_at_overlay_mtu_minus_the_vlan_tag(deploy):
    for overlay_mtu in (8450, 1450):
        spec = deploy(registerCloud=True, overlayMtu=overlay_mtu).run.result.registration
        settings = {s.name: s.value for s in spec.global_settings}
        for key in MTU_KEYS:
            assert int(settings[key]) == overlay_mtu - VLAN_TAG, key
            # A full-size tagged frame, flooded through the Transit Gateway, fits.
            assert int(settings[key]) + VLAN_TAG + VXLAN_OVERHEAD <= TGW_MAX_MTU
