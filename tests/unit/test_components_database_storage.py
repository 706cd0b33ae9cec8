"""RdsCloudDb and EfsStorage under Pulumi mocks."""

from __future__ import annotations

import re

import pytest

from components.model.settings import SettingsError

RDS = "aws:rds/instance:Instance"
PARAMS = "aws:rds/parameterGroup:ParameterGroup"
FS = "aws:efs/fileSystem:FileSystem"
MOUNT = "aws:efs/mountTarget:MountTarget"
CLOUDSTACK_SQL_MODE = {"STRICT_TRANS_TABLES", "NO_ZERO_IN_DATE", "NO_ZERO_DATE", "ERROR_FOR_DIVISION_BY_ZERO",
                       "NO_ENGINE_SUBSTITUTION"}
#: RDS DB snapshot identifiers: a letter first, then letters, digits and single hyphens, no hyphen last.
SNAPSHOT_ID = re.compile(r"^[A-Za-z](?!.*--)[A-Za-z0-9-]{0,254}(?<!-)$")


def parameters(d) -> dict[str, str]:
    [group] = d.of_type(PARAMS)
    return {p["name"]: p["value"] for p in group.inputs["parameters"]}


# --- RdsCloudDb ----------------------------------------------------------------------------

def test_rds_mysql_84_by_default_with_a_matching_parameter_group(dev):
    db = dev.get(RDS, "database-mysql")
    [group] = dev.of_type(PARAMS)
    assert db.inputs["engine"] == "mysql"
    assert db.inputs["engineVersion"] == "8.4"
    assert group.inputs["family"] == "mysql8.4"
    assert db.inputs["parameterGroupName"] == group.state["name"]
    assert db.inputs["dbSubnetGroupName"] == dev.get("aws:rds/subnetGroup:SubnetGroup", "database-subnets").state["name"]


def test_rds_mysql_80_allowed_with_cloudstack_419(deploy):
    d = deploy(dbEngineVersion="8.0", cloudstackVersion="4.19")
    [group] = d.of_type(PARAMS)
    assert d.get(RDS, "database-mysql").inputs["engineVersion"] == "8.0"
    assert group.inputs["family"] == "mysql8.0"
    assert parameters(d) == parameters(deploy())


def test_mysql_84_refused_with_cloudstack_419(deploy):
    with pytest.raises(SettingsError) as err:
        deploy(dbEngineVersion="8.4", cloudstackVersion="4.19")
    assert "dbEngineVersion" in str(err.value)


@pytest.mark.parametrize("version", ["aurora-mysql8.0", "aurora"])
def test_aurora_refused(deploy, version):
    with pytest.raises(SettingsError) as err:
        deploy(dbEngineVersion=version)
    assert "dbEngineVersion" in str(err.value) and "Aurora" in str(err.value)


def test_parameter_group_has_cloudstacks_settings(dev):
    p = parameters(dev)
    management_servers = len(dev.settings.ip_plan().management_servers)
    assert p["innodb_rollback_on_timeout"] == "1"
    assert p["innodb_lock_wait_timeout"] == "600"
    assert p["max_connections"] == str(350 * management_servers)
    assert p["binlog_format"] == "ROW"
    assert p["log_bin_trust_function_creators"] == "1"
    assert set(p["sql_mode"].split(",")) == CLOUDSTACK_SQL_MODE
    [group] = dev.of_type(PARAMS)
    # innodb_rollback_on_timeout is static in MySQL: RDS only takes it at reboot.
    methods = {q["name"]: q["applyMethod"] for q in group.inputs["parameters"]}
    assert methods["innodb_rollback_on_timeout"] == "pending-reboot"


def test_database_refuses_connections_without_tls_and_names_its_ca(dev):
    # require_secure_transport is dynamic in MySQL 8.0 and 8.4: applied without a reboot.
    [group] = dev.of_type(PARAMS)
    methods = {q["name"]: q["applyMethod"] for q in group.inputs["parameters"]}
    assert parameters(dev)["require_secure_transport"] == "1"
    assert methods["require_secure_transport"] == "immediate"
    # The CA whose root the management servers trust (the region's RDS bundle).
    assert dev.get(RDS, "database-mysql").inputs["caCertIdentifier"] == "rds-ca-rsa2048-g1"


def test_storage_encrypted_private_and_backed_up(dev):
    db = dev.get(RDS, "database-mysql")
    assert db.inputs["storageEncrypted"] is True
    assert db.inputs["publiclyAccessible"] is False
    assert db.inputs["backupRetentionPeriod"] >= 1
    assert db.inputs["backupRetentionPeriod"] == dev.settings.db_backup_retention_days


def test_backup_retention_follows_the_setting(deploy):
    assert deploy(dbBackupRetentionDays=14).get(RDS, "database-mysql").inputs["backupRetentionPeriod"] == 14
    with pytest.raises(SettingsError) as err:
        deploy(dbBackupRetentionDays=0)
    assert "dbBackupRetentionDays" in str(err.value)


def test_deletion_protection_and_final_snapshot_by_default(dev):
    db = dev.get(RDS, "database-mysql")
    assert db.inputs["deletionProtection"] is True
    assert db.protect is True
    assert db.inputs["skipFinalSnapshot"] is False
    assert SNAPSHOT_ID.match(db.inputs["finalSnapshotIdentifier"]), db.inputs["finalSnapshotIdentifier"]


def test_stack_can_opt_out_of_deletion_protection(deploy):
    d = deploy(deletionProtection=False)
    db = d.get(RDS, "database-mysql")
    assert db.inputs["deletionProtection"] is False
    assert db.protect is False
    assert db.inputs["skipFinalSnapshot"] is False  # a final snapshot is still taken


def test_stack_can_opt_out_of_the_final_snapshot(deploy):
    db = deploy(dbSkipFinalSnapshot=True).get(RDS, "database-mysql")
    assert db.inputs["skipFinalSnapshot"] is True
    assert not db.inputs.get("finalSnapshotIdentifier")


@pytest.mark.parametrize("stack", ["prod_eu.1", "Team-A--x", "9lives"])
def test_final_snapshot_identifier_is_valid_for_any_accepted_stack_name(deploy, stack):
    # An invalid identifier surfaces only when the database is deleted: the worst time.
    db = deploy(stack=stack).get(RDS, "database-mysql")
    assert SNAPSHOT_ID.match(db.inputs["finalSnapshotIdentifier"]), db.inputs["finalSnapshotIdentifier"]


def test_master_password_generated_and_kept_by_rds(dev):
    # RDS generates it and keeps it in a secret of its own: never an input, so never in
    # the stack's state; the management server finds the secret through SSM.
    db = dev.get(RDS, "database-mysql")
    assert db.inputs["manageMasterUserPassword"] is True
    assert "password" not in db.inputs and db.inputs["username"] == "csadmin"
    # The stack has no KMS key of its own: Secrets Manager's AWS managed key encrypts it.
    assert "masterUserSecretKmsKeyId" not in db.inputs
    assert not [r for r in dev.registrations if r.name.startswith("database-master")]
    [managed] = db.state["masterUserSecrets"]
    assert dev.outputs["secretArns"]["db_master"] == managed["secretArn"]
    assert ":secret:rds!db-" in managed["secretArn"]


# --- EfsStorage ----------------------------------------------------------------------------

def test_efs_encrypted_general_purpose_elastic_by_default(dev):
    [fs] = dev.of_type(FS)
    assert fs.inputs["encrypted"] is True
    assert fs.inputs["performanceMode"] == "generalPurpose"
    assert fs.inputs["throughputMode"] == "elastic"
    assert "provisionedThroughputInMibps" not in fs.inputs
    assert fs.protect is True


def test_efs_provisioned_throughput_with_its_rate(deploy):
    d = deploy(efsThroughputMode="provisioned", efsProvisionedMibps=256)
    [fs] = d.of_type(FS)
    assert fs.inputs["throughputMode"] == "provisioned"
    assert fs.inputs["provisionedThroughputInMibps"] == 256
    assert fs.inputs["performanceMode"] == "generalPurpose"


def test_efs_never_bursting(deploy):
    with pytest.raises(SettingsError) as err:
        deploy(efsThroughputMode="bursting")
    assert "efsThroughputMode" in str(err.value)


def test_efs_protect_follows_deletion_protection(deploy):
    [fs] = deploy(deletionProtection=False).of_type(FS)
    assert fs.protect is False


def test_efs_mount_target_in_the_cloudstack_subnet_with_the_efs_group(dev):
    [fs] = dev.of_type(FS)
    [mount] = dev.of_type(MOUNT)
    assert mount.inputs["fileSystemId"] == fs.id
    assert mount.inputs["subnetId"] == dev.get("aws:ec2/subnet:Subnet", "underlay-cloudstack").id
    assert mount.inputs["securityGroups"] == [dev.get("aws:ec2/securityGroup:SecurityGroup", "underlay-efs-sg").id]


# --- where the database lands ---------------------------------------------------------------

def test_single_az_database_lands_in_the_management_servers_az(dev):
    db = dev.get("aws:rds/instance:Instance", "database-mysql")
    subnet = dev.get("aws:ec2/subnet:Subnet", "underlay-cloudstack")
    assert db.inputs["multiAz"] is False
    assert db.inputs["availabilityZone"] == subnet.inputs["availabilityZone"]
    # Setting the AZ on a database created without it would replace the database.
    assert "availabilityZone" in db.ignore_changes


def test_multi_az_database_leaves_the_az_to_rds(deploy):
    db = deploy(dbMultiAz=True).get("aws:rds/instance:Instance", "database-mysql")
    assert db.inputs["multiAz"] is True and not db.inputs.get("availabilityZone")


def test_aws_refuses_a_fixed_az_with_multi_az():
    from components.model import aws_constraints

    found = aws_constraints.check_inputs("aws:rds/instance:Instance", "db", {
        "identifier": "db", "multiAz": True, "availabilityZone": "us-east-1a"})
    assert [v.input for v in found] == ["availabilityZone"]


# --- the error log group --------------------------------------------------------------------

def test_error_log_group_is_managed_with_a_retention_and_made_before_the_database(dev):
    db = dev.get("aws:rds/instance:Instance", "database-mysql")
    group = dev.get("aws:cloudwatch/logGroup:LogGroup", "database-error-log")
    assert db.inputs["enabledCloudwatchLogsExports"] == ["error"]
    assert group.inputs["name"] == f"/aws/rds/instance/{db.inputs['identifier']}/error"
    assert group.inputs["retentionInDays"] == 30
    # Made first, so RDS publishes into it instead of creating a group that never expires.
    assert group.urn in db.dependencies


def test_log_retention_is_a_setting(deploy):
    group = deploy(dbLogRetentionDays=365).get("aws:cloudwatch/logGroup:LogGroup", "database-error-log")
    assert group.inputs["retentionInDays"] == 365


def test_log_retention_outside_what_cloudwatch_accepts_is_refused():
    from components.model.settings import SettingsError, parse_settings

    with pytest.raises(SettingsError) as err:
        parse_settings({"adminCidrs": ["10.0.0.0/8"], "dbLogRetentionDays": 31})
    assert [p.key for p in err.value.problems] == ["dbLogRetentionDays"]


@pytest.mark.parametrize("stack", ["dev", "Prod.eu_central-1", "a" * 63, "x--y__z"])
def test_db_identifier_is_valid_for_any_stack_name(stack):
    from components.model import aws_constraints
    from components.resources.database import db_identifier

    identifier = db_identifier(stack, "0a1b2c3d")
    assert identifier.endswith("-0a1b2c3d") and identifier.startswith("cloudstack-")
    assert aws_constraints.RDS_DB_IDENTIFIER.problems(identifier) == []


def test_master_secret_arn_is_unknown_in_a_preview_and_required_after_an_update():
    from types import SimpleNamespace

    from pulumi.output import UNKNOWN

    from components.resources.database import managed_secret_arn

    arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:rds!db-1-Ab12Cd"
    assert managed_secret_arn([SimpleNamespace(secret_arn=arn)], preview=False) == arn
    # The preview of the update that turns it on: RDS has not named the secret yet.
    assert managed_secret_arn([], preview=True) is UNKNOWN
    with pytest.raises(ValueError, match="no master user secret"):
        managed_secret_arn([], preview=False)
