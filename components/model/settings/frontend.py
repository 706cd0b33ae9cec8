"""Settings of the UI/API front end: the Application Load Balancer in front of the
management servers, its two public subnets, and HTTPS (an ACM certificate, or one the
stack requests for a Route 53 name).

Pure module (no Pulumi import). Without any of these keys, and with one management
server, the UI/API stays where it always was: the router forwards 8080 to the management
server. `KEYS` in the order the README and the problems list them; `CROSS_KEY_RULES`
run after every key's own rule.
"""

from __future__ import annotations

import ipaddress
import re
from typing import TYPE_CHECKING, Any, Callable, Mapping

from components.model import ipplan
from components.model import regions
from components.model.rules import Check, EachPattern, Pattern, Plain
from components.model.settings.base import AWS_ID, Key, Problem
from components.model.settings.network import two_subnet_cidrs

if TYPE_CHECKING:
    from components.model.settings import _Collector

#: An ACM certificate's ARN: arn:<partition>:acm:<region>:<account>:certificate/<uuid>
#: (AWS Certificate Manager API Reference, CertificateArn; "Amazon Resource Names" in the
#: IAM User Guide for the partitions).
CERTIFICATE_ARN = re.compile(
    r"^arn:(aws|aws-cn|aws-us-gov|aws-iso|aws-iso-b):acm:([a-z]{2}(?:-[a-z]+)+-\d):(\d{12}):"
    r"certificate/([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$")
#: A Route 53 hosted zone id (Route 53 API Reference, HostedZone Id: "Z" and upper-case
#: letters and digits, at most 32 characters).
HOSTED_ZONE_ID = re.compile(r"^Z[A-Z0-9]{1,31}$")
#: A fully qualified name ACM issues a certificate for and Route 53 holds an alias of: at
#: least two labels of letters, digits and inner hyphens, each 1..63, 253 at most (ACM API
#: Reference, RequestCertificate DomainName; RFC 1035 section 2.3.1). No wildcard: the
#: alias record needs one concrete name.
DOMAIN_NAME = re.compile(r"^(?=.{1,253}$)((?!-)[a-z0-9-]{1,63}(?<!-)\.)+[a-z][a-z0-9-]{0,62}(?<!-)$")


def _domain_name(c: Check, text: str) -> str:
    """A lower-case FQDN (a trailing dot and upper case are normalised away)."""
    name = text.strip().rstrip(".").lower()
    if name and not DOMAIN_NAME.match(name):
        c.problem("expected a fully qualified DNS name such as cloud.example.com (letters, digits and hyphens, "
                  "at least two labels, no wildcard)")
    return name


def _subnet_cidrs(c: Check, texts: list) -> tuple[ipaddress.IPv4Network, ...]:
    """Two CIDRs of at least /27 that do not overlap; [] is carved when needed."""
    nets = two_subnet_cidrs(c, texts, "an Application Load Balancer needs subnets in two AZs")
    small = [str(n) for n in nets if n.prefixlen > ipplan.LOAD_BALANCER_SUBNET_PREFIXES[-1]]
    if small:
        c.problem(f"{', '.join(small)}: a load balancer's subnet must be a /27 or larger (Elastic Load Balancing "
                  "User Guide, \"Subnets for your load balancer\")")
    return nets


KEYS: tuple[Key, ...] = (
    Key("uiLoadBalancer", "bool", False, "Put the UI/API behind an Application Load Balancer even with one management server and no certificate (it is on anyway with `uiCertificateArn`, `uiDomainName` or several management servers). See HTTPS.",
        rule=Plain("true or false")),
    Key("uiCertificateArn", "str", "", "ACM certificate (ARN, in the stack's region) for `uiDomainName`: the load balancer serves HTTPS with it and redirects HTTP. See HTTPS.",
        rule=Pattern(CERTIFICATE_ARN, "an ACM certificate ARN such as arn:aws:acm:us-east-1:123456789012:certificate/"
                     "0123abcd-4567-89ab-cdef-0123456789ab", optional=True)),
    Key("uiDomainName", "str", "", "DNS name of the UI/API, e.g. cloud.example.com. With `uiHostedZoneId`: the stack requests a DNS-validated ACM certificate (unless `uiCertificateArn`) and points the name at the load balancer. See HTTPS.",
        rule=_domain_name),
    Key("uiHostedZoneId", "str", "", "Route 53 public hosted zone of `uiDomainName` (e.g. Z0123456789ABCDEFGHIJ): the certificate's validation record and the alias go there.",
        rule=Pattern(HOSTED_ZONE_ID, "a Route 53 hosted zone id such as Z0123456789ABCDEFGHIJ", optional=True)),
    Key("uiSubnetCidrs", "list", [], "The load balancer's two public subnets (two AZs, /27 or larger) in a new VPC; empty: carved from the top of `vpcCidr` when the load balancer is on.",
        rule=_subnet_cidrs, example='["10.0.254.0/27", "10.0.254.32/27"]'),
    Key("uiSubnetIds", "list", [], "With `vpcId`: the load balancer's two existing public subnets (two AZs, a route to an internet gateway); required when the load balancer is on.",
        rule=EachPattern(AWS_ID["subnet"], "subnet"),
        example='["subnet-0123456789abcdef0", "subnet-0fedcba9876543210"]'),
)


def load_balancer_on(values: Mapping[str, Any]) -> bool:
    """Whether the UI/API is behind the load balancer: asked for (uiLoadBalancer), needed
    for HTTPS (a certificate or a domain), or needed by several management servers (one
    address for all; managementServerCount, 1 where the key is absent)."""
    return bool(values.get("uiLoadBalancer") or values.get("uiCertificateArn") or values.get("uiDomainName")
                or (values.get("managementServerCount") or 1) > 1)


def https_on(values: Mapping[str, Any]) -> bool:
    """HTTPS needs a certificate: the user's (uiCertificateArn) or one the stack requests
    for uiDomainName in uiHostedZoneId."""
    return bool(values.get("uiCertificateArn") or (values.get("uiDomainName") and values.get("uiHostedZoneId")))


# --------------------------------------------------------------------------- cross-key rules


def ui_names_together(c: _Collector) -> None:
    """A certificate is for a name (the URL every client verifies it against); the stack can
    request one only for a name in a zone it may write."""
    arn, domain, zone = (c.values[k] for k in ("uiCertificateArn", "uiDomainName", "uiHostedZoneId"))
    if arn and not domain:
        c.problem("uiDomainName", "", "required with uiCertificateArn: the name the certificate is for, which the "
                  "UI/API URL uses (browsers and the registration verify the certificate against it)")
    if domain and not arn and not zone:
        c.problem("uiHostedZoneId", "", "required with uiDomainName unless uiCertificateArn is set: the Route 53 "
                  "public hosted zone where the stack validates the certificate it requests and writes the alias")
    if zone and not domain and not arn:
        c.problem("uiDomainName", "", "required with uiHostedZoneId: the name to point at the load balancer")


def ui_subnets_placed(c: _Collector) -> None:
    """The load balancer's subnets: named (uiSubnetIds) in an existing VPC, which this
    program does not change; in a new VPC given (uiSubnetCidrs) or carved, inside the VPC
    and apart from the dedicated and database subnets."""
    cidrs, ids = c.values["uiSubnetCidrs"], c.values["uiSubnetIds"]
    on = load_balancer_on(c.values)
    if c.values["vpcId"]:
        if cidrs:
            c.problem("uiSubnetCidrs", c.given["uiSubnetCidrs"], "not with vpcId: name the load balancer's existing "
                      "public subnets in uiSubnetIds (this program creates no subnet in a VPC it does not own)")
        if on and len(ids) != 2:
            c.problem("uiSubnetIds", ids, "required with vpcId when the load balancer is on: two existing public "
                      "subnets (two AZs, each with a route to an internet gateway)")
        elif ids and not on:
            c.warnings.append("uiSubnetIds is set but nothing puts the UI/API behind the load balancer "
                              "(uiLoadBalancer, uiCertificateArn, uiDomainName or several management servers): "
                              "it is not used")
        return
    if ids:
        c.problem("uiSubnetIds", ids, "only with vpcId; in a new VPC use uiSubnetCidrs, or leave both empty")
    vpc, subnet = c.values["vpcCidr"], c.values["cloudstackSubnetCidr"]
    if vpc is None or subnet is None:
        return
    taken = [("cloudstackSubnetCidr", subnet), *(("dbSubnetCidrs", n) for n in c.values["dbSubnetCidrs"])]
    for net in cidrs:
        if not net.subnet_of(vpc):
            c.problem("uiSubnetCidrs", str(net), f"must lie inside vpcCidr {vpc}")
        for name, other in taken:
            if net.overlaps(other):
                c.problem("uiSubnetCidrs", str(net), f"must not overlap {name} {other}")
    if on and not cidrs and subnet.subnet_of(vpc):
        try:
            c.values["uiSubnetCidrs"] = ipplan.carve_load_balancer_subnets(str(vpc), [str(n) for _, n in taken])
        except ValueError as exc:
            c.problem("uiSubnetCidrs", [], f"cannot be derived: {exc}; set two CIDRs explicitly")


def ui_plain_http_warned(c: _Collector) -> None:
    """Behind the load balancer without a certificate, logins cross the internet in clear."""
    if load_balancer_on(c.values) and not https_on(c.values):
        c.warnings.append("the UI/API is behind the load balancer in plain HTTP (port 80): a UI login crosses the "
                          "network in clear. Set uiDomainName with uiHostedZoneId (or uiCertificateArn) for HTTPS")


def certificate_region_problems(arn: str, region: str) -> list[Problem]:
    """An ALB takes a certificate of its own region and partition only (Elastic Load
    Balancing User Guide, "SSL certificates": "the certificate must be in the same Region as
    your load balancer")."""
    match = CERTIFICATE_ARN.match(arn or "")
    if not match:
        return []
    partition, cert_region = match.group(1), match.group(2)
    if cert_region != region or partition != regions.partition_of(region):
        return [Problem("uiCertificateArn", arn,
                        f"is a certificate of {partition} {cert_region}; the load balancer is in "
                        f"{regions.partition_of(region)} {region} and takes a certificate of its own region "
                        "(request or import it there with ACM)")]
    return []


#: This tier's rules that involve several keys, in the order they run.
CROSS_KEY_RULES: tuple[Callable[["_Collector"], None], ...] = (
    ui_names_together,
    ui_subnets_placed,
    ui_plain_http_warned,
)
