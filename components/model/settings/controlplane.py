"""Settings of the control plane: the overlay router and the CloudStack management server.

Pure module (no Pulumi import). The facts AWS reports of their instance types are checked
with the hosts' (components/model/settings/instancetypes.py).
"""

from __future__ import annotations

from components.model.settings.base import Key
from components.model.settings.instancetypes import InstanceTypeName

KEYS: tuple[Key, ...] = (
    Key("routerInstanceType", "str", "c5n.large", "Overlay router: Nitro (multicast sender), sized for the bandwidth you need.",
        rule=InstanceTypeName("c5n.large")),
    Key("managementInstanceType", "str", "m6i.xlarge", "CloudStack management server: Nitro.",
        rule=InstanceTypeName("m6i.xlarge")),
)
