"""Specs for the tests, built the way the main program builds them (from the IP plan)."""

from __future__ import annotations

from components.model.ipplan import build_plan
from components.registration.spec import RegistrationSpec, Timeouts, build_spec

REGION = "eu-west-1"
SECRET_ID = "/cloudstack-ec2/test/api-keys"
#: Small bounds so a test that waits in vain fails in seconds.
FAST = Timeouts(secret_wait=5, api_wait=5, async_job=5, host_up=5, maintenance=5, transient_retry=5,
                poll_interval=0.02, http_timeout=5)


def make_spec(host_count: int = 1, hosts_per_cluster: int = 16, timeouts: Timeouts | None = None,
              zone: str = "zone1", management_count: int = 1) -> RegistrationSpec:
    plan = build_plan(overlay_cidr="10.100.0.0/16", vpc_cidr="10.0.0.0/16", host_count=host_count,
                      guest_cidr="10.1.1.0/24", guest_vlans=(1000, 1999), management_count=management_count)
    return build_spec(plan=plan, zone_name=zone, host_username="cloudstack", hosts_per_cluster=hosts_per_cluster,
                      timeouts=timeouts)
