"""The UI/API front end as data: how the load balancer reaches and checks the management
servers, who may reach it, and what CloudStack must be told when TLS ends in front of it.

Pure module (no Pulumi import). The keys that turn it on are in
components/model/settings/frontend.py; components/resources/loadbalancer.py declares it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from components.model import deployed as deployed_state
from components.model.routeraccess import CLOUDSTACK_UI_PORT
from components.model.settings.operations import renew_advice

#: The management servers' UI/API port, where the load balancer sends requests.
TARGET_PORT = CLOUDSTACK_UI_PORT
#: ELB's name_prefix takes at most 6 characters (terraform-provider-aws, aws_lb and
#: aws_lb_target_group: "name_prefix ... cannot be longer than 6 characters").
NAME_PREFIX = "csui-"
#: A path that answers 200 without a session: the UI's static index page, which CloudStack's
#: embedded Jetty serves from the webapp under the /client context once the server has
#: started (client/src/main/java/org/apache/cloudstack/ServerDaemon.java: the webapp's
#: context path "/client"); the API (/client/api) answers 401 without credentials.
HEALTH_CHECK_PATH = "/client/"
HEALTH_CHECK_MATCHER = "200"
#: Stickiness on CloudStack's own session: the UI's session lives in one management server's
#: memory (its login sets JSESSIONID, server/src/main/java/com/cloud/api/ApiServlet.java),
#: and CloudStack's documentation asks for stickiness on 8080 behind a load balancer
#: ("Reliability": "use a load balancer ... with sticky sessions"). Application-based
#: stickiness follows that cookie: a browser sticks from its login on, a new login (after
#: its server is lost) sticks to the survivor, and signed API calls, which carry no cookie,
#: are spread over every server. A duration-based load balancer cookie would also pin
#: browsers that have no session yet, for a fixed time unrelated to CloudStack's.
STICKINESS_TYPE = "app_cookie"
SESSION_COOKIE = "JSESSIONID"
#: How long the load balancer keeps a browser on its server after the last request that
#: carried the session (ELB: 1 s..7 days); CloudStack ends an idle session sooner.
STICKINESS_SECONDS = 24 * 3600
#: How long a removed server's open requests may finish (ELB's default is 300 s; UI and API
#: requests are short, and long jobs are asynchronous).
DEREGISTRATION_DELAY_SECONDS = 30
#: The ALB security policies that offer TLS 1.3 and 1.2 with forward-secret key exchange only
#: (Elastic Load Balancing User Guide, "Security policies for your Application Load Balancer":
#: "Policies that support TLS 1.3 and TLS 1.2 with only TLS_* and ECDHE_* ciphers provide FS";
#: the "-Res-" policies are those). ELBSecurityPolicy-TLS13-1-2-2021-06, without "Res", also
#: offers TLS 1.2's RSA key exchange (AES128-GCM-SHA256 and the like): not forward secret.
FORWARD_SECRET_POLICIES = ("ELBSecurityPolicy-TLS13-1-2-Res-2021-06", "ELBSecurityPolicy-TLS13-1-2-Res-PQ-2025-09")
#: The HTTPS listener's policy: TLS 1.3 and 1.2, forward secrecy only (the console's default
#: before the post-quantum policies; pulumi-aws and the API default to ELBSecurityPolicy-2016-08,
#: which still admits TLS 1.0).
TLS_POLICY = FORWARD_SECRET_POLICIES[0]
HTTP_PORT = 80
HTTPS_PORT = 443
#: The header the load balancer adds with the client's address (ELB "X-Forwarded headers").
CLIENT_ADDRESS_HEADER = "X-Forwarded-For"


@dataclass(frozen=True)
class ListenerRule:
    """One ingress rule of the load balancer's security group: TCP `port` from `cidr`."""

    port: int
    cidr: str
    description: str


def listener_ingress(admin_cidrs: Sequence[str], https: bool) -> list[ListenerRule]:
    """Who may connect to the listeners: `admin_cidrs` only. With HTTPS, 443 and 80 (which
    only redirects to 443); without, 80 (the UI/API in plain HTTP)."""
    ports = ((HTTPS_PORT, "UI/API over HTTPS"), (HTTP_PORT, "redirect to HTTPS")) if https else (
        (HTTP_PORT, "UI/API over plain HTTP"),)
    return [ListenerRule(port, cidr, f"{what} from adminCidrs") for port, what in ports for cidr in admin_cidrs]


def base_url(https: bool, domain_name: str, dns_name: str) -> str:
    """Where clients reach the UI/API through the load balancer: https://<domain> with a
    certificate, else http://<the load balancer's own DNS name>."""
    return f"https://{domain_name}" if https else f"http://{dns_name}"


def tls_settings(url: str, proxy_cidrs: Sequence[str]) -> tuple[tuple[str, str, str], ...]:
    """(name, value, why) of the CloudStack global settings for a TLS front end at `url`
    (https://<name>), whose requests come from the load balancer's subnets `proxy_cidrs`.
    Set only with HTTPS: with plain HTTP a secure session cookie is never sent back and no
    one can log in to the UI (apache/cloudstack#7821)."""
    if not url.startswith("https://"):
        raise ValueError(f"tls_settings: {url!r} is not an https:// URL")
    return (
        ("enable.secure.session.cookie", "true",
         "the UI is served over HTTPS only: the session cookie gets the Secure flag (ApiServer "
         "EnableSecureSessionCookie, global; read when the management server starts)"),
        ("endpoint.url", f"{url}/client/api",
         "the API's address for CloudStack's own components and clients (ApiServiceConfiguration "
         "ApiServletPath, global): the load balancer's HTTPS URL"),
        ("proxy.header.verify", "true",
         "take the client's address from the load balancer's header (ApiServer useForwardHeader, global)"),
        ("proxy.header.names", CLIENT_ADDRESS_HEADER,
         "the header the load balancer sets (ApiServer listOfForwardHeaders, global)"),
        ("proxy.cidr", ",".join(proxy_cidrs),
         "honour the header only from the load balancer's subnets (ApiServer proxyForwardList, global)"),
    )


def running_server_warnings(previous: deployed_state.Deployed, behind_load_balancer: bool,
                            subnet_cidrs: Sequence[str]) -> list[str]:
    """The load balancer added to a stack deployed before the boot scripts followed the front
    end in place (Deployed.front_end_in_place): an instance keeps the boot script it started
    with (a changed user data never replaces it), so such a router still forwards 8080 in
    clear from its user data, and such a management server answers the load balancer's
    subnets through the overlay, where the router drops the replies (the load balancer finds
    it unhealthy). Nothing to say when the stack's instances follow the front end in place."""
    if not (previous.exists and behind_load_balancer and not previous.load_balancer) or previous.front_end_in_place:
        return []
    return [f"the UI/API moves behind the load balancer, and this stack was deployed by a version whose boot "
            "scripts do not follow it in place. A router started by one still forwards http://<its Elastic IP>:8080 "
            "to the management server in clear (on the router, /etc/cloudstack-ec2/forwards.env has no ROUTER_DNAT "
            "line): relaunch it with its current boot (a few minutes without internet egress for the cloud; its "
            "Elastic IPs stay). A management server started by one answers the load balancer's subnets "
            f"({', '.join(subnet_cidrs) or 'uiSubnetIds'}) through the overlay, where the router drops the replies "
            "(`ip rule` on it shows no fwmark 0xec2 rule): the load balancer finds it unhealthy and the registration, "
            "which now calls the API there, waits in vain; relaunch it with its current boot in this update (it "
            "keeps the database; name each further server too: management-1, ...), or first add the routes by "
            "hand through SSM Session Manager: `sudo ip route replace <cidr> via <the gateway of its route to "
            "169.254.169.254> dev <that device> src <its VPC address>`. To relaunch both: "
            f"{renew_advice(['router', 'management'])} (not `pulumi up --replace`: it relaunches the recorded boot)."]
