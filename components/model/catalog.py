"""A small, dated table of EC2/RDS facts and list prices, and the cost estimate built on it.

Pure module. At deploy time the program asks AWS for instance facts (getInstanceType);
this table stands in for AWS only in the offline `plan` command's mocks, and gives
the estimate its prices. Prices are on-demand list prices for PRICE_REGION, recorded
on PRICES_RECORDED: an estimate to compare options with, not a quote. A type that is
not in the table is reported as unknown instead of guessed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

from components.model import alarms, monitoring, naming
from components.model.settings import InstanceFacts, Settings

PRICE_REGION = "us-east-1"
PRICES_RECORDED = "2026-11-01"
HOURS_PER_MONTH = 730

#: type: (hypervisor, bare metal, architecture, vCPUs, memory MiB, USD per hour, Linux on-demand)
_EC2: dict[str, tuple[str, bool, str, int, int, float]] = {
    # metal: KVM hosts
    "c5.metal": ("", True, "x86_64", 96, 196608, 4.08),
    "c5d.metal": ("", True, "x86_64", 96, 196608, 4.608),
    "c5n.metal": ("", True, "x86_64", 72, 196608, 3.888),
    "m5.metal": ("", True, "x86_64", 96, 393216, 4.608),
    "m5zn.metal": ("", True, "x86_64", 48, 196608, 3.9641),
    "r5.metal": ("", True, "x86_64", 96, 786432, 6.048),
    "i3.metal": ("", True, "x86_64", 72, 524288, 4.992),
    "c6i.metal": ("", True, "x86_64", 128, 262144, 5.44),
    "m6i.metal": ("", True, "x86_64", 128, 524288, 6.144),
    "c7i.metal-24xl": ("", True, "x86_64", 96, 196608, 4.284),
    "m7i.metal-24xl": ("", True, "x86_64", 96, 393216, 4.8384),
    "c6g.metal": ("", True, "arm64", 64, 131072, 2.176),
    # virtual with nested virtualization: KVM hosts (prices recorded NESTED_PRICES_RECORDED)
    "c8i.xlarge": ("nitro", False, "x86_64", 4, 8192, 0.18743),
    "c8i.2xlarge": ("nitro", False, "x86_64", 8, 16384, 0.37485),
    "c8i.4xlarge": ("nitro", False, "x86_64", 16, 32768, 0.7497),
    "c8i.8xlarge": ("nitro", False, "x86_64", 32, 65536, 1.4994),
    "c8i.12xlarge": ("nitro", False, "x86_64", 48, 98304, 2.2491),
    "c8i.16xlarge": ("nitro", False, "x86_64", 64, 131072, 2.9988),
    "c8i-flex.4xlarge": ("nitro", False, "x86_64", 16, 32768, 0.71222),
    "m8i.xlarge": ("nitro", False, "x86_64", 4, 16384, 0.21168),
    "m8i.2xlarge": ("nitro", False, "x86_64", 8, 32768, 0.42336),
    "m8i.4xlarge": ("nitro", False, "x86_64", 16, 65536, 0.84672),
    "m8i.8xlarge": ("nitro", False, "x86_64", 32, 131072, 1.69344),
    "m8i.12xlarge": ("nitro", False, "x86_64", 48, 196608, 2.54016),
    "m8i.16xlarge": ("nitro", False, "x86_64", 64, 262144, 3.38688),
    "m8i-flex.4xlarge": ("nitro", False, "x86_64", 16, 65536, 0.80438),
    "r8i.xlarge": ("nitro", False, "x86_64", 4, 32768, 0.27783),
    "r8i.2xlarge": ("nitro", False, "x86_64", 8, 65536, 0.55566),
    "r8i.4xlarge": ("nitro", False, "x86_64", 16, 131072, 1.11132),
    "r8i.8xlarge": ("nitro", False, "x86_64", 32, 262144, 2.22264),
    # a virtual type of the previous generation: no nested virtualization (refused as a host)
    "c7i.4xlarge": ("nitro", False, "x86_64", 16, 32768, 0.714),
    # Nitro virtualized: router and management server
    "c5.large": ("nitro", False, "x86_64", 2, 4096, 0.085),
    "c5.xlarge": ("nitro", False, "x86_64", 4, 8192, 0.17),
    "c5n.large": ("nitro", False, "x86_64", 2, 5376, 0.108),
    "c5n.xlarge": ("nitro", False, "x86_64", 4, 10752, 0.216),
    "c6i.large": ("nitro", False, "x86_64", 2, 4096, 0.085),
    "c6i.xlarge": ("nitro", False, "x86_64", 4, 8192, 0.17),
    "c6in.large": ("nitro", False, "x86_64", 2, 4096, 0.1134),
    "c6in.xlarge": ("nitro", False, "x86_64", 4, 8192, 0.2268),
    "m5.large": ("nitro", False, "x86_64", 2, 8192, 0.096),
    "m5.xlarge": ("nitro", False, "x86_64", 4, 16384, 0.192),
    "m6i.large": ("nitro", False, "x86_64", 2, 8192, 0.096),
    "m6i.xlarge": ("nitro", False, "x86_64", 4, 16384, 0.192),
    "m6i.2xlarge": ("nitro", False, "x86_64", 8, 32768, 0.384),
    "m7i.large": ("nitro", False, "x86_64", 2, 8192, 0.1008),
    "m7i.xlarge": ("nitro", False, "x86_64", 4, 16384, 0.2016),
    "t3.medium": ("nitro", False, "x86_64", 2, 4096, 0.0416),
    "t3.large": ("nitro", False, "x86_64", 2, 8192, 0.0832),
    "m6g.large": ("nitro", False, "arm64", 2, 8192, 0.077),
    # Xen: refused (cannot send multicast), listed so the plan explains why
    "t2.medium": ("xen", False, "x86_64", 2, 4096, 0.0464),
    "m4.large": ("xen", False, "x86_64", 2, 8192, 0.10),
    "c4.large": ("xen", False, "x86_64", 2, 3840, 0.10),
}

#: Types whose ProcessorInfo.SupportedFeatures lists "nested-virtualization" (AWS: 8th
#: generation Intel, C8i/M8i/R8i and their flex variants, EC2 API reference
#: CpuOptionsRequest.NestedVirtualization and ProcessorInfo, checked 2026-11-30).
_NESTED_VIRTUALIZATION = frozenset(
    t for t in _EC2 if t.split(".")[0] in ("c8i", "c8i-flex", "m8i", "m8i-flex", "r8i", "r8i-flex"))
#: The 8th-generation Intel rows above: recorded later than the rest of the table, and
#: derived, not copied from AWS's price list (which this machine cannot reach). AWS
#: priced C8i/M8i/R8i at 1.05x the same size of C7i/M7i/R7i and the flex variants at
#: 0.95x the regular type, as C7i/M7i flex were (m8i.4xlarge $0.84672 = m7i.4xlarge
#: $0.8064 x 1.05, seen in a public benchmark's us-east-1 table of 2026-07; c8i.4xlarge
#: in eu-central-1 $0.862 = this row x 1.15, Frankfurt's usual premium; one public
#: us-west-2 snapshot rounds c8i.4xlarge to $0.72, about 4% below this row). Verify on
#: https://aws.amazon.com/ec2/pricing/on-demand/ before relying on a cent.
NESTED_PRICES_RECORDED = "2026-11-30"
NESTED_PRICES_SOURCE = ("derived from the C7i/M7i/R7i list prices (x1.05; flex x0.95), "
                        "as AWS priced the 8th generation; verify on aws.amazon.com/ec2/pricing/on-demand")

#: RDS MySQL single-AZ: (vCPUs, USD per hour). Multi-AZ costs twice.
_RDS: dict[str, tuple[int, float]] = {
    "db.t4g.micro": (2, 0.016),
    "db.t4g.small": (2, 0.032),
    "db.t4g.medium": (2, 0.065),
    "db.t4g.large": (2, 0.129),
    "db.t3.medium": (2, 0.068),
    "db.m6g.large": (2, 0.152),
    "db.m7g.large": (2, 0.168),
    "db.m6i.large": (2, 0.171),
    "db.r6g.large": (2, 0.215),
    "db.r7g.large": (2, 0.239),
}

RDS_EXTENDED_SUPPORT_PER_VCPU_HOUR = 0.100  # years 1-2 of Extended Support
RDS_GP3_GB_MONTH = 0.115
EBS_GP3_GB_MONTH = 0.08
PUBLIC_IPV4_HOUR = 0.005
TGW_ATTACHMENT_HOUR = 0.05
EFS_PROVISIONED_MIBPS_MONTH = 6.00
SECRET_MONTH = 0.40
#: A standard-resolution CloudWatch alarm on one metric (CloudWatch pricing, "Alarm metrics").
CLOUDWATCH_ALARM_MONTH = 0.10
#: Elastic Load Balancing pricing, Application Load Balancer: per load balancer-hour, plus
#: capacity units (LCU, usage-based); an internet-facing one has a public IPv4 address in
#: each of its AZs, billed like any other (Amazon VPC pricing, "Public IPv4 addresses").
ALB_HOUR = 0.0225
ALB_LCU_HOUR = 0.008
LOAD_BALANCER_ZONES = 2
#: CloudWatch (standard): log ingestion per GB, custom metric per month (first 10,000),
#: dashboard per month (alarms: CLOUDWATCH_ALARM_MONTH per metric they evaluate); KMS
#: customer managed key per month (AWS KMS pricing; each of STACK_KMS_KEYS).
CLOUDWATCH_LOG_GB = 0.50
CLOUDWATCH_METRIC_MONTH = 0.30
CLOUDWATCH_DASHBOARD_MONTH = 3.00
KMS_KEY_MONTH = 1.00
#: The customer managed KMS keys a stack has, whatever its settings: the first management
#: server's anchor key (components/resources/anchor.py anchor_key: the SecureString
#: parameters the KVM hosts trust) and the key of the log groups and the alarm topic
#: (components/resources/monitoring.py).
STACK_KMS_KEYS = ("anchor", "logs")

USAGE_BASED = (
    "data transfer out to the internet",
    "Transit Gateway data processing ($0.02/GB, multicast also per GB received by each member)",
    "EFS storage ($0.30/GB-month) and elastic throughput ($0.03/GB read, $0.06/GB written)",
    "RDS backup storage beyond the database's size",
    f"the load balancer's capacity units, when it is on (${ALB_LCU_HOUR}/LCU-hour); ACM's public certificates "
    "are free, Route 53 bills the hosted zone you own",
    "CloudWatch Logs storage ($0.03/GB-month, kept logRetentionDays) and Logs Insights queries",
)


def known_instance_types() -> tuple[str, ...]:
    """The EC2 types of the offline table, in its order."""
    return tuple(_EC2)


def known_db_classes() -> tuple[str, ...]:
    """The RDS MySQL classes of the price table, in its order."""
    return tuple(_RDS)


def instance_facts(instance_type: str) -> Optional[InstanceFacts]:
    row = _EC2.get(instance_type)
    if row is None:
        return None
    hypervisor, metal, arch, vcpus, memory, _price = row
    features = ("nested-virtualization",) if instance_type in _NESTED_VIRTUALIZATION else ()
    return InstanceFacts(instance_type, hypervisor, metal, (arch,), vcpus, memory, features)


def ec2_hourly(instance_type: str) -> Optional[float]:
    row = _EC2.get(instance_type)
    return row[5] if row else None


@dataclass(frozen=True)
class CostLine:
    item: str
    quantity: float
    unit_hourly: Optional[float]  # None: not in the price table

    @property
    def hourly(self) -> Optional[float]:
        return None if self.unit_hourly is None else self.quantity * self.unit_hourly


@dataclass(frozen=True)
class CostEstimate:
    lines: tuple[CostLine, ...]

    @property
    def unknown(self) -> tuple[str, ...]:
        return tuple(line.item for line in self.lines if line.unit_hourly is None)

    @property
    def hourly(self) -> float:
        """Sum of the known lines (see `unknown` for what is missing)."""
        return sum(line.hourly for line in self.lines if line.hourly is not None)

    @property
    def monthly(self) -> float:
        return self.hourly * HOURS_PER_MONTH

    def assumptions(self) -> list[str]:
        notes = [
            f"on-demand list prices for {PRICE_REGION}, recorded {PRICES_RECORDED}; other regions differ",
            f"a month is {HOURS_PER_MONTH} hours; no Savings Plans or Reserved Instances",
            "not included (usage-based): " + "; ".join(USAGE_BASED),
        ]
        dated = sorted({line.item.split()[-1] for line in self.lines} & _NESTED_VIRTUALIZATION)
        if dated:
            notes.append(f"{', '.join(dated)}: recorded {NESTED_PRICES_RECORDED}, {NESTED_PRICES_SOURCE}")
        if self.unknown:
            notes.append("NOT in the price table, so NOT in the total: " + ", ".join(self.unknown))
        return notes


def estimate(settings: Settings, host_types: Optional[Sequence[str]] = None) -> CostEstimate:
    """`host_types[i]`: host i's instance type (existing hosts keep theirs); None: every
    host of `hostInstanceType`."""
    per_month = 1 / HOURS_PER_MONTH
    host_types = list(host_types) if host_types is not None else [settings.host_instance_type] * settings.host_count
    routers = settings.router_count
    lines = [
        CostLine(f"router {settings.router_instance_type}" + (" (active/standby pair)" if routers > 1 else ""),
                 routers, ec2_hourly(settings.router_instance_type)),
    ] + [
        # one line per server: the plan shows what each costs (managementServerCount)
        CostLine(f"management server {i} {settings.management_instance_type}", 1,
                 ec2_hourly(settings.management_instance_type)) for i in range(settings.management_server_count)
    ] + [
        CostLine(f"KVM host {t}", host_types.count(t), ec2_hourly(t)) for t in dict.fromkeys(host_types)
    ] + [
        CostLine("EBS gp3 root volumes (GiB)",
                 settings.root_volume_gb * (routers + settings.management_server_count + settings.host_count),
                 EBS_GP3_GB_MONTH * per_month),
        # The router's address (UI/API, the infrastructure's egress, vmForwards), its console
        # address (components/model/consoles.py) and the address tenants and system VMs leave
        # with (components/resources/router.py): AWS bills every public IPv4 address.
        # One set for the pair: the active router holds them (components/resources/router.py).
        CostLine("Elastic IPs (router)", 3, PUBLIC_IPV4_HOUR),
        CostLine("Transit Gateway VPC attachment", 1, TGW_ATTACHMENT_HOUR),
    ]
    rds = _RDS.get(settings.db_instance_class)
    db_copies = 2 if settings.db_multi_az else 1
    lines.append(CostLine(f"RDS MySQL {settings.db_engine_version} {settings.db_instance_class}"
                          + (" Multi-AZ" if settings.db_multi_az else ""),
                          db_copies, rds[1] if rds else None))
    if settings.db_engine_version == "8.0":
        lines.append(CostLine("RDS Extended Support for MySQL 8.0 (vCPU)",
                              db_copies * (rds[0] if rds else 0) or 1,
                              RDS_EXTENDED_SUPPORT_PER_VCPU_HOUR if rds else None))
    lines.append(CostLine("RDS gp3 storage (GiB)", db_copies * settings.db_allocated_storage_gb,
                          RDS_GP3_GB_MONTH * per_month))
    if settings.efs_throughput_mode == "provisioned":
        lines.append(CostLine("EFS provisioned throughput (MiB/s)", settings.efs_provisioned_mibps,
                              EFS_PROVISIONED_MIBPS_MONTH * per_month))
    lines.append(CostLine("Secrets Manager secrets", len(naming.stack_secrets(settings.ldap)),
                          SECRET_MONTH * per_month))
    if settings.ui_behind_load_balancer:
        lines += [CostLine("Application Load Balancer (UI/API" + (", HTTPS)" if settings.ui_https else ", plain HTTP)"),
                           1, ALB_HOUR),
                  CostLine("public IPv4 addresses (load balancer, one per AZ)", LOAD_BALANCER_ZONES, PUBLIC_IPV4_HOUR)]
    return CostEstimate(tuple(lines + cloudwatch_lines(settings)))


def cloudwatch_lines(settings: Settings) -> list[CostLine]:
    """The CloudWatch lines: logs ingested (MB a day, an estimate: monitoring.log_gb_per_day),
    custom metrics, alarms (per metric they evaluate: every alarm of alarms.planned_alarms,
    the EC2 status check alarms with a recover or reboot action included), the dashboard, the
    stack's KMS keys (STACK_KMS_KEYS)."""
    per_month = 1 / HOURS_PER_MONTH
    counts = (settings.host_count, settings.router_count, settings.management_server_count)
    gb_per_day = monitoring.log_gb_per_day(*counts)
    return [
        # Quantity: MB a day (an estimate); a MB a day costs CLOUDWATCH_LOG_GB / 1000 / 24 an hour.
        CostLine("CloudWatch Logs, MB/day (est.)", round(gb_per_day * 1000), CLOUDWATCH_LOG_GB / 1000 / 24),
        CostLine("CloudWatch custom metrics", monitoring.custom_metric_count(*counts),
                 CLOUDWATCH_METRIC_MONTH * per_month),
        CostLine("CloudWatch alarm metrics", alarms.alarm_metric_count(settings),
                 CLOUDWATCH_ALARM_MONTH * per_month),
        CostLine("CloudWatch dashboard", 1, CLOUDWATCH_DASHBOARD_MONTH * per_month),
        CostLine(f"KMS keys ({', '.join(STACK_KMS_KEYS)})", len(STACK_KMS_KEYS), KMS_KEY_MONTH * per_month),
    ]


# --------------------------------------------------------------- KVM host capacity and start time

#: Minutes from RunInstances until a KVM host instance is running and starts its boot
#: script, by how it virtualizes. Metal boots the whole server (firmware, memory test):
#: 10-20 minutes, sometimes more (metal instances can take over 20 minutes to start:
#: canonical/pycloudlib#192; i3.metal over 10 minutes to stop: aws/aws-sdk-go#2039); a
#: virtual instance with nested virtualization is running in a minute or two, like any
#: Nitro instance. The boot script (packages, the agent) and addHost come on top and are
#: the same for both (docs/boot.md).
HOST_START_MINUTES = {"metal": (10, 20), "nested": (1, 2)}


def host_virtualization(facts: Optional[InstanceFacts]) -> str:
    """"metal", "nested" (virtual, launched with nested virtualization) or "unknown"."""
    if facts is None:
        return "unknown"
    return "metal" if facts.bare_metal else "nested" if facts.nested_virtualization else "unknown"


def host_start_minutes(facts: Optional[InstanceFacts]) -> Optional[tuple[int, int]]:
    """(fastest, usual slowest) minutes until a new host of this type is running; None: unknown."""
    return HOST_START_MINUTES.get(host_virtualization(facts))


@dataclass(frozen=True)
class HostCapacity:
    """The KVM hosts of one instance type: how many, what each offers CloudStack, what each costs."""

    instance_type: str
    hosts: int
    vcpus: Optional[int]
    memory_gib: Optional[float]
    hourly: Optional[float]
    virtualization: str
    start_minutes: Optional[tuple[int, int]]

    @staticmethod
    def text(value, fmt: str = "{:g}") -> str:
        return "unknown" if value is None else fmt.format(value)

    @property
    def start_text(self) -> str:
        if self.start_minutes is None:
            return "unknown"
        low, high = self.start_minutes
        return f"{low}-{high}" + ("+" if self.virtualization == "metal" else "")


def host_capacity(settings: Settings, host_types: Optional[Sequence[str]] = None) -> list[HostCapacity]:
    """One row per host instance type, in host-index order (`host_types` as for `estimate`)."""
    host_types = list(host_types) if host_types is not None else [settings.host_instance_type] * settings.host_count
    rows = []
    for t in dict.fromkeys(host_types):
        facts = instance_facts(t)
        rows.append(HostCapacity(t, host_types.count(t), facts.vcpus if facts else None,
                                 facts.memory_mib / 1024 if facts else None, ec2_hourly(t),
                                 host_virtualization(facts), host_start_minutes(facts)))
    return rows


def host_capacity_total(settings: Settings, host_types: Optional[Sequence[str]] = None) -> str:
    rows = host_capacity(settings, host_types)
    hosts = sum(r.hosts for r in rows)
    parts = [f"{hosts} host{'s' if hosts != 1 else ''}"]
    if all(r.vcpus is not None for r in rows):
        parts.append(f"{sum(r.hosts * r.vcpus for r in rows)} vCPU and "
                     f"{sum(r.hosts * r.memory_gib for r in rows):g} GiB in all")
    if all(r.hourly is not None for r in rows):
        parts.append(f"${sum(r.hosts * r.hourly for r in rows):.2f}/hour")
    return ", ".join(parts)
