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

csec2_begin kvm-host
csec2_require CSEC2_CLOUDSTACK_VERSION CSEC2_OS_CODENAME CSEC2_CLOUDSTACK_REPO_URL \
    CSEC2_CLOUDSTACK_KEY_URL CSEC2_OVERLAY_CIDR CSEC2_HOST_USER \
    CSEC2_WAIT_PARAMETERS_SECONDS CSEC2_WAIT_SSH_KEY_SECONDS

LIBVIRT_ETC=$CSEC2_ROOT/etc/libvirt
AGENT_PROPERTIES=$CSEC2_ROOT/etc/cloudstack/agent/agent.properties
FIREWALL_RULES=$CSEC2_ROOT/etc/cloudstack-ec2/host-firewall.nft
# What the management server and the other hosts need, from the overlay only:
# SSH, the agent's console proxy port, libvirt TCP (live migration without
# TLS) and TLS (set up by cloudstack-setup-agent when the host is added), VNC
# consoles and the live-migration data ports.
HOST_PORTS="22, 1798, 16509, 16514, 5900-6100, 49152-49216"

# ------------------------------------------------------------- firewall ----

# Our own nftables table (no `flush ruleset`: libvirt and CloudStack keep their
# rules). Loaded now, before libvirt listens, and at every boot by
# cloudstack-ec2-host-firewall.service.
setup_firewall() {
    csec2_step "host firewall (nftables table cloudstack_ec2_host)"
    mkdir -p "$(dirname "$FIREWALL_RULES")"
    cat >"$FIREWALL_RULES" <<NFT
# Written by cloudstack-ec2's kvm-host.sh: these ports answer only the overlay.
table inet cloudstack_ec2_host
delete table inet cloudstack_ec2_host
table inet cloudstack_ec2_host {
    chain input {
        type filter hook input priority filter - 10; policy accept;
        iifname "lo" accept
        meta nfproto ipv4 tcp dport { $HOST_PORTS } ip saddr != $CSEC2_OVERLAY_CIDR drop
        meta nfproto ipv6 tcp dport { $HOST_PORTS } drop
    }
}
NFT
    csec2_apt_install nftables
    nft -f "$FIREWALL_RULES"
    systemctl daemon-reload
    systemctl enable cloudstack-ec2-host-firewall.service
}

# ------------------------------------------------------------- packages ----

# The agent must be the management server's exact version: with "X.Y", the
# newest X.Y.z of the day would drift from it as patch releases come out. The
# management server publishes its package version; wait for it (Pulumi creates
# the parameter as "pending").
install_packages() {
    local version
    csec2_setup_cloudstack_repo
    csec2_step "packages: cloudstack-agent (libvirt, qemu) of the management server's version"
    if dpkg-query -W -f='${Status}' cloudstack-agent 2>/dev/null | grep -q "install ok installed"; then
        csec2_log "cloudstack-agent $(dpkg-query -W -f='${Version}' cloudstack-agent) already installed"
        return 0
    fi
    CSEC2_WAIT_PARAMETERS_SECONDS=$CSEC2_WAIT_SSH_KEY_SECONDS csec2_wait_parameter cloudstack-version version \
        "or is still 'pending': the management server writes it once cloudstack-management is installed; is it booting?"
    [[ $version =~ ^[0-9][A-Za-z0-9.+:~-]*$ ]] ||
        csec2_die "SSM parameter $(csec2_name cloudstack-version) is '$version'; expected a package version"
    # The configured release (X.Y or X.Y.Z) must match what the server runs.
    [[ ${version#*:} == "$CSEC2_CLOUDSTACK_VERSION" || ${version#*:} == "$CSEC2_CLOUDSTACK_VERSION"[.~+-]* ]] ||
        csec2_die "the management server runs cloudstack-management $version, but this host is configured for CloudStack $CSEC2_CLOUDSTACK_VERSION"
    csec2_log "installing cloudstack-agent $version, the management server's version"
    # cloudstack-agent depends on cloudstack-common of exactly its version, and apt
    # would pick the newest common: pin both, or an older pin cannot be installed.
    csec2_apt_install "cloudstack-agent=$version" "cloudstack-common=$version"
}

# --------------------------------------------------------------- libvirt ----

host_already_added() {
    [[ -r $AGENT_PROPERTIES ]] && grep -q '^guid=.' "$AGENT_PROPERTIES"
}

setup_libvirt() {
    csec2_step "libvirt: TCP listening, VNC on all addresses"
    if host_already_added; then
        # cloudstack-setup-agent reconfigured libvirt (TLS with CloudStack's CA)
        # when the host was added: do not undo its work on a re-run.
        csec2_log "host already added to CloudStack (guid in agent.properties): libvirt configuration left to cloudstack-setup-agent"
        return 0
    fi
    local conf=$LIBVIRT_ETC/libvirtd.conf
    csec2_set_conf "$conf" listen_tls 0
    csec2_set_conf "$conf" listen_tcp 1
    csec2_set_conf "$conf" tcp_port '"16509"'
    csec2_set_conf "$conf" auth_tcp '"none"'
    csec2_set_conf "$conf" mdns_adv 0
    csec2_set_conf "$LIBVIRT_ETC/qemu.conf" vnc_listen '"0.0.0.0"'
    # Ubuntu 24.04 starts libvirtd by socket activation, which ignores --listen:
    # back to the traditional mode, as CloudStack's install guide says.
    mkdir -p "$CSEC2_ROOT/etc/default"
    csec2_put_block "$CSEC2_ROOT/etc/default/libvirtd" cloudstack-ec2 <<<'LIBVIRTD_ARGS="--listen"'
    systemctl mask libvirtd.socket libvirtd-ro.socket libvirtd-admin.socket libvirtd-tls.socket libvirtd-tcp.socket
    systemctl enable libvirtd.service
    systemctl restart libvirtd.service
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

install_management_key() {
    local key ssh_dir keys
    csec2_step "management server's SSH public key"
    CSEC2_WAIT_PARAMETERS_SECONDS=$CSEC2_WAIT_SSH_KEY_SECONDS csec2_wait_parameter management-ssh-public-key key \
        "or is still 'pending': the management server writes it once it is set up"
    [[ $key =~ ^(ssh-rsa|ssh-ed25519|ecdsa-sha2-nistp(256|384|521))\ [A-Za-z0-9+/]+=*(\ [^[:cntrl:]]*)?$ ]] ||
        csec2_die "SSM parameter $(csec2_name management-ssh-public-key) does not hold an SSH public key"
    ssh_dir=$CSEC2_ROOT$HOST_USER_HOME/.ssh
    keys=$ssh_dir/authorized_keys
    mkdir -p "$ssh_dir"
    touch "$keys"
    if grep -qxF "$key" "$keys"; then
        csec2_log "key already in $HOST_USER_HOME/.ssh/authorized_keys"
    else
        printf '%s\n' "$key" >>"$keys"
        csec2_log "key added to $HOST_USER_HOME/.ssh/authorized_keys"
    fi
    chmod 0700 "$ssh_dir"
    chmod 0600 "$keys"
    chown -R "$CSEC2_HOST_USER:" "$ssh_dir"
}

check_virtualization() {
    csec2_step "hardware virtualization"
    if [[ -e $CSEC2_ROOT/dev/kvm ]]; then
        csec2_log "/dev/kvm present"
    else
        csec2_log "WARNING: /dev/kvm is missing: KVM needs a metal instance type"
    fi
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
