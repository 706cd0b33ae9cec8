"""When instances boot and how they may change later: ordering and replacement rules."""

ASSOCIATION = "aws:ec2transitgateway/multicastDomainAssociation:MulticastDomainAssociation"


def test_every_instance_waits_for_the_multicast_domain_association(dev):
    # Members reach the internet only through the router, which they find by
    # multicast: booting before the subnet joins the domain loses the first boot.
    assert len(dev.instances()) == 5
    for inst in dev.instances():
        assert (ASSOCIATION, "multicast-association") in dev.depends_on_names(inst), inst.name


def test_instances_are_deleted_before_their_replacement(dev):
    # A replacement keeps the overlay address: two live copies must never coexist.
    for inst in dev.instances():
        assert inst.delete_before_replace is True, inst.name


def test_kvm_hosts_keep_their_instance_type(dev):
    for inst in dev.host_instances():
        assert "instanceType" in inst.ignore_changes, inst.name
    for name in ("router", "management"):
        assert "instanceType" not in dev.instance(name).ignore_changes, name


def test_subnets_keep_the_az_they_were_created_in(dev):
    subnets = dev.of_type("aws:ec2/subnet:Subnet")
    assert len(subnets) == 3
    for subnet in subnets:
        assert "availabilityZone" in subnet.ignore_changes, subnet.name


def test_only_regular_azs_are_considered(dev):
    # Opted-in Local Zones are "available" too, and their names sort before the AZs.
    calls = [a for token, a in dev.run.invokes if token == "aws:index/getAvailabilityZones:getAvailabilityZones"]
    assert calls, "the program asked for no AZs"
    for args in calls:
        assert args.get("state") == "available"
        assert {"name": "opt-in-status", "values": ["opt-in-not-required"]} in args.get("filters", [])


def test_the_subnet_az_offers_every_instance_type(dev):
    [offerings] = [a for token, a in dev.run.invokes
                   if token == "aws:ec2/getInstanceTypeOfferings:getInstanceTypeOfferings"]
    assert offerings["locationType"] == "availability-zone"
    [types] = [f["values"] for f in offerings["filters"] if f["name"] == "instance-type"]
    assert set(types) == {"c5n.large", "m6i.xlarge", "m5zn.metal"}
