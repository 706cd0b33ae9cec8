"""Settings of operating the cloud: how long CloudWatch keeps the instances' logs, who the
alarms notify, and which instances an update relaunches with their current boot script.

Pure module (no Pulumi import).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Callable, Sequence

from components.model.aws_constraints import LOG_RETENTION_DAYS
from components.model.naming import KVM_HOSTS, instance_names
from components.model.rules import Choice, CrossKey, Pattern
from components.model.settings.base import Key

if TYPE_CHECKING:
    from components.model.settings import _Collector

#: An address SNS's email protocol takes: one mailbox, no display name (SNS API reference,
#: Subscribe Endpoint: "For the email protocol, use an email address").
_EMAIL = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
                    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+$")

KEYS: tuple[Key, ...] = (
    Key("logRetentionDays", "int", 30, "Days CloudWatch Logs keeps the instances' logs (management server, KVM hosts, router, Session Manager sessions): 1, 3, 5, 7, 14, 30, 60, 90, ... 3653, or 0 for never expire.",
        rule=Choice(LOG_RETENTION_DAYS, f"CloudWatch Logs accepts only {', '.join(map(str, LOG_RETENTION_DAYS))} (0: never expire)")),
    Key("alarmEmail", "str", "", "Email address subscribed to the alarms' SNS topic (SNS mails a confirmation link first); empty: the topic has no subscription.",
        rule=Pattern(_EMAIL, "one email address such as ops@example.com, or empty", optional=True)),
    Key("renewInstances", "list", [],
        "Instances (router, router-1, management, management-1, kvm-host-0, ...) this update relaunches with their "
        "current boot script, each only if that differs from the one it was launched with (README, \"Relaunching "
        "an instance with its current boot\"). Remove the names once the update has run.",
        rule=CrossKey("renew_instances_known", "the accepted names follow routerCount, managementServerCount and "
                                               "hostCount"),
        example='["management", "kvm-host-0"]'),
)


def renew_instances_known(c: _Collector) -> None:
    """Every renewInstances entry names an instance these settings run (naming.instance_names);
    a KVM host named there is warned of: its replacement stops its VMs unless it is in
    maintenance (the UI's host action "Enable Maintenance Mode" calls prepareHostForMaintenance:
    apache/cloudstack ui/src/config/section/infra/hosts.js)."""
    names = c.values["renewInstances"]
    counts = (c.values["routerCount"], c.values["managementServerCount"], c.values["hostCount"])
    if not names or not all(isinstance(n, int) and n >= 0 for n in counts):
        return
    accepted = instance_names(*counts)
    for name in names:
        if name not in accepted:
            c.problem("renewInstances", name,
                      f"names no instance of this stack (routerCount {counts[0]}, managementServerCount {counts[1]}, "
                      f"hostCount {counts[2]}); accepted: {', '.join(accepted)}")
    hosts = [n for n in names if n in accepted and n.startswith(f"{KVM_HOSTS}-")]
    if hosts:
        c.warnings.append(
            f"renewInstances names the KVM host(s) {', '.join(hosts)}: if its boot script changed, this update "
            "DELETES the instance and launches a new one, and every VM still running on it stops with it. Put "
            "each into maintenance in CloudStack first (Infrastructure > Hosts > Enable Maintenance Mode: its VMs "
            "live-migrate to other hosts; API prepareHostForMaintenance) and wait until it reports Maintenance. "
            "`pulumi preview` shows whether it is replaced.")


def renew_advice(names: Sequence[str]) -> str:
    """The commands that relaunch the instances `names` (resource names, naming.instance_names)
    with their current boot script: set renewInstances, `pulumi up`, remove it again. Never
    `pulumi up --replace`: the engine creates the replacement from the goal state, in which an
    ignored property (every instance's user data, components/resources/node.py) keeps its
    recorded value (Pulumi docs, resource option "ignoreChanges"), so it relaunches the old boot."""
    sets = "; ".join(f"`pulumi config set --path 'renewInstances[{i}]' {name}`" for i, name in enumerate(names))
    return f"{sets}; then `pulumi up`; then `pulumi config rm renewInstances`"


#: The rules that involve keys of other tiers, run after every key's own rule.
CROSS_KEY_RULES: tuple[Callable[["_Collector"], None], ...] = (renew_instances_known,)
