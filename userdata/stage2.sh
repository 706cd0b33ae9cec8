#!/bin/bash
# Stage-2 launcher of the cloudstack-ec2 boot (all roles).
#
# EC2 accepts at most 16 KiB of user data, so the user data carries only what
# this instance needs before its network works (common.sh, overlay-network.sh,
# the units, the settings and this launcher). The role script itself
# (router.sh, management-server.sh, kvm-host.sh) and the rest of the shared
# library (library.sh) live in the deployment's private S3 bucket, keyed by
# their sha256 (components/resources/bootstore.py). This script:
#   1. members: brings the overlay up and waits for the router and the internet
#      (the router reaches the internet through its Elastic IP directly);
#   2. installs the AWS CLI;
#   3. fetches s3://$CSEC2_STAGE2_BUCKET/$CSEC2_LIBRARY_KEY and
#      s3://$CSEC2_STAGE2_BUCKET/$CSEC2_STAGE2_KEY (bounded retries), checks
#      their sha256 (the library's is in its key, the role script's is
#      CSEC2_STAGE2_SHA256) and installs them as $CSEC2_LIB_DIR/library.sh and
#      $CSEC2_LIB_DIR/$CSEC2_STAGE2_SCRIPT;
#   4. execs the role script.
# A re-run (/usr/local/sbin/cloudstack-ec2-boot -> this script) finds the
# verified local copies and execs without S3. Settings: boot.env (non-secret).

# shellcheck source=SCRIPTDIR/common.sh
source "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/common.sh"

# The console as cloud-init or systemd gave it to us: restored before the exec,
# so the role script's own logging does not write every line twice.
exec 7>&1 8>&2

# The role is the settings file's (both come from the same user data); a missing
# file is reported by csec2_load_env.
CSEC2_STAGE2_ROLE=$(sed -n 's/^CSEC2_ENV_ROLE="\([a-z-]*\)"$/\1/p' "$CSEC2_ENV_FILE" 2>/dev/null) || true
csec2_begin "${CSEC2_STAGE2_ROLE:-unknown}"
csec2_require CSEC2_STAGE2_BUCKET CSEC2_STAGE2_KEY CSEC2_STAGE2_SHA256 CSEC2_STAGE2_SCRIPT CSEC2_LIBRARY_KEY

CSEC2_STAGE2_TARGET=$CSEC2_LIB_DIR/$CSEC2_STAGE2_SCRIPT
# The library's key is boot/library-<sha256>.sh: its name is its checksum.
CSEC2_LIBRARY_SHA256=${CSEC2_LIBRARY_KEY##*-}
CSEC2_LIBRARY_SHA256=${CSEC2_LIBRARY_SHA256%.sh}

# Prints the sha256 of file $1.
stage2_sha256() {
    local sum
    sum=$(sha256sum "$1") || return 1
    printf '%s' "${sum%% *}"
}

# stage2_verified FILE SHA256: whether FILE exists with that sha256.
stage2_verified() {
    [[ -f $1 && $(stage2_sha256 "$1") == "$2" ]]
}

# What a failed `aws s3 cp` means, from the CLI's own message. S3 answers 403
# (not 404) for a missing key when the caller lacks s3:ListBucket, which the
# instance roles never get (S3 User Guide, GetObject permissions).
stage2_explain() {
    case $1 in
        *"(404)"* | *NoSuchKey* | *"does not exist"*)
            printf 'the object does not exist' ;;
        *NoSuchBucket*)
            printf 'the bucket does not exist' ;;
        *"(403)"* | *Forbidden* | *AccessDenied*)
            printf 'access denied (403): the instance role may not read it, or the object does not exist (S3 answers 403 for a missing key to a reader without s3:ListBucket)' ;;
        *)
            printf 'S3 did not answer (network, DNS or the router)' ;;
    esac
}

# stage2_fetch WHAT KEY SHA256 TARGET MODE: downloads object KEY into the
# private directory, verifies it and installs it as TARGET. Bounded:
# CSEC2_RETRY_ATTEMPTS tries (IAM takes seconds to propagate a new role's
# policy; the router's NAT may still be starting).
stage2_fetch() {
    local what=$1 url=s3://$CSEC2_STAGE2_BUCKET/$2 sha=$3 target=$4 mode=$5
    csec2_step "stage 2: fetch $url"
    local tmp=$CSEC2_PRIVATE_DIR/stage2-object err=$CSEC2_PRIVATE_DIR/stage2-error attempt status message actual
    for ((attempt = 1; ; attempt++)); do
        status=0
        csec2_aws s3 cp --only-show-errors "$url" "$tmp" 2>"$err" || status=$?
        ((status == 0)) && break
        message=$(tr -s '\n' ' ' <"$err" | cut -c1-300)
        if ((attempt >= CSEC2_RETRY_ATTEMPTS)); then
            csec2_die "stage 2: cannot fetch the $what $url after $attempt attempts: $(stage2_explain "$message") (aws status $status: $message). Was it uploaded by 'pulumi up' (resource boot-scripts), and does this instance's role grant s3:GetObject on exactly that key? A changed script has a new key: an instance created before the change cannot fetch it (see docs/boot.md)."
        fi
        csec2_log "stage 2: fetching $url failed (status $status, attempt $attempt of $CSEC2_RETRY_ATTEMPTS): $message; retrying in $((attempt * CSEC2_WAIT_INTERVAL_SECONDS)) s"
        sleep $((attempt * CSEC2_WAIT_INTERVAL_SECONDS))
    done
    actual=$(stage2_sha256 "$tmp")
    if [[ $actual != "$sha" ]]; then
        csec2_die "stage 2: $url has sha256 $actual but the settings expect $sha: refusing to run it (the object was changed outside Pulumi, or the user data and the bucket come from different deployments)"
    fi
    mkdir -p "$CSEC2_LIB_DIR"
    install -m "$mode" "$tmp" "$target.new"
    mv -f "$target.new" "$target"
    csec2_log "stage 2: installed $target (sha256 $actual)"
}

if stage2_verified "$CSEC2_STAGE2_TARGET" "$CSEC2_STAGE2_SHA256" &&
    stage2_verified "$CSEC2_LIB_DIR/library.sh" "$CSEC2_LIBRARY_SHA256"; then
    csec2_step "stage 2: verified local copy"
    csec2_log "stage 2: $CSEC2_STAGE2_TARGET matches sha256 $CSEC2_STAGE2_SHA256 (library.sh $CSEC2_LIBRARY_SHA256); not fetching"
else
    if [[ $CSEC2_ROLE != router ]]; then
        # Members reach S3 (and the snap store) only through the router.
        csec2_setup_overlay
        csec2_wait_network
    fi
    csec2_install_aws_cli
    # The library first: the role script sources it.
    stage2_verified "$CSEC2_LIB_DIR/library.sh" "$CSEC2_LIBRARY_SHA256" ||
        stage2_fetch library "$CSEC2_LIBRARY_KEY" "$CSEC2_LIBRARY_SHA256" "$CSEC2_LIB_DIR/library.sh" 0644
    stage2_verified "$CSEC2_STAGE2_TARGET" "$CSEC2_STAGE2_SHA256" ||
        stage2_fetch "role script" "$CSEC2_STAGE2_KEY" "$CSEC2_STAGE2_SHA256" "$CSEC2_STAGE2_TARGET" 0755
fi

csec2_step "stage 2: exec $CSEC2_STAGE2_SCRIPT"
csec2_log "stage 2: running $CSEC2_STAGE2_TARGET"
# The role script takes the lock, the log and its own private directory again.
trap - ERR EXIT
rm -rf -- "$CSEC2_PRIVATE_DIR"
exec 9>&- 1>&7 2>&8 7>&- 8>&-
exec "$CSEC2_STAGE2_TARGET"
