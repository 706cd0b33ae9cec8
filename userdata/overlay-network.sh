#!/usr/bin/env bash
# overlay-network.sh: put this instance on the CloudStack VXLAN overlay.
#
# Creates bridge cloudbr0 (the overlay address) with VXLAN device ethovl0 as
# its port; ethovl0 finds the other VTEPs through a multicast group on the
# underlay device (Transit Gateway multicast domain, IGMPv2). Then, by role:
#   member  default route via OVERLAY_GATEWAY over cloudbr0 (source: the overlay
#           address); the underlay's own subnet stays on the underlay device, and
#           /32 routes keep EC2's link-local services (IMDS 169.254.169.254, time
#           sync 169.254.169.123, DNS 169.254.169.253) on the underlay device, so
#           they answer for THIS instance, not for the router.
#   router  no default route over the overlay; IPv4 forwarding on; nftables table
#           "ip cloudstack_overlay": source NAT (to the underlay address) for
#           overlay traffic leaving VPC_CIDR and for DNS to the VPC resolver
#           (VPC base + 2, which answers VPC sources only); no NAT for other
#           traffic to VPC_CIDR; ROUTER_DNAT forwards from the underlay address;
#           the TCP MSS of forwarded SYN and SYN-ACK packets between the overlay
#           and destinations outside VPC_CIDR clamped to INTERNET_MTU - 40 (the
#           internet gateway carries 1500 bytes, and path-MTU discovery through
#           the router cannot be relied on). Tenant isolation: what the overlay
#           may reach through the router depends on the source's class:
#             infrastructure (INFRA_CIDR)  anything but 169.254.0.0/16
#             system VMs (SYSTEM_RANGE)    the VPC resolver (DNS), NFS (2049) in
#                                          STORAGE_CIDR, the internet
#             tenants (any other overlay   the VPC resolver (DNS), TENANT_VPC_ACCESS,
#               address)                   the internet
#           "The internet" excludes VPC_CIDR, private (10/8, 172.16/12,
#           192.168/16), shared (100.64/10) and link-local (169.254/16) space;
#           169.254.0.0/16 (the router's own instance metadata) is never
#           forwarded, nor a new packet from cloudbr0 whose source is outside
#           the overlay (forged). New connections from tenants and system VMs to the router
#           itself are refused. From the VPC/internet into the overlay, new
#           connections only as DNAT (ROUTER_DNAT, VM_FORWARDS, CONSOLE_FORWARDS),
#           to a ROUTER_DNAT target at its own address (the UI/API), or ICMP; who
#           may connect is the router's security group's business.
#
# Every role: IPv6 is off on cloudbr0 (the instance's own addresses only;
# bridged frames pass), so the IPv4 isolation has no IPv6 way around it; no
# device accepts Router Advertisements, answers ARP for another device's
# address, or skips the reverse-path check (see "accept_ra" below).
#
# Idempotent: it changes only runtime network state (links, addresses, routes,
# sysctls under net.*, its own nftables table, replaced atomically) and writes no
# files. A second run changes nothing and does not interrupt traffic; run it at
# every boot. Every variable is checked before anything changes; errors name the
# variable, its value and what is accepted (exit status 2).
#
# Environment:
#   OVERLAY_ROLE     router | member                                   (required)
#   UNDERLAY_DEV     underlay device (default: the default-route device)
#   VXLAN_ID         VXLAN network identifier 1..16777215               (required)
#   VXLAN_GROUP      IPv4 multicast group in 224.0.0.0/4, e.g. from
#                    239.255.0.0/16 (local scope)                       (required)
#   VXLAN_PORT       VXLAN UDP port 1..65535 (default 4789)
#   OVERLAY_ADDRESS  this instance's overlay address/prefix, e.g.
#                    10.100.0.10/16, put on cloudbr0                    (required)
#   OVERLAY_GATEWAY  the router's overlay address (members: required; router:
#                    unset or its own address)
#   OVERLAY_MTU      MTU of cloudbr0 and ethovl0, 1280..8450: the Transit
#                    Gateway carries at most 8500 bytes, VXLAN adds 50; the
#                    underlay device must carry OVERLAY_MTU + 50        (required)
#   VPC_CIDR         the VPC's IPv4 CIDR, e.g. 10.0.0.0/16 (router: required;
#                    member: optional, checked when given)
#   ROUTER_DNAT      router only: space-separated proto:port:target_ip:target_port
#                    (proto tcp|udp; target inside the overlay) forwarded from the
#                    underlay address, e.g. "tcp:8080:10.100.0.2:8080"
#   INTERNET_MTU     router: the largest IPv4 packet on the path outside the VPC,
#                    1280..9001 (default 1500, the internet gateway's limit);
#                    TCP connections between the overlay and outside VPC_CIDR
#                    get MSS at most INTERNET_MTU - 40 (IPv4 20 + TCP 20).
#                    Checked on members too, unused there.
#   INFRA_CIDR       router: the overlay's infrastructure block (router,
#                    management servers, KVM hosts), inside the overlay subnet,
#                    e.g. 10.100.0.0/18                                 (router: required)
#   SYSTEM_RANGE     router: the pod's reserved system range first-last, inside
#                    the overlay and outside INFRA_CIDR, e.g.
#                    10.100.64.1-10.100.64.250                          (router: required)
#   STORAGE_CIDR     router: where system VMs may reach NFS (TCP 2049): the
#                    dedicated subnet holding the EFS mount target, inside
#                    VPC_CIDR, e.g. 10.0.0.0/24                         (router: required)
#   TENANT_VPC_ACCESS router: space-separated IPv4 CIDRs tenants may also reach
#                    (default: none), e.g. "10.0.8.0/24"
#   VM_FORWARDS      router: services offered from VMs, forwarded like
#                    ROUTER_DNAT (same entry format), but the target must be a
#                    tenant address (inside the overlay, outside INFRA_CIDR and
#                    SYSTEM_RANGE); who may connect is the router's security
#                    group's business (vmForwards). Default: none
#   CONSOLE_ADDRESS  router: its console address, the second private IPv4 of
#                    its ENI (inside VPC_CIDR; its own Elastic IP, named by
#                    consoleproxy.static.publicIp). EC2 delivers it to the ENI
#                    whether or not it is on UNDERLAY_DEV (cloud-init puts it
#                    there on Ubuntu): never taken as the underlay address, and
#                    what is not a console forward is dropped (console_refused),
#                    routed or local. Default: none
#   CONSOLE_RANGE    router: first-last, the system VMs' public range (inside
#                    the overlay): console forward targets must lie in it
#   CONSOLE_FORWARDS router: "tcp:80:IP:80 tcp:8080:IP:8080" (components/
#                    consoles.py console_forwards), forwarded from CONSOLE_ADDRESS
#                    (ports 80 and 8080 there are not the underlay address's);
#                    IP: the console proxy VM's public address, in CONSOLE_RANGE
#                    and checked as for VM_FORWARDS. Needs CONSOLE_ADDRESS and
#                    CONSOLE_RANGE. Default: none
set -euo pipefail
export LC_ALL=C

readonly BRIDGE=cloudbr0
# The KVM agent takes a bridge's port as its physical NIC only when the name
# matches ^eth|^bond|^vlan|^vx|^em|^ens|^eno|^enp|^team|^enx|^p\d+p\d+
# (LibvirtComputingResource.ifNamePatterns), and builds guest VLAN n on it as
# bridge br<port>-<n> with device <port>.<n> (BridgeVifDriver.generateVnetBrName,
# modifyvlan.sh): "brethovl0-4094" is 14 of Linux's 15 characters (IFNAMSIZ 16).
# No "vxlan" in the name: BridgeVifDriver.deleteVnetBr takes a bridge whose port
# list contains "vxlan" for one of its own VXLAN bridges (modifyvxlan.sh); no
# "vnet" either (its test for "a VM is still on this bridge").
# components/boot/overlay.py OVERLAY_PORT holds the same name (a test compares them).
readonly VXLAN_DEV=ethovl0
# The name of releases before 2026-11 (16 characters with VLAN 1000: guest
# networks could not start); removed when found, see below.
readonly LEGACY_VXLAN_DEV=ethvxlan0
readonly NFT_TABLE=cloudstack_overlay
# The first two bytes of cloudbr0's MAC (locally administered, unicast; see
# below). kvm-host.sh holds the same prefix (a test compares them).
readonly INFRA_MAC_PREFIX=0a:00
readonly VXLAN_OVERHEAD=50
readonly MIN_MTU=1280
readonly MAX_MTU=8450
readonly MAX_INTERNET_MTU=9001
readonly TCPIP_HEADERS=40 # IPv4 + TCP headers without options: MSS = MTU - 40
readonly LINK_LOCAL_SERVICES=(169.254.169.254 169.254.169.123 169.254.169.253)
readonly PROG=${0##*/}
SCRIPT_DIR=$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")
readonly SCRIPT_DIR

errors=()
problem() { # variable value accepted
    errors+=("$1='$2' is invalid: $3")
}
fatal() {
    echo "$PROG: $*" >&2
    exit 2
}
log() { echo "$PROG: $*"; }

# --- IPv4 arithmetic -------------------------------------------------------

is_ipv4() {
    local re='^(0|[1-9][0-9]{0,2})\.(0|[1-9][0-9]{0,2})\.(0|[1-9][0-9]{0,2})\.(0|[1-9][0-9]{0,2})$'
    [[ $1 =~ $re ]] || return 1
    local i
    for i in 1 2 3 4; do
        ((BASH_REMATCH[i] <= 255)) || return 1
    done
}
ip2int() {
    local IFS=. a b c d
    read -r a b c d <<<"$1"
    echo $(((a << 24) | (b << 16) | (c << 8) | d))
}
int2ip() {
    local n=$1
    echo "$(((n >> 24) & 255)).$(((n >> 16) & 255)).$(((n >> 8) & 255)).$((n & 255))"
}
mask_of() { # prefix length -> integer netmask
    echo $(((0xffffffff << (32 - $1)) & 0xffffffff))
}
is_uint() { [[ $1 =~ ^(0|[1-9][0-9]{0,8})$ ]]; }
# in_net ADDRESS NETWORK PREFIX
in_net() {
    local m
    m=$(mask_of "$3")
    ((($(ip2int "$1") & m) == ($(ip2int "$2") & m)))
}
in_span() { # ip first last: first <= ip <= last
    (($(ip2int "$1") >= $(ip2int "$2") && $(ip2int "$1") <= $(ip2int "$3")))
}
nets_overlap() { # net1 prefix1 net2 prefix2
    local p=$2
    (($4 < p)) && p=$4
    in_net "$1" "$3" "$p"
}
valid_ifname() { [[ $1 =~ ^[A-Za-z0-9_.-]{1,15}$ ]]; }
# is_cidr VALUE: an IPv4 network/prefix with the host bits zero.
is_cidr() {
    local ip=${1%/*} prefix=${1#*/}
    [[ $1 == */* ]] && is_ipv4 "$ip" && is_uint "$prefix" && ((prefix <= 32)) &&
        ! (($(ip2int "$ip") & ~$(mask_of "$prefix") & 0xffffffff))
}

# --- read the current state (no changes) -----------------------------------

link_exists() { [[ -e /sys/class/net/$1 ]]; }
link_kind_is() { # dev kind
    # Not "ip ... | grep -q": grep stops at the first match, ip then dies of
    # SIGPIPE and pipefail turns the match into a failure once the list is long
    # (a KVM host with the agent's guest VLAN bridges).
    local links
    links=$'\n'$(ip -o link show type "$2" 2>/dev/null) || return 1
    [[ $links =~ $'\n'[0-9]+": $1"[:@] ]]
}
vxlan_details() { ip -d -o link show dev "${1:-$VXLAN_DEV}" 2>/dev/null || true; }
vxlan_underlay() { # from our port, or from the legacy one (a member upgraded in place)
    local re=' dev ([^ ]+) ' details
    details=$(vxlan_details)
    [[ -n $details ]] || details=$(vxlan_details "$LEGACY_VXLAN_DEV")
    [[ $details =~ $re ]] && echo "${BASH_REMATCH[1]}"
    return 0
}
# The default route's device, skipping our own bridge (a member's default route).
default_route_dev() {
    local line re=' dev ([^ ]+)'
    while read -r line; do
        [[ $line =~ $re ]] || continue
        [[ ${BASH_REMATCH[1]} == "$BRIDGE" ]] && continue
        echo "${BASH_REMATCH[1]}"
        return 0
    done < <(ip -4 -o route show default 2>/dev/null)
}
# The gateway of the underlay: its default route if it still has one, else our
# own IMDS route (a re-run on a member whose default route we replaced), else
# the subnet base + 1, where EC2 always puts the VPC router.
underlay_gateway() {
    local line re='via ([0-9.]+) dev ([^ ]+)'
    while read -r line; do
        if [[ $line =~ $re && ${BASH_REMATCH[2]} == "$UNDERLAY_DEV" ]]; then
            echo "${BASH_REMATCH[1]}"
            return 0
        fi
    done < <(ip -4 -o route show default 2>/dev/null; ip -4 -o route show "${LINK_LOCAL_SERVICES[0]}/32" 2>/dev/null)
    int2ip $((underlay_net_int + 1))
}

# --- validate everything before any change ---------------------------------

OVERLAY_ROLE=${OVERLAY_ROLE-}
UNDERLAY_DEV=${UNDERLAY_DEV-}
VXLAN_ID=${VXLAN_ID-}
VXLAN_GROUP=${VXLAN_GROUP-}
VXLAN_PORT=${VXLAN_PORT-4789}
OVERLAY_ADDRESS=${OVERLAY_ADDRESS-}
OVERLAY_GATEWAY=${OVERLAY_GATEWAY-}
OVERLAY_MTU=${OVERLAY_MTU-}
VPC_CIDR=${VPC_CIDR-}
ROUTER_DNAT=${ROUTER_DNAT-}
INTERNET_MTU=${INTERNET_MTU-1500}
INFRA_CIDR=${INFRA_CIDR-}
SYSTEM_RANGE=${SYSTEM_RANGE-}
STORAGE_CIDR=${STORAGE_CIDR-}
TENANT_VPC_ACCESS=${TENANT_VPC_ACCESS-}
VM_FORWARDS=${VM_FORWARDS-}
CONSOLE_ADDRESS=${CONSOLE_ADDRESS-}
CONSOLE_FORWARDS=${CONSOLE_FORWARDS-}
CONSOLE_RANGE=${CONSOLE_RANGE-}

command -v ip >/dev/null || fatal "the ip command (iproute2) is missing"

case $OVERLAY_ROLE in
router | member) ;;
*) problem OVERLAY_ROLE "$OVERLAY_ROLE" "expected router or member" ;;
esac

if ! is_uint "$VXLAN_ID" || ((VXLAN_ID < 1 || VXLAN_ID > 16777215)); then
    problem VXLAN_ID "$VXLAN_ID" "expected an integer 1..16777215"
fi
if ! is_ipv4 "$VXLAN_GROUP" || (($(ip2int "$VXLAN_GROUP") >> 28 != 14)); then
    problem VXLAN_GROUP "$VXLAN_GROUP" "expected an IPv4 multicast address in 224.0.0.0/4 (local scope 239.255.0.0/16 recommended)"
fi
if ! is_uint "$VXLAN_PORT" || ((VXLAN_PORT < 1 || VXLAN_PORT > 65535)); then
    problem VXLAN_PORT "$VXLAN_PORT" "expected a UDP port 1..65535 (default 4789)"
fi
if ! is_uint "$OVERLAY_MTU" || ((OVERLAY_MTU < MIN_MTU || OVERLAY_MTU > MAX_MTU)); then
    problem OVERLAY_MTU "$OVERLAY_MTU" "expected an integer $MIN_MTU..$MAX_MTU (Transit Gateway's 8500 minus VXLAN's $VXLAN_OVERHEAD)"
fi
if ! is_uint "$INTERNET_MTU" || ((INTERNET_MTU < MIN_MTU || INTERNET_MTU > MAX_INTERNET_MTU)); then
    problem INTERNET_MTU "$INTERNET_MTU" "expected an integer $MIN_MTU..$MAX_INTERNET_MTU (default 1500, the internet gateway's limit)"
fi

overlay_ok=false
overlay_ip=${OVERLAY_ADDRESS%/*}
overlay_prefix=${OVERLAY_ADDRESS#*/}
if [[ $OVERLAY_ADDRESS != */* ]] || ! is_ipv4 "$overlay_ip" || ! is_uint "$overlay_prefix" ||
    ((overlay_prefix < 8 || overlay_prefix > 30)); then
    problem OVERLAY_ADDRESS "$OVERLAY_ADDRESS" "expected an IPv4 address/prefix with prefix 8..30, e.g. 10.100.0.10/16"
else
    overlay_mask=$(mask_of "$overlay_prefix")
    overlay_host=$(($(ip2int "$overlay_ip") & ~overlay_mask & 0xffffffff))
    if ((overlay_host == 0 || overlay_host == (~overlay_mask & 0xffffffff))); then
        problem OVERLAY_ADDRESS "$OVERLAY_ADDRESS" "is the network or broadcast address of its subnet; expected a host address"
    else
        overlay_ok=true
        overlay_net=$(int2ip $(($(ip2int "$overlay_ip") & overlay_mask)))
        overlay_cidr=$overlay_net/$overlay_prefix
    fi
fi

vpc_ok=false
if [[ -n $VPC_CIDR ]]; then
    vpc_ip=${VPC_CIDR%/*}
    vpc_prefix=${VPC_CIDR#*/}
    if [[ $VPC_CIDR != */* ]] || ! is_ipv4 "$vpc_ip" || ! is_uint "$vpc_prefix" ||
        ((vpc_prefix < 16 || vpc_prefix > 28)) ||
        (($(ip2int "$vpc_ip") & ~$(mask_of "$vpc_prefix") & 0xffffffff)); then
        problem VPC_CIDR "$VPC_CIDR" "expected the VPC's IPv4 network/prefix (prefix 16..28, host bits zero), e.g. 10.0.0.0/16"
    else
        vpc_ok=true
        vpc_resolver=$(int2ip $(($(ip2int "$vpc_ip") + 2)))
        if $overlay_ok && nets_overlap "$overlay_net" "$overlay_prefix" "$vpc_ip" "$vpc_prefix"; then
            problem OVERLAY_ADDRESS "$OVERLAY_ADDRESS" "its subnet overlaps VPC_CIDR $VPC_CIDR; expected an overlay outside the VPC (the VPC routes the overlay to the router)"
        fi
    fi
elif [[ $OVERLAY_ROLE == router ]]; then
    problem VPC_CIDR "" "the router needs the VPC's IPv4 CIDR, e.g. 10.0.0.0/16"
fi

if [[ $OVERLAY_ROLE == member ]]; then
    if ! is_ipv4 "$OVERLAY_GATEWAY"; then
        problem OVERLAY_GATEWAY "$OVERLAY_GATEWAY" "a member needs the router's overlay IPv4 address"
    elif $overlay_ok && ! in_net "$OVERLAY_GATEWAY" "$overlay_net" "$overlay_prefix"; then
        problem OVERLAY_GATEWAY "$OVERLAY_GATEWAY" "expected an address inside the overlay subnet $overlay_cidr"
    elif [[ $OVERLAY_GATEWAY == "$overlay_ip" ]]; then
        problem OVERLAY_GATEWAY "$OVERLAY_GATEWAY" "is this member's own address; expected the router's overlay address"
    fi
    for name in ROUTER_DNAT VM_FORWARDS CONSOLE_ADDRESS CONSOLE_FORWARDS CONSOLE_RANGE; do
        [[ -z ${!name// /} ]] || problem "$name" "${!name}" "only the router forwards ports; expected empty on a member"
    done
elif [[ $OVERLAY_ROLE == router ]]; then
    if [[ -n $OVERLAY_GATEWAY && $OVERLAY_GATEWAY != "$overlay_ip" ]]; then
        problem OVERLAY_GATEWAY "$OVERLAY_GATEWAY" "the router is the overlay gateway; expected unset or its own address $overlay_ip"
    fi
fi

# The devices we create must be ours if they already exist.
if link_exists "$BRIDGE" && ! link_kind_is "$BRIDGE" bridge; then
    problem "$BRIDGE" "$(ip -o link show dev "$BRIDGE" | cut -d' ' -f2)" "a device named $BRIDGE exists and is not a bridge; remove it first"
fi
if link_exists "$VXLAN_DEV" && ! link_kind_is "$VXLAN_DEV" vxlan; then
    problem "$VXLAN_DEV" "$(ip -o link show dev "$VXLAN_DEV" | cut -d' ' -f2)" "a device named $VXLAN_DEV exists and is not a VXLAN device; remove it first"
fi

# The underlay device: given, else the default route's, else (a member whose
# default route now points into the overlay) the device ethovl0 rides on.
if [[ -z $UNDERLAY_DEV ]]; then
    UNDERLAY_DEV=$(default_route_dev)
    [[ -n $UNDERLAY_DEV ]] || UNDERLAY_DEV=$(vxlan_underlay)
    [[ -n $UNDERLAY_DEV ]] || problem UNDERLAY_DEV "" "unset and no IPv4 default route to take it from; set it to the underlay device (e.g. ens5)"
fi
underlay_ok=false
if [[ -n $UNDERLAY_DEV ]]; then
    if ! valid_ifname "$UNDERLAY_DEV" || ! link_exists "$UNDERLAY_DEV"; then
        problem UNDERLAY_DEV "$UNDERLAY_DEV" "expected an existing network device (e.g. ens5)"
    elif [[ $UNDERLAY_DEV == "$BRIDGE" || $UNDERLAY_DEV == "$VXLAN_DEV" ]]; then
        problem UNDERLAY_DEV "$UNDERLAY_DEV" "expected the underlay device, not an overlay device"
    else
        # Not the console address, in whatever order the kernel lists them.
        underlay_addr=$(ip -4 -o addr show dev "$UNDERLAY_DEV" scope global | awk -v c="$CONSOLE_ADDRESS" 'index($4, c "/") != 1 {print $4; exit}')
        underlay_mtu=$(<"/sys/class/net/$UNDERLAY_DEV/mtu")
        if [[ -z $underlay_addr ]]; then
            problem UNDERLAY_DEV "$UNDERLAY_DEV" "has no IPv4 address (CONSOLE_ADDRESS aside); expected the instance's underlay (VPC) device"
        elif is_uint "$OVERLAY_MTU" && ((underlay_mtu < OVERLAY_MTU + VXLAN_OVERHEAD)); then
            problem OVERLAY_MTU "$OVERLAY_MTU" "the underlay device $UNDERLAY_DEV has MTU $underlay_mtu; it must carry OVERLAY_MTU + $VXLAN_OVERHEAD, so expected at most $((underlay_mtu - VXLAN_OVERHEAD)) (or raise the underlay MTU)"
        else
            underlay_ok=true
            underlay_ip=${underlay_addr%/*}
            underlay_prefix=${underlay_addr#*/}
            underlay_net_int=$(($(ip2int "$underlay_ip") & $(mask_of "$underlay_prefix")))
            if $overlay_ok && nets_overlap "$overlay_net" "$overlay_prefix" "$underlay_ip" "$underlay_prefix"; then
                problem OVERLAY_ADDRESS "$OVERLAY_ADDRESS" "its subnet overlaps the underlay subnet $(int2ip "$underlay_net_int")/$underlay_prefix of $UNDERLAY_DEV"
            fi
            if $vpc_ok && ! in_net "$underlay_ip" "$vpc_ip" "$vpc_prefix"; then
                problem VPC_CIDR "$VPC_CIDR" "does not contain the underlay address $underlay_ip of $UNDERLAY_DEV"
            fi
        fi
    fi
fi

if [[ $OVERLAY_ROLE == router ]]; then
    # The router's own part (forwards, isolation, NAT): shipped to the router only.
    [[ -r $SCRIPT_DIR/overlay-router.sh ]] || fatal "$SCRIPT_DIR/overlay-router.sh (the router's part) is missing"
    # shellcheck source=overlay-router.sh
    source "$SCRIPT_DIR/overlay-router.sh"
    router_check
else
    for name in INFRA_CIDR SYSTEM_RANGE STORAGE_CIDR TENANT_VPC_ACCESS; do
        [[ -z ${!name// /} ]] || problem "$name" "${!name}" "only the router's forwarding is filtered by it; expected empty on a member"
    done
fi

if [[ $OVERLAY_ROLE == router ]] && ! command -v nft >/dev/null; then
    problem OVERLAY_ROLE router "the router needs the nft command (package nftables)"
fi

if ((${#errors[@]})); then
    for e in "${errors[@]}"; do echo "$PROG: $e" >&2; done
    echo "$PROG: nothing was changed" >&2
    exit 2
fi
$underlay_ok || fatal "internal error: underlay not validated"

# --- apply (each step is a no-op when already in place) --------------------

set_proc() { # /proc/sys path, value: write only when different
    [[ $(<"$1") == "$2" ]] || echo "$2" >"$1"
}

# Before the VXLAN device joins the group: the Transit Gateway speaks IGMPv2 only.
set_proc "/proc/sys/net/ipv4/conf/$UNDERLAY_DEV/force_igmp_version" 2

# Devices the instance does not address itself must not give tenants a way in.
# A KVM host's guest bridges (brethovl0-<vlan>, CloudStack's modifyvlan.sh) are
# created later with the kernel's defaults, so the defaults are set here, before
# the agent runs (kernel Documentation/networking/ip-sysctl.rst):
#   accept_ra 0      IPv6 "conf/default/*: Change the interface-specific default
#                    settings. These settings would be used during creating new
#                    interfaces": default for the bridges to come, every
#                    existing device by name, and all. Nothing here uses IPv6;
#                    with the kernel's 1 (forwarding off) one Router
#                    Advertisement from a tenant gave a host an address and a
#                    default route through the tenant.
#   arp_ignore 1     "reply only if the target IP address is local address
#                    configured on the incoming interface": no ARP answers for
#                    the host's overlay or underlay address on a guest bridge.
#   arp_announce 2   "Always use the best local address for this target": ARP
#                    requests never carry an address of another device.
#   rp_filter 2      loose reverse path ("Each incoming packet's source address
#                    is also tested against the FIB and if the source address
#                    is not reachable via any interface the packet check will
#                    fail"); a device without an IPv4 address (a guest bridge)
#                    fails it too. Set here, not left to the distribution
#                    (Ubuntu's systemd sets 2, the kernel's default is 0).
#                    Not strict (1): a member's default route is cloudbr0, so
#                    strict would refuse what the underlay legitimately brings.
# For IPv4 "The max value from conf/{all,interface}/<key> is used", so "all"
# covers every device, present and future; "default" too, for anyone reading
# a new device's own value.
for conf in /proc/sys/net/ipv6/conf/*/accept_ra; do
    # No match when the kernel runs without IPv6 (ipv6.disable=1).
    [[ -e $conf ]] && set_proc "$conf" 0
done
for setting in arp_ignore=1 arp_announce=2 rp_filter=2; do
    for dev in all default; do
        set_proc "/proc/sys/net/ipv4/conf/$dev/${setting%=*}" "${setting#*=}"
    done
done

if ! link_exists "$BRIDGE"; then
    log "creating bridge $BRIDGE"
    ip link add name "$BRIDGE" type bridge stp_state 0 forward_delay 0
fi

# An overlay port under the legacy name carries the same VNI and group: the
# kernel refuses a second such device, and two ports would loop the bridge.
if link_kind_is "$LEGACY_VXLAN_DEV" vxlan; then
    log "removing $LEGACY_VXLAN_DEV (renamed $VXLAN_DEV: guest VLAN bridges br<port>-<vlan> must fit 15 characters)"
    ip link del dev "$LEGACY_VXLAN_DEV"
fi

# Recreate ethovl0 only when its identity differs (VNI, group, underlay, port).
# The VTEP is the underlay address: by default the kernel would send from the
# device's first address, which may be CONSOLE_ADDRESS (see above).
want_vxlan="vxlan id $VXLAN_ID group $VXLAN_GROUP local $underlay_ip dev $UNDERLAY_DEV "
details=$(vxlan_details)
if [[ -n $details && ($details != *"$want_vxlan"* || $details != *" dstport $VXLAN_PORT "*) ]]; then
    log "replacing $VXLAN_DEV (configuration changed)"
    ip link del dev "$VXLAN_DEV"
    details=
fi
if [[ -z $details ]]; then
    log "creating $VXLAN_DEV: VNI $VXLAN_ID, group $VXLAN_GROUP, port $VXLAN_PORT on $UNDERLAY_DEV"
    ip link add name "$VXLAN_DEV" mtu "$OVERLAY_MTU" type vxlan id "$VXLAN_ID" \
        group "$VXLAN_GROUP" local "$underlay_ip" dev "$UNDERLAY_DEV" dstport "$VXLAN_PORT"
fi

# Port first, then the bridge: a bridge's MTU may not exceed its ports'.
[[ $(</sys/class/net/$VXLAN_DEV/mtu) == "$OVERLAY_MTU" ]] || ip link set dev "$VXLAN_DEV" mtu "$OVERLAY_MTU"
[[ $(</sys/class/net/$BRIDGE/mtu) == "$OVERLAY_MTU" ]] || ip link set dev "$BRIDGE" mtu "$OVERLAY_MTU"
[[ -e /sys/class/net/$VXLAN_DEV/brport/bridge &&
    $(readlink "/sys/class/net/$VXLAN_DEV/brport/bridge") == */"$BRIDGE" ]] ||
    ip link set dev "$VXLAN_DEV" master "$BRIDGE"
ip link set dev "$VXLAN_DEV" up
# cloudbr0's MAC is the overlay address's: INFRA_MAC_PREFIX and the address's
# four bytes. Every role here is infrastructure (router, management servers,
# hosts), so an infrastructure node is known by its MAC as by its address, and a
# KVM host drops frames from its VMs' ports that carry such a MAC as source
# (kvm-host.sh, vm_port_rules): no VM can teach the overlay's bridges and VTEPs
# that the management server's MAC sits behind it. CloudStack gives its VMs
# MACs whose first byte is 02 or has 06 set (NetUtils.createSequenceBasedMacAddress
# in apache/cloudstack), never 0a. Set, not learnt: a bridge otherwise takes its
# lowest port MAC, which changes as VMs come and go. arp_notify: a changed MAC
# (an upgrade) is announced at once instead of waiting for neighbours to probe.
IFS=. read -r a b c d <<<"$overlay_ip"
bridge_mac=$(printf '%s:%02x:%02x:%02x:%02x' "$INFRA_MAC_PREFIX" "$a" "$b" "$c" "$d")
set_proc "/proc/sys/net/ipv4/conf/$BRIDGE/arp_notify" 1
[[ $(</sys/class/net/$BRIDGE/address) == "$bridge_mac" ]] || ip link set dev "$BRIDGE" address "$bridge_mac"
# No IPv6 on this instance's own cloudbr0: nothing here uses IPv6 on the overlay,
# and the isolation (the router's table, the members' firewalls) is IPv4; with
# IPv6 on, every member had an fe80:: address on which tenants reached sshd and
# rpcbind. Per device: it removes this instance's addresses and routes on
# cloudbr0 (kernel Documentation/networking/ip-sysctl.rst, disable_ipv6);
# frames bridged between cloudbr0's ports (VM NICs, ethovl0) are layer 2 and
# pass as before, and CloudStack's own bridges (brethovl0-<vlan>, other names)
# keep their settings. Before "up": no link-local address is ever announced.
# Absent only when the kernel runs without IPv6 (ipv6.disable=1).
if [[ -e /proc/sys/net/ipv6/conf/$BRIDGE/disable_ipv6 ]]; then
    set_proc "/proc/sys/net/ipv6/conf/$BRIDGE/disable_ipv6" 1
fi
ip link set dev "$BRIDGE" up
ip addr replace "$OVERLAY_ADDRESS" dev "$BRIDGE"

if [[ $OVERLAY_ROLE == member ]]; then
    gateway=$(underlay_gateway)
    for service in "${LINK_LOCAL_SERVICES[@]}"; do
        ip route replace "$service/32" via "$gateway" dev "$UNDERLAY_DEV" src "$underlay_ip"
    done
    # Metric 0 wins over a DHCP client's default route (which stays, harmless,
    # and keeps the underlay discoverable); same-metric defaults are replaced.
    ip route replace default via "$OVERLAY_GATEWAY" dev "$BRIDGE" src "$overlay_ip" metric 0
    if nft list table ip "$NFT_TABLE" >/dev/null 2>&1; then
        log "removing the router's nftables table (this instance is a member now)"
        nft delete table ip "$NFT_TABLE"
    fi
    log "member $OVERLAY_ADDRESS via $OVERLAY_GATEWAY on $BRIDGE, underlay $UNDERLAY_DEV ($underlay_addr)"
    exit 0
fi

router_apply
