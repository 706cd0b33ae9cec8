"""`cloudstack-ec2 status --stack NAME`: the zone's live state from CloudStack's API.

The API URL and the api-keys secret come from the stack's outputs (apiEndpoint,
secretArns.api_keys, as the registration and the cloudmonkey output use them); the keys
are read from Secrets Manager with the caller's AWS credentials and every request is
signed with them (components/registration/client.py). Nothing is written anywhere.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Callable, TextIO

from components.cli.automation import PulumiCliMissing
from components.model import status as model
from components.model.stackconfig import StackConfigError, read_stack
from components.registration.client import Api, RegistrationError, read_api_keys
from components.registration.spec import Timeouts

#: An operator waits seconds, not the registration's minutes: a few quick attempts.
STATUS_TIMEOUTS = Timeouts(secret_wait=5, transient_retry=5, poll_interval=1, http_timeout=20)


def collect(api: Api) -> dict:
    """The report of the zone behind `api` (model.zone_report). Raises RegistrationError."""
    hosts = api.list("listHosts", "host", type="Routing")
    vms = {h["id"]: len(api.list("listVirtualMachines", "virtualmachine", hostid=h["id"], listall="true"))
           for h in hosts}
    return model.zone_report(
        api.endpoint, api.list("listManagementServers", "managementserver"), hosts, vms,
        api.list("listSystemVms", "systemvm"), api.list("listCapacity", "capacity"), api.list("listAlerts", "alert"))


#: What reading the stack's outputs needs, for the commands' help.
OUTPUTS_NEED = ("The stack's outputs (apiEndpoint, secretArns) are read through the Pulumi CLI and the stack's "
                "backend, as `outputs` reads them: the CLI installed, logged in to that backend (or "
                "PULUMI_BACKEND_URL), and the stack's passphrase (PULUMI_CONFIG_PASSPHRASE or "
                "PULUMI_CONFIG_PASSPHRASE_FILE).")


def stack_connection(args: argparse.Namespace, *names: str) -> tuple[str, ...]:
    """(API URL, ARN of each secret `names` names (keys of the secretArns output; default
    api_keys), region) of the stack, from its outputs and config."""
    from components.cli.automation import open_stack

    names = names or ("api_keys",)
    region = read_stack(Path(args.dir), args.stack).values.get("aws:region", "")
    outputs = {k: v.value for k, v in open_stack(args.stack, Path(args.dir)).outputs().items()}
    endpoint, secrets = outputs.get("apiEndpoint"), outputs.get("secretArns") or {}
    missing = [n for n in names if not secrets.get(n)]
    if not endpoint or missing:
        raise RegistrationError(f"stack {args.stack!r} has no apiEndpoint/secretArns.{(missing or names)[0]} "
                                f"outputs: run `cloudstack-ec2 up --stack {args.stack}` first")
    arns = tuple(secrets[n] for n in names)
    return (endpoint, *arns, region or arns[0].split(":")[3])


def open_connection(name: str, args: argparse.Namespace, err: TextIO,
                    connection: Callable[[argparse.Namespace], tuple[str, ...]]) -> tuple[str, ...] | int:
    """`connection(args)`, or the exit status once the error is written to `err` under
    `name`: 2 the stack cannot be read, 1 it has no API or keys yet, or the Pulumi CLI that
    reads its outputs is missing (the same line and status as `outputs`)."""
    try:
        return connection(args)
    except StackConfigError as exc:
        err.write(f"{name}: {exc}\n")
        return 2
    except (PulumiCliMissing, RegistrationError) as exc:
        err.write(f"{name}: {exc}\n")
        return 1


def status_command(args: argparse.Namespace, out: TextIO, err: TextIO,
                   connection: Callable[[argparse.Namespace], tuple[str, str, str]] = stack_connection) -> int:
    """Print the report (a table, or JSON with --json). Exit 0 healthy, 3 needs attention,
    1 when the API or the keys cannot be reached (the message names the URL), 2 bad stack.
    `connection`: where the stack's API and keys are (stack_connection reads its outputs)."""
    name = "cloudstack-ec2 status"
    found = open_connection(name, args, err, connection)
    if isinstance(found, int):
        return found
    endpoint, secret, region = found
    try:
        apikey, secretkey = read_api_keys(secret, region, STATUS_TIMEOUTS)
        report = collect(Api(endpoint, apikey, secretkey, STATUS_TIMEOUTS))
    except RegistrationError as exc:
        err.write(f"{name}: cannot read the zone from CloudStack's API at {endpoint}: {exc}\n")
        return 1
    if args.json:
        json.dump(report, out, indent=2)
        out.write("\n")
    else:
        out.write(model.render(report))
    return 0 if report["healthy"] else 3


def add_command(sub: Any, project_root: Path) -> None:
    """Register `status` on the CLI's subcommand parser."""
    p = sub.add_parser("status", help="the zone's live state from CloudStack's API: management servers, hosts, "
                                      "system VMs, capacity, open alerts (exit 3 when something needs attention)",
                          description="The zone's live state from CloudStack's API, signed with the stack's API "
                                      "keys: your AWS credentials must read the stack's api_keys secret, and the "
                                      "API must be reachable from here (adminCidrs). " + OUTPUTS_NEED,
                          epilog="exit status: 0 all Up and no open alert; 3 something needs attention; 1 the API "
                                 "or the keys could not be reached (the message names the URL), or the Pulumi CLI "
                                 "is missing; 2 the stack "
                                 "cannot be read")
    p.add_argument("--stack", default="dev", help="stack name (default: dev)")
    p.add_argument("--dir", default=str(project_root), help="project directory (default: this checkout)")
    p.add_argument("--json", action="store_true", help="the report as JSON")
    p.set_defaults(handler=status_command)

