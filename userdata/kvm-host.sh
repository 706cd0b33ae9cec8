#!/bin/bash
# Boot script of a CloudStack KVM host (cloudstack-ec2).
#
# Prepares the host; the management server adds it to its cluster later over
# SSH (it runs cloudstack-setup-agent here), logging in as CSEC2_HOST_USER with
# its own SSH key, which this script puts in that user's authorized_keys.
#
# Run by cloud-init on the first boot and by cloudstack-ec2-boot.service at every
# later boot (or by hand: systemctl start cloudstack-ec2-boot.service); every
# phase is idempotent. Settings: /etc/cloudstack-ec2/boot.env (non-secret).
# Log: /var/log/cloudstack-ec2-boot.log and the console.

# shellcheck source=SCRIPTDIR/common.sh
source "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/common.sh"
# shellcheck source=SCRIPTDIR/library.sh
source "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/library.sh"

csec2_begin kvm-host
csec2_require CSEC2_CLOUDSTACK_VERSION CSEC2_OS_CODENAME CSEC2_CLOUDSTACK_REPO_URL \
    CSEC2_CLOUDSTACK_KEY_URL CSEC2_ANCHOR_KEY_ARN CSEC2_OVERLAY_CIDR CSEC2_HOST_USER \
    CSEC2_WAIT_PARAMETERS_SECONDS CSEC2_WAIT_SSH_KEY_SECONDS \
    CSEC2_INFRA_CIDR CSEC2_MANAGEMENT_RANGE CSEC2_HOST_RANGE CSEC2_SYSTEM_RANGE

LIBVIRT_ETC=$CSEC2_ROOT/etc/libvirt
AGENT_PROPERTIES=$CSEC2_ROOT/etc/cloudstack/agent/agent.properties
# Who may reach what (address classes from components/model/ipplan.py, in boot.env):
# SSH, port 1798, libvirt (16509 TCP, 16514 TLS: cloudstack-setup-agent turns
# TLS on when the host is added) and the live-migration data ports: the
# management servers and the other hosts only. VNC consoles: the management
# servers and the pod's system range (the console proxy VM). Tenants (every
# other overlay address, the public range above all): nothing.
PEER_PORTS="22, 1798, 16509, 16514, 49152-49216"
VNC_PORTS="5900-6100"

# ------------------------------------------------------------- firewall ----

# The overlay port of cloudbr0 (overlay-network.sh VXLAN_DEV): frames from it
# come from other members' VTEPs; every other port of cloudbr0 is a VM's NIC.
# components/model/linuxdevices.py OVERLAY_PORT holds the same name (a test compares them).
OVERLAY_PORT=ethovl0
# The first two bytes of every infrastructure node's cloudbr0 MAC (overlay-network.sh
# INFRA_MAC_PREFIX; the other four are its overlay address).
INFRA_MAC_PREFIX=0a:00

# overlay_setting KEY REGEX: a setting of overlay-network.sh from overlay.env
# (written by the user data), checked against REGEX.
overlay_setting() {
    local value
    value=$(sed -n "s/^$1=\"\\(.*\\)\"\$/\\1/p" "$CSEC2_ROOT/etc/cloudstack-ec2/overlay.env")
    [[ $value =~ $2 ]] || csec2_die "/etc/cloudstack-ec2/overlay.env: $1='$value' does not match $2"
    echo "$value"
}

# Loaded before libvirt listens, and at every boot by
# cloudstack-ec2-host-firewall.service (see csec2_load_firewall).
#
# Beyond the address classes, a host faces tenants on devices that are not
# cloudbr0: CloudStack's guest bridges (brethovl0-<vlan>, made by modifyvlan.sh
# with the kernel's defaults, IPv6 on) and VM taps. Only locally addressed
# traffic is filtered here (hook input): frames bridged between a bridge's
# ports never reach it, whether or not br_netfilter is loaded (zones with
# security groups need it: the agent's security_group.py filters VM traffic with
# iptables physdev rules; with it, bridged IPv4/IPv6 pass the forward hook,
# which this table leaves alone), so VMs keep their own IPv4 and IPv6.
#   - IPv6: nothing from any device but lo. The host uses no IPv6 (the VPC, the
#     overlay and every service above are IPv4), so it needs no exception, not
#     even neighbour discovery; without this rule a tenant reached any
#     listening service at the guest bridge's fe80:: address (ping ff02::1
#     finds it) and one Router Advertisement gave the host a default route.
#   - IPv4: only to an address of the device it arrived on (the strong host
#     model; the filter of nft(8) "drop packets to address not configured on
#     incoming interface"): guest bridges and taps carry no host address, so a
#     tenant there reaches none of the host's (its overlay or underlay address)
#     whatever the kernel's ARP and rp_filter settings.
#   - VXLAN only to the underlay address (in the VPC) or the overlay's group:
#     the kernel's VXLAN socket takes datagrams from every device, and one
#     decapsulated here is a frame on cloudbr0 that no VM-port rule below has
#     seen. With the rule before it (an address of the arriving device), only
#     the underlay device qualifies: a VM on cloudbr0 or on cloud0 (addresses
#     outside the VPC) no longer reaches the socket, nor a tenant on a guest
#     bridge; the group is delivered only where the VXLAN device joined it.
setup_firewall() {
    local ipv4='^([0-9]{1,3}\.){3}[0-9]{1,3}' port vpc group
    port=$(overlay_setting VXLAN_PORT '^[1-9][0-9]{0,4}$')
    vpc=$(overlay_setting VPC_CIDR "$ipv4/[0-9]{1,2}\$")
    group=$(overlay_setting VXLAN_GROUP "$ipv4\$")
    csec2_load_firewall cloudstack_ec2_host <<NFT
table inet cloudstack_ec2_host {
    counter ipv6_refused { }
    counter not_local_refused { }
    counter vxlan_refused { }
    chain input {
        type filter hook input priority filter - 10; policy accept;
        iifname "lo" accept
        meta nfproto ipv6 counter name "ipv6_refused" drop
        # Before the conntrack accept: every reply to this host's own connections
        # arrives on the device that holds its address, so a VM on cloudbr0 or a
        # guest bridge cannot forge one into an existing flow (a VPC-resolver answer
        # to the underlay address, say).
        fib daddr . iif type != { local, broadcast, multicast } counter name "not_local_refused" drop
        udp dport $port ip daddr != { $vpc, $group } counter name "vxlan_refused" drop
        # Replies to this host's own connections (their local ports may fall
        # in 49152-49216, inside Linux's ephemeral range).
        ct state established,related accept
        meta nfproto ipv4 tcp dport { $PEER_PORTS } ip saddr != { $CSEC2_MANAGEMENT_RANGE, $CSEC2_HOST_RANGE } counter drop
        meta nfproto ipv4 tcp dport { $VNC_PORTS } ip saddr != { $CSEC2_MANAGEMENT_RANGE, $CSEC2_SYSTEM_RANGE } counter drop
        meta nfproto ipv4 ip saddr $CSEC2_OVERLAY_CIDR ip saddr != { $CSEC2_INFRA_CIDR, $CSEC2_SYSTEM_RANGE } counter drop
    }
}
$(vm_port_rules)
NFT
}

# Infrastructure addresses (router, management servers, hosts) are bound to
# their nodes at every VM's port: a frame entering a bridge from a VM's NIC (any
# port but the overlay port and its VLAN devices, ethovl0.<vlan>, which carry
# what other members sent) may not claim an infrastructure address as its ARP
# sender or IPv4 source, nor an infrastructure node's MAC (overlay-network.sh
# derives them, INFRA_MAC_PREFIX) as its source or ARP sender. On cloudbr0 that
# stops a tenant's virtual router or a system VM from taking over the router's,
# a management server's or a host's address (a single gratuitous ARP otherwise
# moves a neighbour's entry to its sender) or MAC (the bridges' and VTEPs'
# forwarding tables learn from any source MAC). On guest bridges it refuses
# only guest addresses inside the overlay's infrastructure block: guest
# networks' CIDRs belong outside the overlay. Why binding at
# the VM ports holds for the whole overlay: every overlay address that is not
# infrastructure is a VM NIC on some host's cloudbr0, so every host filtering
# its own VM ports covers them all; the only other way onto the overlay's layer
# 2 is VXLAN, which the underlay admits only from the dedicated subnet (the
# members' security group) and this host only through the underlay (above).
# It is the address half of CloudStack's own per-VM anti-spoofing
# (default_ebtables_rules in apache/cloudstack scripts/vm/network/
# security_group.py: a VM's ARP must carry its own IP and MAC), which the agent
# installs only in zones with security groups and only for addresses it
# assigned; this rule needs no per-VM state. Its own table in the bridge family,
# hook prerouting: before the bridge learns or forwards, and before the host's
# own stack sees the frame.
vm_port_rules() {
    cat <<NFT
table bridge cloudstack_ec2_vm_ports
delete table bridge cloudstack_ec2_vm_ports
table bridge cloudstack_ec2_vm_ports {
    counter infra_claim_refused { }
    chain prerouting {
        type filter hook prerouting priority filter; policy accept;
        # One name per rule: older nftables releases may not match a wildcard name
        # inside an anonymous set, and every release matches it alone.
        iifname "$OVERLAY_PORT" accept
        iifname "$OVERLAY_PORT.*" accept
        ether saddr & ff:ff:00:00:00:00 == $INFRA_MAC_PREFIX:00:00:00:00 counter name "infra_claim_refused" drop
        arp saddr ether & ff:ff:00:00:00:00 == $INFRA_MAC_PREFIX:00:00:00:00 counter name "infra_claim_refused" drop
        arp saddr ip $CSEC2_INFRA_CIDR counter name "infra_claim_refused" drop
        ip saddr $CSEC2_INFRA_CIDR counter name "infra_claim_refused" drop
    }
}
NFT
}

# ------------------------------------------------------------- packages ----


# The agent must be the management server's exact version: with "X.Y", the
# newest X.Y.z of the day would drift from it as patch releases come out. The
# management server publishes its package version; wait for it, and accept it
# only as the management server wrote it (csec2_wait_anchor). An agent of
# another release than boot.env names is upgraded the same way: an upgrade
# (components/model/upgrades.py, its agent step) changes the version there and
# re-runs this script, once the first server has published the new version.
install_packages() {
    local version installed=""
    csec2_setup_cloudstack_repo
    csec2_step "packages: cloudstack-agent (libvirt, qemu) of the management server's version"
    if dpkg-query -W -f='${Status}' cloudstack-agent 2>/dev/null | grep -q "install ok installed"; then
        installed=$(dpkg-query -W -f='${Version}' cloudstack-agent)
        if csec2_of_configured_version "$installed"; then
            csec2_log "cloudstack-agent $installed already installed"
            return 0
        fi
        csec2_log "cloudstack-agent $installed installed, CloudStack $CSEC2_CLOUDSTACK_VERSION configured: upgrading it"
    fi
    CSEC2_WAIT_PARAMETERS_SECONDS=$CSEC2_WAIT_SSH_KEY_SECONDS csec2_wait_anchor cloudstack-version version \
        "the management server writes it once cloudstack-management is installed; is it booting?"
    [[ $version =~ ^[0-9][A-Za-z0-9.+:~-]*$ ]] ||
        csec2_die "SSM parameter $(csec2_name cloudstack-version) is '$version'; expected a package version"
    # The configured release (X.Y or X.Y.Z) must match what the server runs.
    csec2_of_configured_version "$version" ||
        csec2_die "the management server runs cloudstack-management $version, but this host is configured for CloudStack $CSEC2_CLOUDSTACK_VERSION"
    csec2_log "installing cloudstack-agent $version, the management server's version"
    local copy
    copy=$(mktemp -d "$CSEC2_PRIVATE_DIR/packages.XXXXXX")
    if fetch_package_copy "$version" "$copy"; then
        # Package files: apt installs them and takes their dependencies (libvirt,
        # qemu, Java) from Ubuntu's repositories (apt-get(8), install: "a path
        # to a .deb file").
        csec2_apt_install "$copy/cloudstack-common.deb" "$copy/cloudstack-agent.deb"
        return 0
    fi
    # cloudstack-agent depends on cloudstack-common of exactly its version, and apt
    # would pick the newest common: pin both, or an older pin cannot be installed.
    CSEC2_RETRY_REMEDY="cloudstack-agent $version is neither in the deployment's copy (s3://$CSEC2_STAGE2_BUCKET/packages/$version/) nor in $CSEC2_CLOUDSTACK_REPO_URL: re-run the first management server's boot script, which keeps it, or upgrade to a version upstream has (README, \"Upgrading CloudStack\")" \
        csec2_apt_install "cloudstack-agent=$version" "cloudstack-common=$version"
}

# The deployment's own copy of cloudstack-agent and cloudstack-common at
# `version` (the first management server keeps it: publish_packages in
# management-server.sh), into directory DIR. False when there is none. A file
# whose Package or Version field (dpkg-deb(1), --field) is not the one asked
# for is refused: only that version may be installed.
fetch_package_copy() {
    local version=$1 dir=$2 pkg field
    for pkg in cloudstack-common cloudstack-agent; do
        if ! csec2_aws s3 cp --only-show-errors "s3://$CSEC2_STAGE2_BUCKET/packages/$version/$pkg.deb" \
            "$dir/$pkg.deb"; then
            csec2_log "no copy of $pkg $version in s3://$CSEC2_STAGE2_BUCKET/packages/: installing from $CSEC2_CLOUDSTACK_REPO_URL"
            return 1
        fi
        field=$(dpkg-deb -f "$dir/$pkg.deb" Package)" $(dpkg-deb -f "$dir/$pkg.deb" Version)" || field="no package"
        [[ $field == "$pkg $version" ]] ||
            csec2_die "s3://$CSEC2_STAGE2_BUCKET/packages/$version/$pkg.deb is '$field', not $pkg $version: not installing it"
    done
}

# --------------------------------------------------------------- libvirt ----

host_already_added() {
    [[ -r $AGENT_PROPERTIES ]] && grep -q '^guid=.' "$AGENT_PROPERTIES"
}

# The sockets systemd opens for libvirtd on Ubuntu 24.04 (socket activation).
LIBVIRTD_SOCKETS="libvirtd.socket libvirtd-ro.socket libvirtd-admin.socket libvirtd-tls.socket libvirtd-tcp.socket"

setup_libvirt() {
    csec2_step "libvirt: no TCP listener until CloudStack sets up TLS, VNC on all addresses"
    if host_already_added; then
        # cloudstack-setup-agent reconfigured libvirt (TLS with CloudStack's CA)
        # when the host was added: do not undo its work on a re-run.
        csec2_log "host already added to CloudStack (guid in agent.properties): libvirt configuration left to cloudstack-setup-agent"
        return 0
    fi
    local conf=$LIBVIRT_ETC/libvirtd.conf
    # Never unauthenticated TCP: nothing listens on the network until the
    # management server adds the host, when cloudstack-setup-agent turns on TLS
    # on 16514 with CloudStack's CA (listen_tls 1, listen_tcp 0: configureLibvirtConfig
    # in apache/cloudstack python/lib/cloudutils/serviceConfig.py). This is the
    # baseline of CloudStack's KVM install guide; auth_tcp stays libvirt's
    # default (sasl) should anyone turn TCP on.
    csec2_set_conf "$conf" listen_tls 0
    csec2_set_conf "$conf" listen_tcp 0
    csec2_set_conf "$conf" tcp_port '"16509"'
    csec2_set_conf "$conf" tls_port '"16514"'
    csec2_set_conf "$conf" auth_tcp '"sasl"'
    csec2_set_conf "$conf" mdns_adv 0
    csec2_set_conf "$LIBVIRT_ETC/qemu.conf" vnc_listen '"0.0.0.0"'
    # Clients (the agent, virsh) talk to the monolithic libvirtd, not to the
    # modular per-driver daemons Ubuntu 24.04 defaults to (CloudStack's KVM guide).
    csec2_set_conf "$LIBVIRT_ETC/libvirt.conf" remote_mode '"legacy"'
    # Ubuntu 24.04 starts libvirtd by socket activation, and libvirtd refuses
    # --listen when systemd hands it sockets ("--listen parameter not permitted
    # with systemd activation sockets", libvirt src/remote/remote_daemon.c):
    # back to the traditional mode, as CloudStack's install guide says. Masking
    # does not close sockets that are already listening: stop them first.
    mkdir -p "$CSEC2_ROOT/etc/default"
    csec2_put_block "$CSEC2_ROOT/etc/default/libvirtd" cloudstack-ec2 <<<'LIBVIRTD_ARGS="--listen"'
    # shellcheck disable=SC2086  # a list of unit names
    systemctl stop $LIBVIRTD_SOCKETS
    # shellcheck disable=SC2086
    systemctl mask $LIBVIRTD_SOCKETS
    systemctl enable libvirtd.service
    systemctl restart libvirtd.service
}

# ----------------------------------------------------------- no routing ----

# A KVM host bridges its VMs' frames and never routes. The agent plugs every VM
# NIC into a bridge (cloudbr0, brethovl0-<vlan>); the virtual routers and system
# VMs, which do route, are VMs on those bridges, and the host's own traffic to
# them (cloud0's link-local addresses) is local. Nothing of the agent needs
# forwarding: cloudstack-setup-agent sets none (apache/cloudstack
# python/lib/cloudutils/serviceConfig.py), and security_group.py turns on only
# bridge-nf-call-* (addFWFramework), whose bridged packets pass the forward hook
# whatever ip_forward says. What turns it on is libvirt: libvirt-daemon-system
# brings libvirt-daemon-config-network, whose "default" NAT network (virbr0) is
# marked autostart, and starting a network of any forward mode but none writes 1
# to /proc/sys/net/ipv4/ip_forward (libvirt src/network/bridge_driver.c,
# networkStartNetworkVirtual, networkEnableIPForwarding); stopping it leaves it
# on. A forwarding host routes what a VM sends to its bridge's MAC, past the
# router's security group and past this host's firewall, which filters only the
# input hook: a tenant on a guest bridge reaches the overlay (a management
# server's 8080) from a forged public source wherever rp_filter is 0 (with it set,
# the kernel admits no source through a device without an IPv4 address); a VM on
# cloudbr0 reaches the CloudStack subnet from a source of the default network,
# which libvirt masquerades to this host's own VPC address, so EC2's
# source/destination check passes it and a service that admits the hosts (EFS
# admits the members' security group) takes it for the host. So at every boot:
# the default network stopped and no longer autostarted, then forwarding off, now
# and from early boot on (systemd-sysctl.service reads sysctl.d before libvirtd
# starts, sysctl.d(5)), and checked.
NO_ROUTING_SYSCTL=$CSEC2_ROOT/etc/sysctl.d/90-cloudstack-ec2-no-routing.conf
LIBVIRT_DEFAULT_NETWORK=default

setup_no_routing() {
    csec2_step "no routing: libvirt's default network stopped and not autostarted, forwarding off"
    if has_line "$LIBVIRT_DEFAULT_NETWORK" "$(virsh -q net-list --all --autostart --name)"; then
        virsh -q net-autostart --disable "$LIBVIRT_DEFAULT_NETWORK" >/dev/null
        csec2_log "libvirt network '$LIBVIRT_DEFAULT_NETWORK' no longer autostarted"
    fi
    if has_line "$LIBVIRT_DEFAULT_NETWORK" "$(virsh -q net-list --name)"; then
        virsh -q net-destroy "$LIBVIRT_DEFAULT_NETWORK" >/dev/null
        csec2_log "libvirt network '$LIBVIRT_DEFAULT_NETWORK' stopped"
    fi
    local settings=("net.ipv4.ip_forward = 0") setting value
    # Absent only when the kernel runs without IPv6 (ipv6.disable=1).
    if sysctl -n net.ipv6.conf.all.forwarding >/dev/null 2>&1; then
        settings+=("net.ipv6.conf.all.forwarding = 0" "net.ipv6.conf.default.forwarding = 0")
    fi
    mkdir -p "$(dirname "$NO_ROUTING_SYSCTL")"
    printf '%s\n' "# Written by cloudstack-ec2's kvm-host boot script: this host bridges, it never routes." \
        "${settings[@]}" >"$NO_ROUTING_SYSCTL"
    sysctl -q -p "$NO_ROUTING_SYSCTL"
    for setting in "${settings[@]}"; do
        value=$(sysctl -n "${setting%% =*}")
        [[ $value == 0 ]] || csec2_die "${setting%% =*} is $value after $NO_ROUTING_SYSCTL was applied; expected 0"
    done
    csec2_log "forwarding off: ${settings[*]}"
}

# has_line LINE TEXT: whether TEXT has a line that is exactly LINE.
has_line() {
    grep -qxF -- "$1" <<<"$2"
}

# CloudStack's guide for Ubuntu: disable the libvirt AppArmor profiles (the
# agent manages disks and devices AppArmor would deny).
setup_apparmor() {
    csec2_step "AppArmor: libvirt profiles disabled"
    local profile path
    mkdir -p "$CSEC2_ROOT/etc/apparmor.d/disable"
    for profile in usr.sbin.libvirtd usr.lib.libvirt.virt-aa-helper; do
        path=$CSEC2_ROOT/etc/apparmor.d/$profile
        if [[ ! -e $path ]]; then
            csec2_log "no AppArmor profile $profile"
            continue
        fi
        ln -sfn "/etc/apparmor.d/$profile" "$CSEC2_ROOT/etc/apparmor.d/disable/$profile"
        # Fails when the profile is not loaded (e.g. already removed): fine.
        apparmor_parser -R "$path" 2>/dev/null || csec2_log "profile $profile was not loaded"
    done
}

# ------------------------------------------------------ host user and SSH ----

setup_host_user() {
    csec2_step "host user '$CSEC2_HOST_USER' for the management server (SSH key only)"
    local user=$CSEC2_HOST_USER home
    if ! getent passwd "$user" >/dev/null; then
        useradd --create-home --shell /bin/bash "$user"
    fi
    home=$(getent passwd "$user" | cut -d: -f6)
    [[ -n $home ]] || csec2_die "user $user has no home directory"
    if [[ $user != root ]]; then
        # cloudstack-setup-agent and the agent's commands need root: a non-root
        # user adds hosts through passwordless sudo.
        mkdir -p "$CSEC2_ROOT/etc/sudoers.d"
        printf '%s ALL=(ALL) NOPASSWD:ALL\n' "$user" >"$CSEC2_ROOT/etc/sudoers.d/90-cloudstack-ec2"
        chmod 0440 "$CSEC2_ROOT/etc/sudoers.d/90-cloudstack-ec2"
    fi
    # Keys only: no password logins at all; root only with a key.
    mkdir -p "$CSEC2_ROOT/etc/ssh/sshd_config.d"
    printf '%s\n' "PasswordAuthentication no" "KbdInteractiveAuthentication no" \
        "PermitRootLogin prohibit-password" >"$CSEC2_ROOT/etc/ssh/sshd_config.d/60-cloudstack-ec2.conf"
    systemctl reload ssh.service || systemctl restart ssh.service
    HOST_USER_HOME=$home
}

# The block of authorized_keys this script owns: the management server's key,
# between "# BEGIN/END" marker lines (csec2_put_block). Each run REPLACES the
# block, so a key the management server no longer publishes (a replaced server,
# a rotated key) stops being authorized at the next boot; every line outside
# the block (keys a person added) is left as it is. Hosts set up before the
# block existed appended the key unmarked: such a line cannot be told from a
# person's and is left too.
AUTHORIZED_BLOCK="cloudstack-ec2 management server key (replaced at every boot)"

install_management_key() {
    local key ssh_dir keys
    csec2_step "management server's SSH public key"
    CSEC2_WAIT_PARAMETERS_SECONDS=$CSEC2_WAIT_SSH_KEY_SECONDS csec2_wait_anchor management-ssh-public-key key \
        "the management server writes it once it is set up"
    [[ $key =~ ^(ssh-rsa|ssh-ed25519|ecdsa-sha2-nistp(256|384|521))\ [A-Za-z0-9+/]+=*(\ [^[:cntrl:]]*)?$ ]] ||
        csec2_die "SSM parameter $(csec2_name management-ssh-public-key) does not hold an SSH public key"
    ssh_dir=$CSEC2_ROOT$HOST_USER_HOME/.ssh
    keys=$ssh_dir/authorized_keys
    mkdir -p "$ssh_dir"
    touch "$keys"
    chmod 0600 "$keys"
    csec2_put_block "$keys" "$AUTHORIZED_BLOCK" <<<"$key"
    csec2_log "management server key in $HOST_USER_HOME/.ssh/authorized_keys (replacing the one installed before)"
    chmod 0700 "$ssh_dir"
    chown -R "$CSEC2_HOST_USER:" "$ssh_dir"
}

# KVM needs VT-x: a metal instance, or a virtual one of a type with nested
# virtualization (C8i/M8i/R8i) launched with the CPU option
# NestedVirtualization=enabled. kvm-ok (cpu-checker) reads the CPU flag and
# /dev/kvm; it also passes when the CPU has the flag but the module is not loaded
# (no /dev/kvm yet), so load the module it names then and insist on "/dev/kvm
# exists". A host without working KVM must never be added to CloudStack: the boot
# stops here, before the management server's key is installed.
check_virtualization() {
    local report module
    csec2_step "hardware virtualization (kvm-ok) and the guest CPU mode"
    csec2_apt_install cpu-checker
    report=$(kvm-ok 2>&1) || true
    if [[ $report != *"INFO: /dev/kvm exists"* && $report =~ modprobe\ (kvm_[a-z]+) ]]; then
        module=${BASH_REMATCH[1]}
        csec2_log "kvm-ok: ${report//$'\n'/ | }; loading $module"
        modprobe "$module" || true
        report=$(kvm-ok 2>&1) || true
    fi
    if [[ $report != *"INFO: /dev/kvm exists"* || $report != *"KVM acceleration can be used"* ]]; then
        csec2_die "KVM cannot run on this instance: kvm-ok says '${report//$'\n'/ | }'. A KVM host needs a metal" \
            "instance type, or a type with nested virtualization launched with it enabled (CPU option" \
            "NestedVirtualization=enabled; check: aws ec2 describe-instances --instance-ids <id> --query" \
            "'Reservations[].Instances[].CpuOptions')"
    fi
    csec2_log "kvm-ok: ${report//$'\n'/ | }"
    # The guest CPU of every VM (CloudStack's KVM guide: custom | host-model |
    # host-passthrough). host-passthrough: the VMs get this host's CPU as it is, the
    # fastest, and the only mode that does not depend on libvirt matching a named
    # model to a CPU that is itself virtual (on a nested host, L1, the CPU libvirt
    # sees is the one EC2 presents). Its cost, live migration only between identical
    # CPUs, is why one cluster holds hosts of one instance type only.
    if host_already_added; then
        csec2_log "host already added to CloudStack: guest.cpu.mode left as it is"
    else
        set_agent_property guest.cpu.mode host-passthrough
    fi
}

# key=value in agent.properties (its own format; cloudstack-setup-agent keeps other keys).
set_agent_property() {
    local key=$1 value=$2 tmp
    mkdir -p "$(dirname "$AGENT_PROPERTIES")"
    touch "$AGENT_PROPERTIES"
    tmp=$(mktemp "$AGENT_PROPERTIES.XXXXXX")
    grep -v -E "^[[:space:]]*${key//./\\.}[[:space:]]*=" "$AGENT_PROPERTIES" >"$tmp" || true
    printf '%s=%s\n' "$key" "$value" >>"$tmp"
    chmod --reference="$AGENT_PROPERTIES" "$tmp"
    mv -f "$tmp" "$AGENT_PROPERTIES"
    csec2_log "agent.properties: $key=$value"
}

# -------------------------------------------------------------------- run ----

csec2_setup_hostname
csec2_setup_overlay
csec2_wait_network
csec2_install_aws_cli
csec2_setup_ssm_agent
csec2_setup_time_sync
setup_firewall
install_packages
setup_libvirt
setup_no_routing
setup_apparmor
check_virtualization
setup_host_user
install_management_key
csec2_finish

# Readiness for the registration: the agent is installed and the management server's key is
# authorized, so addHost can succeed from now on. The registration adds this host only once
# this parameter was written after the instance launched (and deletes it on scale-in).
csec2_step "signal readiness"
csec2_aws ssm put-parameter --name "$(csec2_name "host-ready/$CSEC2_OVERLAY_IP")" --type String --overwrite \
    --value "$(date -u +%Y-%m-%dT%H:%M:%SZ)" >/dev/null
csec2_log "readiness written to $(csec2_name "host-ready/$CSEC2_OVERLAY_IP")"
# After the readiness: the agent's install must not delay the host's registration.
csec2_cloudwatch_agent
