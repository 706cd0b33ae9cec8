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
