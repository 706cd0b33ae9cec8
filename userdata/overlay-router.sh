#!/usr/bin/env bash
# overlay-router.sh: the router's part of overlay-network.sh, which sources it
# when OVERLAY_ROLE=router (members never get it: every byte of their user data
# counts against EC2's 16 KiB). It reads and sets overlay-network.sh's variables;
# see there for what they mean.
#   router_check  validates ROUTER_DNAT, VM_FORWARDS, CONSOLE_ADDRESS,
#                 CONSOLE_RANGE, CONSOLE_FORWARDS, TENANT_ADDRESS and the
#                 isolation variables (adds to the problems list; changes nothing)
#   router_apply  routes, forwarding and the nftables table ip cloudstack_overlay
#   router_dns_config  prints the configuration of the tenants' resolver (unbound)
#                 that TENANT_DNS asks for (changes nothing)
# shellcheck disable=SC2154  # the variables are overlay-network.sh's

# Budgets of tenants and system VMs (components/model/tenantlimits.py holds the same
# figures; a test compares them). The VPC resolver answers at most 1024 packets per
# second from one network interface (Amazon VPC User Guide, "Amazon DNS server",
# quotas), and every overlay query leaves through this router's: without budgets one
# tenant could take all of it. Per tenant address (a virtual router's public NIC,
# the queries of its whole guest network), all tenants together, and all system VMs
# together: 1024 - TENANT_DNS_TOTAL - SYSTEM_DNS_TOTAL stays for the
# infrastructure, which is not limited.
readonly TENANT_DNS_RATE=50 TENANT_DNS_BURST=100 TENANT_DNS_TOTAL=500
readonly SYSTEM_DNS_TOTAL=100 SYSTEM_DNS_BURST=200
# New connections through the router per tenant address: rate, and how many it may
# hold at once (the router's conntrack table and NAT ports are shared by all).
readonly TENANT_NEW_RATE=200 TENANT_NEW_BURST=400 TENANT_CONNECTIONS=4096

router_check() {
    dnat_entries=()
    direct_entries=()
    declare -gA dnat_ports=()
    if [[ $OVERLAY_ROLE == router ]]; then
        # The console: components/model/consoles.py says why a second address, and what
        # it forwards. The underlay address is never it (overlay-network.sh).
        if [[ -n $CONSOLE_ADDRESS ]] && { ! is_ipv4 "$CONSOLE_ADDRESS" || { $vpc_ok && ! in_net "$CONSOLE_ADDRESS" "$vpc_ip" "$vpc_prefix"; }; }; then
            problem CONSOLE_ADDRESS "$CONSOLE_ADDRESS" "expected the router's second private IPv4 address, inside VPC_CIDR $VPC_CIDR"
        fi
        # Tenants' and system VMs' way out: the router's third private address, with an
        # Elastic IP of its own, so that no allowlist of the infrastructure's address
        # (the underlay address's, which the instances' AWS API calls use) admits them.
        if [[ -n $TENANT_ADDRESS ]] && { ! is_ipv4 "$TENANT_ADDRESS" || { $vpc_ok && ! in_net "$TENANT_ADDRESS" "$vpc_ip" "$vpc_prefix"; } ||
            [[ $TENANT_ADDRESS == "$CONSOLE_ADDRESS" ]]; }; then
            problem TENANT_ADDRESS "$TENANT_ADDRESS" "expected the router's third private IPv4, inside VPC_CIDR $VPC_CIDR, not CONSOLE_ADDRESS"
        fi
        # Tenants' DNS: answered by this router's resolver (unbound), which either
        # forwards to the VPC resolver (private hosted zones and the VPC's own names
        # visible) or recurses itself from the root (the internet's view only; its
        # queries leave with TENANT_ADDRESS). Empty: straight to the VPC resolver.
        if [[ $TENANT_DNS == recurse ]]; then
            [[ -n $TENANT_ADDRESS ]] || problem TENANT_DNS recurse "needs TENANT_ADDRESS (its queries leave with it)"
            [[ $MODE == dns-config ]] || unbound_uid=$(id -u unbound) || problem TENANT_DNS recurse "needs the user unbound (package unbound)"
        elif [[ -n $TENANT_DNS && $TENANT_DNS != forward ]]; then
            problem TENANT_DNS "$TENANT_DNS" "expected empty, forward or recurse"
        fi
        # The system VMs' public range (forsystemvms): no tenant ever holds its addresses.
        console_first=${CONSOLE_RANGE%-*} console_last=${CONSOLE_RANGE#*-}
        if [[ -n $CONSOLE_RANGE ]] && { [[ $CONSOLE_RANGE != *-* ]] || ! is_ipv4 "$console_first" || ! is_ipv4 "$console_last" ||
            (($(ip2int "$console_first") > $(ip2int "$console_last"))) ||
            { $overlay_ok && ! { in_net "$console_first" "$overlay_net" "$overlay_prefix" && in_net "$console_last" "$overlay_net" "$overlay_prefix"; }; }; }; then
            problem CONSOLE_RANGE "$CONSOLE_RANGE" "expected first-last IPv4 addresses inside the overlay, the system VMs' public range, e.g. 10.100.192.1-10.100.192.8"
            CONSOLE_RANGE=
        fi
        console_ok=true
        if [[ -n ${CONSOLE_FORWARDS// /} ]]; then
            re='^tcp:80:([0-9.]+):80 tcp:8080:([0-9.]+):8080$'
            if ! [[ $CONSOLE_FORWARDS =~ $re && ${BASH_REMATCH[1]} == "${BASH_REMATCH[2]}" ]]; then
                problem CONSOLE_FORWARDS "$CONSOLE_FORWARDS" "expected empty or 'tcp:80:IP:80 tcp:8080:IP:8080', IP the console proxy's public address (components/model/consoles.py)"
                console_ok=false
            elif target=${BASH_REMATCH[1]} && [[ -n $CONSOLE_RANGE ]] && ! { is_ipv4 "$target" && in_span "$target" "$console_first" "$console_last"; }; then
                problem CONSOLE_FORWARDS "$CONSOLE_FORWARDS" "the target is outside CONSOLE_RANGE $CONSOLE_RANGE, the system VMs' public range; a console proxy outside it may be a tenant's address"
                console_ok=false
            fi
            [[ -n $CONSOLE_ADDRESS ]] || problem CONSOLE_FORWARDS "$CONSOLE_FORWARDS" "needs CONSOLE_ADDRESS, the address to forward from"
            [[ -n $CONSOLE_RANGE ]] || problem CONSOLE_FORWARDS "$CONSOLE_FORWARDS" "needs a valid CONSOLE_RANGE, the range its target must lie in"
        fi
        re='^(tcp|udp):([0-9]{1,5}):([0-9.]+):([0-9]{1,5})$'
        for variable in ROUTER_DNAT VM_FORWARDS CONSOLE_FORWARDS; do
            # From the underlay address; the console's from CONSOLE_ADDRESS (its
            # 8080 is not the UI's).
            to=
            if [[ $variable == CONSOLE_FORWARDS ]]; then
                $console_ok || continue
                to=$CONSOLE_ADDRESS
            fi
            read -r -a dnat_words <<<"${!variable}"
            for entry in "${dnat_words[@]}"; do
                if ! [[ $entry =~ $re ]]; then
                    problem "$variable" "$entry" "expected space-separated proto:port:target_ip:target_port entries (proto tcp|udp, ports 1..65535), e.g. tcp:8080:10.100.0.2:8080"
                    continue
                fi
                # Copy the captures: is_ipv4 runs its own match.
                proto=${BASH_REMATCH[1]} port=$((10#${BASH_REMATCH[2]}))
                target=${BASH_REMATCH[3]} target_port=$((10#${BASH_REMATCH[4]}))
                if ! is_ipv4 "$target" || ((port < 1 || port > 65535 || target_port < 1 || target_port > 65535)); then
                    problem "$variable" "$entry" "expected space-separated proto:port:target_ip:target_port entries (proto tcp|udp, ports 1..65535), e.g. tcp:8080:10.100.0.2:8080"
                elif $overlay_ok && { ! in_net "$target" "$overlay_net" "$overlay_prefix" || [[ $target == "$overlay_ip" ]]; }; then
                    problem "$variable" "$entry" "the target must be another address inside the overlay subnet $overlay_cidr"
                elif [[ -n ${dnat_ports[$to:$proto:$port]-} ]]; then
                    problem "$variable" "$entry" "$proto port $port is already forwarded by ${dnat_ports[$to:$proto:$port]}"
                elif [[ $variable != ROUTER_DNAT ]] && is_cidr "$INFRA_CIDR" && in_net "$target" "${INFRA_CIDR%/*}" "${INFRA_CIDR#*/}"; then
                    problem "$variable" "$entry" "the target is an infrastructure address (INFRA_CIDR $INFRA_CIDR); VM and console forwards reach tenant (public range) addresses only"
                elif [[ $variable != ROUTER_DNAT && $SYSTEM_RANGE == *-* ]] && is_ipv4 "${SYSTEM_RANGE%-*}" && is_ipv4 "${SYSTEM_RANGE#*-}" &&
                    in_span "$target" "${SYSTEM_RANGE%-*}" "${SYSTEM_RANGE#*-}"; then
                    problem "$variable" "$entry" "the target is in the system range SYSTEM_RANGE $SYSTEM_RANGE; VM and console forwards reach tenant (public range) addresses only"
                else
                    dnat_ports[$to:$proto:$port]=$entry
                    dnat_entries+=("$proto $port $target $target_port $to")
                    # The infrastructure services behind ROUTER_DNAT (the UI/API) are
                    # also reached at their own overlay address from the VPC.
                    [[ $variable == ROUTER_DNAT ]] && direct_entries+=("$proto $target $target_port")
                fi
            done
        done
    fi

    tenant_access=()
    if [[ $OVERLAY_ROLE == router ]]; then
        if ! is_cidr "$INFRA_CIDR"; then
            problem INFRA_CIDR "$INFRA_CIDR" "expected the overlay's infrastructure block as network/prefix (host bits zero), e.g. 10.100.0.0/18"
        elif $overlay_ok && { ((${INFRA_CIDR#*/} < overlay_prefix)) || ! in_net "${INFRA_CIDR%/*}" "$overlay_net" "$overlay_prefix"; }; then
            problem INFRA_CIDR "$INFRA_CIDR" "expected a block inside the overlay subnet $overlay_cidr"
        elif $overlay_ok && ! in_net "$overlay_ip" "${INFRA_CIDR%/*}" "${INFRA_CIDR#*/}"; then
            problem INFRA_CIDR "$INFRA_CIDR" "does not contain the router's own address $overlay_ip; expected the infrastructure block"
        fi
        system_first=${SYSTEM_RANGE%-*} system_last=${SYSTEM_RANGE#*-}
        if [[ $SYSTEM_RANGE != *-* ]] || ! is_ipv4 "$system_first" || ! is_ipv4 "$system_last" ||
            (($(ip2int "$system_first") > $(ip2int "$system_last"))); then
            problem SYSTEM_RANGE "$SYSTEM_RANGE" "expected first-last IPv4 addresses, e.g. 10.100.64.1-10.100.64.250"
        elif $overlay_ok && { ! in_net "$system_first" "$overlay_net" "$overlay_prefix" || ! in_net "$system_last" "$overlay_net" "$overlay_prefix"; }; then
            problem SYSTEM_RANGE "$SYSTEM_RANGE" "expected a range inside the overlay subnet $overlay_cidr"
        elif is_cidr "$INFRA_CIDR" && { in_net "$system_first" "${INFRA_CIDR%/*}" "${INFRA_CIDR#*/}" || in_net "$system_last" "${INFRA_CIDR%/*}" "${INFRA_CIDR#*/}"; }; then
            problem SYSTEM_RANGE "$SYSTEM_RANGE" "overlaps INFRA_CIDR $INFRA_CIDR; system VMs are not infrastructure"
        fi
        if ! is_cidr "$STORAGE_CIDR"; then
            problem STORAGE_CIDR "$STORAGE_CIDR" "expected the dedicated subnet (EFS mount target) as network/prefix, e.g. 10.0.0.0/24"
        elif $vpc_ok && { ((${STORAGE_CIDR#*/} < vpc_prefix)) || ! in_net "${STORAGE_CIDR%/*}" "$vpc_ip" "$vpc_prefix"; }; then
            problem STORAGE_CIDR "$STORAGE_CIDR" "expected a subnet inside VPC_CIDR $VPC_CIDR"
        fi
        refused_more=""
        read -r -a refused_words <<<"$TENANT_REFUSED"
        for entry in "${refused_words[@]}"; do
            if ! is_cidr "$entry" || ((${entry#*/} == 0)); then
                problem TENANT_REFUSED "$entry" "expected IPv4 network/prefix entries, not 0.0.0.0/0"
            else
                refused_more+=", $entry"
            fi
        done
        read -r -a access_words <<<"$TENANT_VPC_ACCESS"
        for entry in "${access_words[@]}"; do
            if ! is_cidr "$entry" || ((${entry#*/} == 0)); then
                problem TENANT_VPC_ACCESS "$entry" "expected space-separated IPv4 network/prefix entries (host bits zero, not 0.0.0.0/0), e.g. 10.0.8.0/24"
            elif nets_overlap "${entry%/*}" "${entry#*/}" 169.254.0.0 16; then
                problem TENANT_VPC_ACCESS "$entry" "overlaps 169.254.0.0/16 (instance metadata and link-local services), which tenants never reach"
            elif $overlay_ok && nets_overlap "${entry%/*}" "${entry#*/}" "$overlay_net" "$overlay_prefix"; then
                problem TENANT_VPC_ACCESS "$entry" "overlaps the overlay $overlay_cidr; expected destinations outside it"
            else
                tenant_access+=("$entry")
            fi
        done
    fi

}

router_apply() {
    # Router: its default route stays on the underlay.
    while ip -4 route show default dev "$BRIDGE" 2>/dev/null | grep -q .; do
        ip route del default dev "$BRIDGE"
    done
    if ! ip -4 route show default 2>/dev/null | grep -q .; then
        ip route add default via "$(underlay_gateway)" dev "$UNDERLAY_DEV"
    fi
    set_proc /proc/sys/net/ipv4/ip_forward 1

    dnat_rules=""
    for entry in "${dnat_entries[@]}"; do
        read -r proto port target target_port to <<<"$entry"
        dnat_rules+="        iifname \"$UNDERLAY_DEV\" ip daddr ${to:-$underlay_ip} $proto dport $port dnat to $target:$target_port"$'\n'
    done

    direct_rules=""
    for entry in "${direct_entries[@]}"; do
        read -r proto target target_port <<<"$entry"
        direct_rules+="        ip daddr $target $proto dport $target_port accept"$'\n'
    done

    internet_mss=$((INTERNET_MTU - TCPIP_HEADERS))

    # Forwarded with the console address still as destination: not a console
    # forward (DNAT rewrote those). Never routed on: it is an address of this very
    # ENI, so on the VPC it could only come back here.
    # Local (the address on UNDERLAY_DEV): input, new packets only (replies to the
    # router's own connections from it pass).
    console_rule="" console_input=""
    if [[ -n $CONSOLE_ADDRESS ]]; then
        console_rule="        ip daddr $CONSOLE_ADDRESS counter name \"console_refused\" drop"$'\n'
        console_input="        ip daddr $CONSOLE_ADDRESS ct state & (established | related) == 0 counter name \"console_refused\" drop"$'\n'
    fi
    # The tenants' address the same way: only replies to their own connections
    # (which conntrack turns back to the tenant before routing) come in through it.
    # Without it, tenants leave with the underlay address as before.
    tenant_source=$underlay_ip infra_nat=""
    if [[ -n $TENANT_ADDRESS ]]; then
        tenant_source=$TENANT_ADDRESS
        infra_nat="        oifname \"$UNDERLAY_DEV\" ip saddr $INFRA_CIDR ip daddr != $VPC_CIDR snat to $underlay_ip"$'\n'
        console_rule+="        ip daddr $TENANT_ADDRESS counter name \"tenant_address_refused\" drop"$'\n'
        console_input+="        ip daddr $TENANT_ADDRESS ct state & (established | related) == 0 counter name \"tenant_address_refused\" drop"$'\n'
    fi

    # Tenants' DNS to the VPC resolver goes to this router's resolver instead
    # (router_dns_config): DNAT to the overlay address, where unbound listens; the
    # budgets (dns_budget) count it before. System VMs keep the VPC resolver (EFS's
    # name is a VPC name), the infrastructure too. In recurse mode, what unbound
    # sends to the internet leaves with the tenants' address.
    tenant_dns_nat="" tenant_dns_input="" resolver_nat=""
    if [[ -n $TENANT_DNS ]]; then
        tenant_dns_nat="        iifname \"$BRIDGE\" ip saddr != { $INFRA_CIDR, $SYSTEM_RANGE } ip daddr $vpc_resolver meta l4proto { tcp, udp } th dport 53 dnat to $overlay_ip"$'\n'
        tenant_dns_input="        ip daddr $overlay_ip meta l4proto { tcp, udp } th dport 53 ct status dnat accept"$'\n'
    fi
    if [[ $TENANT_DNS == recurse ]]; then
        resolver_nat="        oifname \"$UNDERLAY_DEV\" meta skuid $unbound_uid ip daddr != $VPC_CIDR snat to $TENANT_ADDRESS"$'\n'
    fi

    # Destinations that are not "the internet" for system VMs and tenants: the VPC,
    # private, shared (carrier-grade NAT) and link-local space (peered VPCs, VPNs
    # and Direct Connect routes are reachable from the VPC, not from the internet).
    not_internet="$VPC_CIDR, 10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16, 100.64.0.0/10, 169.254.0.0/16"
    tenant_access_rule=""
    if ((${#tenant_access[@]})); then
        tenant_access_rule="        ip daddr { $(
            IFS=,
            echo "${tenant_access[*]}"
        ) } accept"$'\n'
    fi

    # One transaction: create-if-missing, delete, define. Flows keep their NAT
    # bindings (conntrack), so replacing the table never interrupts them.
    # MSS clamp: members announce OVERLAY_MTU - 40 (8410 at 8450) and would send
    # segments that big to the internet, where the internet gateway drops them
    # (1500 bytes) and the ICMP "fragmentation needed" may never come back. Each
    # side sends at most the MSS the OTHER side's SYN announced, so both the SYN
    # and the SYN-ACK are clamped, in both directions (member -> internet, and
    # internet -> ROUTER_DNAT target). Only lowered, never raised; VPC traffic
    # keeps the jumbo MSS. Forward hook, after DNAT: daddr is the overlay target.
    nft -f - <<EOF
table ip $NFT_TABLE
delete table ip $NFT_TABLE
table ip $NFT_TABLE {
    chain prerouting {
        type nat hook prerouting priority dstnat; policy accept;
${dnat_rules}${tenant_dns_nat}    }
    chain forward {
        type filter hook forward priority mangle; policy accept;
        ip saddr $overlay_cidr ip daddr != $VPC_CIDR tcp flags & syn == syn tcp option maxseg size > $internet_mss tcp option maxseg size set $internet_mss
        ip daddr $overlay_cidr ip saddr != $VPC_CIDR tcp flags & syn == syn tcp option maxseg size > $internet_mss tcp option maxseg size set $internet_mss
    }
    # Tenant isolation (see the header). Only packets from the overlay are
    # filtered here; what the VPC and the internet may send into the overlay is
    # the router's security group's business. A new packet from cloudbr0 whose
    # source is outside the overlay is forged (a VR or system VM sending as a
    # VPC or public address, e.g. UDP reflected off the VPC resolver): dropped.
    # Reverse-path filtering cannot do it: Ubuntu's all.rp_filter=2 (loose)
    # accepts any source with a route (the default route), and the kernel uses
    # max(all, cloudbr0), so a strict cloudbr0 alone would change nothing
    # (Documentation/networking/ip-sysctl.rst, rp_filter). Replies to DNAT and
    # forwarded flows are established and pass.
    chain isolation {
        type filter hook forward priority filter; policy accept;
${console_rule}        ct state established,related accept
        iifname "$BRIDGE" ip saddr != $overlay_cidr counter name "forged_refused" drop
        iifname "$BRIDGE" ip saddr $overlay_cidr jump from_overlay
        iifname != "$BRIDGE" ip daddr $overlay_cidr jump into_overlay
    }
    # From outside (the VPC, the internet) into the overlay, new connections:
    # the declared forwards (DNAT: ROUTER_DNAT, VM_FORWARDS, CONSOLE_FORWARDS
    # from CONSOLE_ADDRESS), the ROUTER_DNAT
    # services at their own address (the UI/API from the VPC), ICMP; nothing
    # else reaches infrastructure, system VMs or tenants. (The router's security
    # group decides who, this decides where.)
    chain into_overlay {
        ct status dnat accept
        meta l4proto icmp accept
${direct_rules}        counter name "inbound_refused" reject with icmp type admin-prohibited
    }
    chain from_overlay {
        ip daddr 169.254.0.0/16 counter name "link_local_refused" reject with icmp type admin-prohibited
        ip saddr $INFRA_CIDR accept
        ip saddr $SYSTEM_RANGE goto from_system
        goto from_tenant
    }
    chain from_system {
        ip daddr $vpc_resolver meta l4proto { tcp, udp } th dport 53 accept
        ip daddr $STORAGE_CIDR tcp dport 2049 accept
        ip daddr { $not_internet } counter name "system_refused" reject with icmp type admin-prohibited
        accept
    }
    # A tenant's new connections (its DNS is budgeted in dns_budget): at most
    # TENANT_NEW_RATE a second and TENANT_CONNECTIONS at once per address.
    chain from_tenant {
        ip daddr $vpc_resolver meta l4proto { tcp, udp } th dport 53 accept
        update @tenant_new { ip saddr limit rate over $TENANT_NEW_RATE/second burst $TENANT_NEW_BURST packets } counter name "tenant_new_limited" drop
        add @tenant_connections { ip saddr ct count over $TENANT_CONNECTIONS } counter name "tenant_connections_limited" reject with icmp type admin-prohibited
${tenant_access_rule}        ip daddr { $not_internet$refused_more } counter name "tenant_refused" reject with icmp type admin-prohibited
        accept
    }
    # The router itself answers infrastructure only (and ICMP, for diagnostics
    # and path-MTU discovery). A packet from cloudbr0 with a source outside the
    # overlay is forged, here too, and dropped before conntrack's "established":
    # a VRRP advert claiming the peer router's VPC address would otherwise match
    # the pair's own VRRP flow (protocol 112 has no ports).
    chain input {
        type filter hook input priority filter; policy accept;
${console_input}        iifname != "$BRIDGE" accept
        ip saddr != $overlay_cidr counter name "forged_refused" drop
        ct state established,related accept
        ip saddr $INFRA_CIDR accept
${tenant_dns_input}        meta l4proto icmp accept
        counter name "router_refused" reject with icmp type admin-prohibited
    }
    counter forged_refused { }
    counter link_local_refused { }
    counter system_refused { }
    counter tenant_refused { }
    counter router_refused { }
    counter inbound_refused { }
    counter console_refused { }
    counter tenant_address_refused { }
    counter tenant_dns_limited { }
    counter system_dns_limited { }
    counter tenant_new_limited { }
    counter tenant_connections_limited { }
    set tenant_dns { type ipv4_addr; flags dynamic,timeout; timeout 1m; }
    set tenant_new { type ipv4_addr; flags dynamic,timeout; timeout 1m; }
    set tenant_connections { type ipv4_addr; flags dynamic; }
    # DNS to the VPC resolver from system VMs and tenants (see TENANT_DNS_RATE):
    # every packet counts, replies aside, before conntrack's "established" passes
    # it (a flood from one socket is established after the first answer); in
    # prerouting, so that a query the router answers itself counts too.
    chain prerouting_filter {
        type filter hook prerouting priority mangle; policy accept;
        iifname "$BRIDGE" ip daddr $vpc_resolver meta l4proto { tcp, udp } th dport 53 ip saddr $overlay_cidr ip saddr != $INFRA_CIDR jump dns_budget
    }
    chain dns_budget {
        ip saddr $SYSTEM_RANGE limit rate over $SYSTEM_DNS_TOTAL/second burst $SYSTEM_DNS_BURST packets counter name "system_dns_limited" drop
        ip saddr $SYSTEM_RANGE return
        update @tenant_dns { ip saddr limit rate over $TENANT_DNS_RATE/second burst $TENANT_DNS_BURST packets } counter name "tenant_dns_limited" drop
        limit rate over $TENANT_DNS_TOTAL/second burst $TENANT_DNS_TOTAL packets counter name "tenant_dns_limited" drop
    }
    chain postrouting {
        type nat hook postrouting priority srcnat; policy accept;
${resolver_nat}        oifname "$UNDERLAY_DEV" ip saddr $overlay_cidr ip daddr $vpc_resolver meta l4proto { tcp, udp } th dport 53 snat to $underlay_ip
${infra_nat}        oifname "$UNDERLAY_DEV" ip saddr $overlay_cidr ip daddr != $VPC_CIDR snat to $tenant_source
    }
}
EOF
    log "router $OVERLAY_ADDRESS, underlay $UNDERLAY_DEV ($underlay_addr), VPC $VPC_CIDR, ${#dnat_entries[@]} forward(s), console address ${CONSOLE_ADDRESS:-none}, tenants' address $tenant_source, tenants' DNS ${TENANT_DNS:-VPC resolver}, internet MSS $internet_mss; infrastructure $INFRA_CIDR, system VMs $SYSTEM_RANGE, tenants: DNS, internet and ${#tenant_access[@]} VPC range(s)"
}

# The tenants' resolver's settings (unbound.conf(5)), for TENANT_DNS forward or
# recurse: it listens on the overlay address (ip-freebind: it may start before
# cloudbr0 has it), answers the overlay only, and in forward mode asks the VPC
# resolver without validating (as the VPC resolver answers itself: a private
# hosted zone under a signed public zone would fail validation), in recurse mode
# the root servers, validating with the package's trust anchor.
router_dns_config() {
    printf 'server:\ninterface: %s\nip-freebind: yes\ndo-ip6: no\naccess-control: %s allow\nhide-identity: yes\nhide-version: yes\n' "$overlay_ip" "$overlay_cidr"
    [[ $TENANT_DNS == recurse ]] ||
        printf 'module-config: "iterator"\nforward-zone:\nname: "."\nforward-addr: %s\n' "$vpc_resolver"
}
