#!/bin/bash
# Boot script of the overlay router (cloudstack-ec2).
#
# The router is the overlay's gateway: cloudstack-ec2-overlay.service runs
# overlay-network.sh (role router: forwarding, NAT, DNAT of the UI/API port and
# of the forwards to VMs and of the console address) at every boot. It needs no
# secrets and waits on nothing, so the members (which reach the internet through
# it) can install their packages; tenants' DNS goes to its own resolver (unbound)
# when the overlay settings ask for one. `router.sh forwards` applies changed forwards
# of the UI/API, to VMs and to the console proxy (timer).
#
# Settings: /etc/cloudstack-ec2/boot.env (non-secret). Log:
# /var/log/cloudstack-ec2-boot.log and the console.

# shellcheck source=SCRIPTDIR/common.sh
source "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/common.sh"
# shellcheck source=SCRIPTDIR/library.sh
source "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/library.sh"

FORWARDS_ENV=$CSEC2_ROOT/etc/cloudstack-ec2/forwards.env
# log_drops: the log the CloudWatch agent ships, and the counters it last saw.
DROP_LOG=$CSEC2_ROOT/var/log/cloudstack-ec2/router-drops.log
DROP_STATE=$CSEC2_STATE_DIR/drop-counters
FORWARD_ENTRY='^(tcp|udp):[0-9]{1,5}:[0-9.]+:[0-9]{1,5}$'
# What components/model/consoles.py console_forwards writes, entry by entry
# (overlay-network.sh checks the whole value and the target).
CONSOLE_ENTRY='^tcp:(80:[0-9.]+:80|8080:[0-9.]+:8080)$'
# What components/program/control_plane.py ui_forward writes: the UI/API port
# (components/model/routeraccess.py CLOUDSTACK_UI_PORT) to the management server.
UI_ENTRY='^tcp:8080:[0-9.]+:8080$'
FORWARDS_VALUE=""

# read_forwards KEY ENTRY_RE ACCEPTED: the SSM parameter <prefix>/KEY in
# FORWARDS_VALUE ("none": empty); dies, changing nothing, on an entry that does
# not match ENTRY_RE.
read_forwards() {
    local name entry
    name=$(csec2_name "$1")
    FORWARDS_VALUE=$(csec2_get_parameter "$name") || csec2_die "cannot read SSM parameter $name"
    [[ $FORWARDS_VALUE == none ]] && FORWARDS_VALUE=""
    for entry in $FORWARDS_VALUE; do
        [[ $entry =~ $2 ]] ||
            csec2_die "SSM parameter $name holds '$entry'; expected 'none' or $3 entries separated by spaces"
    done
}

# The UI/API, services offered from VMs (vmForwards) and the console: Pulumi
# writes the first to the SSM parameter <prefix>/ui-forward ("none" when the
# UI/API is behind the load balancer: then nothing reaches it in clear through
# this router), the second to <prefix>/router-forwards, the registration the
# third to <prefix>/console-forwards (the console proxy's public IP, which
# CloudStack chooses; "none" until known). This applies all three to the RUNNING
# router (no instance replacement, no user data change): forwards.env is read
# by cloudstack-ec2-overlay.service after overlay.env (its ROUTER_DNAT is the
# parameter's, whatever the user data held), and re-running overlay-network.sh replaces
# its nftables table in one transaction (flows keep their NAT bindings). Run at
# boot and every minute by cloudstack-ec2-forwards.timer. A set overlay-network.sh
# refuses is never kept: the last good one stays, for this run and the next boot.
apply_forwards() {
    local ui vm console wanted previous="" lock
    csec2_step "forwards of the UI/API, to VMs and the console (SSM parameters $(csec2_name ui-forward), $(csec2_name router-forwards), $(csec2_name console-forwards))"
    # One run at a time: the boot's and the timer's (enabled before it, below).
    mkdir -p "$(dirname "$FORWARDS_ENV")"
    exec {lock}>"$FORWARDS_ENV.lock"
    flock "$lock"
    read_forwards ui-forward "$UI_ENTRY" "tcp:8080:ip:8080"
    ui=$FORWARDS_VALUE
    read_forwards router-forwards "$FORWARD_ENTRY" "proto:port:target:targetPort"
    vm=$FORWARDS_VALUE
    read_forwards console-forwards "$CONSOLE_ENTRY" "tcp:80:ip:80 tcp:8080:ip:8080"
    console=$FORWARDS_VALUE
    wanted="ROUTER_DNAT=\"$ui\""$'\n'"VM_FORWARDS=\"$vm\""$'\n'"CONSOLE_FORWARDS=\"$console\""
    [[ -r $FORWARDS_ENV ]] && previous=$(<"$FORWARDS_ENV")
    if [[ $previous == "$wanted" ]]; then
        csec2_log "forwards up to date: UI/API ${ui:-none}; VMs ${vm:-none}; console: ${console:-none}"
        return 0
    fi
    printf '%s\n' "$wanted" >"$FORWARDS_ENV"
    if systemctl restart cloudstack-ec2-overlay.service; then
        csec2_log "forwards applied: UI/API ${ui:-none}; VMs ${vm:-none}; console: ${console:-none}"
        return 0
    fi
    if [[ -n $previous ]]; then
        printf '%s\n' "$previous" >"$FORWARDS_ENV"
    else
        rm -f "$FORWARDS_ENV"
    fi
    systemctl restart cloudstack-ec2-overlay.service || true
    csec2_die "overlay-network.sh refused the forwards '$vm' with the console forwards '$console' and the UI/API's '$ui' (journalctl -u cloudstack-ec2-overlay.service); the previous ones stay"
}

# ------------------------------------------------------------- router pair ----
# With CSEC2_ROUTER_PAIR_INDEX set this router is one of two (docs/overlay.md
# "Router pair"): its overlay address is its own, and the overlay's gateway
# (CSEC2_ROUTER_PAIR_GATEWAY) is a VRRP address that keepalived puts on cloudbr0
# of the active router only. Forwards, NAT and the tenants' resolver run on both
# (nothing of overlay-network.sh binds to the gateway address); which router
# receives traffic is decided by the AWS side, which the active one takes over:
# the overlay route of every managed route table (ReplaceRoute to its own ENI)
# and each Elastic IP (AssociateAddress with AllowReassociation to its own
# corresponding private address). `router.sh vrrp STATE` is keepalived's notify
# script; `router.sh reassert` (cloudstack-ec2-router-pair.timer) checks the AWS
# side while this router holds the gateway and takes back what points elsewhere.
# The AWS CLI reads its usual environment (AWS_ENDPOINT_URL_EC2, for an EC2
# endpoint other than the region's public one) from keepalived's and the unit's.

PAIR_IMDS=http://169.254.169.254
PAIR_LOG=$CSEC2_ROOT/var/log/cloudstack-ec2-router-pair.log
PAIR_LOCK=$CSEC2_STATE_DIR/router-pair.lock
# PAIR_HELD: this router has been active since it last found the whole AWS side
# its own (removed on any other keepalived state, as at keepalived's start);
# PAIR_YIELD: keepalived's track file (non-zero: FAULT; pair_yield,
# pair_hold_back); PAIR_YIELD_PEER: to whom it yielded ("ENI adverts");
# PAIR_ADVERTS: the other router's adverts counted at the last re-assertion.
PAIR_HELD=$CSEC2_STATE_DIR/router-pair-held
PAIR_YIELD=$CSEC2_STATE_DIR/router-pair-yield
PAIR_YIELD_PEER=$CSEC2_STATE_DIR/router-pair-yielded-to
PAIR_IDENTITY=$CSEC2_STATE_DIR/router-pair-identity
PAIR_ADVERTS=$CSEC2_STATE_DIR/router-pair-adverts
PAIR_ATTEMPTS=${CSEC2_ROUTER_PAIR_ATTEMPTS:-4}
PAIR_SCRIPT=$(readlink -f "${BASH_SOURCE[0]}")
KEEPALIVED_CONF=$CSEC2_ROOT/etc/keepalived/keepalived.conf
PAIR_UNIT_DIR=$CSEC2_ROOT/etc/systemd/system
PAIR_ENI="" PAIR_PRIMARY="" PAIR_VPC="" CONSOLE_ADDRESS="" TENANT_ADDRESS=""
# When this run began, in microseconds (bash's EPOCHREALTIME, its decimal point
# dropped: it follows the locale): the takeover's lines say how long each call took.
PAIR_T0=${EPOCHREALTIME//[!0-9]/}

# Lines of keepalived's scripts go to their own log (keepalived discards a
# script's output) and to the journal of the timer's unit. No secrets: route
# table, allocation and interface IDs and private addresses only.
pair_log() {
    csec2_log "$*" | tee -a "$PAIR_LOG"
}

# Seconds since this run began (PAIR_T0), e.g. "1.25".
pair_elapsed() {
    local us=$((${EPOCHREALTIME//[!0-9]/} - PAIR_T0))
    printf '%d.%02d' $((us / 1000000)) $((us % 1000000 / 10000))
}

# Settings of keepalived's scripts, which run outside a boot run (no boot lock:
# a takeover must not wait for a boot's package installs).
pair_load() {
    CSEC2_ROLE=router
    set -uo pipefail
    mkdir -p "$(dirname "$PAIR_LOG")" "$CSEC2_STATE_DIR"
    [[ -r $CSEC2_ENV_FILE ]] || csec2_die "settings file $CSEC2_ENV_FILE is missing"
    # shellcheck source=/dev/null
    source "$CSEC2_ENV_FILE"
    csec2_require CSEC2_ROUTER_PAIR_INDEX CSEC2_ROUTER_PAIR_PEER CSEC2_ROUTER_PAIR_GATEWAY \
        CSEC2_ROUTER_PAIR_ROUTE_TABLES CSEC2_ROUTER_EIP_INFRASTRUCTURE CSEC2_OVERLAY_CIDR CSEC2_AWS_REGION
    # The console and tenants' addresses of this router's ENI (overlay-network.sh).
    # overlay.env holds KEY="value" lines (components/boot/common.py _env_file).
    local settings=$CSEC2_ROOT/etc/cloudstack-ec2/overlay.env
    CONSOLE_ADDRESS=$(sed -n 's/^CONSOLE_ADDRESS="\([0-9.]*\)"$/\1/p' "$settings")
    TENANT_ADDRESS=$(sed -n 's/^TENANT_ADDRESS="\([0-9.]*\)"$/\1/p' "$settings")
}

# pair_imds PATH: this instance's metadata at PATH, with an IMDSv2 session token
# (EC2 User Guide, "Use the Instance Metadata Service to access instance
# metadata": PUT /latest/api/token, then the X-aws-ec2-metadata-token header).
pair_imds() {
    local token
    token=$(curl -sf --max-time 2 -X PUT -H "X-aws-ec2-metadata-token-ttl-seconds: 60" \
        "$PAIR_IMDS/latest/api/token") || return 1
    curl -sf --max-time 2 -H "X-aws-ec2-metadata-token: $token" "$PAIR_IMDS/latest/meta-data/$1"
}

# This router's primary ENI, its primary private address and its VPC, from IMDS
# (the MAC of the primary interface, then that interface's ID and VPC).
# Kept in PAIR_IDENTITY once known: an instance's primary interface and address
# are its own for its whole life (EC2 User Guide, "Elastic network interfaces":
# the primary interface cannot be detached), and a takeover then starts its AWS
# calls without six IMDS requests first.
pair_identity() {
    local mac
    [[ -n $PAIR_ENI ]] && return 0
    if read -r PAIR_ENI PAIR_PRIMARY PAIR_VPC <"$PAIR_IDENTITY" 2>/dev/null && [[ $PAIR_ENI == eni-* && $PAIR_VPC == vpc-* ]]; then
        return 0
    fi
    if mac=$(pair_imds mac) && PAIR_ENI=$(pair_imds "network/interfaces/macs/$mac/interface-id") &&
        PAIR_VPC=$(pair_imds "network/interfaces/macs/$mac/vpc-id") && PAIR_PRIMARY=$(pair_imds local-ipv4) &&
        [[ $PAIR_ENI == eni-* && $PAIR_VPC == vpc-* && -n $PAIR_PRIMARY ]]; then
        printf '%s %s %s\n' "$PAIR_ENI" "$PAIR_PRIMARY" "$PAIR_VPC" >"$PAIR_IDENTITY"
        return 0
    fi
    PAIR_ENI=""
    pair_log "router pair: instance metadata (IMDSv2) did not give this router's interface and address"
    return 1
}

# The private address of this router that Elastic IP role $1 belongs to.
pair_private_address() {
    case $1 in
        infrastructure) printf '%s' "$PAIR_PRIMARY" ;;
        console) printf '%s' "$CONSOLE_ADDRESS" ;;
        tenant) printf '%s' "$TENANT_ADDRESS" ;;
    esac
}

# The Elastic IP roles this router has an allocation for, as "role allocation" lines.
pair_allocations() {
    local role var
    for role in infrastructure console tenant; do
        var=CSEC2_ROUTER_EIP_${role^^}
        if [[ -n ${!var-} ]]; then
            printf '%s %s\n' "$role" "${!var}"
        fi
    done
}

# True while keepalived has put the gateway address on cloudbr0: it adds the
# address before it runs notify_master and removes it before notify_backup
# (keepalived.conf(5)), so this is the state, whatever order scripts run in.
pair_is_active() {
    [[ $(ip -4 -o addr show dev cloudbr0 2>/dev/null) == *" inet $CSEC2_ROUTER_PAIR_GATEWAY/32 "* ]]
}

# pair_call WHAT ARGS...: one EC2 call (aws ec2 ARGS), at most PAIR_ATTEMPTS
# times, and only while this router is active: a router that lost the gateway
# meanwhile must not take the AWS side back from the new one.
pair_call() {
    local what=$1 attempt out
    shift
    for ((attempt = 1; attempt <= PAIR_ATTEMPTS; attempt++)); do
        if ! pair_is_active; then
            pair_log "router pair: $what: not done, this router no longer holds the gateway"
            return 1
        fi
        if out=$(csec2_aws ec2 "$@" 2>&1); then
            pair_log "router pair: $what: done ($(pair_elapsed) s into this run)"
            return 0
        fi
        pair_log "router pair: $what failed (attempt $attempt of $PAIR_ATTEMPTS): $(printf '%s' "$out" | tr -s '\n' ' ' | cut -c1-300)"
        if ((attempt < PAIR_ATTEMPTS)); then
            sleep "$attempt"
        fi
    done
    return 1
}

# Takes the AWS side: every route table's overlay route and every Elastic IP to
# this router, the calls in parallel (each is idempotent: a route already ours is
# replaced by itself, an address already ours re-associated with itself).
pair_takeover() {
    local table role allocation address pids=() pid failed=0
    pair_identity || return 1
    for table in $CSEC2_ROUTER_PAIR_ROUTE_TABLES; do
        pair_call "route $CSEC2_OVERLAY_CIDR of $table to $PAIR_ENI" replace-route --route-table-id "$table" \
            --destination-cidr-block "$CSEC2_OVERLAY_CIDR" --network-interface-id "$PAIR_ENI" &
        pids+=($!)
    done
    while read -r role allocation; do
        address=$(pair_private_address "$role")
        if [[ -z $address ]]; then
            pair_log "router pair: no $role address on this router for Elastic IP $allocation"
            failed=1
            continue
        fi
        pair_call "Elastic IP $allocation to $PAIR_ENI $address" associate-address --allocation-id "$allocation" \
            --network-interface-id "$PAIR_ENI" --private-ip-address "$address" --allow-reassociation \
            --query AssociationId --output text &
        pids+=($!)
    done < <(pair_allocations)
    for pid in "${pids[@]}"; do
        wait "$pid" || failed=1
    done
    return "$failed"
}

# What of the AWS side does not point at this router, one line each (nothing
# when all does): the interface it points at ("none": none, "?": not known) and what.
pair_misplaced() {
    local tables table targets target role allocation allocations addresses eni address
    read -ra tables <<<"$CSEC2_ROUTER_PAIR_ROUTE_TABLES"
    if ! targets=$(csec2_aws ec2 describe-route-tables --route-table-ids "${tables[@]}" --output text \
        --query "RouteTables[].[RouteTableId, Routes[?DestinationCidrBlock=='$CSEC2_OVERLAY_CIDR'].NetworkInterfaceId | [0]]"); then
        echo "? route tables: describe-route-tables failed"
        return 0
    fi
    for table in "${tables[@]}"; do
        target=$(awk -v t="$table" '$1 == t { print $2 }' <<<"$targets")
        [[ $target == "$PAIR_ENI" ]] || echo "${target:-none} route $CSEC2_OVERLAY_CIDR of $table: ${target:-none}"
    done
    # All the addresses in one call (each process of the AWS CLI costs a Python start).
    read -ra allocations < <(pair_allocations | awk '{ printf "%s ", $2 }')
    if ! addresses=$(csec2_aws ec2 describe-addresses --allocation-ids "${allocations[@]}" \
        --output text --query "Addresses[].[AllocationId, NetworkInterfaceId, PrivateIpAddress]"); then
        echo "? Elastic IPs: describe-addresses failed"
        return 0
    fi
    while read -r role allocation; do
        read -r eni address < <(awk -v a="$allocation" '$1 == a { print $2, $3 }' <<<"$addresses")
        [[ $eni == "$PAIR_ENI" && $address == "$(pair_private_address "$role")" ]] ||
            echo "${eni:-none} Elastic IP $allocation ($role): ${eni:-none} ${address:-none}"
    done < <(pair_allocations)
}

# ----------------------------------------------------------- split brain ----
# When the two routers cannot exchange adverts but both reach EC2 (a partition
# between them, a security group that lost protocol 112), keepalived makes both
# MASTER, and each would take the AWS side back from the other every 30 s, for
# as long as the partition lasts. keepalived offers nothing for it: nopreempt and
# the priorities act on adverts received, and notify_master_rx_lower_pri runs
# only once adverts arrive again (keepalived.conf(5)). So the routers settle it
# on the AWS side, deterministically: router 0 (the higher priority) never
# yields and re-asserts; router 1 yields when the AWS side moved to the other
# router's interface while router 1 was active and held all of it (PAIR_HELD),
# and that interface's instance runs with its status checks not impaired.
# Yielding puts router 1's keepalived into FAULT through its track file (the
# gateway address leaves its cloudbr0, so the overlay has one gateway too) and
# ends its re-assertions. That is safe: such a move is an API call the other
# router made since router 1's last check, and it makes one only while it holds
# the gateway (pair_call), so it was alive and active at the same time. If it
# breaks after that while its instance keeps running and passing EC2's checks
# (its keepalived or its forwarding gone, during the same partition), router 1
# stays out until the partition heals or the instance stops or fails a check:
# the pair does not cover a second fault during a partition, as VRRP itself
# cannot tell a silent peer from a cut link. Router 1 comes back (track file 0:
# BACKUP, then the election) as soon as adverts from the other router arrive
# again (the counter below), or its instance no longer runs healthy.

# The number of VRRP packets from the other router that reached this one over
# the VPC (an nftables counter, which counts them whatever state keepalived is
# in; never what comes from the overlay, where a tenant may forge the source);
# creates the counting table when it is missing (a reboot drops it).
pair_peer_adverts() {
    local out
    if ! out=$(nft list counter ip cloudstack_router_pair peer_adverts 2>/dev/null); then
        printf '%s\n' "table ip cloudstack_router_pair {" "    counter peer_adverts { }" "    chain prerouting {" \
            "        type filter hook prerouting priority raw; policy accept;" \
            "        iifname != cloudbr0 ip saddr $CSEC2_ROUTER_PAIR_PEER ip protocol vrrp counter name \"peer_adverts\"" "    }" "}" |
            nft -f - || return 1
        echo 0
        return 0
    fi
    awk '$1 == "packets" { print $2; exit }' <<<"$out"
}

# pair_peer_health ENI: "healthy" when the instance ENI is attached to runs and
# EC2's status checks of it are not impaired (EC2 User Guide, "Status checks for
# your instances"; checks still initializing count as healthy), else "down";
# fails when EC2 did not answer.
pair_peer_health() {
    local instance status
    instance=$(csec2_aws ec2 describe-network-interfaces --network-interface-ids "$1" --output text \
        --query 'NetworkInterfaces[0].Attachment.InstanceId') || return 1
    if [[ $instance != i-* ]]; then
        echo down
        return 0
    fi
    status=$(csec2_aws ec2 describe-instance-status --instance-ids "$instance" --include-all-instances \
        --output text --query 'InstanceStatuses[0].[InstanceState.Name, SystemStatus.Status, InstanceStatus.Status]') ||
        return 1
    if [[ $status == running* && $status != *impaired* ]]; then echo healthy; else echo down; fi
}

# pair_should_yield MISPLACED: whether router 1 yields (see above) to the one
# interface every line of MISPLACED (pair_misplaced) names; prints it.
pair_should_yield() {
    local enis
    ((CSEC2_ROUTER_PAIR_INDEX == 1)) && [[ -e $PAIR_HELD ]] || return 1
    enis=$(awk '{ print $1 }' <<<"$1" | sort -u)
    [[ $enis == eni-* && $enis != *$'\n'* && $enis != "$PAIR_ENI" ]] || return 1
    [[ $(pair_peer_health "$enis") == healthy ]] && printf '%s' "$enis"
}

# pair_yield ENI: keepalived to FAULT (the track file), remembering to whom and
# how many adverts of the other router had arrived by then.
pair_yield() {
    printf '%s %s\n' "$1" "$(pair_peer_adverts)" >"$PAIR_YIELD_PEER"
    rm -f "$PAIR_HELD"
    printf '1\n' >"$PAIR_YIELD"
    pair_log "router pair: yielding to router 0 ($1): it took the AWS side while this router was active (no adverts between the two, both reach EC2); keepalived in FAULT until its adverts arrive again or its instance stops or fails a status check"
}

# While yielded: back to the election (track file 0) when adverts of the other
# router arrive again or its instance no longer runs healthy; an EC2 call that
# fails changes nothing.
pair_check_yield() {
    local eni seen now
    read -r eni seen <"$PAIR_YIELD_PEER" 2>/dev/null || { eni="" seen=0; }
    now=$(pair_peer_adverts) || now=$seen
    if ((now > seen)); then
        pair_log "router pair: adverts from the other router arrive again ($((now - seen)) since yielding): back to the election"
    elif [[ $eni != eni-* || $(pair_peer_health "$eni") == down ]]; then
        pair_log "router pair: the instance behind ${eni:-the interface yielded to} no longer runs healthy: back to the election"
    else
        return 0
    fi
    rm -f "$PAIR_YIELD_PEER"
    printf '0\n' >"$PAIR_YIELD"
}

# ------------------------------------------- a router without the pair ----
# A stack that had one router and gets a second (routerCount 1 -> 2): router 0
# runs the boot it started with until it is replaced (EC2 runs user data at an
# instance's first boot only, and Pulumi never replaces an instance for a changed
# user data: components/resources/node.py). That router has the gateway address
# as its own and sends no adverts, so router 1 taking the gateway would make two
# gateways on the overlay. A router therefore holds back (track file 2: FAULT)
# while the instance at the other router's address, in its VPC, is pending,
# running, stopping or shutting down with the user data of a router without a
# pair (no CSEC2_ROUTER_PAIR_INDEX in its boot.env), and comes back (track file
# 0) once none is: the old router 0 has been replaced (README "Changing
# routerCount"). EC2 tells, not the overlay, where a tenant could answer for any
# address. Asked at boot before keepalived starts, and while no adverts arrive.

# pair_peer_without_vrrp: whether such an instance exists (0, its ID printed),
# none does (1), or EC2 did not answer (2).
pair_peer_without_vrrp() {
    local ids id data
    pair_identity || return 2
    ids=$(csec2_aws ec2 describe-instances --output text --query 'Reservations[].Instances[].InstanceId' --filters \
        "Name=private-ip-address,Values=$CSEC2_ROUTER_PAIR_PEER" "Name=vpc-id,Values=$PAIR_VPC" \
        "Name=instance-state-name,Values=pending,running,stopping,shutting-down") || return 2
    for id in $ids; do
        [[ $id == i-* ]] || continue
        # DescribeInstanceAttribute userData: the base64 of what the instance was launched
        # with (EC2 API Reference), here the gzip'd boot script (components/boot/common.py).
        data=$(csec2_aws ec2 describe-instance-attribute --instance-id "$id" --attribute userData \
            --output text --query 'UserData.Value' | base64 -d 2>/dev/null | gunzip 2>/dev/null) || return 2
        [[ $data == *$'\nCSEC2_ENV_ROLE="router"\n'* ]] || return 2
        if [[ $data != *$'\nCSEC2_ROUTER_PAIR_INDEX="'* ]]; then
            printf '%s' "$id"
            return 0
        fi
    done
    return 1
}

# pair_hold_back: track file 2 while the other router runs without the pair,
# logging each change. Returns 0 when holding back, 1 when not, 2 when EC2 did
# not answer (the track file as it was).
pair_hold_back() {
    local id status=0 held
    held=$(cat "$PAIR_YIELD" 2>/dev/null)
    id=$(pair_peer_without_vrrp) || status=$?
    if ((status == 0)); then
        [[ $held == 2 ]] || pair_log "router pair: holding back: the other router ($id at $CSEC2_ROUTER_PAIR_PEER) runs the boot of a router without a pair, with the gateway address as its own; this router takes no part until it is replaced"
        printf '2\n' >"$PAIR_YIELD"
        return 0
    fi
    ((status == 2)) && return 2
    if [[ $held == 2 ]]; then
        pair_log "router pair: no router without a pair at $CSEC2_ROUTER_PAIR_PEER any more: back to the election"
        printf '0\n' >"$PAIR_YIELD"
    fi
    return 1
}

# `router.sh vrrp STATE` (keepalived's notify_master, notify_master_rx_lower_pri,
# notify_backup, notify_fault). MASTER takes the AWS side; BACKUP and FAULT only
# log: keepalived has removed the gateway address, the AWS side is the active
# router's to take.
pair_vrrp() {
    local lock
    pair_load
    # With MASTER this line marks a router becoming active: the router log group's
    # metric filter counts it (components/model/alarms.py ROUTER_TAKEOVER_PATTERN, the
    # router-pair-takeover alarm). Keep its words when changing it.
    pair_log "router pair: keepalived state ${1:-?} (router $CSEC2_ROUTER_PAIR_INDEX)"
    if [[ ${1-} != MASTER ]]; then
        rm -f "$PAIR_HELD"
        return 0
    fi
    exec {lock}>"$PAIR_LOCK"
    if ! flock -w 120 "$lock"; then
        pair_log "router pair: another takeover still runs after 120 s"
        return 1
    fi
    if pair_takeover; then
        touch "$PAIR_HELD"
        pair_log "router pair: this router is active: the overlay route and the Elastic IPs point at $PAIR_ENI ($(pair_elapsed) s after keepalived's call)"
        return 0
    fi
    pair_log "router pair: takeover incomplete; cloudstack-ec2-router-pair.timer retries it"
    return 1
}

# `router.sh reassert` (cloudstack-ec2-router-pair.timer): while this router is
# active, re-takes whatever of the AWS side points elsewhere (a takeover the
# other router ran after ours, e.g. when a partition healed: keepalived's
# notify_master_rx_lower_pri and this check make the active router win), unless
# router 1 yields to router 0 (split brain above); while it has yielded, checks
# whether to come back.
pair_reassert() {
    local lock misplaced peer held adverts last
    pair_load
    exec {lock}>"$PAIR_LOCK"
    held=$(cat "$PAIR_YIELD" 2>/dev/null)
    if [[ $held == 1 ]]; then
        flock -n "$lock" || return 0
        pair_check_yield
        return 0
    fi
    # No adverts since the last run (or none counted before, or holding back): is
    # the other router one without the pair? While holding back, asked again every
    # 5 s for the first 25 s of this run (the timer starts the next 30 s after this
    # one began), so that the replaced router's successor is not kept waiting.
    adverts=$(pair_peer_adverts) || adverts=0
    last=$(cat "$PAIR_ADVERTS" 2>/dev/null)
    if [[ $held == 2 || -z $last || $adverts == "$last" ]]; then
        while pair_hold_back && (($(pair_elapsed | cut -d. -f1) < 25)); do
            sleep 5
        done
        [[ $(cat "$PAIR_YIELD" 2>/dev/null) == 2 ]] && return 0
    fi
    printf '%s\n' "$adverts" >"$PAIR_ADVERTS"
    pair_is_active || return 0
    pair_identity || return 1
    # The first look without the lock: keepalived's MASTER script never waits for
    # these calls. Anything misplaced is looked at again under the lock (a takeover
    # may have run meanwhile), before any decision.
    misplaced=$(pair_misplaced)
    flock -n "$lock" || return 0 # a takeover is running
    if [[ -n $misplaced ]]; then
        pair_is_active || return 0
        misplaced=$(pair_misplaced)
    fi
    if [[ -z $misplaced ]]; then
        touch "$PAIR_HELD"
        return 0
    fi
    if peer=$(pair_should_yield "$misplaced"); then
        pair_yield "$peer"
        return 0
    fi
    pair_log "router pair: active, but: $(cut -d' ' -f2- <<<"$misplaced" | tr '\n' ';') re-asserting"
    pair_takeover && touch "$PAIR_HELD"
}

# `router.sh keepalived-config`: keepalived.conf(5) of this router, printed.
# VRRP goes by unicast between the two routers' primary VPC addresses on the
# underlay device, never over the overlay (tenants share its layer 2), and only
# adverts from the peer's address count (vrrp_check_unicast_src). No
# `authentication`: VRRPv2's password travels in clear in every advert (RFC 3768
# section 5.3.6), and RFC 5798 dropped authentication from VRRPv3 as protecting
# nothing. What protects the adverts: they never cross the overlay, the router's
# input filter refuses everything from the overlay but infrastructure
# (overlay-network.sh), the security group admits IP protocol 112 from the peer
# router only, and EC2's source/destination check stops every other instance
# from sending as the peer. nopreempt (both start as BACKUP): a returning
# router 0 does not take the gateway back, so a failure costs one interruption,
# not two; the priorities (150, 100) decide at start and when a partition heals.
# Gratuitous ARPs on takeover, again 1 s later, and every 10 s while active, so
# members and system VMs move the gateway to the new MAC; after a partition
# heals the loser sends one advert more (higher_prio_send_advert), on which the
# winner repeats them (garp_lower_prio_repeat) and takes the AWS side back
# (notify_master_rx_lower_pri: a lower-priority router that was briefly active
# ran its takeover last). The track file (weight 0: a non-zero value is FAULT) is
# how router 1 yields during a split brain (1, pair_yield) and how a router holds
# back beside a router without the pair (2, pair_hold_back); init_file writes 0
# when it is missing. Both are looked at again at every re-assertion.
pair_keepalived_conf() {
    local priority=100 dev
    ((CSEC2_ROUTER_PAIR_INDEX == 0)) && priority=150
    dev=$(ip -4 -o addr show to "$PAIR_PRIMARY/32" | awk '{ print $2; exit }')
    [[ -n $dev ]] || csec2_die "no device holds this router's primary address $PAIR_PRIMARY"
    cat <<EOF
global_defs {
    router_id cloudstack-ec2-router$CSEC2_ROUTER_PAIR_INDEX
    script_user root
    enable_script_security
    vrrp_check_unicast_src
    vrrp_higher_prio_send_advert
}
track_file router_pair_yield {
    file "$PAIR_YIELD"
    weight 0
    init_file 0
}
vrrp_instance overlay_gateway {
    state BACKUP
    nopreempt
    interface $dev
    virtual_router_id 51
    priority $priority
    advert_int 1
    unicast_src_ip $PAIR_PRIMARY
    unicast_peer {
        $CSEC2_ROUTER_PAIR_PEER
    }
    virtual_ipaddress {
        $CSEC2_ROUTER_PAIR_GATEWAY/32 dev cloudbr0
    }
    track_interface {
        cloudbr0
    }
    track_file {
        router_pair_yield
    }
    garp_master_delay 1
    garp_master_repeat 3
    garp_lower_prio_repeat 3
    garp_master_refresh 10
    notify_master "$PAIR_SCRIPT vrrp MASTER"
    notify_master_rx_lower_pri "$PAIR_SCRIPT vrrp MASTER"
    notify_backup "$PAIR_SCRIPT vrrp BACKUP"
    notify_fault "$PAIR_SCRIPT vrrp FAULT"
}
EOF
}

# pair_permitted WHAT ARGS...: whether this router's role may make the EC2 call
# `aws ec2 ARGS` (made with --dry-run: EC2 API Reference, common parameter DryRun,
# "If you have the required permissions, the error response is DryRunOperation.
# Otherwise, it is UnauthorizedOperation"). Asked a few times over: a new role's
# policy takes a while to reach EC2 (IAM User Guide, "Troubleshoot IAM": changes
# are eventually consistent).
pair_permitted() {
    local what=$1 attempt out
    shift
    for ((attempt = 1; attempt <= PAIR_ATTEMPTS; attempt++)); do
        out=$(csec2_aws ec2 "$@" --dry-run 2>&1)
        [[ $out == *"(DryRunOperation)"* ]] && return 0
        csec2_log "router pair: $what: not confirmed (attempt $attempt of $PAIR_ATTEMPTS): $(printf '%s' "$out" | tr -s '\n' ' ' | cut -c1-300)"
        if ((attempt < PAIR_ATTEMPTS)); then
            sleep $((attempt * 10))
        fi
    done
    return 1
}

# Boot step, before keepalived: the takeover's every call is one this router's role
# may make. A refused permission would otherwise show first at a failover, when the
# other router is already gone.
pair_check_permissions() {
    local table role allocation
    for table in $CSEC2_ROUTER_PAIR_ROUTE_TABLES; do
        pair_permitted "ReplaceRoute in $table" replace-route --route-table-id "$table" \
            --destination-cidr-block "$CSEC2_OVERLAY_CIDR" --network-interface-id "$PAIR_ENI" ||
            csec2_die "EC2 did not confirm that this router's role may ReplaceRoute in $table to $PAIR_ENI (the lines above say why): no failover would work"
    done
    while read -r role allocation; do
        pair_permitted "AssociateAddress of $allocation" associate-address --allocation-id "$allocation" \
            --network-interface-id "$PAIR_ENI" --private-ip-address "$PAIR_PRIMARY" --allow-reassociation ||
            csec2_die "EC2 did not confirm that this router's role may AssociateAddress $allocation ($role) with $PAIR_ENI (the lines above say why): no failover would work"
    done < <(pair_allocations)
}

# Boot step, before keepalived: hold back while the other router runs without the
# pair (pair_hold_back). EC2 must answer: without it, starting keepalived could
# make a second gateway beside such a router.
pair_boot_hold_back() {
    local attempt status
    for ((attempt = 1; ; attempt++)); do
        status=0
        pair_hold_back || status=$?
        ((status == 2)) || return 0
        ((attempt >= PAIR_ATTEMPTS)) &&
            csec2_die "EC2 did not say whether the other router ($CSEC2_ROUTER_PAIR_PEER) runs without the pair (DescribeInstances, DescribeInstanceAttribute userData; the log above): keepalived not started, it could make a second gateway"
        sleep $((attempt * 10))
    done
}

# Boot step: keepalived with this router's configuration, and the re-assertion
# timer. A re-run with an unchanged configuration changes nothing (no restart: a
# restarted active router would hand the gateway over).
setup_router_pair() {
    local conf_new=$KEEPALIVED_CONF.new
    [[ -n ${CSEC2_ROUTER_PAIR_INDEX-} ]] || return 0
    csec2_step "router pair: keepalived (router $CSEC2_ROUTER_PAIR_INDEX, peer $CSEC2_ROUTER_PAIR_PEER)"
    csec2_require CSEC2_ROUTER_PAIR_PEER CSEC2_ROUTER_PAIR_GATEWAY CSEC2_ROUTER_PAIR_ROUTE_TABLES \
        CSEC2_ROUTER_EIP_INFRASTRUCTURE
    csec2_apt_install keepalived
    pair_identity || csec2_die "instance metadata (IMDSv2) did not answer with this router's interface"
    mkdir -p "$(dirname "$KEEPALIVED_CONF")" "$PAIR_UNIT_DIR" "$CSEC2_STATE_DIR"
    pair_peer_adverts >/dev/null || csec2_die "nft refused the table counting the other router's adverts"
    pair_keepalived_conf >"$conf_new"
    keepalived --config-test -f "$conf_new" || csec2_die "keepalived --config-test refused $conf_new"
    pair_check_permissions
    pair_boot_hold_back
    printf '%s\n' "[Unit]" "Description=cloudstack-ec2 router pair: the active router re-asserts the overlay route and Elastic IPs" \
        "After=keepalived.service" "[Service]" "Type=oneshot" "ExecStart=$PAIR_SCRIPT reassert" \
        >"$PAIR_UNIT_DIR/cloudstack-ec2-router-pair.service"
    printf '%s\n' "[Unit]" "Description=cloudstack-ec2 router pair re-assertion" "[Timer]" "OnBootSec=1min" \
        "OnUnitActiveSec=30s" "AccuracySec=5s" "[Install]" "WantedBy=timers.target" \
        >"$PAIR_UNIT_DIR/cloudstack-ec2-router-pair.timer"
    systemctl daemon-reload
    if cmp -s "$conf_new" "$KEEPALIVED_CONF" && systemctl is-active --quiet keepalived.service; then
        rm -f "$conf_new"
        csec2_log "keepalived configuration unchanged"
    else
        mv "$conf_new" "$KEEPALIVED_CONF"
        systemctl enable keepalived.service
        systemctl reload-or-restart keepalived.service || csec2_die "keepalived failed to start (journalctl -u keepalived)"
    fi
    systemctl enable --now cloudstack-ec2-router-pair.timer
}

# The tenants' resolver (overlay-network.sh TENANT_DNS): unbound, with the settings
# the overlay script prints (dns-config), so that they match the table that sends
# tenants' DNS to it. Before the overlay: it listens on the overlay address with
# ip-freebind, and the overlay unit sends tenants to it as soon as it runs.
setup_tenant_dns() {
    local settings=$CSEC2_ROOT/etc/cloudstack-ec2/overlay.env mode conf config
    conf=$CSEC2_ROOT/etc/unbound/unbound.conf.d/cloudstack-ec2.conf
    # shellcheck disable=SC1090
    mode=$(source "$settings" && echo "${TENANT_DNS-}")
    if [[ -z $mode ]]; then
        csec2_log "tenants' DNS: the VPC resolver"
        return 0
    fi
    csec2_step "tenants' resolver (unbound, $mode)"
    # Ubuntu's unbound package starts unbound-resolvconf.service, which registers
    # 127.0.0.1 as the system's resolver (debian/unbound.unbound-resolvconf.service); this
    # unbound listens on the overlay address only, so the router's own lookups would
    # fail. Masked before the install, so the package's postinst never starts it.
    systemctl mask unbound-resolvconf.service
    csec2_apt_install unbound
    # shellcheck disable=SC1090
    config=$(set -a && source "$settings" && "$CSEC2_LIB_DIR/overlay-network.sh" dns-config) ||
        csec2_die "overlay-network.sh dns-config refused the settings in $settings"
    mkdir -p "$(dirname "$conf")"
    printf '%s\n' "$config" >"$conf.new"
    unbound-checkconf "$conf.new" >/dev/null || csec2_die "unbound-checkconf refused $conf.new"
    mv "$conf.new" "$conf"
    systemctl enable unbound.service
    systemctl restart unbound.service || csec2_die "unbound failed to start (journalctl -u unbound)"
}

# The router's log of what its firewall refused (components/model/monitoring.py
# ROUTER_DROP_LOG; the CloudWatch agent ships it): at every run of the forwards
# timer (once a minute), one line per named counter of overlay-network.sh's table
# (cloudstack_overlay: forged_refused, tenant_refused, tenant_new_limited, ...)
# that grew since the run before. Counters rather than nft's per-packet `log`
# statement: a flood costs one line a minute, never a line per packet, so the log
# is rate-limited by construction and the firewall's rules stay as they are.
log_drops() {
    local now log=$DROP_LOG state=$DROP_STATE
    now=$(nft list counters table ip cloudstack_overlay 2>/dev/null |
        awk '$1 == "counter" { name = $2 } $1 == "packets" { print name, $2, $4 }') || return 0
    mkdir -p "$(dirname "$log")" "$(dirname "$state")"
    touch "$state"
    # A counter below its last value was reset (the table was loaded again): all of it is new.
    awk -v ts="$(date -u +%Y-%m-%dT%H:%M:%SZ)" '
        NR == FNR { before[$1] = $2; next }
        { delta = ($2 < before[$1] + 0) ? $2 : $2 - before[$1] }
        delta > 0 { printf "%s refused %s: %d packet(s) in the last minute (%d in all, %d bytes)\n", ts, $1, delta, $2, $3 }
    ' "$state" - <<<"$now" >>"$log"
    printf '%s\n' "$now" >"$state"
}

case ${1-} in
    vrrp)
        pair_vrrp "${2-}"
        exit
        ;;
    reassert)
        pair_reassert
        exit
        ;;
    keepalived-config)
        pair_load
        pair_identity || exit 1
        pair_keepalived_conf
        exit
        ;;
esac

if [[ ${1-} == forwards ]]; then
    csec2_begin router
    apply_forwards
    log_drops
    csec2_finish
    exit 0
fi

csec2_begin router

csec2_setup_hostname
# overlay-network.sh needs nft on the router (NAT, forwarding); the router
# reaches the internet directly, so it can install it before the overlay is up.
csec2_step "nftables"
csec2_apt_install nftables
setup_tenant_dns
csec2_setup_overlay
setup_router_pair
csec2_setup_ssm_agent
csec2_setup_time_sync
csec2_install_aws_cli
# The refresh first: a set the overlay refuses now (e.g. a console proxy outside
# CONSOLE_RANGE until the registration moves it) fails this run, and the timer
# applies the next good one.
csec2_step "forwards refresh timer"
systemctl daemon-reload
systemctl enable --now cloudstack-ec2-forwards.timer
apply_forwards
csec2_cloudwatch_agent
csec2_finish
