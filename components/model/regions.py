"""What differs between AWS regions and partitions, for this program.

Pure module (no Pulumi import): the partition of a region, the account Canonical
publishes its Ubuntu AMIs from in each partition, and which regions offer Transit
Gateway multicast (the overlay cannot work without it).
"""

from __future__ import annotations

import re
from typing import Optional

from components.model.suggest import did_you_mean, nearest_names

#: Partition -> the form of its region names, as the AWS SDKs match a region to its partition
#: (botocore data/partitions.json `regionRegex`, the partitions file every SDK's endpoint
#: rules share; `\w` narrowed to lowercase letters, which is what AWS's region names use).
PARTITION_REGION_FORMS = (
    ("aws", re.compile(r"^(us|eu|ap|sa|ca|me|af|il|mx)-[a-z]+-\d+$")),
    ("aws-cn", re.compile(r"^cn-[a-z]+-\d+$")),
    ("aws-us-gov", re.compile(r"^us-gov-[a-z]+-\d+$")),
    ("aws-iso", re.compile(r"^us-iso-[a-z]+-\d+$")),
    ("aws-iso-b", re.compile(r"^us-isob-[a-z]+-\d+$")),
    ("aws-iso-e", re.compile(r"^eu-isoe-[a-z]+-\d+$")),
    ("aws-iso-f", re.compile(r"^us-isof-[a-z]+-\d+$")),
    ("aws-eusc", re.compile(r"^eusc-de-[a-z]+-\d+$")),
)
#: The partitions whose DNS suffix and service principals this module knows (dns_suffix,
#: service_principal): the program's IAM policies and endpoints are right only there.
SUPPORTED_PARTITIONS = ("aws", "aws-us-gov", "aws-cn", "aws-iso", "aws-iso-b")
#: A region name's shape: <area>-<direction(s)>-<number>, all lowercase (us-east-1, us-gov-west-1).
_REGION_SHAPE = re.compile(r"^[a-z]+(-[a-z]+)+-\d+$")

#: Partition -> the account that owns Canonical's official Ubuntu AMIs there. Canonical's
#: Ubuntu-on-AWS documentation ("verify an AMI's OwnerId"): 099720109477 in the default
#: partition, 513442679011 in GovCloud, 837727238323 in China.
CANONICAL_AMI_OWNERS = {
    "aws": "099720109477",
    "aws-us-gov": "513442679011",
    "aws-cn": "837727238323",
}


def partition_of(region: str) -> str:
    """`aws`, `aws-us-gov`, `aws-cn`, ... for a region name such as us-gov-west-1
    (`aws` for a name of no known partition, which region_problem refuses)."""
    return next((partition for partition, form in PARTITION_REGION_FORMS if form.match(region)), "aws")


def dns_suffix(partition: str) -> str:
    """terraform-provider-aws names/names.go DNSSuffixForPartition (the partitions used here)."""
    return {"aws-cn": "amazonaws.com.cn", "aws-iso": "c2s.ic.gov", "aws-iso-b": "sc2s.sgov.gov"}.get(
        partition, "amazonaws.com")


def canonical_ami_owner(partition: str) -> Optional[str]:
    """Canonical's AMI owner in `partition`; None where Canonical publishes none (set amiId)."""
    return CANONICAL_AMI_OWNERS.get(partition)


# --------------------------------------------------------------------------- RDS certificate bundles

#: Partition -> where AWS publishes the RDS certificate bundles of its regions, over HTTPS
#: only (RDS User Guide, "Using SSL/TLS to encrypt a connection to a DB instance or cluster",
#: certificate bundles by AWS Region; the China Regions' copy of that page for aws-cn).
#: Each region's bundle holds the root and intermediate certificates of every RDS CA there.
RDS_CA_BUNDLE_HOSTS = {
    "aws": "https://truststore.pki.rds.amazonaws.com",
    "aws-us-gov": "https://truststore.pki.us-gov-west-1.rds.amazonaws.com",
    "aws-cn": "https://rds-truststore.s3.cn-north-1.amazonaws.com.cn",
}


def rds_ca_bundle_url(region: str) -> Optional[str]:
    """`<host>/<region>/<region>-bundle.pem`: the certificates that verify an RDS server
    certificate in `region`; None in a partition for which no bundle address is known."""
    host = RDS_CA_BUNDLE_HOSTS.get(partition_of(region))
    return None if host is None else f"{host}/{region}/{region}-bundle.pem"


# --------------------------------------------------------------------------- Transit Gateway multicast

#: When the table below was read, and from where.
TGW_MULTICAST_AS_OF = "2026-11-30"
TGW_MULTICAST_SOURCE = ("AWS Transit Gateway FAQ (aws.amazon.com/transit-gateway/faqs/, General: "
                        "'Transit Gateway multicast support is available in ...'), read " + TGW_MULTICAST_AS_OF)

#: Regions the FAQ names for Transit Gateway multicast. The copy read here (the FAQ's
#: Japanese page, whose lists follow the English one) breaks off after Europe (Zurich);
#: the regions its Transit Gateway list names after that point (Spain, Hyderabad,
#: Melbourne, Tel Aviv, Calgary) are therefore left unknown (a warning, not a refusal).
TGW_MULTICAST_REGIONS = frozenset({
    "us-east-1", "us-east-2", "us-west-1", "us-west-2", "us-gov-east-1", "us-gov-west-1", "ca-central-1",
    "eu-west-1", "eu-west-2", "eu-central-1", "eu-north-1", "eu-west-3", "eu-south-1", "sa-east-1",
    "af-south-1", "ap-northeast-1", "ap-southeast-2", "ap-south-1", "ap-east-1", "ap-northeast-3",
    "ap-northeast-2", "ap-southeast-1", "me-south-1", "cn-north-1", "cn-northwest-1", "ap-southeast-3",
    "me-central-1", "eu-central-2",
})

#: Regions the FAQ names only in its (newer) Transit Gateway peering list: absent from its
#: list of Transit Gateway regions, whose order the multicast list follows, and absent from
#: the multicast list as far as it was read. An inference from the FAQ, dated above: if AWS
#: adds multicast there, move the region to TGW_MULTICAST_REGIONS.
TGW_WITHOUT_MULTICAST = frozenset({
    "ap-southeast-5",  # Asia Pacific (Malaysia)
    "ap-southeast-6",  # Asia Pacific (New Zealand)
    "ap-southeast-7",  # Asia Pacific (Thailand)
    "ap-east-2",       # Asia Pacific (Taipei)
})


def tgw_multicast(region: str) -> Optional[bool]:
    """True: offered; False: known not to be; None: the table does not know the region
    (newer than the table, or the FAQ copy read did not settle it)."""
    if region in TGW_MULTICAST_REGIONS:
        return True
    if region in TGW_WITHOUT_MULTICAST:
        return False
    return None


def service_principal(service: str, partition: str) -> str:
    """The IAM service principal of `service` (e.g. "ec2") in `partition`, as the
    provider's getServicePrincipal data source answers it: terraform-provider-aws
    names/names.go ServicePrincipalNameForPartition (China: ec2, s3, logs, codedeploy,
    elasticmapreduce use amazonaws.com.cn)."""
    special = {"aws-cn": ("codedeploy", "elasticmapreduce", "logs", "ec2", "s3"),
               "aws-iso": ("cloudhsm", "config", "logs", "workspaces"),
               "aws-iso-b": ("dms", "logs")}
    suffix = dns_suffix(partition) if service in special.get(partition, ()) else "amazonaws.com"
    return f"{service}.{suffix}"


def known_regions() -> frozenset[str]:
    """Every region this module's tables name."""
    return TGW_MULTICAST_REGIONS | TGW_WITHOUT_MULTICAST


def _direction(region: str) -> str:
    """`east` of us-east-1, `northeast` of ap-northeast-2."""
    return region.rsplit("-", 2)[-2] if region.count("-") >= 2 else ""


def region_problem(region: str) -> Optional[str]:
    """Why `region` (the value of aws:region) cannot be a region this program deploys to, or
    None. Checked with the settings, before the AWS provider is asked anything: a region
    name of no partition fails in the provider, and one of a partition this program does not
    know would get wrong IAM principals and endpoints."""
    if not _REGION_SHAPE.match(region):
        zone = re.match(r"^(.*-\d+)[a-z]$", region)
        if zone and _REGION_SHAPE.match(zone.group(1)):
            hint = (f"that is an availability zone of {zone.group(1)}: set aws:region {zone.group(1)} "
                    f"and, to choose the zone, availabilityZone {region}")
        else:
            hint = did_you_mean(region.replace("_", "-"), sorted(known_regions())) or "e.g. us-east-1"
        return f"is not an AWS region name: expected <area>-<direction>-<number> in lowercase; {hint}"
    partition = partition_of(region)
    if not any(form.match(region) for _, form in PARTITION_REGION_FORMS):
        hint = did_you_mean(region, sorted(known_regions()))
        return ("is in no AWS partition (region names start with "
                "us-, eu-, ap-, sa-, ca-, me-, af-, il-, mx-, cn-, us-gov-, ...)" + (f"; {hint}" if hint else ""))
    if partition not in SUPPORTED_PARTITIONS:
        return (f"is in the partition {partition}, whose DNS suffix and service principals this program "
                f"does not know; supported partitions: {', '.join(SUPPORTED_PARTITIONS)}")
    return None


def check_region(region: str) -> tuple[list, list[str]]:
    """(problems, warnings) of deploying in `region`: refused where Transit Gateway multicast
    is known to be missing or no RDS certificate bundle address is known (rds_ca_bundle_url),
    a warning where the multicast table does not know the region."""
    from components.model.settings import Problem

    if rds_ca_bundle_url(region) is None:
        return [Problem("aws:region", region,
                        f"no address of the RDS certificate bundle is known in partition {partition_of(region)} "
                        "(the management servers verify the database's certificate with it); supported partitions: "
                        f"{', '.join(RDS_CA_BUNDLE_HOSTS)}")], []
    offered = tgw_multicast(region)
    if offered is False:
        return [Problem("aws:region", region,
                        "Transit Gateway multicast is not offered in this region (the VXLAN overlay needs it); "
                        f"choose one of: {', '.join(sorted(TGW_MULTICAST_REGIONS))} [{TGW_MULTICAST_SOURCE}]")], []
    if offered is None:
        # A well-formed name of a known partition may be a region newer than the table; one
        # whose direction no region has (us-est-1) is a typo, and the nearest names are offered.
        hint = "" if _direction(region) in {_direction(r) for r in known_regions()} else \
            "did you mean " + " or ".join(nearest_names(region, sorted(known_regions()))) + "?"
        return [], [f"aws:region {region}: not in this program's table of regions with Transit Gateway multicast "
                    f"(as of {TGW_MULTICAST_AS_OF}); if the region lacks it, creating the Transit Gateway fails. "
                    f"Check {TGW_MULTICAST_SOURCE.split(' (')[0]}." + (f" If it is a typo: {hint}" if hint else "")]
    return [], []
