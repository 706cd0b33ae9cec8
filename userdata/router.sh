#!/bin/bash
# Boot script of the overlay router (cloudstack-ec2).
#
# The router is the overlay's gateway: cloudstack-ec2-overlay.service runs
# overlay-network.sh (role router: forwarding, NAT, DNAT of the UI/API port) at
# every boot. It needs no secrets and waits on nothing, so the members (which
# reach the internet through it) can install their packages.
#
# Settings: /etc/cloudstack-ec2/boot.env (non-secret). Log:
# /var/log/cloudstack-ec2-boot.log and the console.

# shellcheck source=SCRIPTDIR/common.sh
source "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/common.sh"

csec2_begin router

csec2_setup_hostname
# overlay-network.sh needs nft on the router (NAT, forwarding); the router
# reaches the internet directly, so it can install it before the overlay is up.
csec2_step "nftables"
csec2_apt_install nftables
csec2_setup_overlay
csec2_setup_ssm_agent
csec2_setup_time_sync
csec2_finish
