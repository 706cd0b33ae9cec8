"""Hardening, least privilege, secrets, dependencies and stack outputs of the whole program."""

from __future__ import annotations

import json
import re

import pytest

from components.model import catalog
from components import boot
from components.cli import offline
from components.model.settings import NAMESPACE
from components.resources.node import SESSION_MANAGER_ACTIONS

ROLE = "aws:iam/role:Role"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
ATTACHMENT = "aws:iam/rolePolicyAttachment:RolePolicyAttachment"
PROFILE = "aws:iam/instanceProfile:InstanceProfile"
SECRET = "aws:secretsmanager/secret:Secret"
SECRET_VERSION = "aws:secretsmanager/secretVersion:SecretVersion"
RANDOM_PASSWORD = "random:index/randomPassword:RandomPassword"
SG = "aws:ec2/securityGroup:SecurityGroup"
RDS = "aws:rds/instance:Instance"
FS = "aws:efs/fileSystem:FileSystem"
MOUNT = "aws:efs/mountTarget:MountTarget"
ROLES = ("router", "management", "kvm-host")
ACCOUNT_REGION = "us-east-1:123456789012"
LOG_GROUP = "aws:cloudwatch/logGroup:LogGroup"


def ssm_arn(dev, which: str) -> str:
    """ARN of one of the deployment's parameters (under its per-deployment root)."""
    root = dev.outputs["deployment"]["parameterRoot"]
    assert re.fullmatch(r"/cloudstack-ec2/dev/[0-9a-f]{8}", root), root
    return f"arn:aws:ssm:{ACCOUNT_REGION}:parameter{root}/{which}"


def statements(doc: dict) -> list[tuple[frozenset, frozenset]]:
    out = []
    for s in doc["Statement"]:
        assert s["Effect"] == "Allow"
        assert "NotAction" not in s and "NotResource" not in s
        actions = [s["Action"]] if isinstance(s["Action"], str) else s["Action"]
        resources = [s["Resource"]] if isinstance(s["Resource"], str) else s["Resource"]
        out.append((frozenset(actions), frozenset(resources)))
    return out


def boot_object_grant(dev, role: str, partition: str = "aws") -> tuple[str, str]:
    """s3:GetObject on `role`'s own script object in the boot-script bucket (docs/boot.md)."""
    bucket = dev.get("aws:s3/bucket:Bucket", "boot-scripts").state["bucket"]
    return ("s3:GetObject", f"arn:{partition}:s3:::{bucket}/{boot.boot_object(role).key}")


def library_grant(dev) -> tuple[str, str]:
    """s3:GetObject on the shared library's second part (userdata/library.sh), which stage 2
    of every role fetches before its script (docs/boot.md)."""
    return boot_object_grant(dev, boot.LIBRARY_OBJECT)


def packages_grant(dev, action: str) -> tuple[str, str]:
    """`action` on the KVM hosts' packages the first management server keeps in the boot-script
    bucket (`packages/<version>/<package>.deb`)."""
    bucket = dev.get("aws:s3/bucket:Bucket", "boot-scripts").state["bucket"]
    return (action, f"arn:aws:s3:::{bucket}/packages/*")


def grants(doc: dict) -> set[tuple[str, str]]:
    """(action, resource) pairs the document allows."""
    return {(a, r) for actions, resources in statements(doc) for a in actions for r in resources}


def log_grants(dev, role: str) -> set[tuple[str, str]]:
    """What `role`'s instances may do for CloudWatch (components/model/monitoring.py): write
    streams of its own log group and of the sessions group, list log groups (the SSM agent
    checks the sessions group's encryption), read its agent configuration, put metrics
    (limited by the namespace condition, test_monitoring.py), fetch the agent's installer."""
    group = lambda r: f"arn:aws:logs:{ACCOUNT_REGION}:log-group:{dev.get(LOG_GROUP, f'logs-{r}').inputs['name']}"  # noqa: E731
    arns = [group(role), group("sessions")]
    config = dev.get("aws:ssm/parameter:Parameter", f"logs-agent-{role}").state["arn"]
    return ({(a, r) for a in ("logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams")
             for r in (*arns, *(f"{arn}:log-stream:*" for arn in arns))}
            | {("logs:DescribeLogGroups", f"arn:aws:logs:{ACCOUNT_REGION}:log-group:*"),
               ("ssm:GetParameter", config), ("cloudwatch:PutMetricData", "*"),
               # The agent's installer, which every role's boot runs.
               boot_object_grant(dev, boot.AGENT_OBJECT)})


# --- every instance ------------------------------------------------------------------------

def test_every_instance_requires_imdsv2(dev):
    assert len(dev.instances()) == 5
    for inst in dev.instances():
        md = inst.inputs["metadataOptions"]
        assert md["httpTokens"] == "required", inst.name
        assert md["httpEndpoint"] == "enabled", inst.name
        # One hop: a container or VM behind the instance cannot reach its credentials.
        assert md["httpPutResponseHopLimit"] == 1, inst.name


def test_every_instance_has_an_encrypted_root_volume_no_key_pair_and_a_profile(dev):
    profiles = {p.state["name"]: p for p in dev.of_type(PROFILE)}
    for inst in dev.instances():
        assert inst.inputs["rootBlockDevice"]["encrypted"] is True, inst.name
        assert not inst.inputs.get("keyName"), f"{inst.name} has a key pair"
        assert inst.inputs["iamInstanceProfile"] in profiles, inst.name
    assert {p for p in profiles} == {f"{r}-profile" for r in ROLES}


def test_no_security_group_admits_ssh(dev):
    for group in dev.of_type(SG):
        for rule in dev.ingress(group):
            low, high = dev.ports(rule)
            assert rule["protocol"] not in ("-1", "all"), (group.name, rule)
            assert not (rule["protocol"] in ("tcp", "6") and low <= 22 <= high), (group.name, rule)
    standalone = [r for r in dev.registrations if "securityGroupRule" in r.type or "IngressRule" in r.type]
    assert standalone == []


def test_instances_ignore_ami_and_user_data_changes(dev):
    # A newer Ubuntu AMI or an edited boot script must never replace a running host.
    for inst in dev.instances():
        ignored = set(inst.ignore_changes)
        assert {"ami", "userData", "userDataBase64"} <= ignored, (inst.name, ignored)


def test_a_new_ami_changes_no_input_that_is_not_ignored(deploy, dev):
    newer = deploy(amiId="ami-0123456789abcdef0")
    for inst in dev.instances():
        after = newer.instance(inst.name)
        ignored = set(inst.ignore_changes)
        changed = {k for k in inst.inputs.keys() | after.inputs.keys() if inst.inputs.get(k) != after.inputs.get(k)}
        assert changed, "the AMI override had no effect: the test proves nothing"
        assert changed <= ignored, (inst.name, changed - ignored)


# --- least privilege -----------------------------------------------------------------------

def test_roles_are_for_ec2_only_with_no_managed_policy(dev):
    roles = {r.name: r for r in dev.of_type(ROLE)}
    assert set(roles) == {f"{r}-role" for r in ROLES}
    for role in roles.values():
        trust = json.loads(role.inputs["assumeRolePolicy"])
        assert [s["Principal"] for s in trust["Statement"]] == [{"Service": "ec2.amazonaws.com"}]
    # AmazonSSMManagedInstanceCore would grant ssm:GetParameter on every parameter.
    assert dev.of_type(ATTACHMENT) == []


def test_every_role_gets_exactly_the_session_manager_permissions(dev):
    for role in ROLES:
        doc = dev.policy_document(role, "session-manager")
        allowed = [s for s in doc["Statement"] if s["Effect"] == "Allow"]
        assert statements({"Statement": allowed}) == [(frozenset(SESSION_MANAGER_ACTIONS), frozenset({"*"}))]
        # ... and no role may attach a parameter policy to a parameter it may write: an
        # Expiration policy would have SSM delete it later (the bootstrap marker, the anchors,
        # another host's readiness), which no boot script does.
        denied = [s for s in doc["Statement"] if s["Effect"] != "Allow"]
        assert denied == [{"Effect": "Deny", "Action": "ssm:PutParameter", "Resource": "*",
                           "Condition": {"StringEquals": {"ssm:Policies": "true"}}}]
    assert set(SESSION_MANAGER_ACTIONS) == {
        "ssm:UpdateInstanceInformation", "ssmmessages:CreateControlChannel", "ssmmessages:CreateDataChannel",
        "ssmmessages:OpenControlChannel", "ssmmessages:OpenDataChannel"}


def test_router_may_only_read_its_forwards(dev):
    # Session Manager, the parameters of the forwards it polls (the UI/API's, vmForwards
    # and the console's), and its own boot script.
    # A set: the two policies register in whichever order their inputs resolve.
    assert {p.name for p in dev.of_type(ROLE_POLICY) if p.name.startswith("router")} == \
        {"router-session-manager", "router-policy"}
    assert grants(dev.policy_document("router")) == {("ssm:GetParameter", ssm_arn(dev, "router-forwards")),
                                                     ("ssm:GetParameter", ssm_arn(dev, "console-forwards")),
                                                     ("ssm:GetParameter", ssm_arn(dev, "ui-forward")),
                                                     boot_object_grant(dev, "router"), library_grant(dev)} \
        | log_grants(dev, "router")


def test_kvm_hosts_may_only_read_the_management_ssh_key_and_version(dev):
    doc = dev.policy_document("kvm-host")
    # ... and write the deployment's readiness parameters: the hosts share this role, so
    # one `host-ready/*` (not one ARN per host, which outgrew IAM's 10,240 characters at
    # 98 hosts) under this deployment's root and nothing else.
    ready = {("ssm:PutParameter", ssm_arn(dev, "host-ready/*"))}
    # GetParameterHistory: it reports the KMS key of each version (the trust anchor check).
    assert grants(doc) == {("ssm:GetParameterHistory", ssm_arn(dev, "management-ssh-public-key")),
                           ("ssm:GetParameterHistory", ssm_arn(dev, "cloudstack-version")),
                           boot_object_grant(dev, "kvm-host"), library_grant(dev), packages_grant(dev, "s3:GetObject")} \
        | ready | log_grants(dev, "kvm-host")


def console_forwards_grants(dev, api_keys: str) -> set[tuple[str, str]]:
    """The console forwards publisher's (userdata/console-forwards.sh, a timer outside the
    bootstrap): the API keys, read only, and the one parameter the router polls, the very
    one the router reads (its name from naming.PARAM_CONSOLE_FORWARDS under the root)."""
    parameter = ssm_arn(dev, "console-forwards")
    router = dev.get("aws:ssm/parameter:Parameter", "router-console-forwards")
    assert parameter.endswith(f"parameter{router.inputs['name']}")
    return {("secretsmanager:GetSecretValue", api_keys), ("ssm:GetParameter", parameter),
            ("ssm:PutParameter", parameter)}


def test_management_server_grants_are_exact(dev):
    arn = {n: dev.get(SECRET, f"management-{n}").state["arn"] for n in
           ("db-cloud", "cloudstack-keys", "admin", "api-keys")}
    assert len(set(arn.values())) == 4
    ssh_key, version = ssm_arn(dev, "management-ssh-public-key"), ssm_arn(dev, "cloudstack-version")
    # Every boot: the `cloud` user and the keys of db.properties, never the admin's login.
    steady = {arn["db-cloud"], arn["cloudstack-keys"]}
    expected = (
        {("secretsmanager:GetSecretValue", a) for a in steady}
        | {("secretsmanager:DescribeSecret", a) for a in steady}
        | {("ssm:GetParameter", ssm_arn(dev, p)) for p in ("db-endpoint", "efs-dns", "bootstrap/done", "ui-forward")}
        | {("ssm:GetParameterHistory", ssh_key), ("ssm:PutParameter", ssh_key)}
        | {("ssm:GetParameterHistory", version), ("ssm:PutParameter", version)}
        | {boot_object_grant(dev, "management"), library_grant(dev), packages_grant(dev, "s3:PutObject")}
        | console_forwards_grants(dev, arn["api-keys"])
        | log_grants(dev, "management")
    )
    assert grants(dev.policy_document("management")) == expected
    # The RDS-managed master secret: read only, in a policy of its own that the instance
    # does not wait for (RDS names the secret when it creates the database).
    master = dev.outputs["secretArns"]["db_master"]
    assert grants(dev.policy_document("management", "db-master-read")) == {
        ("secretsmanager:GetSecretValue", master), ("secretsmanager:DescribeSecret", master)}
    parameter = dev.get("aws:ssm/parameter:Parameter", "management-db-master-secret")
    assert dev.unwrap_secret(parameter.inputs["value"]) == master
    assert parameter.inputs["name"].endswith("/db-master-secret")
    # Published only once the grant exists: the boot reads the secret as soon as it sees the ARN.
    assert (ROLE_POLICY, "management-db-master-read") in dev.depends_on_names(parameter)


def test_management_server_bootstrap_grants_are_exact_and_removable_by_the_server_only(dev):
    arn = {n: dev.get(SECRET, f"management-{n}").state["arn"] for n in
           ("db-cloud", "cloudstack-keys", "admin", "api-keys")}
    role = dev.get(ROLE, "management-role").state["arn"]
    assert grants(dev.policy_document("management", "bootstrap")) == (
        {("secretsmanager:GetSecretValue", arn["admin"]), ("secretsmanager:DescribeSecret", arn["admin"]),
         ("secretsmanager:GetSecretValue", arn["api-keys"]), ("secretsmanager:DescribeSecret", arn["api-keys"])}
        # Each secret's first value is generated and stored by the first management server.
        | {("secretsmanager:PutSecretValue", a) for a in arn.values()}
        | {("ssm:GetParameter", ssm_arn(dev, "db-master-secret")),
           ("ssm:PutParameter", ssm_arn(dev, "bootstrap/done")),
           # Its own role only: the server drops these two policies once bootstrapped.
           ("iam:DeleteRolePolicy", role)})
    # Fixed names: the boot deletes them by name (CSEC2_BOOTSTRAP_POLICIES).
    names = {p.name: p.inputs.get("name") for p in dev.of_type(ROLE_POLICY)}
    assert names["management-bootstrap"] == "cloudstack-ec2-bootstrap"
    assert names["management-db-master-read"] == "cloudstack-ec2-bootstrap-db-master"
    # The instance starts with them (its first boot bootstraps).
    assert (ROLE_POLICY, "management-bootstrap") in dev.depends_on_names(dev.instance("management"))
    assert dev.outputs["deployment"]["bootstrapped"] is False


def later_run(dev, existing_parameters=(), **recorded):
    from components.program import build

    root = dev.outputs["deployment"]["parameterRoot"]
    previous = {"deployment": {**dev.outputs["deployment"], **recorded}}
    config = dict(dev.config)
    return offline.run_offline(build, config, project="cloudstack-ec2", stack="dev", region="us-east-1",
                               subnet_cidrs={"cloudstack": str(config[f"{NAMESPACE}:cloudstackSubnetCidr"])},
                               previous_outputs=previous,
                               existing_parameters=[f"{root}/{p}" for p in existing_parameters])


def bootstrap_policies(run) -> set[str]:
    return {r.name for r in run.of_type(ROLE_POLICY)
            if r.name in ("management-bootstrap", "management-db-master-read")}


def test_bootstrap_grants_stay_until_the_server_marks_the_cloud_bootstrapped(dev):
    run = later_run(dev)
    assert bootstrap_policies(run) == {"management-bootstrap", "management-db-master-read"}
    assert run.outputs["deployment"]["bootstrapped"] is False


def test_a_bootstrapped_cloud_gets_no_bootstrap_grants_back(dev):
    # The marker the first management server wrote before it deleted the policies itself:
    # a later `pulumi up` does not declare them (its delete of a policy already gone succeeds).
    marked = later_run(dev, existing_parameters=["bootstrap/done"])
    assert bootstrap_policies(marked) == set()
    assert marked.outputs["deployment"]["bootstrapped"] is True
    # Recorded: the run after it keeps them away even if the marker was deleted since.
    assert bootstrap_policies(later_run(dev, bootstrapped=True)) == set()
    # A parameter of the same path with another name is not the marker.
    assert bootstrap_policies(later_run(dev, existing_parameters=["bootstrap/other"])) != set()


def test_no_wildcard_in_any_inline_policy_but_session_manager(dev):
    policies = [p for p in dev.of_type(ROLE_POLICY) if not p.name.endswith("-session-manager")]
    assert len(policies) == 5  # management server (its bootstrap and master-secret read), KVM hosts, router
    # The exceptions: the hosts' shared role writes `<root>/host-ready/*` (readiness); the
    # agent's packages, `packages/*` (one directory per version), written by the management
    # server, read by the hosts.
    host_ready = ssm_arn(dev, "host-ready/*")
    packages = {packages_grant(dev, a)[1] for a in ("s3:GetObject", "s3:PutObject")}
    for p in policies:
        # The CloudWatch grants' wildcards: streams of the role's own log groups (the agent
        # names them per instance), the listing of log groups, PutMetricData (no resource
        # type: its namespace condition limits it).
        logs = {r for a, r in log_grants(dev, p.name.removesuffix("-policy"))} if p.name.endswith("-policy") else set()
        for actions, resources in statements(json.loads(p.inputs["policy"])):
            assert all("*" not in a for a in actions), (p.name, actions)
            assert all("*" not in r for r in resources if (p.name, actions, r) != (
                "kvm-host-policy", frozenset({"ssm:PutParameter"}), host_ready) and r not in logs | packages), \
                (p.name, resources)


def test_instances_wait_for_their_role_policies(dev):
    # The boot scripts read secrets and parameters at once: an instance launched
    # before its inline policy exists starts with AccessDenied.
    for inst in dev.instances():
        prefix = "kvm-host" if inst.name.startswith("kvm-host-") else inst.name
        deps = dev.depends_on_names(inst)
        assert (ROLE_POLICY, f"{prefix}-session-manager") in deps, inst.name
        if prefix != "router":
            assert (ROLE_POLICY, f"{prefix}-policy") in deps, inst.name


# --- trust anchors: the management server's SSH key and version ---------------------------

KMS_KEY = "aws:kms/key:Key"
KMS_GRANT = "aws:kms/grant:Grant"
ANCHORS = ("management-ssh-public-key", "cloudstack-version")


def anchor_key(dev):
    return dev.get(KMS_KEY, "management-anchor-key")


def anchor_statements(dev) -> list[dict]:
    key = anchor_key(dev)
    return json.loads(key.inputs["policy"])["Statement"]


def actions_of(statement) -> set[str]:
    return {statement["Action"]} if isinstance(statement["Action"], str) else set(statement["Action"])


def test_only_the_management_role_may_encrypt_with_the_anchor_key(dev):
    management = dev.get(ROLE, "management-role").state["arn"]
    root = "arn:aws:iam::123456789012:root"
    by_principal: dict[str, set[str]] = {}
    for s in anchor_statements(dev):
        assert s["Effect"] == "Allow" and "NotAction" not in s and "NotPrincipal" not in s
        by_principal.setdefault(s["Principal"]["AWS"], set()).update(actions_of(s))
    assert set(by_principal) == {root, management}
    # Encrypting is what proves a value came from the management server: nobody else,
    # not even the account's administrators through IAM, may (no kms:* or kms:Encrypt*).
    assert by_principal[management] == {"kms:Encrypt", "kms:Decrypt"}
    assert not {a for a in by_principal[root] if re.search(r"\*|Encrypt|Decrypt|GenerateDataKey|ReEncrypt", a)}
    # ... and the management role only through SSM.
    [writer] = [s for s in anchor_statements(dev) if s["Principal"]["AWS"] == management]
    assert writer["Condition"] == {"StringEquals": {"kms:ViaService": "ssm.us-east-1.amazonaws.com"}}
    # Grants the administrators may create give Decrypt and nothing else.
    [grants_] = [s for s in anchor_statements(dev) if "kms:CreateGrant" in actions_of(s)]
    assert grants_["Condition"] == {"ForAllValues:StringEquals": {"kms:GrantOperations": ["Decrypt"]}}


def test_kvm_hosts_may_only_decrypt_with_the_anchor_key(dev):
    key = anchor_key(dev)
    [grant] = dev.of_type(KMS_GRANT)
    assert grant.inputs["keyId"] == key.state["arn"]
    assert grant.inputs["granteePrincipal"] == dev.get(ROLE, "kvm-host-role").state["arn"]
    assert grant.inputs["operations"] == ["Decrypt"]
    assert not any("kms:" in a for actions, _ in statements(dev.policy_document("kvm-host")) for a in actions)
    # The hosts read the anchors at once: they launch after the grant.
    for inst in dev.instances():
        if inst.name.startswith("kvm-host-"):
            assert (KMS_GRANT, "kvm-host-anchor-read") in dev.depends_on_names(inst), inst.name


def test_the_anchors_are_secure_strings_under_the_anchor_key_never_pulumi_strings(dev):
    # Pulumi creates no String placeholder the hosts would have to trust: the management
    # server writes them as SecureStrings under the key, and both roles are told which key.
    key = anchor_key(dev)
    names = {r.inputs.get("name", "") for r in dev.of_type("aws:ssm/parameter:Parameter")}
    assert not {n for n in names if n.endswith(ANCHORS)}
    envs = [dev.boot_env(i) for i in dev.instances() if i.name == "management" or i.name.startswith("kvm-host-")]
    assert len(envs) == len(dev.instances()) - 1   # all but the router
    assert all(env["CSEC2_ANCHOR_KEY_ARN"] == key.state["arn"] for env in envs)
    assert key.inputs["enableKeyRotation"] is True


# --- secrets -------------------------------------------------------------------------------

def test_no_secret_value_is_generated_by_the_program(dev):
    # Whoever can read (or decrypt) the stack's state could export them: RDS generates
    # the master password, the first management server all of CloudStack's secrets.
    assert dev.of_type(RANDOM_PASSWORD) == []
    assert dev.of_type(SECRET_VERSION) == []
    db = dev.get(RDS, "database-mysql")
    assert db.inputs["manageMasterUserPassword"] is True and "password" not in db.inputs


def test_no_input_is_a_secret_so_the_state_holds_none(dev):
    assert dev.secret_inputs() == []


def test_no_secret_value_in_any_user_data(dev):
    # The management server's boot.env names its secrets (ARNs), nothing else of them.
    env = dev.boot_env(dev.instance("management"))
    named = {k: v for k, v in env.items() if k.startswith("CSEC2_SECRET_")}
    assert set(named) == {"CSEC2_SECRET_DB_CLOUD", "CSEC2_SECRET_CLOUDSTACK_KEYS", "CSEC2_SECRET_ADMIN",
                          "CSEC2_SECRET_API_KEYS"}
    assert all(v.startswith("arn:aws:secretsmanager:") for v in named.values())
    for inst in dev.instances():
        assert not any(word in dev.boot_script(inst).lower() for word in ("password=", "secretkey=")), inst.name


def test_stack_outputs_carry_secret_arns_only(dev):
    arns = dev.outputs["secretArns"]
    assert set(arns) == {"db_master", "db_cloud", "cloudstack_keys", "admin", "api_keys"}
    # The stack's own secrets, and the one RDS created for the master user.
    by_arn = {s.state["arn"] for s in dev.of_type(SECRET)} | {
        s["secretArn"] for s in dev.get(RDS, "database-mysql").state["masterUserSecrets"]}
    for key, arn in arns.items():
        assert arn.startswith("arn:aws:secretsmanager:"), key
        assert arn in by_arn, key


# --- no needless serialization -------------------------------------------------------------

@pytest.mark.parametrize("name", ["management", "kvm-host-0", "kvm-host-1", "kvm-host-2"])
def test_instances_do_not_wait_for_the_database_or_efs(dev, name):
    inst = dev.instance(name)
    deps = dev.depends_on_names(inst)
    slow = {(RDS, "database-mysql"), (FS, "storage-fs"), (MOUNT, "storage-mount")}
    assert not deps & slow, f"{name} waits for {deps & slow}"
    assert not any(t.startswith("aws:rds/") or t.startswith("aws:efs/") for t, _ in deps), deps
    # The checks see real edges: the instance does wait for its subnet and profile.
    assert ("aws:ec2/subnet:Subnet", "underlay-cloudstack") in deps
    assert (PROFILE, f"{'kvm-host' if name.startswith('kvm') else name}-profile") in deps


def test_management_server_may_wait_for_the_master_secret_only(dev):
    deps = dev.depends_on_names(dev.instance("management"))
    database_side = {n for t, n in deps if n.startswith("database-")}
    assert database_side == set(), database_side
    assert (ROLE_POLICY, "management-db-master-read") not in deps


def test_storage_registration_waits_for_the_mount_target(dev):
    # CloudStack mounts the EFS share when primary/secondary storage is added: the
    # DNS name only resolves once the mount target exists.
    for name in ("registration-primary-storage", "registration-image-store"):
        reg = next(r for r in dev.registrations if r.name == name)
        assert (MOUNT, "storage-mount") in dev.depends_on_names(reg), name


# --- stack outputs -------------------------------------------------------------------------

def test_stack_outputs(dev):
    o = dev.outputs
    public_ip = dev.get("aws:ec2/eip:Eip", "router-eip").state["public_ip"]
    assert o["uiUrl"] == f"http://{public_ip}:8080/client/"
    assert o["apiEndpoint"] == f"http://{public_ip}:8080/client/api"
    assert o["zoneName"] == "zone1"
    plan = dev.settings.ip_plan()
    assert o["router"]["overlayIp"] == str(plan.router)
    assert o["router"]["privateIp"] == dev.instance("router").state["private_ip"]
    assert o["managementServer"]["overlayIp"] == str(plan.management_servers[0])
    assert o["managementServer"]["privateIp"] == dev.instance("management").state["private_ip"]
    for i, host in enumerate(dev.host_instances()):
        assert o["hosts"][str(i)]["overlayIp"] == str(plan.hosts[i])
        assert o["hosts"][str(i)]["privateIp"] == host.state["private_ip"]
    assert o["estimatedHourlyCostUsd"] == round(catalog.estimate(dev.settings).hourly, 2)
    assert o["estimatedHourlyCostUsd"] > 0


def test_api_keys_secret_starts_without_a_value(dev):
    # The management server writes it once its API is up; the registration waits
    # for that version. A value written by Pulumi would be a stale or fake key.
    # The same for every secret the stack creates: the first management server
    # generates the values (userdata/management-server.sh first_secret_value).
    assert {s.name for s in dev.of_type(SECRET)} == {
        "management-db-cloud", "management-cloudstack-keys", "management-admin", "management-api-keys"}
    assert dev.of_type("aws:secretsmanager/secretVersion:SecretVersion") == []
