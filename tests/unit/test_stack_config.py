"""The plan reads values the way Pulumi hands them to the program.

Pulumi's CLI reads the stack file with yaml.v2 into Go strings (a scalar's own text),
`pulumi config set` stores strings, and pulumi.Config.get returns strings; the program
then applies its own strictness (components.model.settings)."""

import json
import shutil
from pathlib import Path

import pytest

from components.model.stackconfig import StackConfigError, apply_set, read_stack

from planrun import ROOT, cli

STACK_HEAD = """config:
  aws:region: us-east-1
  cloudstack-ec2:adminCidrs:
    - 203.0.113.0/24
"""


def project(tmp_path: Path, body: str = "", name: str = "t") -> Path:
    shutil.copy(ROOT / "Pulumi.yaml", tmp_path / "Pulumi.yaml")
    (tmp_path / f"Pulumi.{name}.yaml").write_text(STACK_HEAD + body)
    return tmp_path


@pytest.fixture
def plan(capsys):
    def run(tmp_path: Path, *args, name: str = "t"):
        return cli(capsys, "plan", "--stack", name, "--dir", str(tmp_path), *args)
    return run


def test_scalars_reach_the_program_as_their_yaml_text(tmp_path):
    stack = read_stack(project(tmp_path, "  cloudstack-ec2:cloudstackVersion: 4.20\n"
                                         "  cloudstack-ec2:deletionProtection: no\n"
                                         "  cloudstack-ec2:vxlanId: 0x10\n"
                                         "  cloudstack-ec2:apiEndpoint:\n"
                                         "  cloudstack-ec2:zoneName: 'z1'\n"), "t")
    values = stack.values
    assert values["cloudstack-ec2:cloudstackVersion"] == "4.20"  # not 4.2
    assert values["cloudstack-ec2:deletionProtection"] == "no"  # not False
    assert values["cloudstack-ec2:vxlanId"] == "0x10"
    assert values["cloudstack-ec2:apiEndpoint"] == ""
    assert values["cloudstack-ec2:zoneName"] == "z1"
    assert json.loads(values["cloudstack-ec2:adminCidrs"]) == ["203.0.113.0/24"]


def test_set_stores_strings_like_pulumi_config_set(tmp_path):
    stack = read_stack(project(tmp_path), "t")
    assert apply_set(stack, "cloudstackVersion=4.20") == "cloudstack-ec2:cloudstackVersion"
    assert stack.values["cloudstack-ec2:cloudstackVersion"] == "4.20"
    apply_set(stack, "aws:region=eu-west-1")
    assert stack.values["aws:region"] == "eu-west-1"
    apply_set(stack, "adminCidrs[1]=198.51.100.7/32")  # pulumi config set --path 'adminCidrs[1]' ...
    assert json.loads(stack.values["cloudstack-ec2:adminCidrs"]) == ["203.0.113.0/24", "198.51.100.7/32"]
    apply_set(stack, 'adminCidrs=["192.0.2.0/24"]')  # the JSON form
    assert json.loads(stack.values["cloudstack-ec2:adminCidrs"]) == ["192.0.2.0/24"]
    with pytest.raises(StackConfigError, match=r"--set 'adminCidrs\[5\]=x'.*next one is \[1\]"):
        apply_set(stack, "adminCidrs[5]=x")
    with pytest.raises(StackConfigError, match="--set 'hostCount'"):
        apply_set(stack, "hostCount")


def test_set_version_as_pulumi_would_store_it_is_accepted(tmp_path, plan):
    result = plan(project(tmp_path), "--set", "cloudstackVersion=4.20")
    assert result.returncode == 0, result.stderr


def test_bad_set_value_is_blamed_on_the_set(tmp_path, plan):
    result = plan(project(tmp_path), "--set", "deletionProtection=no")
    assert result.returncode == 2
    assert "cloudstack-ec2:deletionProtection = 'no': expected true or false  [--set deletionProtection=no]" \
        in result.stderr


def test_yaml_no_in_the_stack_file_is_rejected_like_the_program_does(tmp_path, plan):
    result = plan(project(tmp_path, "  cloudstack-ec2:deletionProtection: no\n"))
    assert result.returncode == 2
    assert "cloudstack-ec2:deletionProtection = 'no': expected true or false  [Pulumi.t.yaml]" in result.stderr


def test_unquoted_version_number_is_read_as_its_text_with_a_quote_it_warning(tmp_path, plan):
    result = plan(project(tmp_path, "  cloudstack-ec2:cloudstackVersion: 4.20\n"))
    assert result.returncode == 0, result.stderr
    assert "cloudstack-ec2:cloudstackVersion: 4.20 is a YAML number in Pulumi.t.yaml" in result.stdout
    assert "quote it" in result.stdout


def test_rejected_version_written_as_a_number_says_quote_it(tmp_path, plan):
    result = plan(project(tmp_path, "  cloudstack-ec2:cloudstackVersion: 4.3\n"))
    assert result.returncode == 2
    assert "cloudstack-ec2:cloudstackVersion = '4.3'" in result.stderr
    assert 'written as the YAML number 4.3: quote it' in result.stderr


def test_foreign_namespace_key_is_reported(tmp_path, plan):
    result = plan(project(tmp_path, "  cloudstack:hostCount: 3\n"))
    assert result.returncode == 2
    assert "cloudstack:hostCount = '3'" in result.stderr and "did you mean cloudstack-ec2:hostCount?" in result.stderr


def test_secret_value_is_not_validated_as_plain_text(tmp_path, plan):
    result = plan(project(tmp_path, "  cloudstack-ec2:apiEndpoint:\n    secure: v1:AbCdEf==\n"))
    assert result.returncode == 0, result.stderr
    assert "cloudstack-ec2:apiEndpoint is a secret" in result.stdout
    assert "v1:AbCdEf" not in result.stdout


def test_aws_region_can_be_overridden(tmp_path, plan):
    result = plan(project(tmp_path), "--set", "aws:region=eu-west-1", "--json")
    assert result.returncode == 0, result.stderr
    assert "eu-west-1" in result.stdout and "us-east-1a" not in result.stdout


def test_yaml_error_names_the_file(tmp_path, plan):
    (project(tmp_path) / "Pulumi.t.yaml").write_text("config:\n  a: [unclosed\n")
    result = plan(tmp_path)
    assert result.returncode == 2
    assert f"{tmp_path / 'Pulumi.t.yaml'}: not valid YAML" in result.stderr
    assert "Traceback" not in result.stderr


def test_key_without_a_namespace_is_reported(tmp_path, plan):
    result = plan(project(tmp_path, "  hostCount: 3\n"))
    assert result.returncode == 2
    assert "Pulumi.t.yaml: config key 'hostCount' has no namespace: write cloudstack-ec2:hostCount" in result.stderr


def test_settings_without_their_config_wrapper_are_refused_not_ignored(tmp_path, plan):
    # The CLI reads only `config:` (pulumi's ProjectStack): keys beside it never reach the program.
    shutil.copy(ROOT / "Pulumi.yaml", tmp_path / "Pulumi.yaml")
    (tmp_path / "Pulumi.t.yaml").write_text("cloudstack-ec2:hostCount: 3\naws:region: eu-west-1\n")
    result = plan(tmp_path)
    assert result.returncode == 2
    assert "Pulumi.t.yaml: cloudstack-ec2:hostCount, aws:region at the top level: settings go under `config:`" \
        in result.stderr
    with pytest.raises(StackConfigError, match="confg are not stack file sections"):
        (tmp_path / "Pulumi.t.yaml").write_text("confg:\n  cloudstack-ec2:hostCount: 3\n")
        read_stack(tmp_path, "t")


def test_the_stack_files_own_sections_are_accepted(tmp_path):
    project(tmp_path, "secretsprovider: passphrase\nencryptionsalt: v1:abc\n")
    assert read_stack(tmp_path, "t").values["aws:region"] == "us-east-1"


def test_a_missing_stack_names_the_stacks_that_exist(tmp_path, plan):
    project(tmp_path, name="dev")
    project(tmp_path, name="staging")
    result = plan(tmp_path, name="prod")
    assert result.returncode == 2
    assert "Pulumi.prod.yaml not found" in result.stderr
    assert "the stacks here are dev, staging" in result.stderr
    assert "cp Pulumi.dev.yaml Pulumi.prod.yaml" in result.stderr


def test_a_missing_stack_under_json_prints_the_error_object_on_stdout(tmp_path, plan):
    project(tmp_path, name="dev")
    result = plan(tmp_path, "--json", name="prod")
    assert result.returncode == 2
    doc = json.loads(result.stdout)
    assert doc["schemaVersion"] == 1 and doc["stack"] == "prod"
    assert doc["error"]["kind"] == "missing-stack" and doc["error"]["stacks"] == ["dev"]
    assert "Pulumi.prod.yaml not found" in doc["error"]["message"]


def test_a_problem_inside_an_object_is_blamed_on_the_set_that_gave_the_object(tmp_path, plan):
    ldap = json.dumps({"servers": [{"host": "dc1.sbdemo1.local", "port": 0}], "baseDn": "DC=sbdemo1,DC=local",
                       "bindPrincipal": "CN=cloudstack-ldap,DC=sbdemo1,DC=local"})
    result = plan(project(tmp_path), "--set", f"ldap={ldap}")
    assert result.returncode == 2
    line = next(x for x in result.stderr.splitlines() if "ldap.servers[0].port" in x)
    # The whole object may hold its bind password: the --set is named, its value is not.
    assert line.endswith("[--set ldap=(hidden)]"), line


PASSWORD = "S3cretPassw0rd"
#: Pieces of the password a partial echo would still show.
PASSWORD_PARTS = ("S3cret", "Passw0rd", "cretPass")


def test_a_set_of_a_secret_key_never_shows_its_value(tmp_path, plan):
    ldap = json.dumps({"provider": "openldap", "servers": [{"host": "dc1.example.com", "port": 0}],
                       "baseDn": "DC=example,DC=com", "bindPrincipal": "CN=x,DC=example,DC=com",
                       "bindPassword": PASSWORD})
    for args in (["--set", f"ldap={ldap}"], ["--set", f"ldap={ldap}", "--json"],
                 ["--set", f"ldap={ldap[:-1]}"], ["--set", f"ldap={ldap[:-1]}", "--json"],
                 ["--set", f"ldap.bindPassword={PASSWORD}"], ["--set", f"ldap[0]={PASSWORD}"],
                 ["--set", f"aws:secretKey={PASSWORD}"]):
        result = plan(project(tmp_path), *args)
        shown = result.stdout + result.stderr
        assert not [part for part in PASSWORD_PARTS if part in shown], (args, shown)
    result = plan(project(tmp_path), "--set", f"ldap={ldap}", "--json")
    problems = json.loads(result.stdout)["problems"]
    assert problems and {p["from"] for p in problems} == {"--set ldap=(hidden)"}
    result = plan(project(tmp_path), "--set", f"ldap={ldap}")
    lines = [x for x in result.stderr.splitlines() if x.startswith("  - ")]
    assert lines and all(x.endswith("[--set ldap=(hidden)]") for x in lines), lines


def test_a_key_written_twice_is_refused_with_both_lines(tmp_path, plan):
    body = ("  cloudstack-ec2:hostInstanceType: m5zn.metal\n"
            "  cloudstack-ec2:hostCount: 2\n"
            "  cloudstack-ec2:hostInstanceType: c5.metal\n")
    with pytest.raises(StackConfigError, match=r"cloudstack-ec2:hostInstanceType is written twice, on lines 5 and 7: one of the two values would be lost"):
        read_stack(project(tmp_path, body), "t")
    result = plan(project(tmp_path, body))
    assert result.returncode == 2 and "cloudstack-ec2:hostInstanceType is written twice, on lines 5 and 7: one of the two values would be lost" in result.stderr


def test_a_field_written_twice_inside_an_object_is_refused(tmp_path):
    body = ("  cloudstack-ec2:ldap:\n"
            "    baseDn: DC=a,DC=com\n"
            "    servers:\n"
            "      - host: dc1.example.com\n"
            "        host: dc2.example.com\n")
    with pytest.raises(StackConfigError, match=r"cloudstack-ec2:ldap\.servers\[0\]\.host is written twice, on lines 8 and 9"):
        read_stack(project(tmp_path, body), "t")


def test_a_list_key_given_a_scalar_shows_an_example_of_its_own_entries(tmp_path, plan):
    result = plan(project(tmp_path, "  cloudstack-ec2:vmForwards: tcp:2222:10.100.128.5:22@203.0.113.0/24\n"))
    assert result.returncode == 2
    line = next(x for x in result.stderr.splitlines() if "cloudstack-ec2:vmForwards" in x)
    assert 'e.g. ["tcp:2222:10.100.128.5:22@203.0.113.0/24"]' in line and "10.0.0.0/8" not in line, line


def test_every_list_key_has_an_example_of_a_list():
    from components.model.settings import KEYS

    lists = [k for k in KEYS if k.kind == "list"]
    assert lists and all(k.example and isinstance(json.loads(k.example), list) for k in lists), \
        [k.name for k in lists if not k.example]
