"""Settings of the data tier: the RDS MySQL database and the EFS file system.

Pure module (no Pulumi import).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Callable

from components.model import rules
from components.model.aws_constraints import LOG_RETENTION_DAYS
from components.model.rules import Choice, CrossKey, Plain, Range
from components.model.settings.base import Key
from components.model.settings.instancetypes import SIZE, SIZES_ACCEPTED
from components.model.suggest import nearest

if TYPE_CHECKING:
    from components.model.settings import _Collector

DB_ENGINE_VERSIONS = ("8.0", "8.4")
EFS_THROUGHPUT_MODES = ("elastic", "provisioned")
_DB_CLASS = re.compile(r"^db\.[a-z0-9-]+\.[a-z0-9-]+$")


def _db_engine_version(c: rules.Check, version: str) -> str:
    """A MySQL major version RDS offers, never Aurora."""
    if version.lower().startswith("aurora"):
        c.problem("Aurora is not supported: CloudStack needs the MyISAM storage engine, which Aurora lacks; use 8.4 or 8.0")
    elif version not in DB_ENGINE_VERSIONS:
        c.problem(f"must be a MySQL major version: {', '.join(DB_ENGINE_VERSIONS)}")
    return version


def _db_instance_class(c: rules.Check, name: str) -> str:
    """db.<family>.<size> with a size AWS names; one missing from the price table
    (components/model/catalog.py) is a warning, since RDS adds classes: RDS itself refuses
    a class it does not offer, but only when the database is created."""
    from components.model import catalog  # imported here: the catalog imports this package

    close = nearest(name, catalog.known_db_classes())
    hint = f"; did you mean {close}?" if close else ""
    if not _DB_CLASS.match(name):
        c.problem(f"expected an RDS instance class such as db.t4g.medium{hint}")
    elif not SIZE.match(name.rsplit(".", 1)[1]):
        c.problem(f"{name.rsplit('.', 1)[1]!r} is not an RDS instance size ({SIZES_ACCEPTED}){hint}")
    elif name not in catalog.known_db_classes():
        c.warn(f"dbInstanceClass {name} is not in this program's table of RDS classes: priced as unknown, and "
               "RDS checks that it offers the class for MySQL only when the database is created"
               + (f"; the table's nearest class is {close}: check the spelling" if close else ""))
    return name


def _efs_throughput_mode(c: rules.Check, mode: str) -> str:
    """elastic or provisioned, never bursting."""
    if mode == "bursting":
        c.problem("bursting runs out of credits after a few VMs boot; use elastic or provisioned")
    elif mode not in EFS_THROUGHPUT_MODES:
        c.problem(f"must be one of {', '.join(EFS_THROUGHPUT_MODES)}")
    return mode


KEYS: tuple[Key, ...] = (
    Key("dbEngineVersion", "str", "8.4", "RDS MySQL major version: 8.4, or 8.0 (paid Extended Support since 2026-07-31).",
        rule=_db_engine_version),
    Key("dbInstanceClass", "str", "db.t4g.medium", "RDS instance class.",
        rule=_db_instance_class),
    Key("dbAllocatedStorageGb", "int", 20, "RDS storage (GiB, gp3, encrypted); 20..65536.",
        rule=Range(20, 65536)),
    Key("dbMultiAz", "bool", False, "RDS Multi-AZ standby.",
        rule=Plain("true or false")),
    Key("dbBackupRetentionDays", "int", 7, "Automated backup retention (1..35 days).",
        rule=Range(1, 35, " (automated backups stay on)")),
    Key("deletionProtection", "bool", True, "Protect the database and the EFS file system (RDS deletion protection and Pulumi `protect`); set false and `pulumi up` before `pulumi destroy`.",
        rule=Plain("true or false")),
    Key("dbSkipFinalSnapshot", "bool", False, "Skip the final snapshot when the database is deleted.",
        rule=Plain("true or false")),
    Key("dbLogRetentionDays", "int", 30, "Days CloudWatch Logs keeps the database's error log (1, 3, 5, 7, 14, 30, 60, 90, ... 3653, or 0 for never expire); the log group is deleted with the stack.",
        rule=Choice(LOG_RETENTION_DAYS, f"CloudWatch Logs accepts only {', '.join(map(str, LOG_RETENTION_DAYS))} (0: never expire)")),
    Key("dbTimeoutMinutes", "int", 180, "Create/update/delete timeout of the RDS instance: Multi-AZ creation, storage changes and engine upgrades can outlast the provider's defaults (40/80/60 minutes); 40..720.",
        rule=Range(40, 720)),
    # Storage
    Key("efsThroughputMode", "str", "elastic", "EFS throughput: elastic or provisioned (never bursting: its credits run out).",
        rule=_efs_throughput_mode),
    Key("efsProvisionedMibps", "int", 128, "Provisioned throughput (MiB/s, 1..3414) when `efsThroughputMode` is provisioned.",
        rule=CrossKey("efs_provisioned_throughput", "1..3414 only with efsThroughputMode provisioned")),
)


def efs_provisioned_throughput(c: _Collector) -> None:
    """EFS's provisioned throughput (1..3414 MiB/s) matters only in provisioned mode."""
    efs_mibps = c.values["efsProvisionedMibps"]
    if c.values["efsThroughputMode"] == "provisioned" and not 1 <= efs_mibps <= 3414:
        c.problem("efsProvisionedMibps", efs_mibps, "must be between 1 and 3414 MiB/s with provisioned throughput")



#: This tier's rules that involve several keys, in the order they run.
CROSS_KEY_RULES: tuple[Callable[["_Collector"], None], ...] = (
    efs_provisioned_throughput,
)
