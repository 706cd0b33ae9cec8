"""The UI/API front end under Pulumi mocks: the Application Load Balancer, its subnets,
listeners, stickiness, security groups, certificate and DNS records, CloudStack's settings
for a TLS front end, and the URLs everything uses. README: "HTTPS"."""

from __future__ import annotations

import ipaddress

import pytest

from components.cli import offline
from components.model import frontend
from components.model.settings import SettingsError, parse_settings

SUBNET = "aws:ec2/subnet:Subnet"
SG = "aws:ec2/securityGroup:SecurityGroup"
INGRESS = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
EGRESS = "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule"
LB = "aws:lb/loadBalancer:LoadBalancer"
LISTENER = "aws:lb/listener:Listener"
TARGET_GROUP = "aws:lb/targetGroup:TargetGroup"
ATTACHMENT = "aws:lb/targetGroupAttachment:TargetGroupAttachment"
CERTIFICATE = "aws:acm/certificate:Certificate"
VALIDATION = "aws:acm/certificateValidation:CertificateValidation"
RECORD = "aws:route53/record:Record"
ROUTE = "aws:ec2/route:Route"
RTA = "aws:ec2/routeTableAssociation:RouteTableAssociation"

DOMAIN = "cloud.example.com"
ZONE = "Z0123456789ABCDEFGHIJ"
HTTPS = {"uiDomainName": DOMAIN, "uiHostedZoneId": ZONE}
OWN_CERTIFICATE = "arn:aws:acm:us-east-1:123456789012:certificate/0123abcd-4567-89ab-cdef-0123456789ab"
EXISTING = {
    "vpcId": "vpc-0e0e0e0e0e0e0e0e1",
    "cloudstackSubnetId": "subnet-0c0c0c0c0c0c0c0c1",
    "dbSubnetIds": ["subnet-0d0d0d0d0d0d0d0d1", "subnet-0d0d0d0d0d0d0d0d2"],
    "routeTableIds": ["rtb-0a0a0a0a0a0a0a0a1", "rtb-0a0a0a0a0a0a0a0a2"],
}
UI_SUBNET_IDS = ["subnet-0f0f0f0f0f0f0f0f1", "subnet-0f0f0f0f0f0f0f0f2"]


@pytest.fixture(scope="module")
def https(deploy):
    return deploy(**HTTPS)


@pytest.fixture(scope="module")
def plain(deploy):
    return deploy(uiLoadBalancer=True)


def spec_settings(d) -> dict[str, str]:
    return {s.name: s.value for s in d.run.result.registration.global_settings}


# --- when it is there ------------------------------------------------------------------------


def test_one_management_server_without_certificate_keeps_the_routers_forward(dev):
    assert not dev.of_type(LB) and not dev.of_type(CERTIFICATE)
    router_ip = dev.outputs["router"]["publicIp"]
    assert dev.outputs["uiUrl"] == f"http://{router_ip}:8080/client/"
    assert dev.outputs["apiEndpoint"] == f"http://{router_ip}:8080/client/api"
    assert "loadBalancer" not in dev.outputs
    assert "enable.secure.session.cookie" not in spec_settings(dev)


@pytest.mark.parametrize("values", [{"uiLoadBalancer": "true"}, HTTPS,
                                    {"uiCertificateArn": OWN_CERTIFICATE, "uiDomainName": DOMAIN},
                                    {"managementServerCount": 2}])
def test_the_load_balancer_is_on_when_asked_for_needed_for_https_or_by_several_servers(values):
    from components.model.settings import frontend

    assert frontend.load_balancer_on(values)
    assert not frontend.load_balancer_on({"uiLoadBalancer": False, "managementServerCount": 1})


# --- subnets --------------------------------------------------------------------------------


def test_two_public_subnets_in_two_azs_apart_from_the_cloud(https):
    subnets = [s for s in https.of_type(SUBNET) if s.name.startswith("ui-subnet-")]
    assert len(subnets) == 2
    assert len({s.inputs["availabilityZone"] for s in subnets}) == 2
    nets = [ipaddress.IPv4Network(s.inputs["cidrBlock"]) for s in subnets]
    taken = [https.settings.cloudstack_subnet_cidr, *https.settings.db_subnet_cidrs]
    assert all(n.prefixlen <= 27 and n.subnet_of(https.settings.vpc_cidr) for n in nets)
    assert not any(n.overlaps(t) for n in nets for t in taken)
    [route] = [r for r in https.of_type(ROUTE) if r.name == "ui-internet"]
    assert route.inputs["destinationCidrBlock"] == "0.0.0.0/0" and route.inputs["gatewayId"].startswith("underlay-igw")
    tables = {a.inputs["routeTableId"] for a in https.of_type(RTA) if a.name.startswith("ui-subnet-")}
    assert tables == {route.inputs["routeTableId"]}
    lb = https.get(LB, "ui-alb")
    assert lb.inputs["internal"] is False and lb.inputs["loadBalancerType"] == "application"
    assert sorted(lb.inputs["subnets"]) == sorted(s.id for s in subnets)


def test_an_existing_vpc_uses_the_named_subnets_and_creates_none(deploy):
    d = deploy(**EXISTING, uiLoadBalancer=True, uiSubnetIds=UI_SUBNET_IDS)
    assert not d.of_type(SUBNET)
    assert sorted(d.get(LB, "ui-alb").inputs["subnets"]) == UI_SUBNET_IDS


def existing_run(subnets: dict) -> None:
    from tests.unit.conftest import dev_config
    from components.program import build

    config = dev_config()
    config.update({f"cloudstack-ec2:{k}": v for k, v in {**EXISTING, "uiLoadBalancer": True,
                                                          "uiSubnetIds": UI_SUBNET_IDS}.items()})
    offline.run_offline(build, config, project="cloudstack-ec2", stack="dev", region="us-east-1",
                        subnet_cidrs={"cloudstack": "10.0.0.0/24"}, existing_subnets=subnets)


def test_existing_subnets_of_one_az_or_another_vpc_are_refused_naming_the_key():
    one_az = {i: {"cidrBlock": c, "availabilityZone": "us-east-1a", "vpcId": EXISTING["vpcId"]}
              for i, c in zip(UI_SUBNET_IDS, ("10.0.250.0/26", "10.0.250.64/26"))}
    with pytest.raises(SettingsError) as error:
        existing_run(one_az)
    assert "uiSubnetIds" in str(error.value) and "two AZs" in str(error.value)
    other_vpc = {i: {**v, "availabilityZone": z, "vpcId": "vpc-0b0b0b0b0b0b0b0b1"}
                 for (i, v), z in zip(one_az.items(), ("us-east-1a", "us-east-1b"))}
    with pytest.raises(SettingsError) as error:
        existing_run(other_vpc)
    assert "uiSubnetIds" in str(error.value) and "not in vpcId" in str(error.value)


# --- listeners, targets, stickiness ---------------------------------------------------------


def test_https_listener_with_the_issued_certificate_and_http_redirects(https):
    listeners = {listener.name: listener.inputs for listener in https.of_type(LISTENER)}
    assert set(listeners) == {"ui-https", "ui-http-redirect"}
    secure = listeners["ui-https"]
    assert (secure["port"], secure["protocol"]) == (443, "HTTPS")
    # TLS 1.3 and 1.2 with forward-secret key exchange only: not the policy without "Res",
    # whose TLS 1.2 suites include RSA key exchange.
    assert secure["sslPolicy"] in frontend.FORWARD_SECRET_POLICIES
    assert secure["sslPolicy"].startswith("ELBSecurityPolicy-TLS13-1-2-Res-")
    validation = https.get(VALIDATION, "ui-certificate-issued")
    assert secure["certificateArn"] == https.get(CERTIFICATE, "ui-certificate").state["arn"]
    assert validation.urn in https.depends_on(https.get(LISTENER, "ui-https"))
    [action] = secure["defaultActions"]
    assert action["type"] == "forward"
    redirect = listeners["ui-http-redirect"]
    assert redirect["port"] == 80
    [action] = redirect["defaultActions"]
    assert action["type"] == "redirect"
    assert action["redirect"] == {"protocol": "HTTPS", "port": "443", "statusCode": "HTTP_301"}


def test_without_a_certificate_port_80_serves_the_ui_and_the_plan_warns(plain):
    [listener] = plain.of_type(LISTENER)
    assert (listener.inputs["port"], listener.inputs["protocol"]) == (80, "HTTP")
    assert listener.inputs["defaultActions"][0]["type"] == "forward"
    assert not plain.of_type(CERTIFICATE) and not plain.of_type(RECORD)
    assert any("plain HTTP" in w for w in plain.settings.warnings)


def test_targets_are_the_management_servers_vpc_addresses_on_8080_with_a_login_free_health_check(https):
    group = https.get(TARGET_GROUP, "ui-tg").inputs
    assert (group["targetType"], group["port"], group["protocol"]) == ("ip", 8080, "HTTP")
    assert group["healthCheck"]["path"] == "/client/" and group["healthCheck"]["matcher"] == "200"
    [target] = https.of_type(ATTACHMENT)
    assert target.inputs["targetId"] == https.outputs["managementServer"]["privateIp"]
    assert target.inputs["port"] == 8080


def test_sessions_stick_to_cloudstacks_session_cookie(https):
    stickiness = https.get(TARGET_GROUP, "ui-tg").inputs["stickiness"]
    assert stickiness["enabled"] is True
    assert (stickiness["type"], stickiness["cookieName"]) == ("app_cookie", "JSESSIONID")


# --- security groups ------------------------------------------------------------------------


def rules_of(d, typ, group) -> list[dict]:
    return [r.inputs for r in d.of_type(typ) if r.inputs["securityGroupId"] == group.id]


def test_the_load_balancer_admits_admin_cidrs_only_and_reaches_only_the_management_servers(https):
    lb_sg, management_sg = https.get(SG, "ui-sg"), https.get(SG, "ui-management-sg")
    assert not lb_sg.inputs.get("ingress") and not lb_sg.inputs.get("egress")
    admins = sorted(str(n) for n in https.settings.admin_cidrs)
    ingress = rules_of(https, INGRESS, lb_sg)
    assert sorted((r["fromPort"], r["cidrIpv4"]) for r in ingress) == sorted(
        (port, cidr) for port in (80, 443) for cidr in admins)
    [egress] = rules_of(https, EGRESS, lb_sg)
    assert (egress["fromPort"], egress["toPort"], egress["referencedSecurityGroupId"]) == (8080, 8080,
                                                                                        management_sg.id)
    [admitted] = rules_of(https, INGRESS, management_sg)
    assert (admitted["fromPort"], admitted["toPort"]) == (8080, 8080)
    assert admitted["referencedSecurityGroupId"] == lb_sg.id and "cidrIpv4" not in admitted


def test_only_the_management_server_wears_the_group_that_admits_the_load_balancer(https):
    group = https.get(SG, "ui-management-sg").id
    wearing = [i.name for i in https.instances() if group in (https.placement(i)["vpcSecurityGroupIds"] or [])]
    assert wearing == ["management"]


def test_without_https_the_load_balancer_admits_port_80_only(plain):
    ingress = rules_of(plain, INGRESS, plain.get(SG, "ui-sg"))
    assert {r["fromPort"] for r in ingress} == {80}


# --- certificate and DNS --------------------------------------------------------------------


def test_a_dns_validated_certificate_its_validation_record_and_the_alias(https):
    certificate = https.get(CERTIFICATE, "ui-certificate")
    assert certificate.inputs["domainName"] == DOMAIN and certificate.inputs["validationMethod"] == "DNS"
    option = certificate.state["domainValidationOptions"][0]
    record = https.get(RECORD, "ui-certificate-validation").inputs
    assert (record["zoneId"], record["name"], record["type"]) == (ZONE, option["resourceRecordName"], "CNAME")
    assert record["records"] == [option["resourceRecordValue"]]
    issued = https.get(VALIDATION, "ui-certificate-issued").inputs
    assert issued["certificateArn"] == certificate.state["arn"]
    alias = https.get(RECORD, "ui-alias").inputs
    assert (alias["zoneId"], alias["name"], alias["type"]) == (ZONE, DOMAIN, "A")
    lb = https.get(LB, "ui-alb")
    assert alias["aliases"] == [{"name": lb.state["dns_name"], "zoneId": lb.state["zone_id"],
                                 "evaluateTargetHealth": True}]


def test_the_users_certificate_is_used_as_it_is_and_none_is_requested(deploy):
    d = deploy(uiCertificateArn=OWN_CERTIFICATE, uiDomainName=DOMAIN)
    assert not d.of_type(CERTIFICATE) and not d.of_type(RECORD)
    assert d.get(LISTENER, "ui-https").inputs["certificateArn"] == OWN_CERTIFICATE
    assert d.outputs["uiUrl"] == f"https://{DOMAIN}/client/"


# --- CloudStack's settings and the URLs ------------------------------------------------------


def test_cloudstacks_tls_front_end_settings_only_with_https(https, plain):
    settings = spec_settings(https)
    cidrs = [str(n) for n in https.settings.ui_subnet_cidrs]
    assert settings["enable.secure.session.cookie"] == "true"
    assert settings["endpoint.url"] == f"https://{DOMAIN}/client/api"
    assert settings["proxy.header.verify"] == "true"
    assert settings["proxy.header.names"] == "X-Forwarded-For"
    assert settings["proxy.cidr"] == ",".join(cidrs)
    names = ("enable.secure.session.cookie", "endpoint.url", "proxy.header.verify", "proxy.header.names", "proxy.cidr")
    assert not set(names) & set(spec_settings(plain))


def test_the_urls_the_registration_and_cloudmonkey_use_are_the_load_balancers(https, plain):
    assert https.outputs["uiUrl"] == f"https://{DOMAIN}/client/"
    assert https.outputs["apiEndpoint"] == f"https://{DOMAIN}/client/api"
    assert https.outputs["cloudmonkey"]["url"] == f"https://{DOMAIN}/client/api"
    endpoints = {https.unwrap_secret(r.inputs["endpoint"]) for r in https.registrations if "endpoint" in r.inputs}
    assert endpoints == {f"https://{DOMAIN}/client/api"}
    dns_name = plain.get(LB, "ui-alb").state["dns_name"]
    assert plain.outputs["uiUrl"] == f"http://{dns_name}/client/"
    assert plain.outputs["loadBalancer"]["dnsName"] == dns_name
    assert plain.outputs["loadBalancer"]["https"] is False
    assert https.outputs["loadBalancer"]["subnetCidrs"] == [str(n) for n in https.settings.ui_subnet_cidrs]


def test_behind_the_load_balancer_the_router_forwards_no_ui(https, plain, dev):
    """http://<router Elastic IP>:8080 would carry logins in clear past the HTTPS listener:
    the router's forward parameter says "none", and its group admits 8080 for the console's
    websocket only (the console address's 80 and 8080 stay: a rule cannot name an address)."""
    for d in (https, plain):
        forward = d.get("aws:ssm/parameter:Parameter", "router-ui-forward").inputs["value"]
        assert d.unwrap_secret(forward) == "none"
        assert "ROUTER_DNAT" not in d.boot_env(d.instance("router"))
    router_sg, dev_sg = https.get(SG, "underlay-router-sg"), dev.get(SG, "underlay-router-sg")
    by_port = {}
    for rule in https.ingress(router_sg):
        by_port.setdefault(https.ports(rule), []).append(rule["description"])
    assert sorted(by_port) == sorted({dev.ports(r) for r in dev.ingress(dev_sg)})
    assert by_port[(8080, 8080)] and not any("UI/API" in d for d in by_port[(8080, 8080)])
    assert all("console" in d for d in by_port[(8080, 8080)])
    assert any("UI/API" in r["description"] for r in dev.ingress(dev_sg) if dev.ports(r) == (8080, 8080))


def test_every_client_of_the_api_uses_the_load_balancers_url(https, monkeypatch):
    """The registration, cloudmonkey's configuration and `status` (which reads the stack's
    outputs through the Automation API) never name the router's 8080."""
    import argparse
    from types import SimpleNamespace

    from components.cli import automation, status

    router_ip = https.outputs["router"]["publicIp"]
    assert router_ip not in https.outputs["apiEndpoint"] and router_ip not in https.outputs["uiUrl"]
    assert router_ip not in https.outputs["cloudmonkey"]["url"]
    assert not any(router_ip in str(https.unwrap_secret(r.inputs.get("endpoint"))) for r in https.registrations)
    outputs = {k: SimpleNamespace(value=v) for k, v in https.outputs.items()}
    monkeypatch.setattr(automation, "open_stack", lambda stack, root: SimpleNamespace(outputs=lambda: outputs))
    monkeypatch.setattr(status, "read_stack", lambda root, stack: SimpleNamespace(values={"aws:region": "us-east-1"}))
    endpoint, _, _ = status.stack_connection(argparse.Namespace(dir=".", stack="dev"))
    assert endpoint == f"https://{DOMAIN}/client/api"


def test_the_registration_waits_for_the_load_balancer(https):
    registration = https.get("cloudstack-ec2:registration:CloudStackRegistration", "registration")
    lb = https.get(LB, "ui-alb")
    for child in https.children(registration):
        assert lb.urn in https.depends_on(child), child.name


def test_the_plan_prices_the_load_balancer_and_its_addresses(https, dev):
    from components.model import catalog

    items = {line.item: line for line in catalog.estimate(https.settings).lines}
    assert items["Application Load Balancer (UI/API, HTTPS)"].unit_hourly == catalog.ALB_HOUR
    assert items["public IPv4 addresses (load balancer, one per AZ)"].quantity == 2
    assert not any("Load Balancer" in line.item for line in catalog.estimate(dev.settings).lines)


# --- validation -----------------------------------------------------------------------------

ADMIN = {"adminCidrs": ["203.0.113.7/32"]}


def problems(**raw) -> dict[str, str]:
    with pytest.raises(SettingsError) as error:
        parse_settings({**ADMIN, **raw})
    return {p.key: p.message for p in error.value.problems}


@pytest.mark.parametrize("raw, key, words", [
    ({"uiCertificateArn": "arn:aws:acm:us-east-1:123456789012:certificate/nope", "uiDomainName": DOMAIN},
     "uiCertificateArn", "ACM certificate ARN"),
    ({"uiCertificateArn": OWN_CERTIFICATE}, "uiDomainName", "required with uiCertificateArn"),
    ({"uiDomainName": DOMAIN}, "uiHostedZoneId", "required with uiDomainName"),
    ({"uiHostedZoneId": ZONE}, "uiDomainName", "required with uiHostedZoneId"),
    ({"uiDomainName": "*.example.com", "uiHostedZoneId": ZONE}, "uiDomainName", "no wildcard"),
    ({"uiDomainName": DOMAIN, "uiHostedZoneId": "zone-1"}, "uiHostedZoneId", "hosted zone id"),
    ({"uiLoadBalancer": "true", "uiSubnetIds": UI_SUBNET_IDS}, "uiSubnetIds", "only with vpcId"),
    ({"uiLoadBalancer": "true", "uiSubnetCidrs": ["10.0.250.0/28", "10.0.250.16/28"]}, "uiSubnetCidrs", "/27"),
    ({"uiLoadBalancer": "true", "uiSubnetCidrs": ["10.0.0.0/26", "10.0.250.0/26"]}, "uiSubnetCidrs",
     "cloudstackSubnetCidr"),
    ({"uiLoadBalancer": "true", "uiSubnetCidrs": ["10.9.0.0/26", "10.0.250.0/26"], "vpcCidr": "10.0.0.0/16"},
     "uiSubnetCidrs", "inside vpcCidr"),
    ({"uiLoadBalancer": "true", "uiSubnetCidrs": ["10.0.250.0/26"]}, "uiSubnetCidrs", "exactly two"),
    ({**EXISTING, "uiLoadBalancer": "true"}, "uiSubnetIds", "required with vpcId"),
    ({**EXISTING, "uiLoadBalancer": "true", "uiSubnetIds": UI_SUBNET_IDS,
      "uiSubnetCidrs": ["10.0.250.0/26", "10.0.250.64/26"]}, "uiSubnetCidrs", "not with vpcId"),
])
def test_bad_front_end_settings_are_refused_naming_the_key(raw, key, words):
    found = problems(**raw)
    assert key in found and words in found[key], found


def test_given_subnets_are_used_as_given(deploy):
    d = deploy(uiLoadBalancer=True, uiSubnetCidrs=["10.0.250.0/26", "10.0.250.64/26"])
    assert sorted(s.inputs["cidrBlock"] for s in d.of_type(SUBNET) if s.name.startswith("ui-subnet-")) == [
        "10.0.250.0/26", "10.0.250.64/26"]


def test_a_certificate_of_another_region_or_partition_is_refused_before_anything_is_created(deploy):
    from components.model.settings.frontend import certificate_region_problems

    assert certificate_region_problems(OWN_CERTIFICATE, "us-east-1") == []
    [problem] = certificate_region_problems(OWN_CERTIFICATE, "eu-west-1")
    assert problem.key == "uiCertificateArn" and "eu-west-1" in problem.message
    gov = OWN_CERTIFICATE.replace("arn:aws:", "arn:aws-us-gov:").replace("us-east-1", "us-gov-west-1")
    assert certificate_region_problems(gov, "us-gov-west-1") == []
    assert certificate_region_problems(gov.replace("aws-us-gov", "aws"), "us-gov-west-1")
    with pytest.raises(SettingsError, match="uiCertificateArn"):
        deploy(uiCertificateArn=OWN_CERTIFICATE.replace("us-east-1", "eu-west-1"), uiDomainName=DOMAIN)


# --- a deployed stack that gets the load balancer --------------------------------------------


def older(outputs: dict) -> dict:
    """`outputs` as a version whose boot scripts did not follow the front end recorded them."""
    from components.model import deployed

    record = {k: v for k, v in outputs[deployed.OUTPUT].items() if k != deployed.FRONT_END_IN_PLACE}
    return {**outputs, deployed.OUTPUT: record}


def test_a_stack_whose_instances_predate_the_in_place_front_end_is_told_to_replace_them(dev):
    from components.model import deployed
    from components.model.frontend import running_server_warnings

    before = deployed.from_outputs(older(dev.outputs))
    assert before.exists and not before.load_balancer and not before.front_end_in_place
    [warning] = running_server_warnings(before, True, ["10.0.253.128/26"])
    # Relaunched with their current boot through renewInstances: `pulumi up --replace` would
    # launch the recorded (old) user data again.
    for i, name in enumerate(("router", "management")):
        assert f"`pulumi config set --path 'renewInstances[{i}]' {name}`" in warning
    assert "`pulumi up`; then `pulumi config rm renewInstances`" in warning
    assert "10.0.253.128/26" in warning and "8080" in warning
    assert running_server_warnings(before, False, []) == []
    assert running_server_warnings(deployed.Deployed(), True, []) == []
    # Replacing the instances is needed once: the record never claims more than it knows.
    again = deployed.record(dev.settings, "us-east-1a", "/x", "4.22", previous=before)
    assert again[deployed.FRONT_END_IN_PLACE] is False


def test_a_stack_deployed_with_the_in_place_front_end_takes_the_load_balancer_without_replacements(dev):
    """Its router drops the UI/API forward when the timer reads "none"; its management
    servers already answer the underlay through it: no instance is replaced (their user data
    changes are ignored, components/resources/node.py) and nothing needs saying."""
    from components.model import deployed
    from components.model.frontend import running_server_warnings

    before = deployed.from_outputs(dev.outputs)
    assert before.exists and before.front_end_in_place
    assert running_server_warnings(before, True, ["10.0.253.128/26"]) == []
    assert deployed.record(dev.settings, "us-east-1a", "/x", "4.22", previous=before)[
        deployed.FRONT_END_IN_PLACE] is True


def test_the_next_update_of_a_stack_behind_the_load_balancer_warns_no_more(plain):
    from components.model import deployed
    from components.model.frontend import running_server_warnings

    after = deployed.from_outputs(older(plain.outputs))
    assert after.load_balancer
    assert running_server_warnings(after, True, []) == []


def test_the_management_servers_boot_script_needs_no_list_of_the_load_balancers_subnets(https, dev):
    """It answers on the underlay whatever connects there (management-server.sh
    route_replies): its user data is the same with and without the load balancer, so turning
    it on changes only the groups the server wears (an in-place change of the instance)."""
    assert https.boot_script(https.instance("management")) == dev.boot_script(dev.instance("management"))
    assert "CSEC2_FRONT_END_CIDRS" not in https.boot_env(https.instance("management"))
    group = https.get(SG, "ui-management-sg").id
    assert group in https.placement(https.instance("management"))["vpcSecurityGroupIds"]


def test_elb_name_prefixes_are_what_elb_accepts():
    from components.model import aws_constraints, frontend

    assert aws_constraints.ELB_NAME_PREFIX.problems(frontend.NAME_PREFIX) == []
    assert aws_constraints.ELB_NAME_PREFIX.problems("cloudstack-ui-")
    assert aws_constraints.ELB_NAME_PREFIX.problems("cs_ui")


def test_the_plan_shows_the_load_balancer_its_subnets_listeners_certificate_and_cost(capsys):
    from planrun import cli

    r = cli(capsys, "plan", "--stack", "dev", "--set", f"uiDomainName={DOMAIN}", "--set", f"uiHostedZoneId={ZONE}")
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "load balancer subnets (UI/API)  10.0.253.128/26, 10.0.253.192/26" in out
    assert "UiLoadBalancer (" in out
    assert "ui-https  [port: 443; protocol: HTTPS; action: forward" in out
    assert "ui-http-redirect  [port: 80; protocol: HTTP; action: redirect; redirect to: HTTPS]" in out
    assert f"ui-certificate  [domain: {DOMAIN}; validation: DNS]" in out
    assert "stickiness: app_cookie; cookie: JSESSIONID" in out
    assert "Application Load Balancer (UI/API, HTTPS)" in out
    assert "public IPv4 addresses (load balancer, one per AZ)" in out
    assert "plain HTTP" not in out.split("IP plan")[0]
    plain = cli(capsys, "plan", "--stack", "dev", "--set", "uiLoadBalancer=true")
    assert "WARNING: the UI/API is behind the load balancer in plain HTTP" in plain.stdout
