"""UiLoadBalancer: the Application Load Balancer in front of the management servers' UI/API,
its two public subnets, its security group, and HTTPS (an ACM certificate, the DNS
validation record and the alias in Route 53)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

import pulumi
import pulumi_aws as aws

from components.model import frontend


@dataclass(frozen=True)
class UiLoadBalancerArgs:
    vpc_id: pulumi.Input[str]
    #: Who may connect (adminCidrs); nobody else reaches the load balancer.
    admin_cidrs: Sequence[str]
    #: New VPC: the two subnets to create (uiSubnetCidrs) in `availability_zones`, routed to
    #: `internet_gateway_id`. Existing VPC: `subnet_ids` (uiSubnetIds), used as they are.
    subnet_cidrs: Sequence[str] = ()
    availability_zones: Sequence[str] = ()
    internet_gateway_id: Optional[pulumi.Input[str]] = None
    subnet_ids: Sequence[str] = ()
    #: HTTPS: the user's certificate (uiCertificateArn), else one requested for `domain_name`
    #: and validated in `hosted_zone_id`. `hosted_zone_id` also gets the alias record.
    https: bool = False
    certificate_arn: str = ""
    domain_name: str = ""
    hosted_zone_id: str = ""
    tags: dict = field(default_factory=dict)


class UiLoadBalancer(pulumi.ComponentResource):
    """An internet-facing ALB: HTTPS on 443 with HTTP redirected (or plain HTTP on 80 without
    a certificate), forwarding to the management servers' 8080 by their VPC addresses, with
    stickiness on CloudStack's session cookie. Its group admits `admin_cidrs` only and may
    reach only the management servers' 8080; `management_sg_id` is the group that admits
    8080 from it, for the management servers to wear.

    `attach(name, address)` adds a management server as a target.

    Outputs: url (https://<domain> or http://<load balancer name>), dns_name, zone_id,
    security_group_id, management_sg_id, target_group_arn, subnet_ids, certificate_arn.
    """

    def __init__(self, name: str, args: UiLoadBalancerArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("cloudstack-ec2:index:UiLoadBalancer", name, None, opts)
        self._name = name
        child = pulumi.ResourceOptions(parent=self)
        tags = dict(args.tags)
        self.subnet_ids = self._subnets(name, args, child, tags)
        lb_sg, management_sg = self._security_groups(name, args, child, tags)
        balancer = aws.lb.LoadBalancer(
            f"{name}-alb", name_prefix=frontend.NAME_PREFIX, load_balancer_type="application", internal=False,
            subnets=self.subnet_ids, security_groups=[lb_sg.id],
            # Requests with header fields that are not valid HTTP never reach CloudStack
            # (Elastic Load Balancing User Guide, "Application Load Balancer attributes").
            drop_invalid_header_fields=True,
            tags={**tags, "Name": f"{name}-alb"}, opts=child)
        target_group = aws.lb.TargetGroup(
            f"{name}-tg", name_prefix=frontend.NAME_PREFIX, vpc_id=args.vpc_id, target_type="ip",
            protocol="HTTP", port=frontend.TARGET_PORT, deregistration_delay=frontend.DEREGISTRATION_DELAY_SECONDS,
            health_check=aws.lb.TargetGroupHealthCheckArgs(
                enabled=True, protocol="HTTP", port="traffic-port", path=frontend.HEALTH_CHECK_PATH,
                matcher=frontend.HEALTH_CHECK_MATCHER, interval=15, timeout=5, healthy_threshold=2,
                unhealthy_threshold=3),
            stickiness=aws.lb.TargetGroupStickinessArgs(
                enabled=True, type=frontend.STICKINESS_TYPE, cookie_name=frontend.SESSION_COOKIE,
                cookie_duration=frontend.STICKINESS_SECONDS),
            tags={**tags, "Name": f"{name}-tg"},
            # A name_prefix'd target group is replaced before the old one goes: the listener
            # moves to the new one first (ELB refuses to delete a group a listener uses).
            opts=pulumi.ResourceOptions(parent=self, delete_before_replace=False))
        certificate_arn = self._certificate(name, args, child, tags) if args.https else None
        self._listeners(name, balancer, target_group, certificate_arn, child, tags)
        if args.hosted_zone_id:
            aws.route53.Record(
                f"{name}-alias", zone_id=args.hosted_zone_id, name=args.domain_name, type="A",
                aliases=[aws.route53.RecordAliasArgs(name=balancer.dns_name, zone_id=balancer.zone_id,
                                                     evaluate_target_health=True)], opts=child)
        self.target_group_arn = target_group.arn
        self.dns_name = balancer.dns_name
        self.zone_id = balancer.zone_id
        self.security_group_id = lb_sg.id
        self.management_sg_id = management_sg.id
        self.certificate_arn = certificate_arn
        self.url: pulumi.Output[str] = balancer.dns_name.apply(
            lambda dns_name: frontend.base_url(args.https, args.domain_name, dns_name))
        self.register_outputs({
            "url": self.url, "dns_name": self.dns_name, "zone_id": self.zone_id,
            "security_group_id": self.security_group_id, "management_sg_id": self.management_sg_id,
            "target_group_arn": self.target_group_arn, "subnet_ids": self.subnet_ids,
            "certificate_arn": certificate_arn,
        })

    def attach(self, name: str, address: pulumi.Input[str]) -> aws.lb.TargetGroupAttachment:
        """One management server as a target, by its VPC address (the listener port 8080)."""
        return aws.lb.TargetGroupAttachment(
            f"{self._name}-target-{name}", target_group_arn=self.target_group_arn, target_id=address,
            port=frontend.TARGET_PORT, opts=pulumi.ResourceOptions(parent=self))

    def _subnets(self, name, args: UiLoadBalancerArgs, child, tags) -> list[pulumi.Input[str]]:
        """The two public subnets: the existing VPC's, or new ones routed to the internet gateway.
        Only the load balancer lives there: nothing in them is an overlay member."""
        if args.subnet_ids:
            return list(args.subnet_ids)
        table = aws.ec2.RouteTable(f"{name}-rt", vpc_id=args.vpc_id, tags={**tags, "Name": f"{name}-public"},
                                   opts=child)
        aws.ec2.Route(f"{name}-internet", route_table_id=table.id, destination_cidr_block="0.0.0.0/0",
                      gateway_id=args.internet_gateway_id, opts=child)
        ids = []
        for i, (cidr, zone) in enumerate(zip(args.subnet_cidrs, args.availability_zones)):
            subnet = aws.ec2.Subnet(f"{name}-subnet-{i}", vpc_id=args.vpc_id, cidr_block=cidr, availability_zone=zone,
                                    map_public_ip_on_launch=False, tags={**tags, "Name": f"{name}-{i}"},
                                    opts=pulumi.ResourceOptions(parent=self, ignore_changes=["availability_zone"]))
            aws.ec2.RouteTableAssociation(f"{name}-subnet-{i}-rta", subnet_id=subnet.id, route_table_id=table.id,
                                          opts=child)
            ids.append(subnet.id)
        return ids

    def _security_groups(self, name, args: UiLoadBalancerArgs, child, tags
                         ) -> tuple[aws.ec2.SecurityGroup, aws.ec2.SecurityGroup]:
        """The load balancer's group (in: the listeners from adminCidrs; out: the management
        servers' 8080 only) and the management servers' (in: 8080 from the load balancer).
        Standalone rules, since each group names the other (and a group without inline rules
        loses AWS's default allow-all egress when pulumi-aws creates it)."""
        lb_sg = aws.ec2.SecurityGroup(f"{name}-sg", vpc_id=args.vpc_id,
                                      description="CloudStack UI/API load balancer: adminCidrs only",
                                      tags={**tags, "Name": f"{name}-alb"}, opts=child)
        management_sg = aws.ec2.SecurityGroup(
            f"{name}-management-sg", vpc_id=args.vpc_id,
            description="CloudStack management servers: UI/API from the load balancer",
            tags={**tags, "Name": f"{name}-management"}, opts=child)
        for rule in frontend.listener_ingress(args.admin_cidrs, args.https):
            aws.vpc.SecurityGroupIngressRule(
                f"{name}-in-{rule.port}-{rule.cidr.replace('/', '-').replace('.', '-')}",
                security_group_id=lb_sg.id, ip_protocol="tcp", from_port=rule.port, to_port=rule.port,
                cidr_ipv4=rule.cidr, description=rule.description, opts=child)
        aws.vpc.SecurityGroupEgressRule(
            f"{name}-to-management", security_group_id=lb_sg.id, ip_protocol="tcp",
            from_port=frontend.TARGET_PORT, to_port=frontend.TARGET_PORT,
            referenced_security_group_id=management_sg.id,
            description="UI/API and health checks to the management servers", opts=child)
        aws.vpc.SecurityGroupIngressRule(
            f"{name}-management-from-alb", security_group_id=management_sg.id, ip_protocol="tcp",
            from_port=frontend.TARGET_PORT, to_port=frontend.TARGET_PORT, referenced_security_group_id=lb_sg.id,
            description="UI/API from the load balancer only", opts=child)
        return lb_sg, management_sg

    def _certificate(self, name, args: UiLoadBalancerArgs, child, tags) -> pulumi.Output[str]:
        """The user's certificate, or a DNS-validated one requested for the domain: its
        validation record in the hosted zone, and the wait until ACM issues it (a listener
        refuses a certificate that is not issued)."""
        if args.certificate_arn:
            return pulumi.Output.from_input(args.certificate_arn)
        certificate = aws.acm.Certificate(
            f"{name}-certificate", domain_name=args.domain_name, validation_method="DNS",
            tags={**tags, "Name": f"{name}-certificate"},
            # A new certificate is issued before the listener lets go of the old one.
            opts=pulumi.ResourceOptions(parent=self, delete_before_replace=False))
        option = certificate.domain_validation_options.apply(lambda options: options[0])
        record = aws.route53.Record(
            f"{name}-certificate-validation", zone_id=args.hosted_zone_id,
            name=option.apply(lambda o: o.resource_record_name), type=option.apply(lambda o: o.resource_record_type),
            records=[option.apply(lambda o: o.resource_record_value)], ttl=300,
            # ACM gives every certificate for the same name the same record (ACM User Guide,
            # "DNS validation"): a replacement certificate finds it in place.
            allow_overwrite=True, opts=child)
        validation = aws.acm.CertificateValidation(
            f"{name}-certificate-issued", certificate_arn=certificate.arn, validation_record_fqdns=[record.fqdn],
            opts=child)
        return validation.certificate_arn

    def _listeners(self, name, balancer: aws.lb.LoadBalancer, target_group: aws.lb.TargetGroup,
                   certificate_arn: Optional[pulumi.Output[str]], child, tags) -> None:
        """HTTPS on 443 and a redirect on 80; or, without a certificate, plain HTTP on 80."""
        forward = [aws.lb.ListenerDefaultActionArgs(type="forward", target_group_arn=target_group.arn)]
        if certificate_arn is None:
            aws.lb.Listener(f"{name}-http", load_balancer_arn=balancer.arn, port=frontend.HTTP_PORT, protocol="HTTP",
                            default_actions=forward, tags=tags, opts=child)
            return
        aws.lb.Listener(f"{name}-https", load_balancer_arn=balancer.arn, port=frontend.HTTPS_PORT, protocol="HTTPS",
                        ssl_policy=frontend.TLS_POLICY, certificate_arn=certificate_arn, default_actions=forward,
                        tags=tags, opts=child)
        aws.lb.Listener(f"{name}-http-redirect", load_balancer_arn=balancer.arn, port=frontend.HTTP_PORT,
                        protocol="HTTP",
                        default_actions=[aws.lb.ListenerDefaultActionArgs(
                            type="redirect", redirect=aws.lb.ListenerDefaultActionRedirectArgs(
                                protocol="HTTPS", port=str(frontend.HTTPS_PORT), status_code="HTTP_301"))],
                        tags=tags, opts=child)
