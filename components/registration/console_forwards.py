"""The console proxy's address, published for the router: the `console_forwards` kind (no Pulumi here).

A browser opens a VM's console at `consoleproxy.url.domain` (the console address: the
router's second Elastic IP), ports 80 and 8080; the router forwards them to the console proxy
VM's public IP (components/consoles.py). That IP is CloudStack's choice: PublicNetworkGuru gives
each system VM a free address of the public range when it is created, and a console proxy that
is destroyed and launched again (by an operator, by HA, by a disabled and re-enabled zone) may get
another. So this resource

- waits (bounded by timeouts.system_vms) for the zone's console proxy to run with a public IP
  (listSystemVms systemvmtype=consoleproxy), and writes `consoles.console_forwards(ip)` into the
  SSM parameter the router polls (created by Pulumi with consoles.NO_CONSOLE);
- checks the console settings: `consoleproxy.url.domain` must name the console address (set here
  if not, with a warning: ConsoleProxyManagerImpl.configure reads it when the management server
  starts, so the running server uses it only after a restart); `consoleproxy.sslEnabled` true or
  `novnc.console.port` other than 8080 move the ports away from the two the router forwards;
- probes on every `pulumi up`/preview whether the live console proxy address, the parameter and
  the setting are still what it published: a console proxy recreated with a new address shows as
  a change, and the update publishes the new address;
- on delete (and when the cloud is torn down) writes consoles.NO_CONSOLE back, if the parameter
  still exists; a failure there is a warning, never a failed destroy.

The SSM calls use the stack's AWS identity (client.aws_session), like the hosts' readiness.
"""

from __future__ import annotations

import time
from typing import Any, Callable

from components import consoles

from .base import Kind, Obj, Props, _by
from .client import CREDENTIAL_ERRORS, LOG, Api, RegistrationError, aws_session

#: What the registration's AWS identity needs on the console-forwards parameter.
PARAMETER_PERMISSIONS = "ssm:GetParameter and ssm:PutParameter"


# -- the console proxy ---------------------------------------------------------------

def console_proxies(api: Api, zoneid: str) -> list[Obj]:
    return api.list("listSystemVms", "systemvm", systemvmtype="consoleproxy", zoneid=zoneid)


def serving_proxy(vms: list[Obj]) -> Obj | None:
    """The console proxy to forward to: Running with a public IP; of several, the oldest
    (CloudStack can run more than one for capacity: the router forwards to one of them)."""
    running = sorted((v for v in vms if v.get("state") == "Running" and v.get("publicip")),
                     key=lambda v: (str(v.get("created") or ""), str(v.get("name") or "")))
    if len(running) > 1:
        LOG.warning("zone has %d console proxies running (%s): the console address forwards to %s only",
                    len(running), ", ".join(str(v.get("name")) for v in running), running[0].get("name"))
    return running[0] if running else None


def _seen(vms: list[Obj]) -> str:
    return ", ".join(f"{v.get('name')} {v.get('state')}" +
                     (f" with public IP {v['publicip']}" if v.get("publicip") else " without a public IP")
                     for v in vms) or "no console proxy VM at all"


def wait_for_console_proxy(api: Api, zoneid: str) -> Obj:
    """The zone's console proxy once it runs with a public IP, bounded by timeouts.system_vms.
    Raises RegistrationError naming what CloudStack listed meanwhile."""
    t = api.timeouts
    deadline = time.monotonic() + t.system_vms
    while True:
        vms = console_proxies(api, zoneid)
        vm = serving_proxy(vms)
        if vm is not None:
            return vm
        if time.monotonic() > deadline:
            raise RegistrationError(
                f"zone {zoneid}: no console proxy VM runs with a public IP after {t.system_vms:g}s "
                f"(timeouts.system_vms); CloudStack lists {_seen(vms)}. CloudStack gives a console proxy a free "
                f"address of the zone's public range when it creates it; without one it never starts "
                f"('Insufficient address capacity' in /var/log/cloudstack/management/management-server.log): "
                f"look there and at listSystemVms systemvmtype=consoleproxy, and free an address of the public "
                f"range (listPublicIpAddresses) if it is full. Then run `pulumi up` again.")
        api._sleep(t.poll_interval)


# -- the console settings --------------------------------------------------------------

def _setting(api: Api, name: str) -> Obj | None:
    return _by(api.list("listConfigurations", "configuration", name=name), name=name)


def check_settings(api: Api, console_address: str) -> bool:
    """Whether CloudStack's console URLs name the console address and use the ports the router
    forwards. Sets `consoleproxy.url.domain` to `console_address` if it differs (the warning says
    the management server must be restarted); warns about SSL and the websocket port. Returns
    True when `consoleproxy.url.domain` was right already."""
    right = True
    domain = _setting(api, consoles.URL_DOMAIN_SETTING)
    if not console_address:
        LOG.warning("no console address: CloudStack's console URLs name the console proxy's own public IP, "
                    "which no browser outside the overlay reaches")
    elif domain is None:
        raise RegistrationError(f"CloudStack has no global setting {consoles.URL_DOMAIN_SETTING!r}: cannot point "
                                f"console URLs at the console address {console_address}")
    elif (domain.get("value") or "") != console_address:
        right = False
        api.call("updateConfiguration", name=consoles.URL_DOMAIN_SETTING, value=console_address)
        LOG.warning("%s was %r; set it to the console address %s. The management server reads it when it "
                    "starts (ConsoleProxyManagerImpl.configure): restart it (systemctl restart "
                    "cloudstack-management) for console URLs to name the console address",
                    consoles.URL_DOMAIN_SETTING, domain.get("value") or "", console_address)
    ssl = _setting(api, consoles.SSL_SETTING)
    if ssl is not None and str(ssl.get("value")).lower() == "true":
        LOG.warning("%s is true: console pages move to port 443 and the websocket to 8443, which the router does "
                    "not forward (it forwards %s): consoles will not open from outside. Set it to false, or "
                    "forward those ports yourself", consoles.SSL_SETTING,
                    " and ".join(str(p) for p in consoles.CONSOLE_PORTS))
    port = _setting(api, consoles.WEBSOCKET_PORT_SETTING)
    if port is not None and str(port.get("value")) != str(consoles.CONSOLE_WEBSOCKET_PORT):
        LOG.warning("%s is %s: noVNC's websocket uses that port, but the router forwards %s only: consoles "
                    "will not open from outside. Set it back to %d", consoles.WEBSOCKET_PORT_SETTING,
                    port.get("value"), " and ".join(str(p) for p in consoles.CONSOLE_PORTS),
                    consoles.CONSOLE_WEBSOCKET_PORT)
    return right


# -- the SSM parameter -------------------------------------------------------------------

def _ssm(props: Props) -> Any:
    return aws_session(props.get("aws"), props["region"]).client("ssm", region_name=props["region"])


def identity_label(props: Props) -> str:
    """Who the registration acts as on AWS: the caller's ARN when STS says, and where it comes from."""
    aws = props.get("aws") or {}
    where = f"profile {aws['profile']}" if aws.get("profile") else "boto3's default credentials"
    roles = [str(r.get("roleArn")) for r in aws.get("assumeRoles") or [] if isinstance(r, dict)]
    if roles:
        where += " assuming " + " -> ".join(roles)
    try:
        arn = aws_session(aws, props["region"]).client("sts", region_name=props["region"]) \
            .get_caller_identity()["Arn"]
        return f"{arn} ({where}, aws:profile / aws:assumeRoles)"
    except Exception:  # only a better name for the error being reported
        return f"{where} (aws:profile / aws:assumeRoles)"


def _aws_error(props: Props, action: str, e: Exception) -> RegistrationError:
    from botocore.exceptions import ClientError

    name = props["parameter_name"]
    if isinstance(e, ClientError):
        err = e.response.get("Error", {})
        code = err.get("Code", "")
        if code in CREDENTIAL_ERRORS:
            return RegistrationError(
                f"cannot {action} the SSM parameter {name} in {props['region']} ({code}): the registration acts as "
                f"{identity_label(props)}, which needs {PARAMETER_PERMISSIONS} on "
                f"{name}")
        return RegistrationError(f"cannot {action} the SSM parameter {name} in {props['region']}: {code}: "
                                 f"{err.get('Message', '')}")
    return RegistrationError(f"cannot {action} the SSM parameter {name} in {props['region']}: {e}")


def read_parameter(props: Props) -> str | None:
    """The parameter's value; None when it does not exist."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return _ssm(props).get_parameter(Name=props["parameter_name"])["Parameter"]["Value"]
    except ClientError as e:
        if e.response.get("Error", {}).get("Code") == "ParameterNotFound":
            return None
        raise _aws_error(props, "read", e) from None
    except BotoCoreError as e:
        raise _aws_error(props, "read", e) from None


def write_parameter(props: Props, value: str) -> None:
    """Write `value` into the existing parameter (Pulumi creates it; a parameter created here
    would belong to nobody). Nothing is written when it holds the value already."""
    from botocore.exceptions import BotoCoreError, ClientError

    name = props["parameter_name"]
    current = read_parameter(props)
    if current is None:
        raise RegistrationError(
            f"the SSM parameter {name} does not exist in {props['region']}: the stack creates it (with "
            f"{consoles.NO_CONSOLE!r}) before the registration, which only writes it. Run `pulumi up` again (a "
            f"`pulumi refresh` first if it was deleted by hand)")
    if current == value:
        return
    try:
        _ssm(props).put_parameter(Name=name, Value=value, Type="String", Overwrite=True)
    except (ClientError, BotoCoreError) as e:
        raise _aws_error(props, "write", e) from None
    LOG.info("wrote %s = %s (was %s)", name, value, current)


def unpublish(props: Props) -> None:
    """Write consoles.NO_CONSOLE back into the parameter if it still exists; never raises."""
    name = props.get("parameter_name")
    if not name:
        return
    try:
        current = read_parameter(props)
        if current is None:
            LOG.info("the SSM parameter %s is gone already", name)
        elif current != consoles.NO_CONSOLE:
            write_parameter(props, consoles.NO_CONSOLE)
    except RegistrationError as e:
        LOG.warning("%s. The router keeps forwarding the console address to the old console proxy address until "
                    "it is changed: `aws ssm put-parameter --name %s --value %s --overwrite`", e, name,
                    consoles.NO_CONSOLE)


# -- the kind ---------------------------------------------------------------------------

class ConsoleForwards(Kind):
    """props: zoneid, parameter_name (the SSM parameter the router polls), console_address (the
    console Elastic IP, for consoleproxy.url.domain) and the connection keys. Outputs add
    publicip (the console proxy's public IP) and forwards (the value written). Its id is the
    zone's: one per zone, whatever console proxy serves it."""

    kind = "console forwards"
    replace_keys = ("zoneid",)
    update_keys = ("parameter_name", "console_address")
    output_keys = ("id", "publicip", "forwards")
    probes = True
    connects_lazily = True   # deleting asks only SSM, never CloudStack

    def label(self, props):
        return f"console forwards of zone {props.get('zoneid')}"

    def _publish(self, api: Api, props: Props) -> dict[str, Any]:
        if not props.get("parameter_name"):
            raise RegistrationError(f"{self.label(props)}: parameter_name is empty: give the registration the "
                                    f"console-forwards parameter (console_forwards_parameter) or build the spec "
                                    f"with consoles=False")
        api.retrying(f"check the console settings of {self.label(props)}",
                     lambda: check_settings(api, props.get("console_address") or ""))
        vm = wait_for_console_proxy(api, props["zoneid"])
        forwards = consoles.console_forwards(vm["publicip"])
        write_parameter(props, forwards)
        LOG.info("%s: the console address forwards to %s (%s)", self.label(props), vm["publicip"], vm.get("name"))
        return {**dict(props), "publicip": vm["publicip"], "forwards": forwards}

    def create(self, api, props):
        return str(props["zoneid"]), {**self._publish(api, props), "id": str(props["zoneid"])}

    def read(self, api, id_, props):
        """The live console proxy address ("" when none runs) and the parameter's value ("" when
        it is gone); None when the zone is gone."""
        label = self.label(props)
        if api.retrying(f"read zone of {label}", lambda: _by(api.list("listZones", "zone", id=id_), id=id_)) is None:
            return None
        vm = serving_proxy(api.retrying(f"read {label}", lambda: console_proxies(api, id_)))
        value = read_parameter(props) if props.get("parameter_name") else None
        return {**dict(props), "id": id_, "publicip": vm["publicip"] if vm else "", "forwards": value or ""}

    def probe_service(self, api: Api, props: Props) -> bool:
        """True while the live console proxy address, the parameter and consoleproxy.url.domain
        are what this resource published."""
        vm = serving_proxy(console_proxies(api, props["zoneid"]))
        if vm is None or vm["publicip"] != props.get("publicip"):
            return False
        if props.get("parameter_name") and read_parameter(props) != props.get("forwards"):
            return False
        address = props.get("console_address")
        if address:
            domain = _setting(api, consoles.URL_DOMAIN_SETTING)
            if domain is not None and (domain.get("value") or "") != address:
                return False
        return True

    def diff(self, olds, news):
        changed, replaces = super().diff(olds, news)
        published = consoles.console_forwards(olds["publicip"]) if olds.get("publicip") else None
        # seen by the provider's probe, or by a refresh (publicip live, forwards the parameter's value)
        if olds.get("service", "ok") != "ok" or olds.get("forwards") != published:
            changed.append("publicip")
        return changed, replaces

    def update(self, connect, id_, olds, news):
        changed, replaces = self.diff(olds, news)
        if replaces:
            raise RegistrationError(f"{self.label(news)}: {replaces} need a replacement, not an update")
        # Always asks CloudStack (even when only connection details changed): the provider's
        # diff may have seen a new console proxy address, which `olds` does not show.
        return {**self._publish(connect(), news), "id": id_}

    def delete_lazily(self, connect: Callable[[], Api], id_: str, props: Props) -> None:
        unpublish(props)

    def tear_down(self, props):
        unpublish(props)
