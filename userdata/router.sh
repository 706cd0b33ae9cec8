#!/bin/bash
# Boot script of the overlay router (cloudstack-ec2).
#
# The router is the overlay's gateway: cloudstack-ec2-overlay.service runs
# overlay-network.sh (role router: forwarding, NAT, DNAT of the UI/API port and
# of the forwards to VMs and of the console address) at every boot. It needs no
# secrets and waits on nothing, so the members (which reach the internet through
# it) can install their packages; tenants' DNS goes to its own resolver (unbound)
# when the overlay settings ask for one. `router.sh forwards` applies changed forwards
# to VMs and to the console proxy (timer).
#
# Settings: /etc/cloudstack-ec2/boot.env (non-secret). Log:
# /var/log/cloudstack-ec2-boot.log and the console.

# shellcheck source=SCRIPTDIR/common.sh
source "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/common.sh"

FORWARDS_ENV=$CSEC2_ROOT/etc/cloudstack-ec2/forwards.env
# log_drops: the log the CloudWatch agent ships, and the counters it last saw.
DROP_LOG=$CSEC2_ROOT/var/log/cloudstack-ec2/router-drops.log
DROP_STATE=$CSEC2_STATE_DIR/drop-counters
FORWARD_ENTRY='^(tcp|udp):[0-9]{1,5}:[0-9.]+:[0-9]{1,5}$'
# What components/model/consoles.py console_forwards writes, entry by entry
# (overlay-network.sh checks the whole value and the target).
CONSOLE_ENTRY='^tcp:(80:[0-9.]+:80|8080:[0-9.]+:8080)$'
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

# Services offered from VMs (vmForwards) and the console: Pulumi writes the
# first to the SSM parameter <prefix>/router-forwards, the registration the
# second to <prefix>/console-forwards (the console proxy's public IP, which
# CloudStack chooses; "none" until known). This applies both to the RUNNING
# router (no instance replacement, no user data change): forwards.env is read
# by cloudstack-ec2-overlay.service, and re-running overlay-network.sh replaces
# its nftables table in one transaction (flows keep their NAT bindings). Run at
# boot and every minute by cloudstack-ec2-forwards.timer. A set overlay-network.sh
# refuses is never kept: the last good one stays, for this run and the next boot.
apply_forwards() {
    local vm console wanted previous="" lock
    csec2_step "forwards to VMs and the console (SSM parameters $(csec2_name router-forwards), $(csec2_name console-forwards))"
    # One run at a time: the boot's and the timer's (enabled before it, below).
    mkdir -p "$(dirname "$FORWARDS_ENV")"
    exec {lock}>"$FORWARDS_ENV.lock"
    flock "$lock"
    read_forwards router-forwards "$FORWARD_ENTRY" "proto:port:target:targetPort"
    vm=$FORWARDS_VALUE
    read_forwards console-forwards "$CONSOLE_ENTRY" "tcp:80:ip:80 tcp:8080:ip:8080"
    console=$FORWARDS_VALUE
    wanted="VM_FORWARDS=\"$vm\""$'\n'"CONSOLE_FORWARDS=\"$console\""
    [[ -r $FORWARDS_ENV ]] && previous=$(<"$FORWARDS_ENV")
    if [[ $previous == "$wanted" ]]; then
        csec2_log "forwards up to date: ${vm:-none}; console: ${console:-none}"
        return 0
    fi
    printf '%s\n' "$wanted" >"$FORWARDS_ENV"
    if systemctl restart cloudstack-ec2-overlay.service; then
        csec2_log "forwards applied: ${vm:-none}; console: ${console:-none}"
        return 0
    fi
    if [[ -n $previous ]]; then
        printf '%s\n' "$previous" >"$FORWARDS_ENV"
    else
        rm -f "$FORWARDS_ENV"
    fi
    systemctl restart cloudstack-ec2-overlay.service || true
    csec2_die "overlay-network.sh refused the forwards '$vm' with the console forwards '$console' (journalctl -u cloudstack-ec2-overlay.service); the previous ones stay"
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
