"""EC2's control plane for the router pair lab, run inside the lab's "EC2 VPC router"
namespace (netlab.py):

  - the EC2 API: moto in server mode (ThreadedMotoServer) on MOTO_ADDRESS:MOTO_PORT, seeded
    with the VPC, the two routers' ENIs (primary, console and tenants' addresses) and their
    instances, the
    managed route tables with the overlay route to router 0 and the three Elastic IPs
    associated with router 0's addresses;
  - the instance metadata service (IMDSv2 only: a PUT for a token first, as the launch
    templates require) on 169.254.169.254:80, answering each router about itself by the
    source address of its request, as EC2 answers each instance;
  - the data plane following the control plane, as EC2's does: every POLL_SECONDS the
    namespace's route to the overlay follows the first route table's overlay route, and
    the internet gateway's one-to-one NAT (nftables table ec2_igw) follows the Elastic
    IPs' associations. EC2's internet gateway keeps no connection state, so on a change
    the stale conntrack entries of the previous private addresses are deleted.

    python3 ec2_standin.py CONFIG.json STATUS.json

prints READY once all runs; STATUS.json holds the seeded IDs and, after every change of
the data plane, where it points and when each of the route and the Elastic IPs last
moved (written atomically). moto maps an Elastic IP to its
interface's primary address whatever PrivateIpAddress the association named;
keep_private_addresses makes it keep the named one, as EC2 does.
"""

from __future__ import annotations

import base64
import http.server
import json
import os
import subprocess
import sys
import threading
import time

import boto3
from moto.ec2.exceptions import InvalidParameterValueError
from moto.ec2.models.elastic_ip_addresses import ElasticAddress
from moto.ec2.responses.elastic_ip_addresses import ElasticIPAddresses
from moto.server import ThreadedMotoServer

POLL_SECONDS = 0.1
REGION = "eu-west-1"
IMDS = ("169.254.169.254", 80)
TOKEN = "lab-imds-token"


def ec2_client(address: str, port: int):
    return boto3.client("ec2", region_name=REGION, endpoint_url=f"http://{address}:{port}",
                        aws_access_key_id="testing", aws_secret_access_key="testing")


def keep_private_addresses() -> None:
    """EC2 API Reference, AssociateAddress: PrivateIpAddress is "the primary or secondary
    private IP address to associate with the Elastic IP address"; without it, the primary
    one; an address the interface does not have is refused (InvalidParameterValue).
    DescribeAddresses reports it as PrivateIpAddress. moto takes the interface's primary
    address every time, so the router's check of its console and tenants' addresses would
    never find them where it put them."""
    associate = ElasticIPAddresses.associate_address

    def associate_keeping_the_address(self):
        private = self._get_param("PrivateIpAddress")
        eni_id = self._get_param("NetworkInterfaceId")
        if private and eni_id:
            eni = self.ec2_backend.get_network_interface(eni_id)
            if private not in [a["PrivateIpAddress"] for a in eni.private_ip_addresses]:
                raise InvalidParameterValueError(private)
        result = associate(self)
        allocation = self._get_param("AllocationId")
        if allocation:
            self.ec2_backend.address_by_allocation([allocation])[0].associated_private_ip = private or None
        return result

    ElasticIPAddresses.associate_address = associate_keeping_the_address
    ElasticAddress.private_ip_address = property(
        lambda eip: (getattr(eip, "associated_private_ip", None) or eip.eni.private_ip_address) if eip.eni else None)


def seed(ec2, config: dict) -> dict:
    """The deployment as Pulumi leaves it: router 0 holds the route and the addresses."""
    vpc = ec2.create_vpc(CidrBlock=config["vpc"])["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock=config["subnet"])["Subnet"]["SubnetId"]
    enis = []
    for router in config["routers"]:
        eni = ec2.create_network_interface(SubnetId=subnet, PrivateIpAddress=router["primary"])
        eni_id = eni["NetworkInterface"]["NetworkInterfaceId"]
        ec2.assign_private_ip_addresses(NetworkInterfaceId=eni_id,
                                        PrivateIpAddresses=[router["console"], router["tenant"]])
        enis.append(eni_id)
    # Each router's instance on its interface: the split-brain check asks EC2 which
    # instance an interface belongs to and whether it runs (moto's own image list).
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    # Launched with the user data the lab gives (base64 of the gzip'd script, as Pulumi passes
    # it; EC2 keeps the bytes and DescribeInstanceAttribute answers their base64).
    instances = [ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1, UserData=base64.b64decode(
        router["user_data"]), NetworkInterfaces=[{"DeviceIndex": 0, "NetworkInterfaceId": eni}]
    )["Instances"][0]["InstanceId"] for eni, router in zip(enis, config["routers"])]
    tables = []
    for _ in range(config["route_tables"]):
        table = ec2.create_route_table(VpcId=vpc)["RouteTable"]["RouteTableId"]
        ec2.create_route(RouteTableId=table, DestinationCidrBlock=config["overlay"], NetworkInterfaceId=enis[0])
        tables.append(table)
    allocations = {}
    for role in ("infrastructure", "console", "tenant"):
        allocation = ec2.allocate_address(Domain="vpc")["AllocationId"]
        private = config["routers"][0]["primary" if role == "infrastructure" else role]
        ec2.associate_address(AllocationId=allocation, NetworkInterfaceId=enis[0], PrivateIpAddress=private)
        allocations[role] = allocation
    return {"vpc": vpc, "enis": enis, "instances": instances, "tables": tables, "allocations": allocations}


def serve_imds(config: dict, ids: dict) -> None:
    """IMDSv2 per caller: the router whose primary address sent the request."""
    by_source = {}
    for router, eni in zip(config["routers"], ids["enis"]):
        by_source[router["primary"]] = {"mac": router["mac"], "local-ipv4": router["primary"],
                                        f"network/interfaces/macs/{router['mac']}/interface-id": eni,
                                        f"network/interfaces/macs/{router['mac']}/vpc-id": ids["vpc"]}

    class Handler(http.server.BaseHTTPRequestHandler):
        def answer(self, status: int, body: str = "") -> None:
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body.encode())

        def do_PUT(self):  # noqa: N802
            ok = self.path == "/latest/api/token" and self.headers.get("X-aws-ec2-metadata-token-ttl-seconds")
            self.answer(200, TOKEN) if ok else self.answer(400)

        def do_GET(self):  # noqa: N802
            if self.headers.get("X-aws-ec2-metadata-token") != TOKEN:
                return self.answer(401)
            value = by_source.get(self.client_address[0], {}).get(self.path.removeprefix("/latest/meta-data/"))
            return self.answer(404) if value is None else self.answer(200, value)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(IMDS, Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()


def igw_table(config: dict, mapping: dict[str, str]) -> str:
    """The internet gateway (public -> private, one to one) as netlab.py builds it."""
    dnat = "".join(f'        iifname "{config["igw_dev"]}" ip daddr {public} dnat to {private}\n'
                   for public, private in mapping.items())
    snat = "".join(f'        oifname "{config["igw_dev"]}" ip saddr {private} snat to {public}\n'
                   for public, private in mapping.items())
    allowed = ", ".join(mapping.values())
    return f"""table ip ec2_igw
delete table ip ec2_igw
table ip ec2_igw {{
    chain prerouting {{ type nat hook prerouting priority dstnat; policy accept;
{dnat}    }}
    chain postrouting {{ type nat hook postrouting priority srcnat; policy accept;
{snat}    }}
    chain forward {{ type filter hook forward priority filter; policy accept;
        oifname "{config["igw_dev"]}" ip saddr != {{ {allowed} }} counter drop
    }}
}}
"""


def data_plane(ec2, config: dict, ids: dict) -> tuple[str, dict[str, str]]:
    """(ENI of the first table's overlay route, {role: ENI of its Elastic IP}) as moto has them."""
    table = ec2.describe_route_tables(RouteTableIds=ids["tables"][:1])["RouteTables"][0]
    target = next(r.get("NetworkInterfaceId") for r in table["Routes"]
                  if r.get("DestinationCidrBlock") == config["overlay"])
    addresses = ec2.describe_addresses(AllocationIds=list(ids["allocations"].values()))["Addresses"]
    by_allocation = {a["AllocationId"]: a.get("NetworkInterfaceId") for a in addresses}
    return target, {role: by_allocation[a] for role, a in ids["allocations"].items()}


def status(ec2, ids: dict) -> dict:
    """Every route table's overlay target and every allocation's ENI."""
    tables = ec2.describe_route_tables(RouteTableIds=ids["tables"])["RouteTables"]
    return {"routes": {t["RouteTableId"]: [r.get("NetworkInterfaceId") for r in t["Routes"]
                                           if r.get("DestinationCidrBlock") == CONFIG["overlay"]][0]
                       for t in tables}}


def follow(ec2, config: dict, ids: dict, status_path: str) -> None:
    """Apply the control plane to the namespace, forever (the lab stops this process)."""
    applied = None
    private_of = {eni: router for eni, router in zip(ids["enis"], config["routers"])}
    moved: dict[str, float] = {}  # "route" and each Elastic IP role: when this loop saw it change
    while True:
        target, eips = data_plane(ec2, config, ids)
        if (target, eips) != applied:
            now = time.time()
            before_target, before_eips = applied or (None, {})
            moved.update({"route": now} if target != before_target else {})
            moved.update({role: now for role, eni in eips.items() if before_eips.get(role) != eni})
            subprocess.run(["ip", "route", "replace", config["overlay"], "via", private_of[target]["primary"]],
                           check=True)
            mapping = {config["eips"][role]: private_of[eni]["primary" if role == "infrastructure" else role]
                       for role, eni in eips.items()}
            subprocess.run(["nft", "-f", "-"], input=igw_table(config, mapping), text=True, check=True)
            stale = {router[k] for router in config["routers"] for k in ("primary", "console", "tenant")}
            for address in stale - set(mapping.values()):
                for side in ("-s", "-r"):  # original source, reply source
                    subprocess.run(["conntrack", "-D", side, address], capture_output=True)
            applied = (target, eips)
            report = {**ids, **status(ec2, ids), "addresses": eips, "changed": time.time(), "moved": moved}
            with open(status_path + ".tmp", "w") as f:
                json.dump(report, f)
            os.replace(status_path + ".tmp", status_path)
        time.sleep(POLL_SECONDS)


CONFIG: dict = {}


def main(config_path: str, status_path: str) -> int:
    with open(config_path) as f:
        CONFIG.update(json.load(f))
    address, port = CONFIG["moto"]
    keep_private_addresses()
    server = ThreadedMotoServer(ip_address=address, port=port, verbose=False)
    server.start()
    ec2 = ec2_client(address, port)
    ids = seed(ec2, CONFIG)
    serve_imds(CONFIG, ids)
    threading.Thread(target=follow, args=(ec2, CONFIG, ids, status_path), daemon=True).start()
    deadline = time.monotonic() + 10
    while not os.path.exists(status_path) and time.monotonic() < deadline:
        time.sleep(0.05)
    print("READY", flush=True)
    threading.Event().wait()
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
