#!/bin/bash
# Console forwards publisher of the management server (cloudstack-ec2).
#
# The router forwards the console address to the console proxy VM's public IP,
# which it reads from the SSM parameter <prefix>/console-forwards (value:
# components/model/consoles.py console_forwards, or "none"). The registration
# writes it at `pulumi up`; CloudStack recreates the console proxy (host failure,
# maintenance, destroySystemVm) with another address of the system VMs' public
# range at any time. Run every 30 s by cloudstack-ec2-console-forwards.timer on
# every management server, this reads the zone's console proxy through the API on
# the loopback and writes the parameter when it differs:
#   - the console proxy: listSystemVms systemvmtype=consoleproxy of the zone
#     CSEC2_ZONE_NAME, Running with a public IP, the oldest (the registration's
#     choice: components/registration/console_forwards.py serving_proxy);
#   - only inside CSEC2_SYSTEM_PUBLIC_RANGE ("first-last"), the range the router
#     forwards into (the registration moves a console proxy outside it);
#   - nothing while the parameter holds "none" (before the registration's first
#     write, after a teardown) or while no console proxy runs.
# The request is signed with the API keys of the secret CSEC2_SECRET_API_KEYS,
# read at every run (a rotation is followed), kept in a root-only directory and
# never on a command line. Several servers may run it at once: each writes only
# a value that differs, and all write the same one. Logs (the unit's journal)
# what it changed and what stops it; never a key.
#
# Settings: /etc/cloudstack-ec2/boot.env (non-secret).

# shellcheck source=SCRIPTDIR/common.sh
source "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/common.sh"
# shellcheck source=SCRIPTDIR/library.sh
source "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/library.sh"

CONSOLE_API_URL=${CSEC2_API_URL:-http://127.0.0.1:8080/client/api}
# components/model/consoles.py NO_CONSOLE
NO_CONSOLE=none

publisher_die() {
    CSEC2_REPORTED=1
    csec2_log "console forwards not checked: $*"
    exit 1
}

# The settings (boot.env of the management server) and a private directory,
# without the boot's lock and log: a boot run may take an hour.
publisher_begin() {
    CSEC2_ROLE=management CSEC2_STEP="console forwards"
    set -Eeuo pipefail
    umask 077
    trap csec2_cleanup EXIT
    [[ -r $CSEC2_ENV_FILE ]] || publisher_die "settings file $CSEC2_ENV_FILE is missing"
    # shellcheck source=/dev/null
    source "$CSEC2_ENV_FILE"
    [[ ${CSEC2_ENV_ROLE:-} == management ]] || publisher_die "$CSEC2_ENV_FILE is not a management server's"
    local name
    for name in CSEC2_AWS_REGION CSEC2_PREFIX CSEC2_SECRET_API_KEYS CSEC2_ZONE_NAME CSEC2_SYSTEM_PUBLIC_RANGE; do
        [[ -n ${!name:-} ]] || publisher_die "$CSEC2_ENV_FILE lacks $name"
    done
    csec2_make_private_dir
}

# signed_request FILE NAME=VALUE...: writes to FILE (curl's config syntax) the URL
# of an API request with these parameters, signed with the keys in
# $CSEC2_PRIVATE_DIR/api-keys.json as ApiServer.verifyRequest checks it
# (apache/cloudstack server/src/main/java/com/cloud/api/ApiServer.java): the
# parameters sorted by name, each value URLEncoder-encoded (a space as %20), the
# whole string lower-cased, HMAC-SHA1 with the secret key, base64.
signed_request() {
    python3 -c '
import base64, hashlib, hmac, json, sys
from urllib.parse import quote
keys = json.load(open(sys.argv[2]))
params = dict(a.split("=", 1) for a in sys.argv[4:])
params["apikey"] = keys["apikey"]
def enc(v):
    return quote(v, safe="*").replace("~", "%7E")
query = "&".join(k + "=" + enc(v) for k, v in sorted(params.items()))
digest = hmac.new(keys["secretkey"].encode(), query.lower().encode(), hashlib.sha1).digest()
url = sys.argv[3] + "?" + query + "&signature=" + enc(base64.b64encode(digest).decode())
open(sys.argv[1], "w").write("url = \"%s\"\n" % url)
' "$1" "$CSEC2_PRIVATE_DIR/api-keys.json" "$CONSOLE_API_URL" "${@:2}"
}

# wanted_forwards <<<JSON: prints the forwards to the zone's serving console proxy and its name, or
# nothing (with the reason on stderr) when none runs or its address lies outside
# the range.
wanted_forwards() {
    python3 -c '
import ipaddress, json, sys
zone, span = sys.argv[1], sys.argv[2]
try:
    doc = json.load(sys.stdin)["listsystemvmsresponse"]
except (ValueError, KeyError, TypeError):
    sys.exit("listSystemVms answered no listsystemvmsresponse (is the management server starting?)")
if "errortext" in doc:
    sys.exit("listSystemVms: %s" % doc["errortext"])
vms = [v for v in doc.get("systemvm", []) if v.get("zonename") == zone]
running = sorted((v for v in vms if v.get("state") == "Running" and v.get("publicip")),
                 key=lambda v: (str(v.get("created") or ""), str(v.get("name") or "")))
if not running:
    print("zone %s has no console proxy running with a public IP" % zone, file=sys.stderr)
    sys.exit(0)
vm = running[0]
first, last = (ipaddress.IPv4Address(a) for a in span.split("-"))
try:
    ip = ipaddress.IPv4Address(vm["publicip"])
except ValueError:
    ip = None
if ip is None or not first <= ip <= last:
    print("the console proxy %s has the public IP %s, outside the system VMs\x27 public range %s: left to the "
          "registration (the next pulumi up moves it into the range)" % (vm.get("name"), vm["publicip"], span),
          file=sys.stderr)
    sys.exit(0)
print(" ".join("tcp:%d:%s:%d" % (port, ip, port) for port in (80, 8080)), vm.get("name"))
' "$CSEC2_ZONE_NAME" "$CSEC2_SYSTEM_PUBLIC_RANGE"
}

publish_console_forwards() {
    local parameter current answer wanted proxy err=$CSEC2_PRIVATE_DIR/error
    parameter=$(csec2_name console-forwards)
    current=$(csec2_aws ssm get-parameter --name "$parameter" --query Parameter.Value --output text 2>"$err") ||
        publisher_die "cannot read SSM parameter $parameter: $(tr -s '\n' ' ' <"$err" | cut -c1-300)"
    # Before the registration's first write, and after a teardown: not ours to set.
    [[ $current == "$NO_CONSOLE" ]] && return 0
    csec2_get_secret "$CSEC2_SECRET_API_KEYS" >"$CSEC2_PRIVATE_DIR/api-keys.json" 2>"$err" ||
        publisher_die "cannot read secret $CSEC2_SECRET_API_KEYS: $(tr -s '\n' ' ' <"$err" | cut -c1-300)"
    signed_request "$CSEC2_PRIVATE_DIR/request" command=listSystemVms response=json systemvmtype=consoleproxy ||
        publisher_die "secret $CSEC2_SECRET_API_KEYS holds no apikey and secretkey"
    answer=$(curl -sS --max-time 30 -K "$CSEC2_PRIVATE_DIR/request" 2>"$err") ||
        publisher_die "the API on $CONSOLE_API_URL did not answer: $(tr -s '\n' ' ' <"$err" | cut -c1-300)"
    wanted=$(wanted_forwards <<<"$answer" 2>"$err") ||
        publisher_die "$(tr -s '\n' ' ' <"$err" | cut -c1-300)"
    if [[ -z $wanted ]]; then
        csec2_log "console forwards left as they are ($current): $(tr -s '\n' ' ' <"$err" | cut -c1-300)"
        return 0
    fi
    proxy=${wanted##* } wanted=${wanted% *}
    [[ $wanted == "$current" ]] && return 0
    csec2_aws ssm put-parameter --name "$parameter" --type String --overwrite --value "$wanted" >/dev/null 2>"$err" ||
        publisher_die "cannot write SSM parameter $parameter: $(tr -s '\n' ' ' <"$err" | cut -c1-300)"
    csec2_log "console forwards: $parameter = $wanted (console proxy $proxy; was $current)"
}

publisher_begin
publish_console_forwards
