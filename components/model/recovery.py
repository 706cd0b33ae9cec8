"""Which instance types EC2 can recover from a failed system status check (pure; no Pulumi).

Amazon EC2 User Guide, "CloudWatch action based recovery" (cloudwatch-recovery.html),
"Requirements": the recover action of a CloudWatch alarm on StatusCheckFailed_System moves
an instance to healthy hardware and keeps its instance id, private addresses, Elastic IPs,
metadata and EBS volumes, for instances of the listed families (metal sizes included) that
run in a VPC with default or dedicated tenancy and have EBS volumes only (an instance store
volume makes the recovery fail). The routers and the management server meet the rest: they
boot from EBS only (components/resources/node.py) with default tenancy.

Families with instance store volumes (the "d" variants: c5d, m5d ...) are not listed. An
instance of a family that is not listed gets an alarm without the recover action (which would
not act on it), which only notifies; the plan says so, and such an instance is left to EC2's
simplified automatic recovery where its type supports that, else to a stop and start by hand.
"""

from __future__ import annotations

from components.model.naming import member_name

#: Families (the part of the type before the dot) the recover action supports; the user
#: guide's list (see the module docstring), those without instance store volumes. A family
#: AWS adds later gets no recover action until it is added here (the plan says so).
RECOVERABLE_FAMILIES = frozenset({
    "a1", "c3", "c4", "c5", "c5a", "c5n", "c6a", "c6g", "c6gn", "c6i", "c6in", "c7a", "c7g", "c7gn", "c7i",
    "inf1", "m3", "m4", "m5", "m5a", "m5n", "m5zn", "m6a", "m6g", "m6i", "m6in", "m7a", "m7g", "m7i",
    "p3", "r3", "r4", "r5", "r5a", "r5b", "r5n", "r6a", "r6g", "r6i", "r6in", "r7a", "r7g", "r7i",
    "t2", "t3", "t3a", "t4g", "x1", "x1e",
})

#: The metric and the recover action's ARN (CloudWatch User Guide, "Create alarms to stop,
#: terminate, reboot, or recover an EC2 instance": arn:<partition>:automate:<region>:ec2:recover).
METRIC = "StatusCheckFailed_System"
NAMESPACE = "AWS/EC2"
#: One-minute periods, two in a row (the user guide's example alarm): a status check that
#: fails once is not yet a reason to move the instance.
PERIOD_SECONDS = 60
EVALUATION_PERIODS = 2


def family(instance_type: str) -> str:
    """"c5n" of "c5n.large" (lower case)."""
    return instance_type.split(".", 1)[0].lower()


def supports_recovery(instance_type: str) -> bool:
    """Whether the recover action supports `instance_type` (RECOVERABLE_FAMILIES)."""
    return family(instance_type) in RECOVERABLE_FAMILIES


def targets(router_instance_type: str, router_count: int, management_instance_type: str,
            management_count: int = 1) -> list[tuple[str, str]]:
    """(resource name, instance type) of every instance whose system status check alarm
    recovers it where its type allows (components/model/alarms.py system_check_alarm): each
    router ("router", "router-1") and each management server ("management", "management-1")."""
    return ([(member_name("router", i), router_instance_type) for i in range(router_count)]
            + [(member_name("management", i), management_instance_type) for i in range(management_count)])


#: The EC2 actions an alarm on an instance's metric may take (CloudWatch API reference
#: PutMetricAlarm AlarmActions: arn:<partition>:automate:<region>:ec2:<action>).
EC2_ACTIONS = ("stop", "terminate", "reboot", "recover")


def action_arn(partition: str, region: str, action: str) -> str:
    """arn:<partition>:automate:<region>:ec2:<action> (EC2_ACTIONS; ValueError for another)."""
    if action not in EC2_ACTIONS:
        raise ValueError(f"EC2 alarm action {action!r} is not one of {', '.join(EC2_ACTIONS)}")
    return f"arn:{partition}:automate:{region}:ec2:{action}"


def recover_action_arn(partition: str, region: str) -> str:
    """The alarm action that recovers the instance: arn:<partition>:automate:<region>:ec2:recover."""
    return action_arn(partition, region, "recover")


def not_recovered_reason(instance_type: str) -> str:
    """Why an instance of `instance_type` gets no recover action, and what happens instead."""
    return (f"the {family(instance_type)} family is not among those EC2's recover action supports in this "
            "program's table (EC2 User Guide, \"CloudWatch action based recovery\"), so its system status check "
            "alarm has no recover action and only notifies; a failed system status check leaves it to EC2's "
            "simplified automatic recovery where the type has it, else to a stop and start by hand")


def not_recovered_warning(role: str, instance_type: str) -> str:
    """What the plan says of an instance whose system status check alarm cannot recover it."""
    return f"{role} {instance_type}: {not_recovered_reason(instance_type)}"
