# shellcheck shell=bash
# Shared library of the cloudstack-ec2 boot scripts (sourced, never run), part 2:
# everything the role scripts use besides common.sh (secrets and parameters, trust
# anchors, JSON, file edits, apt, the CloudStack repository, time sync, SSM and
# CloudWatch agents, the host firewall). Stage 1 does not need it, so it is not in
# the user data: stage2.sh fetches it from the boot-script bucket
# (boot/library-<sha256>.sh, CSEC2_LIBRARY_KEY), checks its sha256 and installs it
# beside common.sh before the role script runs (docs/boot.md). Sourced after
# common.sh, whose variables and functions it uses.

csec2_finish() {
    # shellcheck disable=SC2034  # read by common.sh's error reports
    CSEC2_STEP="done"
    date -u +%Y-%m-%dT%H:%M:%SZ >"$CSEC2_STATE_DIR/last-success"
    csec2_log "boot run of role '$CSEC2_ROLE' finished successfully"
}

# The one place where SSM parameter names are derived from the prefix (secrets
# come by name/ARN in the settings: AWS appends a random suffix to theirs).
csec2_name() {
    printf '%s/%s' "$CSEC2_PREFIX" "$1"
}

# ------------------------------------------------- tools that print secrets ----

# Secret values to mask in whatever the boot logs of a tool's output; added by
# csec2_add_secret as the secrets are read (kept in this shell only).
CSEC2_MASKED_VALUES=()

csec2_add_secret() {
    local value
    for value in "$@"; do
        [[ -n $value ]] && CSEC2_MASKED_VALUES+=("$value")
    done
    return 0
}

# Prints $1 with every known secret value and every password-looking value
# (password=..., 'passwd': '...', --password=...) replaced by ***. Pure bash:
# no secret ever becomes another process's argument.
csec2_mask() {
    local line=$1 masked="" value re="([Pp]ass(word|wd)?['\"]?[[:space:]]*[:=][[:space:]]*['\"]?)[^'\",[:space:]}]+"
    for value in "${CSEC2_MASKED_VALUES[@]}"; do
        line=${line//"$value"/***}
    done
    # Left to right: the leftmost match's text first occurs where it matched.
    while [[ $line =~ $re ]]; do
        masked+="${line%%"${BASH_REMATCH[0]}"*}${BASH_REMATCH[1]}***"
        line=${line#*"${BASH_REMATCH[0]}"}
    done
    printf '%s' "$masked$line"
}

# csec2_run_quiet NAME COMMAND...: runs COMMAND, a tool that may print a secret
# (cloudstack-setup-databases prints its SQL parameters, the database password
# among them, when MySQL refuses a statement), with its whole output in the
# root-only file $CSEC2_STATE_DIR/tool-output/NAME.log (kept for diagnosis,
# replaced at each run) and only the last CSEC2_QUIET_TAIL lines, masked, in the
# boot log and on the console. Returns COMMAND's status.
CSEC2_QUIET_TAIL=${CSEC2_QUIET_TAIL:-15}

csec2_run_quiet() {
    local name=$1 dir=$CSEC2_STATE_DIR/tool-output out status=0 line
    shift
    out=$dir/$name.log
    mkdir -p "$dir"
    chmod 0700 "$dir"
    (umask 077 && : >"$out")
    chmod 0600 "$out"
    "$@" >"$out" 2>&1 </dev/null || status=$?
    csec2_log "$name: status $status; output in $out, its end (secrets masked):"
    while IFS= read -r line || [[ -n $line ]]; do
        csec2_log "  | $(csec2_mask "$line")"
    done < <(tail -n "$CSEC2_QUIET_TAIL" "$out")
    return "$status"
}

# Prints the value of SSM parameter NAME; fails when it does not exist.
csec2_get_parameter() {
    csec2_aws ssm get-parameter --name "$1" --query Parameter.Value --output text 2>/dev/null
}

# Callbacks of csec2_wait_until read their target from CSEC2_TRY_NAME and leave
# the value in CSEC2_TRY_VALUE (shellcheck cannot see calls made through "$@").
CSEC2_TRY_NAME=""
CSEC2_TRY_VALUE=""

# shellcheck disable=SC2317
csec2_try_parameter() {
    CSEC2_TRY_VALUE=$(csec2_get_parameter "$CSEC2_TRY_NAME") &&
        [[ -n $CSEC2_TRY_VALUE && $CSEC2_TRY_VALUE != None ]]
}

# csec2_wait_parameter KEY VAR [WRITER]: stores the value of SSM parameter KEY
# (under the prefix) in the variable named VAR, waiting (bounded) until it
# exists; WRITER says who writes it, for the failure message.
csec2_wait_parameter() {
    # Locals start with "_" so they never shadow the caller's variable VAR.
    local _key=$1 _var=$2 _writer=${3:-Pulumi writes it once the resource exists}
    CSEC2_TRY_NAME=$(csec2_name "$_key")
    csec2_wait_until "SSM parameter $CSEC2_TRY_NAME" "$CSEC2_WAIT_PARAMETERS_SECONDS" csec2_try_parameter ||
        csec2_die "SSM parameter $CSEC2_TRY_NAME does not exist after $CSEC2_WAIT_PARAMETERS_SECONDS s ($_writer)"
    printf -v "$_var" '%s' "$CSEC2_TRY_VALUE"
    CSEC2_TRY_VALUE=""
}

# ----------------------------------------------------------- trust anchors ----

# The values KVM hosts act on as root (the management server's SSH public key,
# its package version) are SecureString parameters under the anchor key
# CSEC2_ANCHOR_KEY_ARN, which only the management server's role may encrypt with
# (components/resources/anchor.py). Parameter Store encrypts a SecureString
# with the writer's own credentials (kms:Encrypt on the key: AWS Systems Manager
# User Guide, "How AWS Systems Manager Parameter Store uses AWS KMS"), so a
# value under that key was written by the management server. A String, or a
# SecureString under another key (aws/ssm, which every principal of the account
# may use), is refused: anyone with ssm:PutParameter could have written it.
# GetParameterHistory reports the type and key of each version beside its
# value, in one answer; the newest version is the one with the highest number.
CSEC2_ANCHOR_QUERY='max_by(Parameters, &Version).{Type: Type, KeyId: KeyId, Value: Value}'
CSEC2_ANCHOR_REFUSED=""

# shellcheck disable=SC2317  # called through csec2_wait_until
csec2_try_anchor() {
    local json type key_id=""
    CSEC2_TRY_VALUE=""
    json=$(csec2_aws ssm get-parameter-history --name "$CSEC2_TRY_NAME" --with-decryption \
        --query "$CSEC2_ANCHOR_QUERY" --output json 2>/dev/null) || return 1
    csec2_json_get Type type <<<"$json" 2>/dev/null || return 1
    csec2_json_get KeyId key_id <<<"$json" 2>/dev/null || key_id=""
    if [[ $type != SecureString || $key_id != "$CSEC2_ANCHOR_KEY_ARN" ]]; then
        CSEC2_ANCHOR_REFUSED="its newest version is a $type${key_id:+ under KMS key $key_id}, not a SecureString under $CSEC2_ANCHOR_KEY_ARN"
        csec2_log "  refused SSM parameter $CSEC2_TRY_NAME: $CSEC2_ANCHOR_REFUSED"
        return 1
    fi
    csec2_json_get Value CSEC2_TRY_VALUE <<<"$json" 2>/dev/null && [[ -n $CSEC2_TRY_VALUE ]]
}

# csec2_wait_anchor KEY VAR WRITER: stores in VAR the value of SSM parameter KEY
# (under the prefix) once it exists as a SecureString under the anchor key,
# waiting (bounded by CSEC2_WAIT_PARAMETERS_SECONDS); WRITER says who writes it.
csec2_wait_anchor() {
    local _key=$1 _var=$2 _writer=$3
    CSEC2_TRY_NAME=$(csec2_name "$_key")
    CSEC2_ANCHOR_REFUSED=""
    csec2_wait_until "SSM parameter $CSEC2_TRY_NAME" "$CSEC2_WAIT_PARAMETERS_SECONDS" csec2_try_anchor ||
        csec2_die "SSM parameter $CSEC2_TRY_NAME holds no value the management server wrote after" \
            "$CSEC2_WAIT_PARAMETERS_SECONDS s (${CSEC2_ANCHOR_REFUSED:-it does not exist}; $_writer)"
    printf -v "$_var" '%s' "$CSEC2_TRY_VALUE"
    CSEC2_TRY_VALUE=""
}

# csec2_publish_anchor KEY VALUE: writes VALUE to SSM parameter KEY as a
# SecureString under the anchor key, unless it already holds it so.
csec2_publish_anchor() {
    CSEC2_TRY_NAME=$(csec2_name "$1")
    if csec2_try_anchor && [[ $CSEC2_TRY_VALUE == "$2" ]]; then
        csec2_log "$CSEC2_TRY_NAME is up to date"
        return 0
    fi
    csec2_aws ssm put-parameter --name "$CSEC2_TRY_NAME" --type SecureString --key-id "$CSEC2_ANCHOR_KEY_ARN" \
        --overwrite --value "$2" >/dev/null
    csec2_log "published $CSEC2_TRY_NAME (SecureString under $CSEC2_ANCHOR_KEY_ARN)"
}

# Prints the current value (SecretString) of secret NAME; fails when the secret
# or its current value does not exist.
csec2_get_secret() {
    csec2_aws secretsmanager get-secret-value --secret-id "$1" --query SecretString --output text
}

# shellcheck disable=SC2317
csec2_try_secret() {
    local err=$CSEC2_PRIVATE_DIR/aws-error
    if CSEC2_TRY_VALUE=$(csec2_get_secret "$CSEC2_TRY_NAME" 2>"$err"); then
        [[ -n $CSEC2_TRY_VALUE && $CSEC2_TRY_VALUE != None ]]
    else
        # AWS's error text (ResourceNotFoundException, AccessDenied...), never a value.
        csec2_log "  secret $CSEC2_TRY_NAME not readable yet: $(tr -s '\n' ' ' <"$err" | cut -c1-200)"
        return 1
    fi
}

# csec2_wait_secret SECRET_ID VAR: stores the current value of the secret
# SECRET_ID (name or ARN; given in the settings, as AWS adds a suffix to each
# secret's name) in the variable named VAR, waiting (bounded) until it has one.
# Never logs the value.
csec2_wait_secret() {
    local _id=$1 _var=$2
    CSEC2_TRY_NAME=$_id
    csec2_wait_until "secret $_id" "$CSEC2_WAIT_SECRETS_SECONDS" csec2_try_secret ||
        csec2_die "secret $_id has no value after $CSEC2_WAIT_SECRETS_SECONDS s (check that it exists and that the instance role may read it)"
    printf -v "$_var" '%s' "$CSEC2_TRY_VALUE"
    CSEC2_TRY_VALUE=""
}

# csec2_json_get PATH VAR <<<JSON: stores the string at PATH (dot-separated
# keys, numbers index lists: "a.b.0.c") of the JSON on stdin in VAR. The JSON
# comes on stdin so that secret values never appear in a process list.
csec2_json_get() {
    local _path=$1 _var=$2 _value
    _value=$(python3 -c '
import json, sys
try:
    node = json.load(sys.stdin)
except ValueError:
    sys.exit("input is not JSON")
for part in sys.argv[1].split("."):
    if isinstance(node, list) and part.isdigit() and int(part) < len(node):
        node = node[int(part)]
    elif isinstance(node, dict) and part in node:
        node = node[part]
    else:
        sys.exit("no %r in the JSON" % sys.argv[1])
if isinstance(node, (dict, list)) or node is None:
    sys.exit("%r is not a plain value" % sys.argv[1])
print(node)
' "$_path") || return 1
    printf -v "$_var" '%s' "$_value"
}

# csec2_json_has PATH <<<JSON: succeeds when the JSON on stdin has a plain value at PATH.
csec2_json_has() {
    csec2_json_get "$1" CSEC2_JSON_SCRATCH
}

# ------------------------------------------------------------ file edits ----

# csec2_put_block FILE NAME <<<CONTENT: writes CONTENT between marker lines
# named NAME in FILE, replacing an earlier block of that name (idempotent).
csec2_put_block() {
    local file=$1 name=$2 content tmp
    content=$(cat)
    mkdir -p "$(dirname "$file")"
    touch "$file"
    tmp=$(mktemp "$file.XXXXXX")
    awk -v b="# BEGIN $name" -v e="# END $name" '
        $0 == b { skip = 1; next }
        $0 == e { skip = 0; next }
        !skip { print }' "$file" >"$tmp"
    printf '%s\n%s\n%s\n' "# BEGIN $name" "$content" "# END $name" >>"$tmp"
    chmod --reference="$file" "$tmp"
    mv -f "$tmp" "$file"
}

# csec2_set_conf FILE KEY VALUE: sets "KEY = VALUE" in a libvirt-style config
# file, replacing an active or commented-out line of KEY, else appending it.
csec2_set_conf() {
    local file=$1 key=$2 value=$3 tmp
    mkdir -p "$(dirname "$file")"
    touch "$file"
    tmp=$(mktemp "$file.XXXXXX")
    awk -v k="$key" -v line="$key = $value" '
        BEGIN { done = 0 }
        {
            probe = $0
            sub(/^[#[:space:]]*/, "", probe)
            if (probe ~ ("^" k "[[:space:]]*=")) {
                if (!done) { print line; done = 1 }
                next
            }
            print
        }
        END { if (!done) print line }' "$file" >"$tmp"
    chmod --reference="$file" "$tmp"
    mv -f "$tmp" "$file"
}

csec2_setup_hostname() {
    csec2_step "hostname $CSEC2_FQDN"
    local current=""
    [[ -r $CSEC2_ROOT/etc/hostname ]] && current=$(<"$CSEC2_ROOT/etc/hostname")
    if [[ $current != "$CSEC2_HOSTNAME" ]]; then
        hostnamectl set-hostname "$CSEC2_HOSTNAME"
    fi
    # CloudStack wants `hostname --fqdn` to answer; the overlay address is the
    # one the cloud knows this machine by.
    csec2_put_block "$CSEC2_ROOT/etc/hosts" cloudstack-ec2 \
        <<<"$CSEC2_OVERLAY_IP $CSEC2_FQDN $CSEC2_HOSTNAME"
    # Stop cloud-init from resetting the hostname to the EC2 one at reboot.
    mkdir -p "$CSEC2_ROOT/etc/cloud/cloud.cfg.d"
    printf 'preserve_hostname: true\n' >"$CSEC2_ROOT/etc/cloud/cloud.cfg.d/99-cloudstack-ec2.cfg"
}

# Amazon Time Sync Service through the link-local address (members keep a host
# route for it on the underlay device). chrony replaces systemd-timesyncd.
csec2_setup_time_sync() {
    csec2_step "time sync (chrony, Amazon Time Sync Service)"
    local sources=$CSEC2_ROOT/etc/chrony/sources.d/amazon-time-sync.sources
    local line='server 169.254.169.123 prefer iburst minpoll 4 maxpoll 4'
    mkdir -p "$(dirname "$sources")"
    csec2_apt_install chrony
    systemctl enable chrony.service
    if [[ -r $sources && $(<"$sources") == "$line" ]] && systemctl is-active --quiet chrony.service; then
        csec2_log "chrony already uses the Amazon Time Sync Service"
    else
        printf '%s\n' "$line" >"$sources"
        systemctl restart chrony.service
    fi
}

# The SSM agent is preinstalled on EC2's Ubuntu images as a snap; make sure it
# is there and running (it is how operators get a shell: aws ssm start-session).
csec2_setup_ssm_agent() {
    csec2_step "SSM agent"
    if ! snap list amazon-ssm-agent >/dev/null 2>&1; then
        csec2_wait_snap_seeded
        csec2_retry "snap install amazon-ssm-agent" snap install amazon-ssm-agent --classic
    fi
    systemctl enable --now snap.amazon-ssm-agent.amazon-ssm-agent.service
}

# The CloudWatch agent (boot stage 2): userdata/cloudwatch-agent.sh, fetched from
# the boot-script bucket like the role script and run only while its sha256 is
# the one its key names (CSEC2_AGENT_KEY, boot/cloudwatch-agent-<sha256>.sh),
# with this role's configuration parameter; a re-run uses the verified local
# copy. A failure costs the instance its logs in CloudWatch, not its boot: it is
# logged and the boot goes on.
csec2_cloudwatch_agent() {
    local f=$CSEC2_LIB_DIR/cloudwatch-agent.sh sha=${CSEC2_AGENT_KEY##*-}
    csec2_step "CloudWatch agent"
    if [[ $(sha256sum 2>/dev/null <"$f") != "${sha%.sh}  -" ]] &&
        csec2_aws s3 cp --only-show-errors "s3://$CSEC2_STAGE2_BUCKET/$CSEC2_AGENT_KEY" "$f.new"; then
        mv -f "$f.new" "$f"
    fi
    if [[ $(sha256sum 2>/dev/null <"$f") == "${sha%.sh}  -" ]] &&
        bash "$f" "$CSEC2_AWS_REGION" "$CSEC2_ROLE" "$(csec2_name "cloudwatch-agent/$CSEC2_ROLE")"; then
        return 0
    fi
    csec2_log "WARNING: no CloudWatch agent: this instance's logs and metrics do not reach CloudWatch"
}

# ------------------------------------------------------------------- apt ----

CSEC2_APT_UPDATED=0

# apt-daily and unattended-upgrades hold the dpkg lock for a while on a first
# boot: wait for it rather than fail.
CSEC2_APT_OPTIONS=(-q -o DPkg::Lock::Timeout=600)

csec2_apt_update() {
    if ((CSEC2_APT_UPDATED == 0)); then
        # --error-on=any: a failed download is an error (retried), not a warning
        # that leaves stale or missing package lists.
        csec2_retry "apt-get update" apt-get "${CSEC2_APT_OPTIONS[@]}" --error-on=any update
        CSEC2_APT_UPDATED=1
    fi
}

# Installs the packages not installed yet, and those pinned (NAME=VERSION, VERSION
# an apt pattern such as 4.22.1*) whose installed version is another: an upgrade
# re-runs the boot script with the new version (a re-run installs nothing).
csec2_apt_install() {
    local pkg missing=()
    for pkg in "$@"; do
        if dpkg-query -W -f='${Status}' "${pkg%%=*}" 2>/dev/null | grep -q "install ok installed"; then
            [[ $pkg != *=* ]] && continue
            # shellcheck disable=SC2053 # the pin is a pattern, as apt-get(8) reads NAME=VERSION with a *
            [[ $(dpkg-query -W -f='${Version}' "${pkg%%=*}") == ${pkg#*=} ]] && continue
        fi
        missing+=("$pkg")
    done
    if ((${#missing[@]} == 0)); then
        csec2_log "packages already installed: $*"
        return 0
    fi
    csec2_apt_update
    csec2_retry "apt-get install ${missing[*]}" \
        apt-get "${CSEC2_APT_OPTIONS[@]}" -y -o Dpkg::Options::=--force-confold install "${missing[@]}"
}

# The CloudStack package repository of the chosen release for this Ubuntu.
csec2_setup_cloudstack_repo() {
    csec2_step "CloudStack $CSEC2_CLOUDSTACK_VERSION repository"
    local release=${CSEC2_CLOUDSTACK_VERSION%.*} keyring=$CSEC2_ROOT/etc/apt/keyrings/cloudstack.asc
    [[ $CSEC2_CLOUDSTACK_VERSION == *.*.* ]] || release=$CSEC2_CLOUDSTACK_VERSION
    local list=$CSEC2_ROOT/etc/apt/sources.list.d/cloudstack.list
    local line="deb [signed-by=/etc/apt/keyrings/cloudstack.asc] $CSEC2_CLOUDSTACK_REPO_URL $CSEC2_OS_CODENAME $release"
    if [[ ! -s $keyring ]]; then
        mkdir -p "$(dirname "$keyring")"
        curl -fsSL --retry 5 --retry-delay 5 --max-time 60 -o "$keyring.tmp" "$CSEC2_CLOUDSTACK_KEY_URL"
        mv -f "$keyring.tmp" "$keyring"
        chmod 0644 "$keyring"
    fi
    if [[ ! -r $list || $(<"$list") != "$line" ]]; then
        mkdir -p "$(dirname "$list")"
        printf '%s\n' "$line" >"$list"
        CSEC2_APT_UPDATED=0
    fi
}

# Whether package version $1 is of the configured release: "4.22" is any 4.22.z,
# "4.22.1" is 4.22.1.* (an epoch ignored).
csec2_of_configured_version() {
    [[ ${1#*:} == "$CSEC2_CLOUDSTACK_VERSION" || ${1#*:} == "$CSEC2_CLOUDSTACK_VERSION"[.~+-]* ]]
}

# "4.22" installs the newest 4.22.x; "4.22.1" pins that patch release.
csec2_cloudstack_package() {
    if [[ $CSEC2_CLOUDSTACK_VERSION == *.*.* ]]; then
        printf '%s=%s*' "$1" "$CSEC2_CLOUDSTACK_VERSION"
    else
        printf '%s' "$1"
    fi
}

# csec2_load_firewall TABLE <<<RULES: this instance's own nftables table
# (tenant isolation), written to /etc/cloudstack-ec2/host-firewall.nft, loaded
# now and at every boot by cloudstack-ec2-host-firewall.service. RULES replace
# the table atomically; no `flush ruleset`: libvirt's, CloudStack's and the
# overlay's own tables stay.
csec2_load_firewall() {
    local table=$1 file=$CSEC2_ROOT/etc/cloudstack-ec2/host-firewall.nft rules
    rules=$(cat)
    csec2_step "firewall (nftables table $table)"
    mkdir -p "$(dirname "$file")"
    printf '%s\n' "# Written by cloudstack-ec2's $CSEC2_ROLE boot script: tenant isolation." \
        "table inet $table" "delete table inet $table" "$rules" >"$file"
    csec2_apt_install nftables
    nft -f "$file"
    systemctl daemon-reload
    systemctl enable cloudstack-ec2-host-firewall.service
}
