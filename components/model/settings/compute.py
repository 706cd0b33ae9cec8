"""Settings of the compute tier: the KVM hosts, how they form clusters, and the image and
root volume every instance boots from.

Pure module (no Pulumi import).
"""

from __future__ import annotations

from components.model import rules
from components.model.rules import AtLeast, Choice, Pattern, Range
from components.model.settings.base import AWS_ID, Key
from components.model.settings.instancetypes import InstanceTypeName

UBUNTU_RELEASES = rules.UBUNTU_RELEASES
#: The guide's limit for KVM clusters.
MAX_HOSTS_PER_CLUSTER = 16

KEYS: tuple[Key, ...] = (
    Key("hostInstanceType", "str", "c5.metal", "KVM hosts: Nitro with hardware virtualization: a metal type (c5.metal, m5zn.metal) or one with nested virtualization (C8i/M8i/R8i, e.g. c8i.4xlarge); a change applies to hosts added later, in a new cluster.",
        rule=InstanceTypeName("c5.metal or c8i.4xlarge")),
    Key("hostCount", "int", 1, "Number of KVM hosts; change it to grow or shrink the cloud.",
        rule=AtLeast(1)),
    Key("hostsPerCluster", "int", 16, "KVM hosts per CloudStack cluster (1..16); a new cluster starts every N hosts, and where the hosts' instance type changes.",
        rule=Range(1, MAX_HOSTS_PER_CLUSTER, " (KVM hosts per CloudStack cluster)")),
    Key("ubuntuRelease", "str", "24.04", "Ubuntu LTS of every instance (22.04 or 24.04).",
        rule=Choice(tuple(UBUNTU_RELEASES))),
    Key("amiId", "str", "", "Override the Ubuntu AMI looked up for `ubuntuRelease`.",
        rule=Pattern(AWS_ID["ami"], "an AMI id like ami-0123456789abcdef0", optional=True)),
    Key("rootVolumeGb", "int", 50, "Encrypted gp3 root volume size of each instance (GiB).",
        rule=Range(20, 16384)),
    Key("hostTimeoutMinutes", "int", 60, "Create/update/delete timeout of each KVM host: metal instances can take more than 20 minutes to start or stop (the provider's default is 10 to create); 20..240.",
        rule=Range(20, 240, " (metal instances take more than 20 minutes)")),
)
