#!/usr/bin/env -S python3 -S
"""Recording stand-in for the system commands the boot scripts call.

Installed in a bin directory under each command's name (symlinks); behaves by
argv[0]. Every call is appended to $FAKE_STATE/calls.jsonl; the world it
pretends to be (SSM parameters, secrets, the database, the CloudStack API,
systemd units, packages, mounts) lives in $FAKE_STATE/state.json, which the
tests seed and inspect. Files the real commands would write go under
$CSEC2_ROOT.
"""

import base64
import fcntl
import fnmatch
import gzip
import ipaddress
import itertools
import json
import os
import re
import sys
import time

NAME = os.path.basename(sys.argv[0])
ARGS = sys.argv[1:]
STATE_DIR = os.environ["FAKE_STATE"]
ROOT = os.environ.get("CSEC2_ROOT", "")
STATE_FILE = os.path.join(STATE_DIR, "state.json")


def load():
    with open(STATE_FILE) as f:
        return json.load(f)


def save(state):
    tmp = STATE_FILE + ".tmp"
    with open(tmp, "w") as f:
        json.dump(state, f, indent=1, sort_keys=True)
    os.replace(tmp, STATE_FILE)


def record(extra=None):
    entry = {"cmd": NAME, "args": ARGS}
    if extra:
        entry.update(extra)
    with open(os.path.join(STATE_DIR, "calls.jsonl"), "a") as f:
        f.write(json.dumps(entry) + "\n")


def opt(args, name, default=None):
    for i, a in enumerate(args):
        if a == name and i + 1 < len(args):
            return args[i + 1]
        if a.startswith(name + "="):
            return a.split("=", 1)[1]
    return default


def read_value(value):
    if value.startswith("file://"):
        with open(value[len("file://"):]) as f:
            return f.read().strip()
    return value


def aws(state):
    args = list(ARGS)
    # drop global options
    for flag in ("--region", "--cli-connect-timeout", "--cli-read-timeout", "--query", "--output"):
        while flag in args:
            i = args.index(flag)
            del args[i:i + 2]
    service, op = args[0], args[1]
    denied = iam_denied(state, service, op, opt(args, "--secret-id") or opt(args, "--name"))
    if denied:
        sys.stderr.write(denied)
        return 254
    if service == "iam" and op == "delete-role-policy":
        return iam_delete_role_policy(state, args)
    if service == "ssm" and op == "get-parameter":
        name = opt(args, "--name")
        if name not in state["ssm"]:
            sys.stderr.write(f"An error occurred (ParameterNotFound) when calling the GetParameter operation: {name}\n")
            return 254
        meta = state["ssm_meta"].get(name, {"Type": "String"})
        # A SecureString comes back encrypted unless decryption is asked for (GetParameter, WithDecryption).
        print(state["ssm"][name] if meta["Type"] != "SecureString" or "--with-decryption" in args
              else "AQICAHencrypted==")
        return 0
    if service == "ssm" and op == "get-parameter-history":
        return ssm_history(state, args)
    if service == "ssm" and op == "put-parameter":
        return ssm_put(state, args)
    if service == "secretsmanager" and op in ("get-secret-value", "put-secret-value"):
        return secretsmanager(state, op, args)
    if service == "s3" and op == "cp":
        return s3_cp(state, args[2:])
    if service == "ec2":
        return ec2(state, op, args[2:])
    sys.stderr.write(f"fake aws: unsupported {args}\n")
    return 2


def ec2(state, op, args):
    """The EC2 calls of the router pair's takeover, on state["ec2"]: "route_tables" {id: {cidr:
    eni}}, "addresses" {allocation: {"eni", "private"}} and "enis" {eni: [its private addresses]};
    "failures" {op: [error, ...]} fail the next calls of `op`, one each. The rules are EC2's
    (EC2 API Reference): ReplaceRoute replaces only an existing route (InvalidRoute.NotFound
    otherwise) and needs an existing interface; AssociateAddress moves an address already
    associated only with AllowReassociation (Resource.AlreadyAssociated), and the private
    address must be one of the interface's (InvalidParameterValue)."""
    world = state["ec2"]
    failures = world.get("failures", {}).get(op, [])
    if failures:
        error = failures.pop(0)
        sys.stderr.write(f"An error occurred ({error}) when calling the {op} operation: scripted\n")
        return 254
    if op in world.get("denied", ()):
        sys.stderr.write(f"An error occurred (UnauthorizedOperation) when calling the {op} operation:"
                         " You are not authorized to perform this operation.\n")
        return 254
    if "--dry-run" in args:
        # EC2 API Reference, common parameter DryRun: the permission is checked, nothing changes.
        sys.stderr.write(f"An error occurred (DryRunOperation) when calling the {op} operation:"
                         " Request would have succeeded, but DryRun flag is set.\n")
        return 254
    eni = opt(args, "--network-interface-id")
    if eni is not None and eni not in world["enis"]:
        sys.stderr.write(f"An error occurred (InvalidNetworkInterfaceID.NotFound) when calling the {op} operation:"
                         f" The networkInterface ID '{eni}' does not exist\n")
        return 254
    if op == "replace-route":
        table, cidr = world["route_tables"].get(opt(args, "--route-table-id")), opt(args, "--destination-cidr-block")
        if table is None or cidr not in table:
            sys.stderr.write("An error occurred (InvalidRoute.NotFound) when calling the ReplaceRoute operation:"
                             f" no route with destination-cidr-block {cidr}\n")
            return 254
        table[cidr] = eni
        return 0
    if op == "associate-address":
        address = world["addresses"][opt(args, "--allocation-id")]
        private = opt(args, "--private-ip-address")
        if private not in world["enis"][eni]:
            sys.stderr.write("An error occurred (InvalidParameterValue) when calling the AssociateAddress operation:"
                             f" {private} is not an address of {eni}\n")
            return 254
        if address.get("eni") not in (None, eni) and "--allow-reassociation" not in args:
            sys.stderr.write("An error occurred (Resource.AlreadyAssociated) when calling the AssociateAddress"
                             " operation: the address is already associated\n")
            return 254
        address.update(eni=eni, private=private)
        print("eipassoc-0123456789abcdef0")
        return 0
    if op == "describe-route-tables":
        cidr = re.search(r"DestinationCidrBlock=='([^']+)'", " ".join(ARGS)).group(1)
        for table in args[args.index("--route-table-ids") + 1:]:
            if table.startswith("--"):
                break
            print(f"{table}\t{world['route_tables'][table].get(cidr) or 'None'}")
        return 0
    if op == "describe-addresses":
        # --allocation-ids takes several; one row each: allocation, interface, private address.
        start = args.index("--allocation-ids") + 1
        for allocation in itertools.takewhile(lambda a: not a.startswith("--"), args[start:]):
            address = world["addresses"][allocation]
            print(f"{allocation}\t{address.get('eni') or 'None'}\t{address.get('private') or 'None'}")
        return 0
    if op == "describe-instances":
        # "launched" {id: {"private", "vpc", "state", "user_data"}}: the instances matching every
        # filter (Name=private-ip-address|vpc-id|instance-state-name,Values=a,b), IDs tab-separated.
        wanted = {}
        for spec in args[args.index("--filters") + 1:] if "--filters" in args else []:
            if spec.startswith("--"):
                break
            name, values = re.fullmatch(r"Name=([a-z-]+),Values=(.*)", spec).groups()
            wanted[{"private-ip-address": "private", "vpc-id": "vpc", "instance-state-name": "state"}[name]] = \
                values.split(",")
        print("\t".join(i for i, inst in world.get("launched", {}).items()
                        if all(inst[key] in values for key, values in wanted.items())))
        return 0
    if op == "describe-instance-attribute":
        # userData: the base64 of the bytes the instance was launched with (EC2 API Reference).
        inst = world.get("launched", {}).get(opt(args, "--instance-id"))
        if inst is None:
            sys.stderr.write("An error occurred (InvalidInstanceID.NotFound) when calling the"
                             " DescribeInstanceAttribute operation\n")
            return 254
        print(base64.b64encode(gzip.compress(inst["user_data"].encode())).decode())
        return 0
    if op == "describe-network-interfaces":
        # The instance an interface is attached to ("attachments" {eni: instance id}).
        print(world.get("attachments", {}).get(opt(args, "--network-interface-ids")) or "None")
        return 0
    if op == "describe-instance-status":
        # "instances" {id: [state, system status, instance status]}; with
        # IncludeAllInstances a stopped instance is listed too (EC2 API Reference).
        print("\t".join(world.get("instances", {}).get(opt(args, "--instance-ids"), ["None"])))
        return 0
    sys.stderr.write(f"fake aws: unsupported ec2 {op}\n")
    return 2


def ip_addr_show(state):
    """`ip -4 -o addr show dev DEV` and `ip -4 -o addr show to ADDR/32` over state["ip_addresses"]
    ([device, address/prefix] pairs), in iproute2's one-line format."""
    dev, to = opt(ARGS, "dev"), opt(ARGS, "to")
    for i, (device, cidr) in enumerate(state.get("ip_addresses", [])):
        if (dev is None or device == dev) and (to is None or cidr.split("/")[0] == to.split("/")[0]):
            print(f"{i + 2}: {device}    inet {cidr} scope global {device}\\       valid_lft forever preferred_lft forever")
    return 0


def keepalived(state):
    """`keepalived --config-test -f FILE`: like Debian's keepalived 2.2.7, refuses a configuration
    naming an interface the machine does not have (state["ip_addresses"]), as the VRRP
    interface, a virtual address's `dev` or a tracked interface ("Non-existent interface
    specified in configuration"), and one without a vrrp_instance."""
    with open(opt(ARGS, "-f")) as f:
        text = f.read()
    devices = {device for device, _ in state.get("ip_addresses", [])}
    named = re.findall(r"^\s*interface (\S+)", text, re.M) + re.findall(r" dev (\S+)", text)
    tracked = re.search(r"track_interface \{([^}]*)\}", text)
    named += tracked.group(1).split() if tracked else []
    missing = [n for n in named if n not in devices]
    if missing or "vrrp_instance" not in text:
        sys.stderr.write(f"Non-existent interface specified in configuration: {missing}\n")
        return 1
#: What each AWS CLI operation the boot calls needs in IAM, by resource kind.
ACTION_OF = {("secretsmanager", "get-secret-value"): "secretsmanager:GetSecretValue",
             ("secretsmanager", "put-secret-value"): "secretsmanager:PutSecretValue",
             ("ssm", "get-parameter"): "ssm:GetParameter", ("ssm", "put-parameter"): "ssm:PutParameter"}


def iam_denied(state, service, op, resource):
    """The AccessDeniedException of a call only a deleted inline policy allowed, else None.
    state["iam"]: {"role", "policies": inline policy names the role has, "grants": {policy:
    [[action, resource], ...]}}: what the bootstrap policies alone allow
    (components/resources/management.py); what no policy there lists stands for the role's
    steady grants. IAM allows what some policy of the role allows (IAM User Guide, "Policy
    evaluation logic")."""
    iam = state.get("iam")
    action = ACTION_OF.get((service, op))
    if not iam or action is None:
        return None
    granted_by = [p for p, grants in iam["grants"].items() if [action, resource] in grants]
    if granted_by and not set(granted_by) & set(iam["policies"]):
        return (f"An error occurred (AccessDeniedException) when calling the {op} operation: User: "
                f"arn:aws:sts::123456789012:assumed-role/{iam['role']}/i-0 is not authorized to perform: "
                f"{action} on resource: {resource} because no identity-based policy allows the {action} action\n")
    return None


def iam_delete_role_policy(state, args):
    """DeleteRolePolicy: NoSuchEntity for a policy the role has not (IAM API Reference)."""
    iam, role, policy = state["iam"], opt(args, "--role-name"), opt(args, "--policy-name")
    if role != iam["role"]:
        sys.stderr.write(f"An error occurred (AccessDenied) when calling the DeleteRolePolicy operation: "
                         f"not authorized to perform: iam:DeleteRolePolicy on resource: role {role}\n")
        return 254
    if policy not in iam["policies"]:
        sys.stderr.write(f"An error occurred (NoSuchEntity) when calling the DeleteRolePolicy operation: "
                         f"The role policy with name {policy} cannot be found.\n")
        return 254
    iam["policies"].remove(policy)
    return 0


def secretsmanager(state, op, args):
    """state["secrets"]: secret id -> its current value, None for a secret without one
    (created without a version); an id not there does not exist. PutSecretValue with a
    ClientRequestToken the secret already has as a version id and another value fails
    (Secrets Manager API Reference, PutSecretValue: "you can't modify a secret version")."""
    sid = opt(args, "--secret-id")
    operation = "GetSecretValue" if op == "get-secret-value" else "PutSecretValue"
    if sid not in state["secrets"]:
        sys.stderr.write(f"An error occurred (ResourceNotFoundException) when calling the {operation} operation: "
                         "Secrets Manager can't find the specified secret.\n")
        return 254
    if op == "get-secret-value" and opt(args, "--version-stage") == "AWSPREVIOUS":
        # The version AWSCURRENT was on before the last PutSecretValue (state["secret_previous"]).
        previous = state.get("secret_previous", {}).get(sid)
        if previous is None:
            sys.stderr.write("An error occurred (ResourceNotFoundException) when calling the GetSecretValue "
                             "operation: Secrets Manager can't find the specified secret value for staging label: "
                             "AWSPREVIOUS\n")
            return 254
        print(previous)
        return 0
    if op == "get-secret-value":
        value = state["secrets"][sid]
        # Scripted: another management server stores the secret's first value (the
        # version id userdata/management-server.sh gives one) right after this read.
        other = state.get("concurrent_first_values", {}).pop(sid, None)
        if other is not None:
            state.setdefault("secret_versions", {}).setdefault(sid, {})["cloudstack-ec2-first-value-00000001"] = other
            state["secrets"][sid] = other
        if value is None:
            sys.stderr.write("An error occurred (ResourceNotFoundException) when calling the GetSecretValue "
                             "operation: Secrets Manager can't find the specified secret value for staging label: "
                             "AWSCURRENT\n")
            return 254
        print(value)
        return 0
    if state.get("secret_put_throttles", 0) > 0:
        # Secrets Manager API Reference, Common Errors: ThrottlingException (a retry succeeds).
        state["secret_put_throttles"] -= 1
        sys.stderr.write("An error occurred (ThrottlingException) when calling the PutSecretValue operation: "
                         "Rate exceeded\n")
        return 254
    value, token = read_value(opt(args, "--secret-string")), opt(args, "--client-request-token")
    versions = state.setdefault("secret_versions", {}).setdefault(sid, {})
    if token is not None and versions.get(token) == value:
        return 0  # the same request again: ignored (PutSecretValue, ClientRequestToken)
    if token is not None and token in versions and versions[token] != value:
        sys.stderr.write("An error occurred (ResourceExistsException) when calling the PutSecretValue operation: "
                         "You can't modify an existing version, you can only create a new version.\n")
        return 254
    if token is not None:
        versions[token] = value
    if state["secrets"][sid] is not None:
        # PutSecretValue moves AWSPREVIOUS to the version AWSCURRENT leaves.
        state.setdefault("secret_previous", {})[sid] = state["secrets"][sid]
    state["secrets"][sid] = value
    return 0


#: The one --query the boot scripts send to GetParameterHistory (userdata/library.sh,
#: CSEC2_ANCHOR_QUERY): the newest version's type, key and value, as JSON.
ANCHOR_QUERY = "max_by(Parameters, &Version).{Type: Type, KeyId: KeyId, Value: Value}"
#: What PutParameter records as KeyId when a SecureString names no key: the AWS managed
#: key of Parameter Store (AWS Systems Manager User Guide, "How AWS Systems Manager
#: Parameter Store uses AWS KMS"), which every principal of the account may use.
AWS_MANAGED_SSM_KEY = "alias/aws/ssm"


def ssm_put(state, args):
    """PutParameter. A SecureString is encrypted with the caller's own credentials: the caller
    needs kms:Encrypt on the key (same AWS page), here the keys in state["kms"]["encrypt"]
    (the key policies' grants to this instance's role) or the AWS managed key."""
    name = opt(args, "--name")
    meta = state["ssm_meta"].get(name, {"Type": "String"}) if name in state["ssm"] else None
    if meta is not None and "--overwrite" not in args:
        sys.stderr.write("An error occurred (ParameterAlreadyExists) when calling the PutParameter operation\n")
        return 254
    type_ = opt(args, "--type", meta and meta["Type"])
    key = opt(args, "--key-id", AWS_MANAGED_SSM_KEY) if type_ == "SecureString" else None
    if key is not None and key != AWS_MANAGED_SSM_KEY and key not in state["kms"]["encrypt"]:
        sys.stderr.write(f"An error occurred (AccessDeniedException) when calling the PutParameter operation: "
                         f"not authorized to perform: kms:Encrypt on resource: {key}\n")
        return 254
    state["ssm"][name] = read_value(opt(args, "--value"))
    state["ssm_meta"][name] = {"Type": type_, "KeyId": key}
    return 0


def ssm_history(state, args):
    """GetParameterHistory with CSEC2_ANCHOR_QUERY: {"Type", "KeyId" (null for a String), "Value"}."""
    name = opt(ARGS, "--name")
    if opt(ARGS, "--query") != ANCHOR_QUERY or opt(ARGS, "--output") != "json":
        sys.stderr.write(f"fake aws: get-parameter-history supports only --query {ANCHOR_QUERY!r} --output json\n")
        return 2
    if name not in state["ssm"]:
        sys.stderr.write(f"An error occurred (ParameterNotFound) when calling the GetParameterHistory operation: "
                         f"{name}\n")
        return 254
    meta = state["ssm_meta"].get(name, {"Type": "String", "KeyId": None})
    value = state["ssm"][name]
    if meta["Type"] == "SecureString" and "--with-decryption" not in args:
        value = "AQICAHencrypted=="
    print(json.dumps({"Type": meta["Type"], "KeyId": meta.get("KeyId"), "Value": value}))
    return 0


def s3_cp(state, args):
    """`aws s3 cp s3://BUCKET/KEY DEST` from the fake bucket state["s3"]["objects"]
    ("BUCKET/KEY" -> text). The instance role may read the object ARNs in
    state["s3"]["readable"] ("BUCKET/KEY") and has no s3:ListBucket unless
    state["s3"]["list_bucket"]. Like the real CLI (awscli/customizations/s3: HeadObject
    first; AWS CLI return codes: 1 when an s3 transfer failed), a refused download
    prints "fatal error: An error occurred (...) when calling the HeadObject
    operation: ..." and exits 1; S3 answers 403 instead of 404 for a missing key to a
    caller without s3:ListBucket (S3 API reference GetObject/HeadObject, permissions)."""
    words = [a for a in args if a not in ("--only-show-errors", "--quiet", "--no-progress")]
    unknown = [a for a in words if a.startswith("--")]
    if unknown or len(words) != 2:
        sys.stderr.write(f"fake aws s3 cp: unsupported arguments {args}\n")
        return 252
    source, dest = words
    if dest.startswith("s3://") and not source.startswith("s3://"):
        return s3_upload(state, source, dest, args)
    if not source.startswith("s3://") or dest.startswith("s3://"):
        sys.stderr.write(f"fake aws s3 cp: only downloads from and uploads to s3:// are faked, got {args}\n")
        return 252
    path = source[len("s3://"):]
    s3 = state.get("s3", {})
    objects = s3.get("objects", {})
    if not s3_allowed(s3.get("readable", []), path) or (path not in objects and not s3.get("list_bucket")):
        sys.stderr.write("fatal error: An error occurred (403) when calling the HeadObject operation: Forbidden\n")
        return 1
    if path not in objects:
        key = path.split("/", 1)[1] if "/" in path else ""
        sys.stderr.write(f"fatal error: An error occurred (404) when calling the HeadObject operation: "
                         f"Key \"{key}\" does not exist\n")
        return 1
    if os.path.isdir(dest):
        dest = os.path.join(dest, os.path.basename(path))
    with open(dest, "w") as f:
        f.write(objects[path])
    if "--only-show-errors" not in args and "--quiet" not in args:
        print(f"download: {source} to {dest}")
    return 0


def s3_allowed(grants, path):
    """Whether "BUCKET/KEY" matches one of the role's object ARNs ("BUCKET/KEY", or with a
    trailing "*": IAM's resource wildcard, IAM User Guide, "IAM JSON policy elements: Resource")."""
    return any(fnmatch.fnmatchcase(path, g) for g in grants)


def s3_upload(state, source, dest, args):
    """`aws s3 cp FILE s3://BUCKET/KEY`: PutObject into the fake bucket, allowed on the object
    ARNs in state["s3"]["writable"]. A refused upload prints "upload failed: FILE to
    s3://BUCKET/KEY An error occurred (AccessDenied) when calling the PutObject operation:
    Access Denied" and exits 1 (AWS CLI return codes: 1 when an s3 transfer failed); a
    missing local file is "The user-provided path FILE does not exist." and exit 255."""
    if not os.path.isfile(source):
        sys.stderr.write(f"\nThe user-provided path {source} does not exist.\n")
        return 255
    path = dest[len("s3://"):]
    s3 = state.setdefault("s3", {})
    if not s3_allowed(s3.get("writable", []), path):
        sys.stderr.write(f"upload failed: {source} to {dest} An error occurred (AccessDenied) when calling the "
                         "PutObject operation: Access Denied\n")
        return 1
    with open(source) as f:
        s3.setdefault("objects", {})[path] = f.read()
    if "--only-show-errors" not in args and "--quiet" not in args:
        print(f"upload: {source} to {dest}")
    return 0


def snap(state):
    if ARGS[0] == "wait":
        if state.get("snap_seed_hangs"):
            import time
            time.sleep(60)  # ended by the script's timeout long before
        return 0
    if ARGS[0] == "list":
        return 0 if ARGS[1] in state["snaps"] else 1
    if ARGS[0] == "install":
        status = take_failure(state, "snap-install")
        if status:
            return status
        state["snaps"].append(ARGS[1])
        if ARGS[1] == "aws-cli":
            os.symlink(os.path.abspath(sys.argv[0]), os.path.join(os.path.dirname(sys.argv[0]), "aws"))
        return 0
    return 0


def take_failure(state, verb):
    """The next scripted failure of `verb` ("update", "install", "snap-install"), if any."""
    queue = state["failures"].get(verb, [])
    if queue:
        message = queue.pop(0)
        sys.stderr.write(message + "\n")
        return 100
    return 0


def deb_control(path):
    """The control fields of a fake package file ("Field: value" lines, as `dpkg-deb -f FILE`
    prints them), or None for a file that is not one (the CloudWatch agent's package)."""
    try:
        with open(path) as f:
            text = f.read()
    except OSError:
        return None
    fields = dict(line.split(": ", 1) for line in text.splitlines() if ": " in line)
    return fields if "Package" in fields and "Version" in fields else None


def apt_download(state, packages):
    """`apt-get download NAME=VERSION...`: apt-get(8), download: "download the given binary
    package into the current directory", named NAME_VERSION_ARCH.deb with the epoch's colon
    written %3a (apt's package file naming); an unknown version is apt's "E: Version 'V' for
    'NAME' was not found" and exit 100."""
    for a in packages:
        name, _, version = a.partition("=")
        available = state["repo"].get(name, [])
        if not version or version not in available:
            sys.stderr.write(f"E: Version '{version}' for '{name}' was not found\n")
            return 100
        with open(f"{name}_{version.replace(':', '%3a')}_amd64.deb", "w") as f:
            f.write(f"Package: {name}\nVersion: {version}\nArchitecture: amd64\n")
    return 0


def apt_get(state):
    words = [a for i, a in enumerate(ARGS) if not a.startswith("-") and ARGS[i - 1] != "-o"]
    verb = words[0] if words else ""
    if verb == "update":
        return take_failure(state, "update")
    if verb == "download":
        return apt_download(state, words[1:])
    if verb == "install":
        status = take_failure(state, "install")
        if status:
            return status
        wanted = []
        for a in words[1:]:
            control = deb_control(a) if a.endswith(".deb") else None
            if control:  # a package file: its own name and version (apt-get(8), install)
                wanted.append((control["Package"], control["Version"]))
                continue
            name, _, pattern = a.partition("=")
            available = state["repo"].get(name, ["1.0"])
            matching = [v for v in available if not pattern or fnmatch.fnmatchcase(v, pattern)]
            if not matching:
                sys.stderr.write(f"E: Version '{pattern}' for '{name}' was not found\n")
                return 100
            wanted.append((name, matching[-1]))
        # Like the real packages: cloudstack-agent and cloudstack-management depend on
        # cloudstack-common (= their own version), and apt takes the NEWEST common
        # unless told otherwise, which breaks any older pinned version.
        chosen = dict(wanted)
        for name, version in wanted:
            if name in ("cloudstack-agent", "cloudstack-management"):
                common = chosen.get("cloudstack-common") or state["repo"].get("cloudstack-common", [version])[-1]
                if common != version:
                    sys.stderr.write(f"The following packages have unmet dependencies:\n {name} : Depends: "
                                     f"cloudstack-common (= {version}) but {common} is to be installed\n"
                                     "E: Unable to correct problems, you have held broken packages.\n")
                    return 100
                chosen["cloudstack-common"] = common
        wanted = list(chosen.items())
        for name, version in wanted:
            if name.endswith(".deb"):  # a package file: the CloudWatch agent's
                name = "amazon-cloudwatch-agent"
                ctl = f"{ROOT}/opt/aws/amazon-cloudwatch-agent/bin/amazon-cloudwatch-agent-ctl"
                os.makedirs(os.path.dirname(ctl), exist_ok=True)
                os.symlink(os.path.abspath(__file__), ctl)
            state["packages"].append(name)
            state["versions"][name] = version
            if name == "cloudstack-agent":
                # cloudstack-agent pulls in libvirt-daemon-system, whose maintainer
                # scripts (dh_installsystemd) enable and START libvirtd's socket units
                # on Ubuntu 24.04: they are listening before anyone restarts libvirtd.
                u = state["units"]
                u["enabled"].extend(LIBVIRTD_ACTIVATION_SOCKETS)
                u["active"].extend(LIBVIRTD_ACTIVATION_SOCKETS)
                # ... and libvirt-daemon-config-network, which defines the NAT network
                # "default" (virbr0, /usr/share/libvirt/networks/default.xml) marked
                # autostart: libvirtd starts it whenever it starts.
                state["libvirt"]["networks"].setdefault("default", dict(LIBVIRT_DEFAULT_NETWORK))
    return 0


#: What Ubuntu 24.04 starts with libvirt-daemon-system (libvirtd.service Wants= them).
LIBVIRTD_ACTIVATION_SOCKETS = ["libvirtd.socket", "libvirtd-ro.socket", "libvirtd-admin.socket"]
#: The network libvirt-daemon-config-network defines: <forward mode='nat'/>, IPv4 only, autostart.
LIBVIRT_DEFAULT_NETWORK = {"forward": "nat", "autostart": True, "active": False}


def dpkg_query(state):
    pkg = ARGS[-1]
    if pkg not in state["packages"]:
        sys.stderr.write(f"dpkg-query: no packages found matching {pkg}\n")
        return 1
    if any("${Version}" in a for a in ARGS):
        print(state["versions"].get(pkg, "1.0"), end="")
    else:
        print("install ok installed", end="")
    return 0


def ping(state):
    net = state["network"]
    net["pings"] += 1
    return 0 if net["pings"] > net["gateway_silent_pings"] else 1


# --- TLS between the database's clients and RDS -------------------------------------------
#
# The fake world's certificates: a PEM block whose body is the base64 of the CA's name.
# state["db"]: "ca" signs the server certificate, which names "endpoint";
# "require_secure_transport" as the parameter group sets it; "intercepted": a man in the
# middle on the path answers with a certificate of his own and relays what he reads
# ("captured": the users whose passwords he read).

def pem(names):
    import base64
    return "".join(f"-----BEGIN CERTIFICATE-----\n{base64.b64encode(n.encode()).decode()}\n"
                   "-----END CERTIFICATE-----\n" for n in names)


def pem_names(text):
    import base64
    return [base64.b64decode(b).decode() for b in
            re.findall(r"-----BEGIN CERTIFICATE-----\n(.*?)\n-----END CERTIFICATE-----", text, re.S)]


def presented_certificate(db):
    """(issuer, names) of the certificate the client is shown."""
    if db.get("intercepted"):
        return "Interceptor CA", ["interceptor.invalid"]
    return db["ca"], [db["endpoint"]]


def tls_session(db, user, mode, host, trusted, client):
    """An error message, or None when the session is set up. `mode`: DISABLED, PREFERRED,
    REQUIRED, VERIFY_CA or VERIFY_IDENTITY; `trusted`: CA names the client trusts.
    - The server refuses a connection without TLS while require_secure_transport is ON
      (MySQL manual, require_secure_transport; RDS User Guide, "Requiring SSL/TLS for all
      connections to a MySQL DB instance": error 3159).
    - Only VERIFY_CA checks the issuer and VERIFY_IDENTITY the name too (MySQL manual,
      "Command Options for Encrypted Connections", --ssl-mode; Connector/J Developer Guide,
      sslMode): PREFERRED and REQUIRED accept any certificate, a man in the middle's too."""
    if mode == "DISABLED":
        if db.get("intercepted"):
            db.setdefault("captured", []).append(user)
        if db.get("require_secure_transport"):
            return client["insecure"]
        return None
    issuer, names = presented_certificate(db)
    if mode in ("VERIFY_CA", "VERIFY_IDENTITY"):
        if issuer not in trusted:
            return client["untrusted"]
        if mode == "VERIFY_IDENTITY" and host not in names:
            return client["identity"]
    elif db.get("intercepted"):
        db.setdefault("captured", []).append(user)
    return None


#: The values both clients take (MySQL manual, "Command Options for Encrypted Connections",
#: --ssl-mode; Connector/J Developer Guide, sslMode): any other is refused.
SSL_MODES = ("DISABLED", "PREFERRED", "REQUIRED", "VERIFY_CA", "VERIFY_IDENTITY")

#: The mysql client's messages (libmysql; MySQL manual, error 2026 CR_SSL_CONNECTION_ERROR).
MYSQL_CLIENT = {
    "insecure": "ERROR 3159 (HY000): Connections using insecure transport are prohibited while "
                "--require_secure_transport=ON.",
    "no_ca": "ERROR 2026 (HY000): SSL connection error: CA certificate is required if ssl-mode is VERIFY_CA or "
             "VERIFY_IDENTITY",
    "untrusted": "ERROR 2026 (HY000): SSL connection error: error:0A000086:SSL routines::certificate verify failed",
    "identity": "ERROR 2026 (HY000): SSL connection error: SSL certificate validation failure",
}


def client_options(extra=None):
    """The [client] options the mysql client reads: /etc/mysql/my.cnf includes
    /etc/mysql/conf.d/ (Ubuntu's mysql-common), then --defaults-extra-file; a later
    file's value wins (MySQL manual, "Using Option Files")."""
    files = sorted(os.path.join(ROOT + "/etc/mysql/conf.d", f) for f in os.listdir(ROOT + "/etc/mysql/conf.d")
                   if f.endswith(".cnf")) if os.path.isdir(ROOT + "/etc/mysql/conf.d") else []
    options, group = {}, None
    for path in files + ([extra] if extra else []):
        for line in open(path).read().splitlines():
            line = line.strip()
            if line.startswith("["):
                group = line.strip("[]")
            elif "=" in line and group == "client":
                key, value = line.split("=", 1)
                options[key.strip()] = value.strip()
    return options


def option_value(text):
    """An option file's value as the client reads it (MySQL manual, "Using Option Files":
    surrounding quotes removed; escape sequences \\b \\t \\n \\r \\\\ \\s)."""
    if text is None:
        return None
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        text = text[1:-1]
    escapes = {"b": "\b", "t": "\t", "n": "\n", "r": "\r", "\\": "\\", "s": " "}
    out, i = [], 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text) and text[i + 1] in escapes:
            out.append(escapes[text[i + 1]])
            i += 2
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def mysql_tls(db, options):
    """The mysql client's TLS: an error message or None."""
    mode = options.get("ssl-mode", "PREFERRED").upper()
    if mode not in SSL_MODES:
        return f"mysql: [ERROR] Unknown value '{options['ssl-mode']}' for option 'ssl-mode'."
    trusted = []
    if mode in ("VERIFY_CA", "VERIFY_IDENTITY"):
        if not options.get("ssl-ca"):
            return MYSQL_CLIENT["no_ca"]
        path = ROOT + options["ssl-ca"]
        if not os.path.exists(path):
            return f"ERROR 2026 (HY000): SSL connection error: SSL_CTX_set_default_verify_paths failed ({options['ssl-ca']})"
        trusted = pem_names(open(path).read())
    return tls_session(db, options.get("user"), mode, options.get("host"), trusted, MYSQL_CLIENT)


def running_versions(db, sql):
    """The boot's query of the other running servers' versions: rows of cloud.mshost
    (setup/db/create-schema.sql: service_ip, version, state, removed, last_update; a running
    server updates last_update with every heartbeat, ClusterManagerImpl), here
    db["mshost"]: [{"ip", "version", "state", "removed", "fresh"}]; "fresh": its last_update
    is within the query's interval."""
    if not db["schema"]:
        sys.stderr.write("ERROR 1146 (42S02) at line 1: Table 'cloud.mshost' doesn't exist\n")
        return 1
    own = re.search(r"service_ip <> '([\d.]+)'", sql)
    assert own and "state = 'Up'" in sql and "removed IS NULL" in sql and "last_update >" in sql, sql
    for row in db.get("mshost", []):
        if row["state"] == "Up" and not row.get("removed") and row.get("fresh", True) and row["ip"] != own.group(1):
            print(f"{row['ip']}\t{row['version']}")
    return 0


def connection_refused(db, options):
    """Why a mysql client with `options` cannot connect (unreachable, TLS, credentials), or None."""
    if not db["reachable"]:
        return f"ERROR 2003 (HY000): Can't connect to MySQL server on '{options.get('host')}:3306' (110)"
    refused = mysql_tls(db, options)
    if refused:
        return refused
    if options.get("user") == "admin":
        password = db["master_password"]
    else:
        password = db["users"].get(options.get("user"))
    if password is None or option_value(options.get("password")) != password:
        return "ERROR 1045 (28000): Access denied"
    return None


def mysql(state):
    sql = sys.stdin.read()
    db = state["db"]
    cnf = opt(ARGS, "--defaults-extra-file")
    options = client_options(cnf)
    record({"sql": sql, "user": options.get("user"), "ssl-mode": options.get("ssl-mode")})
    refused = connection_refused(db, options)
    if refused:
        sys.stderr.write(refused + "\n")
        return 1
    tables = {("cloud", "version"): db["schema"], ("cloud", "mshost"): db["schema"],
              ("cloudstack_ec2", "schema_deployed"): db.get("marker", False)}
    table = re.search(r"table_schema = '(\w+)' AND table_name = '(\w+)'", sql)
    # The `cloud` user's grants: ALL on cloud.* and cloud_usage.*, PROCESS (the boot's GRANTs).
    # Creating, granting to or altering another account needs the global CREATE USER
    # privilege (MySQL manual, "CREATE USER Statement", "ALTER USER Statement"), and
    # information_schema.tables shows only tables the user has some privilege on
    # (MySQL manual, "The INFORMATION_SCHEMA TABLES Table").
    own = re.fullmatch(r"ALTER USER CURRENT_USER\(\) IDENTIFIED WITH \w+ BY '([^']*)' REPLACE '([^']*)';", sql.strip())
    if own:
        # Any account may change its own password; REPLACE must name the current one
        # (MySQL manual, "ALTER USER Statement", "Password Verification-Required Policy").
        # connection_refused let this session in with the account's current password
        if own.group(2) != option_value(options.get("password")):
            sys.stderr.write("ERROR 3891 (HY000) at line 1: Incorrect current password. Specify the correct "
                             "password which has to be replaced.\n")
            return 1
        db["users"][options.get("user")] = own.group(1)
        db["statements"].append(sql)
        return 0
    if options.get("user") != "admin" and re.search(r"\b(CREATE USER|GRANT|ALTER USER)\b", sql):
        sys.stderr.write("ERROR 1227 (42000) at line 1: Access denied; you need (at least one of) the "
                         "CREATE USER privilege(s) for this operation\n")
        return 1
    visible = options.get("user") == "admin" or (table and table.group(1) in ("cloud", "cloud_usage"))
    if "information_schema.tables" in sql and table:
        print(1 if tables.get(table.groups()) and visible else 0)
    elif "information_schema.tables" in sql:
        print(1 if db["schema"] else 0)
    elif sql.strip() == "SELECT 1;":
        print(1)
    elif "op_dc_link_local_ip_address_alloc" in sql:
        # The reserve-then-report statement pair of protect_link_local_services.
        reserved = re.search(r"SET taken = NOW\(\), reservation_id = '([^']*)' WHERE", sql)
        for row in db.get("link_local", []):
            if reserved and not row.get("taken"):
                row.update(taken=True, reservation=reserved.group(1))
                db.setdefault("link_local_reserved", 0)
                db["link_local_reserved"] += 1
        for row in db.get("link_local", []):
            if row.get("nic") is not None:
                print(f"pod {row['pod']} NIC {row['nic']} {row['ip']}")
    elif "`cloud`.`configuration`" in sql:
        if not db["schema"]:
            sys.stderr.write("ERROR 1146 (42S02) at line 1: Table 'cloud.configuration' doesn't exist\n")
            return 1
        return configuration_sql(db, sql)
    elif sql.strip() == "SELECT COUNT(*) FROM `cloud`.`mshost`;":
        if not db["schema"]:
            sys.stderr.write("ERROR 1146 (42S02) at line 1: Table 'cloud.mshost' doesn't exist\n")
            return 1
        print(db.get("mshost_rows", 0) + len(db.get("mshost", [])))
    elif "FROM `cloud`.`mshost` WHERE" in sql:
        return running_versions(db, sql)
    else:
        db["statements"].append(sql)
        databases = db.setdefault("databases", [])
        for name in re.findall(r"CREATE DATABASE IF NOT EXISTS `(\w+)`", sql):
            if name not in databases:
                databases.append(name)
        for name in re.findall(r"DROP DATABASE (?:IF EXISTS )?`(\w+)`", sql):
            if name in databases:
                databases.remove(name)
            if name == "cloud":
                db.update(schema=False, schema_complete=False, mshost_rows=0)
        if "CREATE TABLE `cloudstack_ec2`.`schema_deployed`" in sql:
            if db.get("marker"):
                sys.stderr.write("ERROR 1050 (42S01) at line 1: Table 'schema_deployed' already exists\n")
                return 1
            db["marker"] = True
        for m in re.finditer(r"CREATE USER IF NOT EXISTS '(\w+)'@'%' IDENTIFIED WITH \w+ BY '([^']*)'", sql):
            db["users"].setdefault(m.group(1), m.group(2))
        for m in re.finditer(r"ALTER USER '(\w+)'@'%' IDENTIFIED WITH \w+ BY '([^']*)'", sql):
            db["users"][m.group(1)] = m.group(2)
    return 0


def mysql_session():
    """A mysql client kept open on a pipe (--unbuffered): the boot's schema lock. As MySQL
    does (manual, "Locking Functions"): GET_LOCK(name, timeout) answers 1 once this session
    holds the named lock, 0 when another session held it for the whole timeout; the lock is
    the session's until RELEASE_LOCK or the session's end (the client exits, the connection
    drops). Here: an exclusive flock on a file per lock name, which the kernel releases when
    the process ends. Credentials and TLS are checked as for any connection."""
    with open(os.path.join(STATE_DIR, "lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        state = load()
        if WORLD_DIR:
            with open(os.path.join(WORLD_DIR, "world.json")) as f:
                state.update(json.load(f))
        options = client_options(opt(ARGS, "--defaults-extra-file"))
        refused = connection_refused(state["db"], options)
    if refused:
        sys.stderr.write(refused + "\n")
        return 1
    held = {}
    for line in sys.stdin:
        entry = {"sql": line.strip(), "session": os.getpid(), "user": options.get("user"),
                 "ssl-mode": options.get("ssl-mode")}
        m = re.match(r"SELECT GET_LOCK\('([\w.]+)', (\d+)\);", line.strip())
        r = re.match(r"DO RELEASE_LOCK\('([\w.]+)'\);", line.strip())
        if m:
            f = open(os.path.join(WORLD_DIR or STATE_DIR, f"getlock-{m.group(1)}"), "w")
            entry.update(lock=m.group(1), asked=time.time(), granted=None)
            deadline = time.monotonic() + int(m.group(2))
            while True:
                try:
                    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    held[m.group(1)] = f
                    entry["granted"] = time.time()
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        break
                    time.sleep(0.02)
            record(entry)
            print(1 if entry["granted"] else 0, flush=True)
            continue
        if r and r.group(1) in held:
            entry.update(lock=r.group(1), released=time.time())
            held.pop(r.group(1)).close()
        record(entry)
    return 0


#: `cloud`.`configuration` as setup/db/create-schema.sql creates it, with the columns
#: later schema upgrades added (schema-410to420.sql: default_value, updated, scope,
#: is_dynamic; schema-41720to41800.sql: group_id, subgroup_id, parent, display_text,
#: kind, options): column -> its DEFAULT, or REQUIRED for NOT NULL without one
#: (`instance` and the key `name`). Every later column has a default or is nullable.
REQUIRED = object()
CONFIGURATION_COLUMNS = {
    "category": "Advanced", "instance": REQUIRED, "component": "management-server", "name": REQUIRED,
    "value": None, "description": None, "default_value": None, "updated": None, "scope": None, "is_dynamic": 0,
    "group_id": 1, "subgroup_id": 1, "parent": None, "display_text": None, "kind": None, "options": None,
}


def sql_values(text):
    """The tuples of an INSERT's VALUES list: quoted strings ('' escapes one quote) and bare words."""
    rows, row, i = [], None, 0
    while i < len(text):
        c = text[i]
        if c == "(" and row is None:
            row, word = [], ""
        elif row is not None and c == "'":
            j, value = i + 1, ""
            while not (text[j] == "'" and text[j + 1:j + 2] != "'"):
                value += text[j]
                j += 2 if text[j:j + 2] == "''" else 1
            row.append(value)
            i = j
        elif row is not None and c in ",)":
            if word.strip():
                row.append(word.strip())
            word = ""
            if c == ")":
                rows.append(row)
                row = None
        elif row is not None:
            word += c
        i += 1
    return rows


def configuration_sql(db, sql):
    """What the management boot runs against `cloud`.`configuration` (its rows in
    db["configuration"]: name -> columns). Names compare without case: the table's
    utf8 collation is case-insensitive (the key `name` too). Under CloudStack's
    sql_mode (STRICT_TRANS_TABLES, components/resources/database.py CLOUDSTACK_SQL_MODE) an
    INSERT that leaves out a NOT NULL column without a default fails (MySQL manual,
    "Strict SQL Mode"); a duplicate key takes the ON DUPLICATE KEY UPDATE."""
    rows = db.setdefault("configuration", {})

    def find(name):
        return next((k for k in rows if k.lower() == name.lower()), None)

    text = sql.strip()
    if text.startswith("SELECT"):
        # One scalar subquery per name: its value, NULL without a row (--batch prints NULL).
        names = re.findall(r"WHERE name = '([^']+)'", text)
        print("\t".join(rows[find(n)]["value"] if find(n) else "NULL" for n in names))
        return 0
    insert = re.match(r"INSERT INTO `cloud`.`configuration` \(([^)]*)\) VALUES(.*) ON DUPLICATE KEY UPDATE "
                      r"value = VALUES\(value\);$", text, re.S)
    if not insert:
        sys.stderr.write(f"fake mysql: unsupported statement on cloud.configuration: {text[:120]}\n")
        return 1
    columns = [c.strip().strip("`") for c in insert.group(1).split(",")]
    for column in columns:
        if column not in CONFIGURATION_COLUMNS:
            sys.stderr.write(f"ERROR 1054 (42S22) at line 1: Unknown column '{column}' in 'field list'\n")
            return 1
    for column, default in CONFIGURATION_COLUMNS.items():
        if default is REQUIRED and column not in columns:
            sys.stderr.write(f"ERROR 1364 (HY000) at line 1: Field '{column}' doesn't have a default value\n")
            return 1
    db["statements"].append(sql)
    for values in sql_values(insert.group(2)):
        if len(values) != len(columns):
            sys.stderr.write("ERROR 1136 (21S01) at line 1: Column count doesn't match value count at row 1\n")
            return 1
        row = dict(zip(columns, values))
        existing = find(row["name"])
        if existing:
            rows[existing]["value"] = row.get("value")
        else:
            rows[row["name"]] = {c: row.get(c, d) for c, d in CONFIGURATION_COLUMNS.items() if c != "name"}
    return 0


def encrypted(value, key):
    import hashlib
    return hashlib.sha256(f"{key}/{value}".encode()).hexdigest()[:24]


def release(state, package="cloudstack-management"):
    """(major, minor) of the installed package."""
    version = state["versions"].get(package, "4.22.1.0")
    return tuple(int(x) for x in version.split(".")[:2])


SETUP_DATABASES_USAGE = """Usage: cloudstack-setup-databases user:[password]@mysqlhost:[port] [--deploy-as=rootuser:[rootpassword]] \
[--auto=/path/to/server-setup.xml] [-e ENCRYPTIONTYPE] [-m MGMTSECRETKEY] [-k DBSECRETKEY] [-g ENCRYPTORVERSION] [--debug]

Options:
  -h, --help            show this help message and exit
  -v, --debug           If enabled, print the commands it will run as they run
  -d ROOTCREDS, --deploy-as=ROOTCREDS
  -m MGMTSECRETKEY, --managementserver-secretkey=MGMTSECRETKEY
  -k DBSECRETKEY, --database-secretkey=DBSECRETKEY
  -i MSHOSTIP, --mshost=MSHOSTIP
  -s, --schema-only     Creates the db schema without having to pass root credentials
"""
# setup/bindir/cloud-setup-databases.in, 4.21+ (apache/cloudstack PR #11239).
FORCE_RECREATE_HELP = """  --force-recreate      Force recreation of the existing DB schemas. This option is disabled by default.
"""


#: client/conf/db.properties.in's db.cloud.url.params.
CLOUD_URL_PARAMS = ("prepStmtCacheSize=517&cachePrepStmts=true&sessionVariables=sql_mode='STRICT_TRANS_TABLES,"
                    "NO_ZERO_IN_DATE,NO_ZERO_DATE,ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION'&serverTimezone=UTC")


def setup_databases(state):
    # Behaves per installed release, as setup/bindir/cloud-setup-databases.in does:
    # - 4.19/4.20: optparse, no --force-recreate: "no such option" and status 2;
    # - 4.21 (PR #11239): aborts when the cloud/cloud_usage databases exist unless
    #   --force-recreate, with --deploy-as and also with --schema-only (#11912);
    # - 4.22 (PR #12004, merged 2025-11): --schema-only works on existing
    #   databases again without --force-recreate.
    # On a MySQL error it prints its "Sql parameters", the password among them
    # (runMysql's error message), to stderr and exits 1.
    rel = release(state)
    knows_force = rel >= (4, 21)
    if "--help" in ARGS or "-h" in ARGS:
        print(SETUP_DATABASES_USAGE + (FORCE_RECREATE_HELP if knows_force else ""), end="")
        return 0
    if "--force-recreate" in ARGS and not knows_force:
        sys.stderr.write(SETUP_DATABASES_USAGE.splitlines()[0] + "\n\n"
                         "cloudstack-setup-databases: error: no such option: --force-recreate\n")
        return 2
    url = ARGS[0]
    creds, hostport = url.rsplit("@", 1)
    host, port = hostport.split(":")
    user, password = creds.split(":", 1)
    db = state["db"]
    schema_only = "--schema-only" in ARGS or "-s" in ARGS
    deploy_as = any(a.startswith("--deploy-as") for a in ARGS)
    print(f"Mysql user name:{user}".ljust(80) + "[ OK ]")
    print("Mysql user password:******".ljust(80) + "[ OK ]")
    exists = bool({"cloud", "cloud_usage"} & set(db.setdefault("databases", [])))
    if (schema_only or deploy_as) and exists and knows_force and "--force-recreate" not in ARGS \
            and (deploy_as or rel < (4, 22)):
        sys.stderr.write("\n\nWe apologize for below error:\n" + "*" * 63 + "\n"
                         "Database cloud already exists. Use --force-recreate to recreate it.\n" + "*" * 63 + "\n")
        return 1
    if schema_only or deploy_as:
        # runMysql: `mysql --user= --host= --port= --password= < file`, which reads the
        # [client] groups of the global option files (no TLS option of its own).
        refused = mysql_tls(db, {**client_options(), "user": user, "host": host})
        if refused:
            sys.stderr.write("\n\nWe apologize for below error:\n" + "*" * 63 + "\n"
                             "Encountering an error when executing mysql script\n" + "-" * 70 + "\n"
                             f"Error:\n{refused}\n" + "-" * 70 + "\n")
            return 1
        db["schema"] = True   # create-schema.sql creates cloud.version among its first tables

        if db.get("schema_fails"):
            sys.stderr.write("\n\nWe apologize for below error:\n" + "*" * 63 + "\n"
                             "Encountering an error when executing mysql script\n" + "-" * 70 + "\n"
                             "table:\n/usr/share/cloudstack-management/setup/create-schema.sql\n\n"
                             "Error:\nERROR 1118 (42000) at line 1502: Row size too large\n\n"
                             f"Sql parameters:\n{{'user': '{user}', 'passwd': '{password}', 'port': {port}, "
                             f"'host': '{host}'}}\n" + "-" * 70 + "\n")
            return 1
        db["schema_complete"] = True
    path = ROOT + "/etc/cloudstack/management/db.properties"
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        # What cloudstack-setup-databases writes: url.params without allowPublicKeyRetrieval.
        # db.cloud.password: jasypt-encrypted with the management key; here a stand-in
        # the tests can recompute (fake_encrypted in bootlab).
        f.write(f"db.cloud.host={host}\ndb.cloud.port={port}\ndb.cloud.username={creds.split(':')[0]}\n"
                f"db.cloud.password=ENC({encrypted(password, opt(ARGS, '-m', ''))})\n"
                f"db.cloud.url.params={CLOUD_URL_PARAMS}\ndb.cloud.useSSL=false\n"
                f"cluster.node.IP={opt(ARGS, '-i', '')}\n"
                "db.usage.host={host}\ndb.usage.url.params=serverTimezone=UTC\n".replace("{host}", host))
    return 0


#: Connector/J's messages (com.mysql.cj: ExportControlled, the SSL handshake's causes).
CONNECTOR_J = {
    "insecure": "Connections using insecure transport are prohibited while --require_secure_transport=ON.",
    "untrusted": "Communications link failure: PKIX path building failed: unable to find valid certification "
                 "path to requested target",
    "identity": "Communications link failure: Server identity verification failed. None of the certificate's "
                "DNS or IP Subject Alternative Name entries matched the server hostname",
}


def jdbc_tls(db, props):
    """What Connector/J does with the JDBC URL TransactionLegacy.buildConnectionUri builds from
    db.properties (jdbc:mysql://<db.cloud.host>:<port>/cloud?autoReconnect=..&<db.cloud.url.params>,
    plus &useSSL=true when db.cloud.useSSL is true): an error message or None.
    Connector/J Developer Guide, security properties: sslMode (default PREFERRED; an explicit
    useSSL=false without sslMode means DISABLED); VERIFY_CA/VERIFY_IDENTITY trust the keystore
    trustCertificateKeyStoreUrl (loaded with trustCertificateKeyStorePassword), else the JVM's
    default truststore, which holds no RDS CA."""
    params = dict(p.split("=", 1) for p in props.get("db.cloud.url.params", "").split("&") if "=" in p)
    if props.get("db.cloud.useSSL") == "true":
        params["useSSL"] = "true"
    mode = params.get("sslMode", "DISABLED" if params.get("useSSL") == "false" else "PREFERRED").upper()
    if mode not in SSL_MODES:
        return f"The connection property 'sslMode' acceptable values are: {', '.join(SSL_MODES)}."
    trusted = []
    url = params.get("trustCertificateKeyStoreUrl", "")
    if mode in ("VERIFY_CA", "VERIFY_IDENTITY") and url:
        path = ROOT + url[len("file:"):] if url.startswith("file:") else None
        if not path or not os.path.exists(path):
            return f"Cannot open {url} [No such file or directory]"
        store = json.load(open(path))
        if store["password"] != params.get("trustCertificateKeyStorePassword"):
            return f"Cannot open {url} [keystore password was incorrect]"
        trusted = list(store["certificates"].values())
    return tls_session(db, props.get("db.cloud.username"), mode, props.get("db.cloud.host"), trusted, CONNECTOR_J)


def management_server_starts(state):
    """The management server comes up (its API answers) only when it reaches its database."""
    path = ROOT + "/etc/cloudstack/management/db.properties"
    props = dict(line.split("=", 1) for line in open(path).read().splitlines()
                 if "=" in line and not line.startswith("#")) if os.path.exists(path) else {}
    refused = jdbc_tls(state["db"], props) if props else "no db.properties"
    state["api"]["up"] = refused is None
    state["api"]["database_error"] = refused
    if refused is None:
        # ClusterManagerImpl registers the server in cloud.mshost (cluster.node.IP of
        # db.properties, the package's version) and heartbeats it
        ip = props.get("cluster.node.IP")
        rows = [r for r in state["db"].setdefault("mshost", []) if r["ip"] != ip]
        state["db"]["mshost"] = rows + [{"ip": ip, "version": state["versions"].get("cloudstack-management"),
                                         "state": "Up", "fresh": True}]
    return refused is None


def setup_management(state):
    state["units"]["enabled"].append("cloudstack-management.service")
    state["units"]["active"].append("cloudstack-management.service")
    management_server_starts(state)
    key = ROOT + "/var/lib/cloudstack/management/.ssh/id_rsa.pub"
    os.makedirs(os.path.dirname(key), exist_ok=True)
    with open(key, "w") as f:
        f.write(state["api"]["ssh_public_key"] + "\n")
    return 0


def unit_directives(unit):
    """{(section, key): [words]} of a unit file the boot scripts wrote (empty when
    there is none: a package's own unit, which the fake does not have)."""
    path = ROOT + "/etc/systemd/system/" + unit
    found, section = {}, None
    if os.path.exists(path):
        for line in open(path).read().splitlines():
            line = line.strip()
            if line.startswith("[") and line.endswith("]"):
                section = line[1:-1]
            elif "=" in line and not line.startswith(("#", ";")):
                key, value = line.split("=", 1)
                found.setdefault((section, key.strip()), []).extend(value.split())
    return found


def dependency_failed(state, unit):
    """systemd refuses to start `unit` when a unit it Requires= (here: linked by
    that unit's [Install] RequiredBy= on enable) fails and is ordered before it
    (systemd.unit(5), Requires=: "If one of the other units fails to activate,
    and an ordering dependency After= on the failing unit is set, this unit will
    not be started"). Without the ordering both start and only the required
    unit fails. A required unit that starts becomes active too."""
    u = state["units"]
    for required in u.get("requires", {}).get(unit, []):
        if required in u.get("failing", []):
            if unit in unit_directives(required).get(("Unit", "Before"), []):
                sys.stderr.write(f"A dependency job for {unit} failed. See 'journalctl -xe' for details.\n")
                return True
        elif required not in u["active"]:
            u["active"].append(required)
    return False


def systemctl(state):
    args = [a for a in ARGS if not a.startswith("--")]
    verb, units = args[0], args[1:]
    u = state["units"]
    if verb == "is-active":
        return 0 if units[0] in u["active"] else 3
    if verb == "is-enabled":
        return 0 if units[0] in u["enabled"] else 1
    if verb == "enable":
        u["enabled"].extend(units)
        # [Install] RequiredBy=: enable links the unit into <target>.requires/
        # (systemctl(1), enable; the target need not be installed yet).
        for unit in units:
            for target in unit_directives(unit).get(("Install", "RequiredBy"), []):
                u.setdefault("requires", {}).setdefault(target, [])
                if unit not in u["requires"][target]:
                    u["requires"][target].append(unit)
        if "--now" in ARGS:
            u["active"].extend(units)
    if verb == "restart" and "cloudstack-management.service" in units:
        state["api"]["restarts"] += 1
    if verb == "stop":
        u["active"] = [a for a in u["active"] if a not in units]
    if verb in ("start", "restart") and "cloudstack-management.service" in units:
        management_server_starts(state)  # the unit starts; the API only with its database
    if verb in ("start", "restart"):
        for unit in units:
            if unit in u.get("failing", []):
                sys.stderr.write(f"Job for {unit} failed.\n")
                return 1
            if dependency_failed(state, unit):
                return 1
            if unit == "libvirtd.service" and libvirtd_refuses_to_start(state):
                return 1
            if unit == "cloudstack-ec2-overlay.service" and overlay_refuses_forwards(state):
                return 1
        # systemctl(1), start: a unit that is running already is left as it is.
        if "libvirtd.service" in units and (verb == "restart" or "libvirtd.service" not in u["active"]):
            libvirtd_starts(state)
        u["active"].extend(units)
    if verb == "mask":
        u["masked"].extend(units)
    return 0


def overlay_refuses_forwards(state):
    """overlay-network.sh checks every variable before changing anything and exits 2
    on a bad one (the unit fails); here: when forwards.env holds one of the values
    state["units"]["overlay_refuses"] lists (e.g. a console proxy outside CONSOLE_RANGE)."""
    path = ROOT + "/etc/cloudstack-ec2/forwards.env"
    text = open(path).read() if os.path.exists(path) else ""
    refused = [v for v in state["units"].get("overlay_refuses", []) if v in text]
    if refused:
        sys.stderr.write(f"Job for cloudstack-ec2-overlay.service failed (overlay-network.sh refused {refused[0]}).\n")
    return bool(refused)


def libvirtd_refuses_to_start(state):
    """libvirtd started with --listen while systemd still holds its activation
    sockets exits at once (libvirt src/remote/remote_daemon.c, daemonSetupNetworking:
    "--listen parameter not permitted with systemd activation sockets"). Masking a
    socket unit does not close it: only `systemctl stop` does. Stopping without
    masking is not enough either: libvirtd.service Wants= its sockets (Ubuntu 24.04's
    unit), so starting it starts every installed, unmasked one again (systemd.unit(5),
    Wants=)."""
    default = os.path.join(ROOT + "/etc/default/libvirtd")
    listen = os.path.exists(default) and re.search(r'^LIBVIRTD_ARGS="[^"]*(--listen|-l)\b', open(default).read(), re.M)
    units = state["units"]
    held = [s for s in units["active"] if s.startswith("libvirtd") and s.endswith(".socket")]
    held += [s for s in LIBVIRTD_ACTIVATION_SOCKETS if s in units["enabled"] and s not in units["masked"]]
    if listen and held:
        sys.stderr.write("Job for libvirtd.service failed because the control process exited with error code.\n"
                         "libvirtd: error : --listen parameter not permitted with systemd activation sockets, "
                         f"see 'man libvirtd' for further guidance (listening: {', '.join(sorted(set(held)))})\n")
        return True
    return False


def libvirtd_starts(state):
    """libvirtd starting (libvirt src/network/bridge_driver.c, networkAutostartConfig): every
    network marked autostart that is not active is started."""
    for name, network in state["libvirt"]["networks"].items():
        if network["autostart"] and not network["active"]:
            start_libvirt_network(state, name)


def start_libvirt_network(state, name):
    """libvirt src/network/bridge_driver.c, networkStartNetworkVirtual: a network whose forward
    mode is not "none" turns the host's IPv4 forwarding on ("If forward.type != NONE, turn on
    global IP forwarding": networkEnableIPForwarding writes 1 to /proc/sys/net/ipv4/ip_forward;
    IPv6 too only for a network with an IPv6 address, which the default one has not). Stopping
    a network (networkShutdownNetworkVirtual) turns nothing off."""
    network = state["libvirt"]["networks"][name]
    network["active"] = True
    if network["forward"] != "none":
        state["sysctl"]["net.ipv4.ip_forward"] = "1"


def virsh(state):
    """virsh(1) over state["libvirt"]["networks"] (name -> {"forward", "autostart", "active"}):
    net-list [--all] [--autostart] [--name] (active networks only without --all), net-autostart
    [--disable] NAME, net-destroy NAME (refused for a network that is not active), net-start
    NAME. Every command needs a running libvirtd (the sockets are masked)."""
    if "libvirtd.service" not in state["units"]["active"]:
        sys.stderr.write("error: failed to connect to the hypervisor\nerror: Failed to connect socket to "
                         "'/var/run/libvirt/libvirt-sock': No such file or directory\n")
        return 1
    words = [a for a in ARGS if not a.startswith("-")]
    networks = state["libvirt"]["networks"]
    if words[0] == "net-list":
        names = [n for n, net in networks.items()
                 if ("--all" in ARGS or net["active"]) and ("--autostart" not in ARGS or net["autostart"])]
        print("\n".join(names) + "\n")  # virsh ends the list with an empty line
        return 0
    name = words[1]
    if name not in networks:
        sys.stderr.write(f"error: failed to get network '{name}'\n"
                         f"error: Network not found: no network with matching name '{name}'\n")
        return 1
    network = networks[name]
    if words[0] == "net-autostart":
        network["autostart"] = "--disable" not in ARGS
    elif words[0] == "net-destroy":
        if not network["active"]:
            sys.stderr.write(f"error: Failed to destroy network {name}\n"
                             "error: Requested operation is not valid: network is not active\n")
            return 1
        network["active"] = False
    elif words[0] == "net-start":
        if network["active"]:
            sys.stderr.write(f"error: Failed to start network {name}\n"
                             "error: Requested operation is not valid: network is already active\n")
            return 1
        start_libvirt_network(state, name)
    return 0


def sysctl(state):
    """procps sysctl(8) over state["sysctl"] (key -> value; a key missing there is not in this
    kernel): -p FILE loads its "key = value" lines ("#" and ";" start comments), -n KEY prints
    the value alone, -w KEY=VALUE sets one. A key the kernel has not: "cannot stat", exit 255."""
    values = state["sysctl"]
    words = [a for a in ARGS if not a.startswith("-")]
    if "-p" in ARGS:
        with open(words[0]) as f:
            lines = [line.strip() for line in f if line.strip() and line.strip()[0] not in "#;"]
        settings = [tuple(part.strip() for part in line.split("=", 1)) for line in lines]
    elif "-w" in ARGS:
        settings = [tuple(words[0].split("=", 1))]
    else:
        settings = [(key, None) for key in words]
    status = 0
    for key, value in settings:
        if key not in values:
            sys.stderr.write(f"sysctl: cannot stat /proc/sys/{key.replace('.', '/')}: No such file or directory\n")
            status = 255
        elif value is not None:
            values[key] = value
        elif "-n" in ARGS:
            print(values[key])
        else:
            print(f"{key} = {values[key]}")
    return status


#: The instance metadata service's address (EC2 User Guide, "Instance metadata").
IMDS = "http://169.254.169.254/latest/"


def imds(state, url):
    """IMDSv2 on state["imds"] (path under meta-data/ -> value): a PUT to api/token with a TTL header
    gives a token; a GET without it is refused with 401 (IMDSv2 required, as the instances' launch
    templates set http_tokens=required)."""
    if url == IMDS + "api/token":
        if "PUT" not in ARGS or not any(a.startswith("X-aws-ec2-metadata-token-ttl-seconds:") for a in ARGS):
            return 22
        print("imds-token-1", end="")
        return 0
    if "X-aws-ec2-metadata-token: imds-token-1" not in ARGS:
        sys.stderr.write("curl: (22) The requested URL returned error: 401\n")
        return 22
    value = state.get("imds", {}).get(url[len(IMDS + "meta-data/"):])
    if value is None:
        sys.stderr.write("curl: (22) The requested URL returned error: 404\n")
        return 22
    print(value, end="")
    return 0


def java_urlencode(value):
    """java.net.URLEncoder.encode(value, "UTF-8") with '+' as %20, as ApiServer.verifyRequest
    encodes each value: like quote(), but '~' is encoded too."""
    from urllib.parse import quote
    return quote(value, safe="*").replace("~", "%7E")


def signed_api(state, config):
    """`curl -K FILE` where FILE holds `url = "<API URL>?<query>"` (curl's config syntax):
    a request signed with API keys. Checked as apache/cloudstack ApiServer.verifyRequest does:
    the apikey names a user with keys (state["api"]["user_keys"]: apikey -> secretkey, what
    registerUserKeys gave), and the signature is base64(HMAC-SHA1(secretkey, the parameters but
    `signature` sorted by name, each name=URLEncoder(value), lower-cased)); else HTTP 401.
    Answers listSystemVms from state["api"]["system_vms"] (SystemVmResponse fields)."""
    import base64
    import hashlib
    import hmac
    from urllib.parse import parse_qsl, urlsplit
    with open(config) as f:
        m = re.fullmatch(r'url = "([^"\\]*)"\n', f.read())
    if not m:
        sys.stderr.write("curl: (26) config file: expected one url = \"...\" line\n")
        return 26
    if not state["api"]["up"]:
        sys.stderr.write("curl: (7) Failed to connect to 127.0.0.1 port 8080\n")
        return 7
    params = dict(parse_qsl(urlsplit(m.group(1)).query, keep_blank_values=True))
    record({"api": params.get("command"), "signed": True, "url_file": config})
    secret = state["api"].get("user_keys", {}).get(params.get("apikey", ""))
    text = "&".join(f"{k}={java_urlencode(v)}" for k, v in sorted(params.items()) if k.lower() != "signature")
    expected = secret and base64.b64encode(hmac.new(secret.encode(), text.lower().encode(), hashlib.sha1).digest())
    rkey = f"{params.get('command', '').lower()}response"
    if not secret or not hmac.compare_digest(expected.decode(), params.get("signature", "")):
        print(json.dumps({rkey: {"errorcode": 401, "errortext": "unable to verify user credentials and/or request "
                                                                 "signature"}}))
        return 0
    if params.get("command") != "listSystemVms":
        print(json.dumps({rkey: {"errorcode": 432, "errortext": "unknown"}}))
        return 0
    vms = [v for v in state["api"].get("system_vms", [])
           if params.get("systemvmtype") in (None, v.get("systemvmtype"))]
    # An empty list answers without the "systemvm" key (the JSON serializer leaves out what is empty).
    print(json.dumps({rkey: {"count": len(vms), **({"systemvm": vms} if vms else {})}}))
    return 0


def curl(state):
    out = opt(ARGS, "-o")
    if opt(ARGS, "-K") is not None:
        return signed_api(state, opt(ARGS, "-K"))
    url = ARGS[-1]
    if url.startswith(IMDS):
        return imds(state, url)
    if "-I" in ARGS:  # the internet check: a HEAD through the router
        net = state["network"]
        net["heads"] += 1
        if net["heads"] <= net["internet_silent_heads"]:
            print("000", end="")
            sys.stderr.write("curl: (28) Connection timed out\n")
            return 28
        print("200", end="")
        return 0
    bundle = state.get("rds_ca_bundle", {})
    if url.endswith("-bundle.pem"):  # AWS's RDS certificate bundles (the truststore hosts)
        if not bundle.get("reachable", True):
            sys.stderr.write("curl: (28) Connection timed out\n")
            return 28
        if url != bundle.get("url"):
            sys.stderr.write("curl: (22) The requested URL returned error: 404\n")
            return 22
        with open(out, "w") as f:
            f.write(pem(bundle["certificates"]))
        return 0
    if ".s3." in url and "amazoncloudwatch-agent-" in url:  # the CloudWatch agent's download bucket
        agent = state["cloudwatch_agent"]
        if not agent["reachable"]:
            sys.stderr.write("curl: (28) Connection timed out\n")
            return 28
        with open(out, "w") as f:
            f.write(json.dumps(agent["key_fingerprints"]) if url.endswith(".gpg") else url)
        return 0
    if url.endswith("release.asc"):
        with open(out, "w") as f:
            f.write("-----BEGIN PGP PUBLIC KEY BLOCK-----\nfake\n")
        return 0
    api = state["api"]
    if not api["up"]:
        if "-w" in ARGS:
            print("000", end="")
        sys.stderr.write("curl: (7) Failed to connect to 127.0.0.1 port 8080\n")
        return 7
    if "-w" in ARGS:
        print("401", end="")
        return 0
    form = {}
    for i, a in enumerate(ARGS):
        if a == "--data-urlencode":
            item = ARGS[i + 1]
            eq, at = item.find("="), item.find("@")
            if at != -1 and (eq == -1 or at < eq):
                with open(item[at + 1:]) as f:
                    form[item[:at]] = f.read()
            else:
                form[item[:eq]] = item[eq + 1:]
    command = form.get("command")
    # Whether the router could reach the API at this moment (fake nft's probes).
    record({"api": command, "firewall": dict(state.get("firewall", {}))})
    if command == "login":
        if form.get("username") == api["admin_user"] and form.get("password") == api["admin_password"]:
            print(json.dumps({"loginresponse": {"sessionkey": "sess-1", "userid": "admin-uuid"}}))
        else:
            print(json.dumps({"loginresponse": {"errorcode": 531, "errortext": "failed to authenticate"}}))
        return 0
    if form.get("sessionkey") != "sess-1":
        print(json.dumps({f"{command.lower()}response": {"errorcode": 401, "errortext": "unable to verify"}}))
        return 0
    if command == "updateUser" and api.get("refuse_update_user"):
        # UserManager refusing the change (e.g. a password policy): an error answer, password unchanged.
        print(json.dumps({"updateuserresponse": {"errorcode": 431, "errortext": "password change refused"}}))
    elif command == "updateUser":
        api["admin_password"] = form["password"]
        print(json.dumps({"updateuserresponse": {"user": {"id": form["id"]}}}))
    elif command in ROLE_AND_ACCOUNT_COMMANDS:
        print(json.dumps(ROLE_AND_ACCOUNT_COMMANDS[command](api, form)))
    elif command == "listConfigurations":
        # ManagementServerImpl.searchForConfigurations: name LIKE %name% (case-insensitive
        # collation) over the whole table, rows of category Hidden left out; rows the
        # boot wrote with SQL (no Config entry) included.
        name = form["name"].lower()
        items = [{"name": k, "value": v} for k, v in api["config"].items() if name in k.lower()]
        items += [{"name": k, "value": row["value"], "category": row["category"]}
                  for k, row in state["db"].get("configuration", {}).items()
                  if name in k.lower() and row["category"] != "Hidden"]
        print(json.dumps({"listconfigurationsresponse": {"count": len(items), "configuration": items}}))
    elif command == "updateConfiguration":
        if form["name"] not in api["config"]:
            # ConfigurationManagerImpl.updateConfiguration refuses a name it does not know
            # (as tests/emulator/server.py does).
            print(json.dumps({"updateconfigurationresponse": {
                "errorcode": 431, "errortext": f"Config parameter with name {form['name']} doesn't exist"}}))
            return 0
        api["config"][form["name"]] = form["value"]
        print(json.dumps({"updateconfigurationresponse": {"configuration": {"name": form["name"], "value": form["value"]}}}))
    else:
        print(json.dumps({"errorresponse": {"errorcode": 432, "errortext": "unknown"}}))
    return 0


def _error(command, code, text):
    return {f"{command.lower()}response": {"errorcode": code, "errortext": text}}


def _missing(command, form, required):
    """The real server's answer to a call without a required parameter (ApiDispatcher)."""
    missing = [p for p in required if not form.get(p)]
    return _error(command, 431, f"Unable to execute API command {command.lower()} due to missing parameter "
                                f"{missing[0]}") if missing else None


def _list_roles(api, form):
    # RoleDaoImpl.findAllByName: LIKE the name (older releases: %name%, a substring).
    name = form.get("name", "").lower()
    roles = [{k: r[k] for k in ("id", "name", "type", "description")} for r in api["roles"]
             if name in r["name"].lower()]
    return {"listrolesresponse": {"count": len(roles), "role": roles} if roles else {}}


def _map_param(form, name):
    """The entries of a map parameter (name[i].key=value), index order."""
    entries = {}
    for key, value in form.items():
        m = re.fullmatch(rf"{name}\[(\d+)\]\.(\w+)", key)
        if m:
            entries.setdefault(int(m.group(1)), {})[m.group(2)] = value
    return [entries[i] for i in sorted(entries)]


def _import_role(api, form):
    # RoleManagerImpl.importRole: one role and all its rules at once; a name in use is refused.
    # ImportRoleCmd.getRules: every rule names an API (unless it has a wildcard) and has a permission.
    error = _missing("importRole", form, ("name",))
    rules = _map_param(form, "rules")
    if error or not rules:
        return error or _error("importRole", 431, "Unable to execute API command importrole due to missing "
                                                   "parameter rules")
    if form.get("type") not in ("Admin", "ResourceAdmin", "DomainAdmin", "User"):
        return _error("importRole", 431, "Invalid role type provided")
    for rule in rules:
        if not rule.get("rule"):
            return _error("importRole", 431, "Empty rule provided in rules param")
        if rule.get("permission") not in ("allow", "deny"):
            return _error("importRole", 431, f"Invalid permission: {rule.get('permission')} provided in rules param")
    if any(r["name"] == form["name"] for r in api["roles"]):
        return _error("importRole", 530, "Role already exists")
    role = {"id": f"role-{len(api['roles']) + 1}", "name": form["name"], "type": form["type"],
            "description": form.get("description", ""), "rules": [[r["rule"], r["permission"]] for r in rules]}
    api["roles"].append(role)
    return {"importroleresponse": {"role": {k: role[k] for k in ("id", "name", "type", "description")}}}


def _role(api, role_id):
    return next((r for r in api["roles"] if r["id"] == role_id), None)


def _rule_id(role, rule):
    # A rule's id stays its own while others come and go (a UUID in the real server); a role
    # holds one rule of a name (RoleManagerImpl.createRolePermission).
    return f"{role['id']}-rule-{rule}"


def _list_role_permissions(api, form):
    # RolePermissionsDaoImpl.findAllByRoleIdSorted: in sort order.
    role = _role(api, form.get("roleid"))
    if role is None:
        return _error("listRolePermissions", 431, "Invalid role id provided")
    rules = [{"id": _rule_id(role, rule), "roleid": role["id"], "rolename": role["name"], "rule": rule,
              "permission": permission} for rule, permission in role["rules"]]
    return {"listrolepermissionsresponse": {"count": len(rules), "rolepermission": rules} if rules else {}}


def _create_role_permission(api, form):
    # RoleManagerImpl.createRolePermission: a rule the role has is refused; the new one goes
    # last (RolePermissionsDaoImpl.persist: sort order after the last rule's).
    error = _missing("createRolePermission", form, ("roleid", "rule", "permission"))
    role = None if error else _role(api, form["roleid"])
    if error or role is None:
        return error or _error("createRolePermission", 431, "Invalid role id provided")
    if any(rule == form["rule"] for rule, _ in role["rules"]):
        return _error("createRolePermission", 531, f"Rule already exists for the role: {role['name']}")
    role["rules"].append([form["rule"], form["permission"]])
    return {"createrolepermissionresponse": {"rolepermission": {
        "id": _rule_id(role, form["rule"]), "roleid": role["id"], "rule": form["rule"],
        "permission": form["permission"]}}}


def _role_rule(api, rule_id):
    return next(((role, i) for role in api["roles"] for i, (rule, _) in enumerate(role["rules"])
                 if _rule_id(role, rule) == rule_id), (None, None))


def _delete_role_permission(api, form):
    # DeleteRolePermissionCmd: an unknown id is refused; RolePermissionsDaoImpl.remove keeps the others' order.
    role, i = _role_rule(api, form.get("id"))
    if role is None:
        return _error("deleteRolePermission", 431, "Invalid role permission id provided")
    del role["rules"][i]
    return {"deleterolepermissionresponse": {"success": True}}


def _update_role_permission(api, form):
    # UpdateRolePermissionCmd with ruleorder (ids, comma-separated): RolePermissionsDaoImpl.update
    # takes the order only when it names each of the role's rules.
    role = _role(api, form.get("roleid"))
    if role is None or "ruleorder" not in form:
        return _error("updateRolePermission", 431, "Invalid role id provided" if role is None else
                      "the fake implements updateRolePermission with ruleorder only")
    by_id = {_rule_id(role, rule): [rule, permission] for rule, permission in role["rules"]}
    order = form["ruleorder"].split(",")
    if any(i not in by_id for i in order):
        return _error("updateRolePermission", 431, "Provided role permission(s) do not exist")
    if sorted(order) != sorted(by_id):
        return _error("updateRolePermission", 530, "The role's rule permissions list has changed while you were "
                                                    "making updates, aborted re-ordering of rules. Please try again.")
    role["rules"] = [by_id[i] for i in order]
    return {"updaterolepermissionresponse": {"success": True}}


def _list_accounts(api, form):
    # QueryManagerImpl.searchForAccountsInternal: the exact account name.
    accounts = [a for a in api["accounts"] if form.get("name") in (None, a["name"])]
    return {"listaccountsresponse": {"count": len(accounts), "account": accounts} if accounts else {}}


def _create_account(api, form):
    error = _missing("createAccount", form, ("email", "firstname", "lastname", "password", "username"))
    if error:
        return error
    if not form.get("roleid") and not form.get("accounttype"):
        return _error("createAccount", 431, "Neither account type and role ID are not provided")
    name = form.get("account") or form["username"]
    if any(a["name"] == name for a in api["accounts"]) or name == api["admin_user"]:
        return _error("createAccount", 530, f"The specified account: {name} already exists")
    n = len(api["accounts"]) + 1
    account = {"id": f"account-{n}", "name": name, "roleid": form.get("roleid"), "domain": "ROOT",
               "user": [{"id": f"user-{n}", "username": form["username"], "account": name}]}
    api["accounts"].append(account)
    return {"createaccountresponse": {"account": account}}


def _register_user_keys(api, form):
    # AccountManagerImpl.createApiKeyAndSecretKey: a new pair replaces the user's.
    users = {"admin-uuid"} | {u["id"] for a in api["accounts"] for u in a["user"]}
    if form.get("id") not in users:
        return _error("registerUserKeys", 431, "Unable to find user by id")
    api["keys_registered"] += 1
    n = api["keys_registered"]
    api["keys_of_user"][form["id"]] = n
    api["user_keys"][f"api-{n}"] = f"sec-{n}"
    return {"registeruserkeysresponse": {"userkeys": {"apikey": f"api-{n}", "secretkey": f"sec-{n}"}}}


ROLE_AND_ACCOUNT_COMMANDS = {"listRoles": _list_roles, "importRole": _import_role,
                             "listRolePermissions": _list_role_permissions,
                             "createRolePermission": _create_role_permission,
                             "deleteRolePermission": _delete_role_permission,
                             "updateRolePermission": _update_role_permission, "listAccounts": _list_accounts,
                             "createAccount": _create_account, "registerUserKeys": _register_user_keys}


def gpg(state):
    """`gpg --show-keys --with-colons FILE`: a pub and an fpr record per key of the fake key
    file (the fingerprints as curl wrote them); `gpg --dearmor`: stdin to stdout."""
    if "--dearmor" in ARGS:
        sys.stdout.write(sys.stdin.read())
        return 0
    if "--show-keys" in ARGS:
        for fpr in json.loads(open(ARGS[-1]).read()):
            print(f"pub:-:2048:1:{fpr[-16:]}:1600000000:::-:::scESC::::::23::0:")
            print(f"fpr:::::::::{fpr}:")
        return 0
    return 2


def gpgv(state):
    """`gpgv --keyring RING SIG FILE`: good when the ring holds AWS's key and the state says so."""
    ring = json.loads(open(ARGS[ARGS.index("--keyring") + 1]).read())
    if state["cloudwatch_agent"]["signature_good"] and ring:
        sys.stderr.write("gpgv: Good signature\n")
        return 0
    sys.stderr.write("gpgv: BAD signature\n")
    return 1


def dpkg_deb(state):
    """`dpkg-deb -f FILE FIELD`: dpkg-deb(1), --field: with one field named, "only its value
    is printed"; a file that is no package is "dpkg-deb: error: 'FILE' is not a Debian
    format archive" and exit 2."""
    if len(ARGS) != 3 or ARGS[0] not in ("-f", "--field"):
        sys.stderr.write(f"fake dpkg-deb: unsupported {ARGS}\n")
        return 2
    control = deb_control(ARGS[1])
    if control is None:
        sys.stderr.write(f"dpkg-deb: error: '{ARGS[1]}' is not a Debian format archive\n")
        return 2
    print(control.get(ARGS[2], ""))
    return 0


def dpkg(state):
    if ARGS == ["--print-architecture"]:
        print("amd64")
        return 0
    return 2


def cloudwatch_agent_ctl(state):
    """`amazon-cloudwatch-agent-ctl -a fetch-config -m ec2 -s -c ssm:NAME`: the agent loads its
    configuration from the parameter (failing like the real one when it does not exist)."""
    source = ARGS[ARGS.index("-c") + 1]
    name = source.removeprefix("ssm:")
    if name not in state["ssm"]:
        sys.stderr.write(f"ParameterNotFound: {name}\n")
        return 1
    state["cloudwatch_agent"]["running_with"] = name
    return 0


def nft(state):
    """`nft -f FILE`: the table in FILE replaces the one of that name (the file's
    `table`/`delete table` lines, nft(8)); the verdict of its input chain for each probe
    packet of state["firewall_probes"] (name -> {"iif", "saddr", "dport", "ether"}: a new
    IPv4 TCP connection to the probe's "table", "ether" its frame's source MAC) is kept in
    state["firewall"][name]. Other nft
    calls: recorded only, but `nft list counters table ip NAME`, which prints the named
    counters of state["nft_counters"] ({name: [packets, bytes]}) in nft's own layout."""
    if ARGS[:2] == ["list", "counter"]:
        # `nft list counter ip TABLE NAME`: one counter, nft's layout; an error without it.
        counter = state.get("nft_counters", {}).get(ARGS[-1])
        if counter is None:
            sys.stderr.write(f"Error: No such file or directory\nlist counter {' '.join(ARGS[2:])}\n")
            return 1
        print(f"table ip {ARGS[-2]} {{\n\tcounter {ARGS[-1]} {{\n\t\tpackets {counter[0]} bytes {counter[1]}\n\t}}\n}}")
        return 0
    if ARGS[:3] == ["list", "counters", "table"]:
        print(f"table ip {ARGS[-1]} {{")
        for name, (packets, size) in state.get("nft_counters", {}).items():
            print(f"\tcounter {name} {{\n\t\tpackets {packets} bytes {size}\n\t}}")
        print("}")
        return 0
    if ARGS[:1] != ["-f"]:
        return 0
    text = sys.stdin.read() if ARGS[1] == "-" else open(ARGS[1]).read()
    for name, probe in state.get("firewall_probes", {}).items():
        if f"table inet {probe['table']} {{" in text:
            section = text.split(f"table inet {probe['table']} {{", 1)[1]
            state.setdefault("firewall", {})[name] = nft_verdict(nft_input_rules(section), probe)
    return 0


def nft_input_rules(text):
    """The rules of the input chain, each a list of tokens ("{ a, b }" is one token)."""
    body = text.split("chain input {", 1)[1].split("}\n", 1)[0] if "chain input {" in text else ""
    rules = []
    for line in body.splitlines():
        line = line.strip()
        if not line or line.startswith("type filter hook"):
            continue
        rules.append(re.findall(r"\{[^}]*\}|\S+", line))
    return rules


def nft_in(value, spec):
    """value in an nft set/element: "{ a, b }", a CIDR, an a-b range or one value."""
    items = [x.strip() for x in spec.strip("{}").split(",")] if spec.startswith("{") else [spec]
    for item in items:
        item = item.strip('"')
        if "-" in item and "." in item:
            low, high = item.split("-")
            if ipaddress.ip_address(low) <= ipaddress.ip_address(value) <= ipaddress.ip_address(high):
                return True
        elif "/" in item:
            if ipaddress.ip_address(value) in ipaddress.ip_network(item, strict=False):
                return True
        elif item == str(value):
            return True
    return False


def nft_mac_and(mac, mask):
    """MAC `&` mask, both colon-separated hex bytes, in the lowercase form nft prints."""
    return ":".join(f"{int(a, 16) & int(b, 16):02x}" for a, b in zip(mac.split(":"), mask.split(":"), strict=True))


def nft_verdict(rules, probe):
    """The verdict of the first rule whose every match holds (policy accept). Knows the
    matches the boot scripts write; any other token fails the fake loudly."""
    fields = {("iifname",): probe["iif"], ("ip", "saddr"): probe["saddr"], ("tcp", "dport"): str(probe["dport"]),
              ("meta", "nfproto"): "ipv4", ("ether", "saddr"): probe["ether"]}
    for tokens in rules:
        i, matched = 0, True
        while i < len(tokens):
            t = tokens[i]
            if t in ("accept", "drop"):
                if matched:
                    return t
                break
            if t == "counter":
                i += 1
                continue
            if t == "ct":  # a probe is a new connection: established,related never holds
                matched, i = False, i + 3
                continue
            key = (t,) if t == "iifname" else (t, tokens[i + 1])
            if key not in fields:
                raise SystemExit(f"fake nft: unknown match {tokens}")
            i += len(key)
            value = fields[key]
            if tokens[i] == "&":  # a masked MAC (nft(8) "ETHERNET HEADER EXPRESSION", bitwise AND)
                value, i = nft_mac_and(value, tokens[i + 1]), i + 2
            negate = tokens[i] == "!="
            i += negate
            holds = nft_in(value, tokens[i]) != negate
            matched = matched and holds
            i += 1
    return "accept"


def keytool(state):
    """keytool -importcert (keytool(1)) into a fake keystore file (JSON: password, alias ->
    the certificate's CA name), the password given by -storepass or -storepass:env. Refuses a store password under 6 characters, an alias
    already in the store, a wrong password for an existing store."""
    store, alias = opt(ARGS, "-keystore"), opt(ARGS, "-alias")
    # -storepass:env NAME reads the password from the environment variable NAME (keytool(1))
    password = opt(ARGS, "-storepass") or os.environ.get(opt(ARGS, "-storepass:env") or "", "")
    if "-importcert" not in ARGS:
        sys.stderr.write(f"fake keytool: unsupported {ARGS}\n")
        return 2
    if "-noprompt" not in ARGS:
        # keytool(1) -importcert asks "Trust this certificate? [no]:" unless -noprompt; with
        # nothing on stdin the answer is no and nothing is imported.
        print("Trust this certificate? [no]:  Certificate was not added to keystore")
        return 1
    if len(password) < 6:
        print("keytool error: java.lang.Exception: Keystore password must be at least 6 characters")
        return 1
    data = json.load(open(store)) if os.path.exists(store) else {"password": password, "certificates": {}}
    if data["password"] != password:
        print("keytool error: java.io.IOException: keystore password was incorrect")
        return 1
    if alias in data["certificates"]:
        print(f"keytool error: java.lang.Exception: Certificate not imported, alias <{alias}> already exists")
        return 1
    names = pem_names(open(opt(ARGS, "-file")).read())
    if not names:
        print("keytool error: java.lang.Exception: Input not an X.509 certificate")
        return 1
    data["certificates"][alias] = names[0]
    with open(store, "w") as f:
        json.dump(data, f)
    print("Certificate was added to keystore")
    return 0


def mount(state):
    state["mounts"].append(ARGS[-1])
    return 0


def mountpoint(state):
    return 0 if ARGS[-1] in state["mounts"] else 32


def hostnamectl(state):
    with open(ROOT + "/etc/hostname", "w") as f:
        f.write(ARGS[-1] + "\n")
    return 0


def getent(state):
    user = ARGS[-1]
    if user == "root":
        print("root:x:0:0:root:/root:/bin/bash")
    elif user in state["users"]:
        print(f"{user}:x:1001:1001::/home/{user}:/bin/bash")
    else:
        return 2
    return 0


def useradd(state):
    state["users"].append(ARGS[-1])
    os.makedirs(ROOT + "/home/" + ARGS[-1], exist_ok=True)
    return 0


#: The KVM side of the machine: the CPU's virtualization flag in /proc/cpuinfo ("vmx" on
#: metal and on a nested-virtualization instance launched with the option; None on any
#: other virtual instance), whether /dev/kvm exists (kvm_intel loaded), and whether
#: firmware disabled VT-x. Default: a working KVM host.
KVM_DEFAULT = {"cpu_flag": "vmx", "dev_kvm": True, "disabled_by_firmware": False}


def kvm_ok(state):
    """cpu-checker's kvm-ok (Ubuntu, /usr/sbin/kvm-ok): the CPU flag first, then /dev/kvm;
    without /dev/kvm it still says "can be used" when only the module is missing (it
    checks the firmware's MSR), which is why the boot script insists on /dev/kvm."""
    kvm = {**KVM_DEFAULT, **state.get("kvm", {})}
    virt = kvm["cpu_flag"]
    if not virt:
        print("INFO: Your CPU does not support KVM extensions")
        print("KVM acceleration can NOT be used")
        return 1
    if kvm["dev_kvm"]:
        print("INFO: /dev/kvm exists")
        print("KVM acceleration can be used")
        return 0
    brand = "intel" if virt == "vmx" else "amd"
    print("INFO: /dev/kvm does not exist")
    print(f"HINT:   sudo modprobe kvm_{brand}")
    print("INFO: Your CPU supports KVM extensions")
    if kvm["disabled_by_firmware"]:
        print(f"INFO: KVM ({virt}) is disabled by your BIOS")
        print("HINT: Enter your BIOS setup and enable Virtualization Technology (VT),")
        print("      and then hard poweroff/poweron your system")
        print("KVM acceleration can NOT be used")
        return 1
    print("KVM acceleration can be used")
    return 0


def modprobe(state):
    """Loading kvm_intel creates /dev/kvm only where the CPU has VT-x enabled (the kernel
    refuses otherwise: "Operation not supported")."""
    module = ARGS[-1].replace("-", "_")
    if module in ("kvm_intel", "kvm_amd"):
        kvm = state.setdefault("kvm", {})
        merged = {**KVM_DEFAULT, **kvm}
        wanted = "vmx" if module == "kvm_intel" else "svm"
        if merged["cpu_flag"] != wanted or merged["disabled_by_firmware"]:
            sys.stderr.write(f"modprobe: ERROR: could not insert '{module}': Operation not supported\n")
            return 1
        kvm["dev_kvm"] = True
    return 0


#: A member's addresses and routes as overlay-network.sh leaves them: the overlay's
#: default route on cloudbr0, EC2's link-local services through the VPC router on the
#: underlay device (tests may replace state["kernel_net"]).
NETWORK_DEFAULT = {
    "addresses": {"ens5": "10.0.0.28/24", "cloudbr0": "10.100.0.2/16"},
    "routes": ["default via 10.100.0.1 dev cloudbr0 src 10.100.0.2 metric 0",
               "169.254.169.254 via 10.0.0.1 dev ens5 src 10.0.0.28",
               "169.254.169.123 via 10.0.0.1 dev ens5 src 10.0.0.28"],
}


def ip(state):
    """`ip -4 -o addr show ...` (ip_addr_show), `ip -4 -o route show PREFIX`,
    `ip route replace PREFIX via GW dev DEV src SRC [table N]` (the main table, or
    kernel_net["tables"][N]) and `ip rule add|del fwmark M table N [priority P]`
    (ip_rule), refused as the kernel refuses them: a gateway that is not on the device's own
    subnet ("Nexthop has invalid gateway"), a source that is no address of the device's host
    ("Invalid prefsrc address"), a malformed prefix."""
    args = [a for a in ARGS if a not in ("-4", "-o")]
    if args[:2] == ["addr", "show"]:
        return ip_addr_show(state)
    network = state.setdefault("kernel_net", json.loads(json.dumps(NETWORK_DEFAULT)))
    if args[:1] == ["rule"]:
        return ip_rule(network, args[1:])
    if args[:2] == ["route", "show"]:
        wanted = args[2] if len(args) > 2 else None
        for route in network["routes"]:
            destination = route.split()[0]
            if wanted is None or destination == wanted or f"{destination}/32" == wanted:
                print(route)
        return 0
    if args[:2] == ["route", "replace"] and len(args) >= 3:
        prefix, rest = args[2], args[3:]
        via, dev, src = opt(rest, "via"), opt(rest, "dev"), opt(rest, "src")
        try:
            ipaddress.IPv4Network("0.0.0.0/0" if prefix == "default" else prefix)
        except ValueError:
            sys.stderr.write(f'Error: inet prefix is expected rather than "{prefix}".\n')
            return 1
        own = network["addresses"].get(dev)
        if own is None:
            sys.stderr.write(f'Cannot find device "{dev}"\n')
            return 1
        if via and ipaddress.IPv4Address(via) not in ipaddress.IPv4Interface(own).network:
            sys.stderr.write("Error: Nexthop has invalid gateway.\n")
            return 2
        if src and src not in {a.split("/")[0] for a in network["addresses"].values()}:
            sys.stderr.write("Error: Invalid prefsrc address.\n")
            return 2
        table = opt(rest, "table")
        if table is not None:
            rest = rest[:rest.index("table")] + rest[rest.index("table") + 2:]
        routes = network["routes"] if table is None else network.setdefault("tables", {}).setdefault(table, [])
        line = " ".join([prefix] + rest)
        routes[:] = [r for r in routes if r.split()[0] != prefix] + [line]
        return 0
    sys.stderr.write(f"fake ip: unsupported {' '.join(ARGS)}\n")
    return 1


def ip_rule(network, args):
    """`ip rule add|del fwmark M table N [priority P]` on kernel_net["rules"] (lines "fwmark M
    table N priority P"), as Linux answers them: `add` of a rule that is there fails ("File
    exists"), `del` of a rule that is not there fails ("No such file or directory")."""
    rules = network.setdefault("rules", [])
    if args[:1] == ["add"]:
        if " ".join(args[1:]) in rules:
            sys.stderr.write("RTNETLINK answers: File exists\n")
            return 2
        rules.append(" ".join(args[1:]))
        return 0
    if args[:1] == ["del"]:
        matching = [r for r in rules if r.startswith(" ".join(args[1:]))]
        if not matching:
            sys.stderr.write("RTNETLINK answers: No such file or directory\n")
            return 2
        rules.remove(matching[0])
        return 0
    sys.stderr.write(f"fake ip: unsupported rule {' '.join(args)}\n")
    return 1


HANDLERS = {
    "aws": aws, "snap": snap, "apt-get": apt_get, "dpkg-query": dpkg_query, "mysql": mysql,
    "cloudstack-setup-databases": setup_databases, "cloudstack-setup-management": setup_management,
    "systemctl": systemctl, "curl": curl, "mount": mount, "mountpoint": mountpoint,
    "hostnamectl": hostnamectl, "getent": getent, "useradd": useradd, "ping": ping,
    "kvm-ok": kvm_ok, "modprobe": modprobe, "keytool": keytool, "nft": nft, "ip": ip,
    "keepalived": keepalived, "virsh": virsh, "sysctl": sysctl,
    "kvm-ok": kvm_ok, "modprobe": modprobe, "keytool": keytool, "nft": nft,
    "gpg": gpg, "gpgv": gpgv, "dpkg": dpkg, "dpkg-deb": dpkg_deb, "amazon-cloudwatch-agent-ctl": cloudwatch_agent_ctl,
}


#: What several instances share (one AWS account, one database): with $FAKE_WORLD set, the
#: parts of the state in $FAKE_WORLD/world.json (tests/userdata/bootlab.py SHARED) live
#: there, the rest stays the instance's own.
WORLD_DIR = os.environ.get("FAKE_WORLD")


def main():
    if NAME == "mysql" and "--unbuffered" in ARGS:
        return mysql_session()
    if NAME == "cloudstack-setup-databases" and "--schema-only" in ARGS:
        # The schema step takes minutes on a real database: $FAKE_SCHEMA_SECONDS of it, while
        # other instances go on.
        time.sleep(float(os.environ.get("FAKE_SCHEMA_SECONDS", "0")))
    with open(os.path.join(STATE_DIR, "lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        world_lock = open(os.path.join(WORLD_DIR, "lock"), "w") if WORLD_DIR else None
        if world_lock:
            fcntl.flock(world_lock, fcntl.LOCK_EX)
        try:
            state, shared = load(), ()
            if world_lock:
                with open(os.path.join(WORLD_DIR, "world.json")) as f:
                    world = json.load(f)
                state.update(world)
                shared = tuple(world)
            if NAME != "mysql":
                record()
            handler = HANDLERS.get(NAME)
            status = handler(state) if handler else 0  # nft, apparmor_parser, chown, ...: record only
            if world_lock:
                tmp = os.path.join(WORLD_DIR, "world.json.tmp")
                with open(tmp, "w") as f:
                    json.dump({k: state.pop(k) for k in shared}, f)
                os.replace(tmp, os.path.join(WORLD_DIR, "world.json"))
            save(state)
        finally:
            if world_lock:
                world_lock.close()
    return status


if __name__ == "__main__":
    sys.exit(main())
