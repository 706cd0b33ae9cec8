"""What every tier of the program shares, decided before the first AWS resource.

`context()` turns the validated settings into the values each tier reads: the IP
plan, the tags, the region, the deployment's parameter root, the AMI, the hosts'
instance types and clusters. It declares one resource (the deployment id) and makes
the AMI look-up, in that order, as the program always has.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address
from typing import Optional

import pulumi
import pulumi_aws as aws
import pulumi_random as random

from components.model import deployed as deployed_state
from components.model import naming
from components.model.hosttypes import HostTypes, plan_host_types
from components.model.ipplan import IpPlan
from components.model.settings import Settings
from components.program.config import lookup_instance_type
from components.program.lookups import ubuntu_ami
from components.registration import clusters_for
from components.resources.database import db_identifier as database_identifier


@dataclass(frozen=True)
class Context:
    """The inputs every tier reads."""

    settings: Settings
    stack: str
    plan: IpPlan
    #: Project and Stack tags, on every resource that takes tags.
    tags: dict[str, str]
    region: str
    #: The instances' AZ and the database's second AZ (lookups.availability_zones).
    zones: tuple[str, str]
    #: What the last update deployed (Deployed() on a first run).
    previous: deployed_state.Deployed
    #: The deployment's SSM parameter root (naming.parameter_root, or a legacy stack's prefix).
    prefix: pulumi.Output[str]
    #: The database's RDS identifier; None: the database keeps the name pulumi-aws gave it.
    db_identifier: Optional[pulumi.Output[str]]
    #: The AMI every instance boots (amiId, or Canonical's newest Ubuntu of ubuntuCodename).
    ami: str
    #: Each host's instance type (existing hosts keep theirs) and cluster index.
    host_types: HostTypes
    host_clusters: tuple[int, ...]

    @property
    def zone(self) -> str:
        """The AZ of the dedicated subnet and of every instance."""
        return self.zones[0]

    @property
    def cloudstack_version(self) -> str:
        """The CloudStack version instances created in this update install (deployed.installed_version)."""
        return deployed_state.installed_version(self.settings, self.previous)

    @property
    def management_ip(self) -> IPv4Address:
        """The first management server's overlay address (ctx.plan.management_servers has them all)."""
        return self.plan.management_servers[0]


def context(settings: Settings, stack: str, zones: tuple[str, str], previous: deployed_state.Deployed,
            host_types: Optional[HostTypes]) -> Context:
    """The shared inputs. `host_types` None: no host exists yet, every host is of
    hostInstanceType (looked up through lookup_instance_type)."""
    plan = settings.ip_plan()
    if host_types is None:
        host_types = plan_host_types(settings.host_count, settings.host_instance_type, {}, lookup_instance_type)
    host_clusters = tuple(clusters_for(settings.host_count, settings.hosts_per_cluster, host_types.types))
    tags = {"Project": naming.PROJECT, "Stack": stack}
    region = aws.get_region().region
    prefix, db_identifier = _deployment_names(stack, previous)
    return Context(settings=settings, stack=stack, plan=plan, tags=tags, region=region, zones=zones,
                   previous=previous, prefix=prefix, db_identifier=db_identifier,
                   ami=settings.ami_id or ubuntu_ami(settings.ubuntu_codename),
                   host_types=host_types, host_clusters=host_clusters)


def _deployment_names(stack: str, previous: deployed_state.Deployed
                      ) -> tuple[pulumi.Output[str], Optional[pulumi.Output[str]]]:
    """(parameter root, database identifier) of this deployment."""
    if previous.parameter_root == naming.stack_prefix(stack):
        # Deployed before the deployment id existed: renaming its parameters would
        # replace the ones the management server wrote at boot.
        return pulumi.Output.from_input(previous.parameter_root), None
    # Unique per deployment, kept in the stack's state (naming.parameter_root).
    deployment_id = random.RandomId("deployment-id", byte_length=naming.DEPLOYMENT_ID_BYTES)
    prefix = deployment_id.hex.apply(lambda hex_id: naming.parameter_root(stack, hex_id))
    return (pulumi.Output.from_input(prefix),
            deployment_id.hex.apply(lambda hex_id: database_identifier(stack, hex_id)))
