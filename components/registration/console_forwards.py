"""The console proxy's address, published for the router: the `console_forwards` kind (no Pulumi here).

A browser opens a VM's console at the console address (the router's second Elastic IP), ports
80 and 8080; the router forwards them to the console proxy VM's public IP (components/model/consoles.py).
That IP is CloudStack's choice: PublicNetworkGuru gives each system VM a free public address
when it is created, from the system VMs' public range (registered with forsystemvms) first, and
a console proxy that is destroyed and launched again (by an operator, by HA, by a disabled and
re-enabled zone) may get another. So this resource

- waits (bounded by timeouts.system_vms) for the zone's console proxy to run with a public IP
  (listSystemVms systemvmtype=consoleproxy), and writes `consoles.console_forwards(ip)` into the
  SSM parameter the router polls (created by Pulumi with consoles.NO_CONSOLE);
- makes sure that IP lies in the system VMs' public range (props `system_public_range`,
  "first-last"): a console proxy addressed outside it (an existing stack's, addressed before
  the range existed) is destroyed once (destroySystemVm; open console sessions are cut once)
  and the new one waited for; if that one is outside too (the range is full), it fails naming
  the range and what holds its addresses. The router forwards only into that range;
- checks, never sets, the console settings, and warns with the remedy:
  `consoleproxy.static.publicIp` must be the console address and `consoleproxy.static.port` 80
  (the management server's boot writes both into cloud.configuration: they have no Config
  entry, so updateConfiguration refuses them); `consoleproxy.url.domain` must stay blank (else
  the console proxy serves nothing without an uploaded CPVM certificate); `consoleproxy.sslEnabled`
  true or `novnc.console.port` other than 8080 move the ports away from the two the router
  forwards. Zone-scoped settings are read with the zone's id (its effective value);
- probes on every `pulumi up`/preview whether the parameter still forwards to the live console
  proxy: a console proxy recreated with a new address shows as a change, and the update
  publishes the new address, unless the management servers' publisher (userdata/console-forwards.sh,
  every 30 s) wrote it already (then nothing changes);
- on delete (and when the cloud is torn down) writes consoles.NO_CONSOLE back, if the parameter
  still exists; a failure there is a warning, never a failed destroy.

The SSM calls use the stack's AWS identity (client.aws_session), like the hosts' readiness.
"""

from __future__ import annotations

import ipaddress
import time
from typing import Any, Callable

from components.model import consoles
from components.model.ipplan import AddressRange

from .base import Kind, Obj, Props, _by, configuration
from .client import CREDENTIAL_ERRORS, LOG, Api, RegistrationError, aws_session

#: What the registration's AWS identity needs on the console-forwards parameter.
PARAMETER_PERMISSIONS = "ssm:GetParameter and ssm:PutParameter"


# -- the console proxy ---------------------------------------------------------------

def console_proxies(api: Api, zoneid: str) -> list[Obj]:
    return api.list("listSystemVms", "systemvm", systemvmtype="consoleproxy", zoneid=zoneid)


def serving_proxy(vms: list[Obj]) -> Obj | None:
    """The console proxy to forward to: Running with a public IP; of several, the oldest.
    consoleproxy.launch.max=1 (the registration's settings) keeps it to one per zone: CloudStack
    assigns sessions to any running proxy (ConsoleProxyManagerImpl.assignProxyFromRunningPool),
    and the router forwards to one only."""
    running = sorted((v for v in vms if v.get("state") == "Running" and v.get("publicip")),
                     key=lambda v: (str(v.get("created") or ""), str(v.get("name") or "")))
    if len(running) > 1:
        LOG.warning("zone has %d console proxies running (%s): the console address forwards to %s only, so "
                    "consoles that CloudStack assigns to the others will not open. consoleproxy.launch.max "
                    "should be 1 (the registration sets it): check it and destroy the extra ones "
                    "(destroySystemVm)", len(running), ", ".join(str(v.get("name")) for v in running),
                    running[0].get("name"))
    return running[0] if running else None


def _seen(vms: list[Obj]) -> str:
    return ", ".join(f"{v.get('name')} {v.get('state')}" +
                     (f" with public IP {v['publicip']}" if v.get("publicip") else " without a public IP")
                     for v in vms) or "no console proxy VM at all"


def wait_for_console_proxy(api: Api, zoneid: str, gone: frozenset[str] = frozenset()) -> Obj:
    """The zone's console proxy once it runs with a public IP, bounded by timeouts.system_vms;
    proxies whose id is in `gone` (destroyed here) do not count.
    Raises RegistrationError naming what CloudStack listed meanwhile."""
    t = api.timeouts
    deadline = time.monotonic() + t.system_vms
    while True:
        vms = [v for v in console_proxies(api, zoneid) if str(v.get("id")) not in gone]
        vm = serving_proxy(vms)
        if vm is not None:
            return vm
        if time.monotonic() > deadline:
            raise RegistrationError(
                f"zone {zoneid}: no console proxy VM runs with a public IP after {t.system_vms:g}s "
                f"(timeouts.system_vms); CloudStack lists {_seen(vms)}. CloudStack gives a console proxy a free "
                f"address of the zone's public ranges when it creates it; without one it never starts "
                f"('Insufficient address capacity' in /var/log/cloudstack/management/management-server.log): "
                f"look there and at listSystemVms systemvmtype=consoleproxy, and free an address of the public "
                f"range (listPublicIpAddresses) if it is full. A Stopped console proxy still counts against "
                f"consoleproxy.launch.max (1 here: ConsoleProxyManagerImpl.allowToLaunchNew), so no other one "
                f"is launched while it exists: start it (startSystemVm) or destroy it (destroySystemVm). Then "
                f"run `pulumi up` again.")
        api._sleep(t.poll_interval)


# -- the system VMs' public range --------------------------------------------------------

def parse_range(text: str) -> AddressRange | None:
    """"first-last" → the range; "" → None. Raises RegistrationError on anything else."""
    if not text:
        return None
    try:
        return AddressRange.parse(text)
    except ValueError as e:
        raise RegistrationError(f"system_public_range={text!r} is invalid ({e}): expected first-last, two IPv4 "
                                f"addresses such as 10.100.192.1-10.100.192.8") from None


def in_range(address: str | None, bounds: AddressRange | None) -> bool:
    """Whether `address` lies in `bounds` (always True without bounds)."""
    if bounds is None:
        return True
    try:
        return ipaddress.IPv4Address(str(address)) in bounds
    except ValueError:
        return False


def _holding(api: Api, zoneid: str, bounds: AddressRange) -> list[Obj]:
    """The zone's system VMs with a public IP inside `bounds`."""
    return [v for v in api.list("listSystemVms", "systemvm", zoneid=zoneid) if in_range(v.get("publicip"), bounds)]


def _named(held: list[Obj]) -> str:
    return ", ".join(f"{v.get('name')} ({v.get('systemvmtype')}, {v.get('state')}) holds {v['publicip']}"
                     for v in held) or "no system VM of the zone holds one"


def _full(zoneid: str, vm: Obj, system_public_range: str, held: list[Obj], after: str) -> RegistrationError:
    return RegistrationError(
        f"zone {zoneid}: the console proxy {vm.get('name')} has the public IP {vm['publicip']}, outside the system "
        f"VMs' public range {system_public_range}{after}: the range has no free address ({_named(held)}). The "
        f"router forwards the console address only into that range. Free an address of it (destroySystemVm a system "
        f"VM that holds one, e.g. an old secondary storage VM: CloudStack recreates it) and run `pulumi up` again.")


def console_proxy_in_range(api: Api, zoneid: str, system_public_range: str) -> Obj:
    """The zone's running console proxy, with its public IP inside `system_public_range`
    ("first-last"; "" accepts any). One outside it (addressed before the range existed) is
    destroyed once (destroySystemVm: CloudStack launches a new one, which takes a free address
    of the range first: IpAddressManagerImpl.listAvailablePublicIps) and the new one waited for.
    Raises RegistrationError, without destroying anything, when system VMs hold every address
    of the range, and when the new one is outside too (the range is full)."""
    bounds = parse_range(system_public_range)
    vm = wait_for_console_proxy(api, zoneid)
    if in_range(vm["publicip"], bounds):
        return vm
    held = _holding(api, zoneid, bounds)
    if len(held) >= bounds.size:
        # every address taken by a system VM: a new console proxy could not get one either
        raise _full(zoneid, vm, system_public_range, held, "")
    LOG.warning("zone %s: the console proxy %s has the public IP %s, outside the system VMs' public range %s "
                "(it was addressed before the range existed, or the range was full): destroying it once so that "
                "CloudStack launches a new one inside the range. Open console sessions are cut once.",
                zoneid, vm.get("name"), vm["publicip"], system_public_range)
    api.job("destroySystemVm", id=vm["id"])
    new = wait_for_console_proxy(api, zoneid, gone=frozenset({str(vm["id"])}))
    if in_range(new["publicip"], bounds):
        LOG.info("zone %s: the new console proxy %s has the public IP %s, inside %s", zoneid, new.get("name"),
                 new["publicip"], system_public_range)
        return new
    raise _full(zoneid, new, system_public_range, _holding(api, zoneid, bounds),
                f", also after {vm.get('name')} was destroyed")


# -- the console settings --------------------------------------------------------------

def _sql_text(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


def static_settings_sql(console_address: str) -> str:
    """The SQL that writes the two static console settings, as the management server's boot does
    (rows of cloud.configuration: they have no Config/ConfigKey entry, so updateConfiguration
    refuses them). Run as the database's master user; restart the management server afterwards."""
    rows = ((consoles.STATIC_ADDRESS_SETTING, console_address), (consoles.STATIC_PORT_SETTING,
                                                                 str(consoles.CONSOLE_PAGE_PORT)))
    return " ".join(
        f"INSERT INTO cloud.configuration (category, instance, component, name, value, description) VALUES "
        f"('Advanced', 'DEFAULT', 'management-server', {_sql_text(name)}, {_sql_text(value)}, "
        f"'cloudstack-ec2: console URLs name the console address') ON DUPLICATE KEY UPDATE value = {_sql_text(value)};"
        for name, value in rows)


def check_settings(api: Api, zoneid: str, console_address: str) -> list[str]:
    """What keeps CloudStack's console URLs from naming the console address, on the ports the
    router forwards: one warning (logged, and returned) per problem, each with its remedy.
    Changes nothing."""
    problems: list[str] = []
    if not console_address:
        problems.append("no console address: CloudStack's console URLs name the console proxy's own public IP, "
                        "which no browser outside the overlay reaches")
    else:
        address = configuration(api, consoles.STATIC_ADDRESS_SETTING)
        port = configuration(api, consoles.STATIC_PORT_SETTING)
        have_address = None if address is None else (address.get("value") or "")
        have_port = None if port is None else str(port.get("value") or "")
        if have_address != console_address or have_port != str(consoles.CONSOLE_PAGE_PORT):
            def shown(v: str | None) -> str:
                return "not set" if v is None else repr(v)
            problems.append(
                f"{consoles.STATIC_ADDRESS_SETTING} is {shown(have_address)} and {consoles.STATIC_PORT_SETTING} "
                f"{shown(have_port)}, not {console_address!r} and '{consoles.CONSOLE_PAGE_PORT}': console URLs do not "
                f"name the console address on port {consoles.CONSOLE_PAGE_PORT}, so consoles will not open from "
                f"outside. The management server's boot writes both rows into cloud.configuration (they have no "
                f"Config entry, so updateConfiguration refuses them); a management server that booted before that "
                f"needs them written by hand: open a shell on it (`aws ssm start-session --target <management "
                f"server instance id>`), run as the database's master user (its credentials are in the stack's "
                f"database master secret; `mysql -h <database address> -u <user> -p`) the SQL "
                f"`{static_settings_sql(console_address)}`, then `sudo systemctl restart cloudstack-management` "
                f"(ConsoleProxyManagerImpl.configure reads both when it starts)")
    domain = configuration(api, consoles.URL_DOMAIN_SETTING, zoneid)
    if domain is not None and (domain.get("value") or "").strip():
        problems.append(
            f"{consoles.URL_DOMAIN_SETTING} is {domain.get('value')!r}: while it is non-empty the console proxy starts "
            f"its page and noVNC servers only with an uploaded CPVMCertificate (AgentHookBase"
            f".startAgentHttpHandlerInVM; KeystoreManagerImpl.getKeystoreBits fails without one and the proxy serves "
            f"nothing), and console URLs name that domain instead of the console address. Set it back to blank "
            f"(resetConfiguration name={consoles.URL_DOMAIN_SETTING}, zoneid={zoneid} too if the zone has its own "
            f"value) and restart the management server")
    ssl = configuration(api, consoles.SSL_SETTING, zoneid)
    if ssl is not None and str(ssl.get("value")).lower() == "true":
        problems.append(
            f"{consoles.SSL_SETTING} is true: console pages move to port 443 and the websocket to 8443, which the "
            f"router does not forward (it forwards {' and '.join(str(p) for p in consoles.CONSOLE_PORTS)}): consoles "
            f"will not open from outside. Set it to false, or forward those ports yourself")
    port = configuration(api, consoles.WEBSOCKET_PORT_SETTING, zoneid)
    if port is not None and str(port.get("value")) != str(consoles.CONSOLE_WEBSOCKET_PORT):
        problems.append(
            f"{consoles.WEBSOCKET_PORT_SETTING} is {port.get('value')}: noVNC's websocket uses that port, but the "
            f"router forwards {' and '.join(str(p) for p in consoles.CONSOLE_PORTS)} only: consoles will not open "
            f"from outside. Set it back to {consoles.CONSOLE_WEBSOCKET_PORT}")
    for problem in problems:
        LOG.warning("%s", problem)
    return problems


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
    console Elastic IP, which consoleproxy.static.publicIp must name), system_public_range
    ("first-last": the console proxy's public IP must lie in it; "" accepts any) and the
    connection keys. Outputs add
    publicip (the console proxy's public IP) and forwards (the value written). Its id is the
    zone's: one per zone, whatever console proxy serves it."""

    kind = "console forwards"
    replace_keys = ("zoneid",)
    update_keys = ("parameter_name", "console_address", "system_public_range")
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
                     lambda: check_settings(api, props["zoneid"], props.get("console_address") or ""))
        vm = console_proxy_in_range(api, props["zoneid"], props.get("system_public_range") or "")
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
        """True while the parameter forwards to the live console proxy, inside the system VMs'
        public range. The management servers' publisher (userdata/console-forwards.sh) follows a
        recreated console proxy between two updates: a parameter it brought to the live address
        is right, though that address is not the one this resource published (`pulumi refresh`
        reads it back)."""
        vm = serving_proxy(console_proxies(api, props["zoneid"]))
        if vm is None or not in_range(vm["publicip"], parse_range(props.get("system_public_range") or "")):
            return False
        if props.get("parameter_name"):
            return read_parameter(props) == consoles.console_forwards(vm["publicip"])
        return vm["publicip"] == props.get("publicip")

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
