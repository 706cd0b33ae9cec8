# shellcheck shell=bash
# Shared library of the cloudstack-ec2 boot scripts (sourced, never run), part 1:
# what the stage-2 launcher stage2.sh needs before it has fetched anything (logging,
# errors, lock, settings, waits, the AWS CLI, the overlay and the network wait). It
# travels in the user data, whose 16 KiB limit every byte counts against; the rest
# of the library is library.sh, which stage2.sh fetches from the boot-script bucket
# and verifies like the role script (docs/boot.md). Scripts that run after stage 2
# source both.
#
# Every setting comes from the boot environment file written by the user data
# (components/boot/): NON-secret values only. Secret values are fetched at
# run time from Secrets Manager, kept in shell variables or in files under a
# private directory in /run (mode 0700) that is removed on exit, and never logged.
#
# Paths can be moved under CSEC2_ROOT (default: the real root) so the scripts can
# be run unchanged against a scratch directory with fake system commands on PATH.

CSEC2_ROOT=${CSEC2_ROOT:-}
CSEC2_ENV_FILE=${CSEC2_ENV_FILE:-$CSEC2_ROOT/etc/cloudstack-ec2/boot.env}
CSEC2_LOG_FILE=${CSEC2_LOG_FILE:-$CSEC2_ROOT/var/log/cloudstack-ec2-boot.log}
CSEC2_STATE_DIR=${CSEC2_STATE_DIR:-$CSEC2_ROOT/var/lib/cloudstack-ec2}
CSEC2_LIB_DIR=${CSEC2_LIB_DIR:-$CSEC2_ROOT/usr/local/lib/cloudstack-ec2}
CSEC2_RUN_DIR=${CSEC2_RUN_DIR:-$CSEC2_ROOT/run}
CSEC2_FSTAB=${CSEC2_FSTAB:-$CSEC2_ROOT/etc/fstab}
CSEC2_NETWORKD_CONF=${CSEC2_NETWORKD_CONF:-$CSEC2_ROOT/etc/systemd/networkd.conf.d/60-cloudstack-ec2.conf}
# The AWS CLI snap installs its command in /snap/bin, which is not on every PATH
# (cloud-init's scripts run with a minimal one).
PATH=$PATH:/snap/bin
export PATH DEBIAN_FRONTEND=noninteractive

CSEC2_STEP="start"
CSEC2_REPORTED=0
CSEC2_PRIVATE_DIR=""

# ---------------------------------------------------------------- logging ----

csec2_log() {
    printf '%s cloudstack-ec2[%s] %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "${CSEC2_ROLE:-boot}" "$*"
}

csec2_step() {
    CSEC2_STEP=$1
    csec2_log "==> step: $CSEC2_STEP"
}

csec2_die() {
    CSEC2_REPORTED=1
    csec2_log "ERROR in step '$CSEC2_STEP': $*"
    csec2_log "boot FAILED (see $CSEC2_LOG_FILE); fix the cause, then re-run: systemctl start cloudstack-ec2-boot.service"
    exit 1
}

csec2_on_error() {
    local status=$1 line=$2 command=$3
    CSEC2_REPORTED=1
    # BASH_COMMAND is the command as written in the script (variables not
    # expanded), so this line never shows a secret value.
    csec2_log "ERROR in step '$CSEC2_STEP': command failed with status $status at line $line: $command"
    csec2_log "boot FAILED (see $CSEC2_LOG_FILE); fix the cause, then re-run: systemctl start cloudstack-ec2-boot.service"
    exit "$status"
}

# Also reports failures the ERR trap does not see (bash exits on an unset
# variable under `set -u` without running it).
csec2_cleanup() {
    local status=$?
    if ((status != 0 && CSEC2_REPORTED == 0)); then
        csec2_log "ERROR in step '$CSEC2_STEP': exit status $status"
        csec2_log "boot FAILED (see $CSEC2_LOG_FILE)"
    fi
    if [[ -n $CSEC2_PRIVATE_DIR && -d $CSEC2_PRIVATE_DIR ]]; then
        rm -rf -- "$CSEC2_PRIVATE_DIR"
    fi
}

# Everything the script and its commands print goes to the console (which
# cloud-init copies to /var/log/cloud-init-output.log) and to our own log file.
csec2_start_logging() {
    mkdir -p "$(dirname "$CSEC2_LOG_FILE")"
    touch "$CSEC2_LOG_FILE"
    chmod 0640 "$CSEC2_LOG_FILE"
    exec > >(tee -a "$CSEC2_LOG_FILE") 2>&1
}

# One run at a time: cloud-init's first run and the boot unit's re-runs must not
# overlap (both may be started by hand too).
csec2_lock() {
    mkdir -p "$CSEC2_STATE_DIR"
    exec 9>"$CSEC2_STATE_DIR/boot.lock"
    if ! flock -w 600 9; then
        csec2_die "another boot run still holds $CSEC2_STATE_DIR/boot.lock after 600 s"
    fi
}

# Starts a boot run of ROLE: logging, error trap, lock, environment.
csec2_begin() {
    CSEC2_ROLE=$1
    set -Eeuo pipefail
    umask 022
    csec2_start_logging
    trap 'csec2_on_error $? $LINENO "$BASH_COMMAND"' ERR
    trap csec2_cleanup EXIT
    csec2_log "boot run of role '$CSEC2_ROLE' starts (log: $CSEC2_LOG_FILE)"
    csec2_lock
    csec2_make_private_dir
    csec2_load_env
}

# ------------------------------------------------------------ environment ----

csec2_load_env() {
    csec2_step "load settings"
    [[ -r $CSEC2_ENV_FILE ]] || csec2_die "settings file $CSEC2_ENV_FILE is missing (it is written by the user data)"
    # shellcheck source=/dev/null
    source "$CSEC2_ENV_FILE"
    if [[ ${CSEC2_ENV_ROLE:-} != "$CSEC2_ROLE" ]]; then
        csec2_die "settings file $CSEC2_ENV_FILE is for role '${CSEC2_ENV_ROLE:-?}', this script is role '$CSEC2_ROLE'"
    fi
    csec2_require CSEC2_AWS_REGION CSEC2_PREFIX CSEC2_HOSTNAME CSEC2_FQDN CSEC2_OVERLAY_IP \
        CSEC2_WAIT_INTERVAL_SECONDS
}

# Fails naming every listed variable that is unset or empty.
csec2_require() {
    local name missing=()
    for name in "$@"; do
        [[ -n ${!name:-} ]] || missing+=("$name")
    done
    ((${#missing[@]} == 0)) || csec2_die "settings file $CSEC2_ENV_FILE lacks: ${missing[*]}"
}

# A directory only root can read, for files holding secrets (MySQL option
# files, API session cookies); removed when the script exits.
csec2_make_private_dir() {
    mkdir -p "$CSEC2_RUN_DIR"
    CSEC2_PRIVATE_DIR=$(mktemp -d "$CSEC2_RUN_DIR/cloudstack-ec2.XXXXXX")
    chmod 0700 "$CSEC2_PRIVATE_DIR"
}

# ------------------------------------------------------------------ waits ----

# csec2_wait_until DESCRIPTION TIMEOUT_SECONDS COMMAND...
# Runs COMMAND until it succeeds or TIMEOUT_SECONDS have passed; logs every
# attempt. Returns 1 on timeout (the caller says what that means).
csec2_wait_until() {
    local what=$1 timeout=$2 start attempt=0 elapsed
    shift 2
    start=$SECONDS
    while true; do
        attempt=$((attempt + 1))
        if "$@"; then
            csec2_log "ready: $what (attempt $attempt, $((SECONDS - start)) s)"
            return 0
        fi
        elapsed=$((SECONDS - start))
        if ((elapsed >= timeout)); then
            csec2_log "gave up waiting for $what after $attempt attempts ($elapsed s, limit $timeout s)"
            return 1
        fi
        csec2_log "waiting for $what (attempt $attempt, $elapsed s of $timeout s; next try in $CSEC2_WAIT_INTERVAL_SECONDS s)"
        sleep "$CSEC2_WAIT_INTERVAL_SECONDS"
    done
}

# csec2_retry DESCRIPTION COMMAND...: runs COMMAND (its output shown as usual)
# up to CSEC2_RETRY_ATTEMPTS times, waiting longer after each failure. The
# mirrors, the snap store and the router's NAT have transient failures on a
# first boot; a failure whose output says it can never work (unknown package or
# version, unknown snap) is reported at once instead of being retried.
CSEC2_RETRY_ATTEMPTS=${CSEC2_RETRY_ATTEMPTS:-5}
CSEC2_PERMANENT_FAILURE='Unable to locate package|has no installation candidate|Version .* was not found|snap "[^"]*" not found|held broken packages|Unable to correct problems'

# CSEC2_RETRY_REMEDY (optional, set by the caller): what to do about a permanent failure.
csec2_retry() {
    local what=$1 attempt status out=$CSEC2_PRIVATE_DIR/retry-output
    shift
    for ((attempt = 1; ; attempt++)); do
        status=0
        "$@" 2>&1 | tee "$out" || status=${PIPESTATUS[0]}
        ((status == 0)) && return 0
        if grep -Eq "$CSEC2_PERMANENT_FAILURE" "$out"; then
            csec2_die "$what failed (status $status) and retrying cannot help: $(grep -Em1 "$CSEC2_PERMANENT_FAILURE" "$out" | cut -c1-200)${CSEC2_RETRY_REMEDY:+; $CSEC2_RETRY_REMEDY}"
        fi
        if ((attempt >= CSEC2_RETRY_ATTEMPTS)); then
            csec2_die "$what failed $attempt times (last status $status): $(tail -n1 "$out" | cut -c1-200)"
        fi
        csec2_log "$what failed (status $status, attempt $attempt of $CSEC2_RETRY_ATTEMPTS); retrying in $((attempt * CSEC2_WAIT_INTERVAL_SECONDS)) s"
        sleep $((attempt * CSEC2_WAIT_INTERVAL_SECONDS))
    done
}

# ---------------------------------------------------------------- AWS CLI ----

csec2_aws() {
    aws --region "$CSEC2_AWS_REGION" --cli-connect-timeout 10 --cli-read-timeout 30 "$@"
}

# Ubuntu 24.04 has no awscli package in main (and 22.04's is the old v1), and
# EC2's Ubuntu images do not ship the CLI. AWS publishes CLI v2 as the classic
# snap `aws-cli`; snapd and the SSM agent snap are already on those images, so
# the snap is the one install path that works on every supported release.
# snapd seeds its preinstalled snaps once on a first boot, within minutes.
CSEC2_WAIT_SNAP_SEED_SECONDS=${CSEC2_WAIT_SNAP_SEED_SECONDS:-900}

csec2_wait_snap_seeded() {
    timeout "$CSEC2_WAIT_SNAP_SEED_SECONDS" snap wait system seed.loaded ||
        csec2_die "snapd did not finish seeding within $CSEC2_WAIT_SNAP_SEED_SECONDS s (see: snap changes)"
}

csec2_install_aws_cli() {
    csec2_step "AWS CLI"
    if command -v aws >/dev/null 2>&1; then
        csec2_log "AWS CLI present: $(command -v aws)"
        return 0
    fi
    # On a first boot snapd may still be seeding; installing before that fails.
    csec2_wait_snap_seeded
    csec2_retry "snap install aws-cli" snap install aws-cli --classic
    command -v aws >/dev/null 2>&1 || csec2_die "AWS CLI not found after 'snap install aws-cli --classic'"
}

# ---------------------------------------------------------- common phases ----

# systemd-networkd deletes routes it did not configure ("foreign" routes: the
# overlay's default route and the link-local /32s of overlay-network.sh) when it
# (re)starts, e.g. on a netplan apply or a package upgrade. networkd reads this
# file at its next start; restarting it now could drop the network under us.
csec2_setup_networkd() {
    csec2_step "systemd-networkd keeps foreign routes"
    local content=$'[Network]\nManageForeignRoutes=no'
    if [[ -r $CSEC2_NETWORKD_CONF && $(<"$CSEC2_NETWORKD_CONF") == "$content" ]]; then
        csec2_log "$CSEC2_NETWORKD_CONF is up to date"
        return 0
    fi
    mkdir -p "$(dirname "$CSEC2_NETWORKD_CONF")"
    printf '%s\n' "$content" >"$CSEC2_NETWORKD_CONF"
    csec2_log "wrote $CSEC2_NETWORKD_CONF (read by systemd-networkd at its next start)"
}

# The overlay (cloudbr0 + ethovl0, routes, NAT on the router) is built by
# overlay-network.sh from /etc/cloudstack-ec2/overlay.env at EVERY boot by
# cloudstack-ec2-overlay.service, ordered before libvirt and CloudStack. Members
# reach the internet (packages) only through it, so it comes first.
csec2_setup_overlay() {
    csec2_setup_networkd
    csec2_step "overlay network unit"
    local unit=cloudstack-ec2-overlay.service
    [[ -x $CSEC2_LIB_DIR/overlay-network.sh ]] || csec2_die "$CSEC2_LIB_DIR/overlay-network.sh is missing"
    [[ -r $CSEC2_ROOT/etc/cloudstack-ec2/overlay.env ]] || csec2_die "$CSEC2_ROOT/etc/cloudstack-ec2/overlay.env is missing"
    systemctl daemon-reload
    systemctl enable "$unit" cloudstack-ec2-boot.service
    if systemctl is-active --quiet "$unit"; then
        csec2_log "$unit already active"
    else
        systemctl start "$unit" || csec2_die "$unit failed to start (journalctl -u $unit)"
    fi
}

# shellcheck disable=SC2317  # called through csec2_wait_until
csec2_gateway_answers() {
    ping -c 1 -W 2 -n "$CSEC2_OVERLAY_GATEWAY" >/dev/null 2>&1
}

# Any HTTP answer counts: it came back through the router's NAT.
# shellcheck disable=SC2317  # called through csec2_wait_until
csec2_internet_answers() {
    local code
    code=$(curl -sS -I -o /dev/null --max-time 15 -w '%{http_code}' "$CSEC2_CLOUDSTACK_KEY_URL" 2>/dev/null) || true
    [[ $code =~ ^[1-5][0-9][0-9]$ ]]
}

# Members reach everything off their subnet through the router, which they find
# by multicast through the Transit Gateway: on a first boot its multicast domain
# may still be being associated and the router may still be booting (minutes).
# Both waits share one bound.
csec2_wait_network() {
    csec2_require CSEC2_OVERLAY_GATEWAY CSEC2_WAIT_NETWORK_SECONDS CSEC2_CLOUDSTACK_KEY_URL
    csec2_step "wait for the overlay gateway $CSEC2_OVERLAY_GATEWAY and the internet"
    local start=$SECONDS left tool
    # Ubuntu's cloud images have both; a custom AMI without them would otherwise
    # wait the whole bound and then blame the router.
    for tool in ping curl; do
        command -v "$tool" >/dev/null 2>&1 ||
            csec2_die "'$tool' is not installed: the network check needs it (use an Ubuntu cloud image or add it to the AMI)"
    done
    csec2_wait_until "overlay gateway $CSEC2_OVERLAY_GATEWAY to answer ping" "$CSEC2_WAIT_NETWORK_SECONDS" \
        csec2_gateway_answers ||
        csec2_die "the overlay gateway (router) $CSEC2_OVERLAY_GATEWAY did not answer ping within $CSEC2_WAIT_NETWORK_SECONDS s (router running? Transit Gateway multicast domain associated with both subnets? journalctl -u cloudstack-ec2-overlay)"
    left=$((CSEC2_WAIT_NETWORK_SECONDS - (SECONDS - start)))
    ((left > 0)) || left=1
    csec2_wait_until "the internet (HTTPS HEAD $CSEC2_CLOUDSTACK_KEY_URL) to answer" "$left" csec2_internet_answers ||
        csec2_die "the internet did not answer within $CSEC2_WAIT_NETWORK_SECONDS s: no HTTPS answer from $CSEC2_CLOUDSTACK_KEY_URL through the router $CSEC2_OVERLAY_GATEWAY (router's NAT and Elastic IP? DNS through the router?)"
}
