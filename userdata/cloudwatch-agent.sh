#!/bin/bash
# The CloudWatch agent of a cloudstack-ec2 instance (boot stage 2).
#
# Usage: cloudwatch-agent.sh REGION ROLE PARAMETER
# Run by csec2_cloudwatch_agent (library.sh) from the role scripts, after the
# instance's network works, with the region, the role (router, management,
# kvm-host) and the SSM parameter holding the role's agent configuration
# (components/model/monitoring.py; the stack writes it). It:
#   1. installs AWS's own package for Ubuntu, amazon-cloudwatch-agent.deb, from
#      the region's download bucket (CloudWatch User Guide, "Download the
#      CloudWatch agent package": https://amazoncloudwatch-agent-REGION.s3.
#      REGION.amazonaws.com/ubuntu/ARCH/latest/amazon-cloudwatch-agent.deb),
#      once its signature (.sig beside it) checks out against AWS's public key,
#      whose fingerprint is pinned here (CloudWatch User Guide, "Verifying the
#      signature of the CloudWatch agent package");
#   2. on the management server, writes the Prometheus scrape configuration the
#      agent's configuration names (CloudStack's exporter on the loopback);
#   3. loads the configuration from the parameter and (re)starts the agent
#      (amazon-cloudwatch-agent-ctl -a fetch-config -m ec2 -s -c ssm:NAME).
# A re-run keeps the installed package and loads the configuration again.
set -euo pipefail

CWA_REGION=$1
CWA_ROLE=$2
CWA_PARAMETER=$3
# CSEC2_ROOT: the root the paths are under ("" on an instance; common.sh).
CSEC2_ROOT=${CSEC2_ROOT:-}
CWA_CTL=$CSEC2_ROOT/opt/aws/amazon-cloudwatch-agent/bin/amazon-cloudwatch-agent-ctl
# "Key fingerprint = 9376 16F3 450B 7D80 6CBD 9725 D581 6730 3B78 9C72" (the
# user guide's verification steps).
CWA_FINGERPRINT=937616F3450B7D806CBD9725D58167303B789C72
# components/model/monitoring.py PROMETHEUS_CONFIG_PATH.
CWA_PROMETHEUS=$CSEC2_ROOT/etc/cloudstack-ec2/cloudwatch-prometheus.yaml

cwa_log() {
    printf '%s cloudstack-ec2[cloudwatch-agent] %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*"
}

cwa_fail() {
    cwa_log "ERROR: $*"
    exit 1
}

cwa_download() {
    curl -fsS --retry 5 --retry-connrefused --max-time 300 -o "$2" "$1" ||
        cwa_fail "could not download $1"
}

# Prints the primary key fingerprint of every key in key file $1.
cwa_fingerprints() {
    gpg --batch --show-keys --with-colons "$1" | awk -F: '$1 == "pub" { want = 1; next } want && $1 == "fpr" { print $10; want = 0 }'
}

cwa_install() {
    local arch base work found
    arch=$(dpkg --print-architecture)
    [[ $arch == amd64 || $arch == arm64 ]] || cwa_fail "no CloudWatch agent package for architecture $arch"
    base=https://amazoncloudwatch-agent-$CWA_REGION.s3.$CWA_REGION.amazonaws.com
    work=$(mktemp -d)
    cwa_download "$base/assets/amazon-cloudwatch-agent.gpg" "$work/key.asc"
    cwa_download "$base/ubuntu/$arch/latest/amazon-cloudwatch-agent.deb" "$work/agent.deb"
    cwa_download "$base/ubuntu/$arch/latest/amazon-cloudwatch-agent.deb.sig" "$work/agent.deb.sig"
    # The key file must hold AWS's key and nothing else: gpgv then accepts a
    # signature by that key only.
    found=$(cwa_fingerprints "$work/key.asc" | tr '\n' ' ')
    if [[ $found != "$CWA_FINGERPRINT " ]]; then
        rm -rf -- "$work"
        cwa_fail "the agent's signing key has fingerprint(s) '${found% }', expected $CWA_FINGERPRINT: not installing"
    fi
    gpg --batch --dearmor <"$work/key.asc" >"$work/key.gpg"
    if ! gpgv --keyring "$work/key.gpg" "$work/agent.deb.sig" "$work/agent.deb"; then
        rm -rf -- "$work"
        cwa_fail "amazon-cloudwatch-agent.deb does not carry AWS's signature: not installing"
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q -o DPkg::Lock::Timeout=600 "$work/agent.deb"
    rm -rf -- "$work"
    cwa_log "installed $(dpkg-query -W -f '${Package} ${Version}' amazon-cloudwatch-agent)"
}

# The exporter answers only its allowed addresses (prometheus.exporter.allowed.ips,
# 127.0.0.1, set by management-server.sh): the agent scrapes it on the loopback.
cwa_prometheus_config() {
    mkdir -p "$(dirname "$CWA_PROMETHEUS")"
    cat >"$CWA_PROMETHEUS" <<'EOF'
global:
  scrape_interval: 60s
  scrape_timeout: 30s
scrape_configs:
  - job_name: cloudstack
    metrics_path: /metrics
    static_configs:
      - targets: ['127.0.0.1:9595']
EOF
}

if [[ -x $CWA_CTL ]]; then
    cwa_log "CloudWatch agent present: $(dpkg-query -W -f '${Version}' amazon-cloudwatch-agent 2>/dev/null || echo unknown version)"
else
    cwa_install
fi
if [[ $CWA_ROLE == management ]]; then
    cwa_prometheus_config
fi
"$CWA_CTL" -a fetch-config -m ec2 -s -c "ssm:$CWA_PARAMETER" ||
    cwa_fail "could not load the configuration ssm:$CWA_PARAMETER (may the instance role ssm:GetParameter it?)"
cwa_log "agent running with ssm:$CWA_PARAMETER"
