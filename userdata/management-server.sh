#!/bin/bash
# Boot script of the CloudStack management server (cloudstack-ec2).
#
# Run by cloud-init on the first boot and by cloudstack-ec2-boot.service at every
# later boot (or by hand: systemctl start cloudstack-ec2-boot.service). Every
# phase checks the REAL state first (packages installed, schema present in the
# database, db.properties pointing at it, EFS mounted, service enabled, secret
# holding keys) so a re-run or a replacement instance only does what is missing
# and never overwrites the existing database.
#
# Settings: /etc/cloudstack-ec2/boot.env (non-secret). Secrets: Secrets Manager,
# read at run time. Log: /var/log/cloudstack-ec2-boot.log and the console.

# shellcheck source=SCRIPTDIR/common.sh
source "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/common.sh"
# shellcheck source=SCRIPTDIR/library.sh
source "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/library.sh"

csec2_begin management
csec2_require CSEC2_CLOUDSTACK_VERSION CSEC2_OS_CODENAME CSEC2_CLOUDSTACK_REPO_URL \
    CSEC2_CLOUDSTACK_KEY_URL CSEC2_ANCHOR_KEY_ARN CSEC2_ZONE_NAME CSEC2_OVERLAY_CIDR CSEC2_EFS_MOUNT_POINT \
    CSEC2_WAIT_PARAMETERS_SECONDS CSEC2_WAIT_SECRETS_SECONDS CSEC2_WAIT_DATABASE_SECONDS \
    CSEC2_WAIT_API_SECONDS CSEC2_SECRET_DB_CLOUD CSEC2_SECRET_CLOUDSTACK_KEYS \
    CSEC2_SECRET_ADMIN CSEC2_SECRET_API_KEYS CSEC2_DB_CA_BUNDLE_URL \
    CSEC2_OVERLAY_GATEWAY CSEC2_INFRA_CIDR CSEC2_MANAGEMENT_RANGE CSEC2_HOST_RANGE CSEC2_SYSTEM_RANGE \
    CSEC2_ROLE_NAME CSEC2_BOOTSTRAP_POLICIES CSEC2_BOOTSTRAP_MARKER

# This server's place among the management servers: 0, the first, deploys the schema
# and publishes what the hosts trust; the others join. A boot.env written before there
# were several servers names neither: the server is the only, first one.
CSEC2_MANAGEMENT_INDEX=${CSEC2_MANAGEMENT_INDEX:-0}
CSEC2_MANAGEMENT_SERVERS=${CSEC2_MANAGEMENT_SERVERS:-$CSEC2_OVERLAY_IP}
[[ $CSEC2_MANAGEMENT_INDEX =~ ^[0-9]$ ]] || csec2_die "CSEC2_MANAGEMENT_INDEX '$CSEC2_MANAGEMENT_INDEX' is not 0..9"

# Succeeds on the first management server.
first_server() {
    ((CSEC2_MANAGEMENT_INDEX == 0))
}

CS_ETC=$CSEC2_ROOT/etc/cloudstack/management
CS_SSH_PUBLIC_KEY=$CSEC2_ROOT/var/lib/cloudstack/management/.ssh/id_rsa.pub
API_URL=http://127.0.0.1:8080/client/api

# ------------------------------------------------ bootstrap or steady state ----

# Bootstrapping (the first management server, until the schema exists, the admin
# password is set and the API keys are stored) needs the RDS master user and the
# admin login; nothing after it does. The role holds those grants in the inline
# policies CSEC2_BOOTSTRAP_POLICIES only until the marker CSEC2_BOOTSTRAP_MARKER
# exists: finish_bootstrap writes it, then deletes the policies, and the program
# declares them no more (components/resources/management.py, bootstrapped). A
# boot that finds the marker (a reboot, a replaced server on the existing
# database) runs in steady state: the `cloud` user for the database, no master or
# admin secret, no API login.
BOOTSTRAPPED=0

bootstrap_state() {
    local name err=$CSEC2_PRIVATE_DIR/aws-error attempt
    name=$(csec2_name "$CSEC2_BOOTSTRAP_MARKER")
    csec2_step "bootstrap state ($name)"
    if ! first_server; then
        # Another server joins a bootstrapped cloud only: the first deploys the schema
        # and sets the admin password; this one never needs the master or admin secret.
        csec2_wait_until "the bootstrap marker $name (the first management server bootstraps the cloud)" \
            "$CSEC2_WAIT_DATABASE_SECONDS" bootstrap_marker_present ||
            csec2_die "the first management server did not bootstrap the cloud: no $name after $CSEC2_WAIT_DATABASE_SECONDS s (see its /var/log/cloudstack-ec2-boot.log)"
        BOOTSTRAPPED=1
        csec2_log "the cloud is bootstrapped: joining it (the cloud user; no master or admin secret)"
        return 0
    fi
    for attempt in 1 2 3 4 5; do
        if csec2_aws ssm get-parameter --name "$name" --query Parameter.Value --output text >/dev/null 2>"$err"; then
            BOOTSTRAPPED=1
            csec2_log "the cloud is bootstrapped: steady state (the cloud user; no master or admin secret)"
            return 0
        elif grep -q ParameterNotFound "$err"; then
            csec2_log "the cloud is not bootstrapped yet: this boot bootstraps it"
            return 0
        fi
        csec2_log "cannot read $name (attempt $attempt of 5): $(tr -s '\n' ' ' <"$err" | cut -c1-200)"
        sleep "$CSEC2_WAIT_INTERVAL_SECONDS"
    done
    csec2_die "cannot tell whether the cloud is bootstrapped: $name not readable (the role's ssm:GetParameter on it?)"
}

# shellcheck disable=SC2317  # called through csec2_wait_until
bootstrap_marker_present() {
    csec2_aws ssm get-parameter --name "$(csec2_name "$CSEC2_BOOTSTRAP_MARKER")" \
        --query Parameter.Value --output text >/dev/null 2>&1
}

# The marker first, then the policies: a policy left behind (a failed delete) goes
# at the next `pulumi up`, which sees the marker; a marker without the deletes
# could never be the other way round. Idempotent: a policy already gone is fine.
finish_bootstrap() {
    ((BOOTSTRAPPED)) && return 0
    local name policy err=$CSEC2_PRIVATE_DIR/aws-error
    name=$(csec2_name "$CSEC2_BOOTSTRAP_MARKER")
    csec2_step "bootstrap done: marker $name, bootstrap policies off role $CSEC2_ROLE_NAME"
    csec2_aws ssm put-parameter --name "$name" --type String --overwrite \
        --value "bootstrapped by $CSEC2_OVERLAY_IP" >/dev/null 2>"$err" ||
        csec2_die "could not write $name: $(tr -s '\n' ' ' <"$err" | cut -c1-200)"
    for policy in $CSEC2_BOOTSTRAP_POLICIES; do
        if csec2_aws iam delete-role-policy --role-name "$CSEC2_ROLE_NAME" --policy-name "$policy" 2>"$err"; then
            csec2_log "deleted the inline policy $policy of role $CSEC2_ROLE_NAME"
        elif grep -q NoSuchEntity "$err"; then
            csec2_log "role $CSEC2_ROLE_NAME has no inline policy $policy (already deleted)"
        else
            csec2_log "WARNING: could not delete the inline policy $policy of role $CSEC2_ROLE_NAME (the next \`pulumi up\` deletes it): $(tr -s '\n' ' ' <"$err" | cut -c1-200)"
        fi
    done
    BOOTSTRAPPED=1
}

# ------------------------------------------------- settings and secrets ----

# CloudStack's secrets are read BEFORE anything is installed: a missing one
# stops the boot here, leaving the machine untouched (only the AWS CLI was
# added). The stack creates them without a value; the first management server
# generates each value here (first_secret_value). The RDS master user's secret
# is RDS's own and exists only with the database: read in fetch_parameters.
# In steady state only the two every boot needs (the admin's is not readable).
ADMIN_USER=""
ADMIN_PASSWORD=""
fetch_secrets() {
    csec2_step "secrets (Secrets Manager)"
    local db_cloud_json keys_json admin_json
    if ((!BOOTSTRAPPED)); then
        first_secret_value "$CSEC2_SECRET_DB_CLOUD" db-cloud
        first_secret_value "$CSEC2_SECRET_CLOUDSTACK_KEYS" keys
        first_secret_value "$CSEC2_SECRET_ADMIN" admin
        csec2_wait_secret "$CSEC2_SECRET_ADMIN" admin_json
        csec2_json_get username ADMIN_USER <<<"$admin_json" || csec2_die "secret $CSEC2_SECRET_ADMIN: no 'username'"
        csec2_json_get password ADMIN_PASSWORD <<<"$admin_json" || csec2_die "secret $CSEC2_SECRET_ADMIN: no 'password'"
    fi
    csec2_wait_secret "$CSEC2_SECRET_DB_CLOUD" db_cloud_json
    csec2_wait_secret "$CSEC2_SECRET_CLOUDSTACK_KEYS" keys_json
    csec2_json_get username DB_CLOUD_USER <<<"$db_cloud_json" || csec2_die "secret $CSEC2_SECRET_DB_CLOUD: no 'username'"
    csec2_json_get password DB_CLOUD_PASSWORD <<<"$db_cloud_json" || csec2_die "secret $CSEC2_SECRET_DB_CLOUD: no 'password'"
    csec2_json_get management_key MANAGEMENT_KEY <<<"$keys_json" || csec2_die "secret $CSEC2_SECRET_CLOUDSTACK_KEYS: no 'management_key'"
    csec2_json_get database_key DATABASE_KEY <<<"$keys_json" || csec2_die "secret $CSEC2_SECRET_CLOUDSTACK_KEYS: no 'database_key'"

    # The values go into a MySQL option file, an SQL string literal and
    # cloudstack-setup-databases' user:password@host argument: refuse what
    # would break those (the message names the rule, never the value).
    [[ $DB_CLOUD_USER =~ ^[A-Za-z0-9_]{1,32}$ ]] ||
        csec2_die "secret $CSEC2_SECRET_DB_CLOUD: username must be 1-32 letters, digits or '_'"
    [[ $DB_CLOUD_PASSWORD != *[\'\"\\:@/[:space:]]* ]] ||
        csec2_die "secret $CSEC2_SECRET_DB_CLOUD: the password must not contain quotes, '\\', ':', '@', '/' or whitespace"
    # cloudstack-setup-databases puts the cloud password and both keys into shell
    # command lines it builds itself (mysql --password=..., the jasypt encryption
    # command): '$' and '`' would be expanded, '"', '\' and whitespace break the
    # quoting. Generated values never contain them (components/resources/management.py).
    tool_safe "$CSEC2_SECRET_DB_CLOUD" password "$DB_CLOUD_PASSWORD"
    tool_safe "$CSEC2_SECRET_CLOUDSTACK_KEYS" management_key "$MANAGEMENT_KEY"
    tool_safe "$CSEC2_SECRET_CLOUDSTACK_KEYS" database_key "$DATABASE_KEY"
    # Masked in whatever a tool's output the boot logs (csec2_run_quiet).
    csec2_add_secret "$DB_CLOUD_PASSWORD" "$MANAGEMENT_KEY" "$DATABASE_KEY" "$ADMIN_PASSWORD"
    csec2_log "read $((BOOTSTRAPPED ? 2 : 3)) secrets (values not logged)"
}

# The version id of a secret's first value: PutSecretValue with a version id
# the secret already has and another value fails (ResourceExistsException;
# Secrets Manager API Reference, PutSecretValue, ClientRequestToken), so two
# management servers booting at once can never both store a first value.
FIRST_VALUE_VERSION=cloudstack-ec2-first-value-00000001

# first_secret_value SECRET_ID KIND: stores a new value of KIND (db-cloud, keys,
# admin, ldap-truststore) in the secret only while it has none (GetSecretValue:
# ResourceNotFoundException); a value it has is never replaced, so a replaced
# instance, a re-run and a stack whose values came from elsewhere keep theirs.
# The value goes from a root-only file to the AWS CLI: never in a process list,
# the log, the user data or the stack's state.
# A transient error (throttling, IAM not yet consistent) is retried a few times
# with the same generated value; what still fails is left to csec2_wait_secret,
# which waits and reports.
first_secret_value() {
    local id=$1 err=$CSEC2_PRIVATE_DIR/aws-error file=$CSEC2_PRIVATE_DIR/first-value-$2.json attempt
    for attempt in 1 2 3 4 5; do
        if csec2_get_secret "$id" >/dev/null 2>"$err"; then
            break  # it has a value
        elif grep -q ResourceNotFoundException "$err"; then
            [[ -s $file ]] || (umask 077 && new_secret_value "$2" >"$file") ||
                csec2_die "could not generate a value for secret $id"
            if csec2_aws secretsmanager put-secret-value --secret-id "$id" \
                --client-request-token "$FIRST_VALUE_VERSION" --secret-string "file://$file" >/dev/null 2>"$err"; then
                csec2_log "secret $id had no value: stored a generated one (value not logged)"
                break
            elif grep -q ResourceExistsException "$err"; then
                csec2_log "secret $id got its first value from another management server: using it"
                break
            fi
        fi
        csec2_log "secret $id: no first value yet (attempt $attempt of 5): $(tr -s '\n' ' ' <"$err" | cut -c1-200)"
        sleep "$CSEC2_WAIT_INTERVAL_SECONDS"
    done
    rm -f "$file"
}

# new_secret_value KIND: the JSON of a new value (a plain word for ldap-truststore), from the OS's CSPRNG (Python's
# secrets module). Letters and digits only: the values go through shell, SQL,
# option and properties files (tool_safe); at least one of each class.
new_secret_value() {
    python3 -c '
import json, secrets, string, sys
def word(n):
    alphabet = string.ascii_letters + string.digits
    while True:
        w = "".join(secrets.choice(alphabet) for _ in range(n))
        if any(c.islower() for c in w) and any(c.isupper() for c in w) and any(c.isdigit() for c in w):
            return w
values = {"db-cloud": lambda: {"username": "cloud", "password": word(32)},
          "keys": lambda: {"management_key": word(32), "database_key": word(32)},
          "admin": lambda: {"username": "admin", "password": word(24)},
          "ldap-truststore": lambda: word(32)}
value = values[sys.argv[1]]()
# a plain word without a newline: the secret holds exactly the password
sys.stdout.write(value if isinstance(value, str) else json.dumps(value) + "\n")
' "$1"
}

# tool_safe SECRET FIELD VALUE: refuses a value cloudstack-setup-databases
# cannot carry, naming the secret and the field (never the value).
tool_safe() {
    [[ $3 != *[\$\`\"\\[:space:]]* ]] ||
        csec2_die "secret $1: '$2' must not contain '\$', '\`', '\"', '\\' or whitespace (cloudstack-setup-databases puts it in shell commands)"
}

# Pulumi writes these once RDS and EFS exist (RDS takes many minutes): waited
# for only after the packages are installed, so the two overlap.
fetch_parameters() {
    csec2_step "settings of the database and EFS (SSM parameters)"
    csec2_wait_parameter db-endpoint DB_ENDPOINT
    csec2_wait_parameter efs-dns EFS_DNS
    [[ $DB_ENDPOINT =~ ^([A-Za-z0-9.-]+):([0-9]{1,5})$ ]] ||
        csec2_die "SSM parameter $(csec2_name db-endpoint) is '$DB_ENDPOINT'; expected host:port"
    DB_HOST=${BASH_REMATCH[1]}
    DB_PORT=${BASH_REMATCH[2]}
    # The server certificate names the endpoint, not an address (ssl-mode VERIFY_IDENTITY).
    [[ ! $DB_HOST =~ ^[0-9.]+$ ]] ||
        csec2_die "SSM parameter $(csec2_name db-endpoint) is '$DB_ENDPOINT'; expected the RDS endpoint's name, which its certificate names, not an address"
    [[ $EFS_DNS =~ ^[A-Za-z0-9.-]+$ ]] ||
        csec2_die "SSM parameter $(csec2_name efs-dns) is '$EFS_DNS'; expected a DNS name"
    csec2_log "database at $DB_HOST:$DB_PORT, EFS at $EFS_DNS"
    ((BOOTSTRAPPED)) || fetch_master_secret
}

# The RDS master user's credentials, from the secret RDS manages (RDS User Guide,
# "Password management with Amazon RDS and AWS Secrets Manager": JSON with
# username and password). Pulumi publishes its ARN once the database exists.
fetch_master_secret() {
    local arn json
    csec2_wait_parameter db-master-secret arn
    [[ $arn =~ ^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:[0-9]{12}:secret:[A-Za-z0-9/_+=.@!-]+$ ]] ||
        csec2_die "SSM parameter $(csec2_name db-master-secret) is '$arn'; expected the ARN of a Secrets Manager secret"
    csec2_wait_secret "$arn" json
    csec2_json_get username DB_MASTER_USER <<<"$json" || csec2_die "secret $arn: no 'username'"
    csec2_json_get password DB_MASTER_PASSWORD <<<"$json" || csec2_die "secret $arn: no 'password'"
    # RDS's passwords are printable ASCII without '/', '"' and '@' (RDS API
    # Reference, MasterUserPassword): quoted and escaped in the option file
    # (write_option_file); a control character could not be carried.
    [[ $DB_MASTER_PASSWORD != *[\"[:cntrl:]]* ]] ||
        csec2_die "secret $arn: the password must not contain '\"' or control characters"
    csec2_add_secret "$DB_MASTER_PASSWORD"
    csec2_log "read the master user's secret $arn (value not logged)"
}

# ------------------------------------------------------------- firewall ----

# Whether the router forwards the UI/API to this server: the SSM parameter
# ui-forward, which Pulumi writes (components/program/control_plane.py
# ui_forward) and the router polls, is "none" when the UI/API is behind the load
# balancer. Read at every run, before the firewall is loaded; a server running
# when the load balancer is turned on drops the router's forward from its next
# run on (the router itself stops forwarding within a minute).
UI_FORWARDED=1
OVERLAY_BRIDGE=cloudbr0  # overlay-network.sh BRIDGE
read_ui_forward() {
    local value
    csec2_step "whether the router forwards the UI/API (SSM parameter $(csec2_name ui-forward))"
    csec2_wait_parameter ui-forward value "Pulumi writes it with the router"
    UI_FORWARDED=1
    [[ $value == none ]] && UI_FORWARDED=0
    csec2_log "router's UI/API forward: $value"
}

# The first two bytes of every infrastructure node's cloudbr0 MAC (overlay-network.sh
# INFRA_MAC_PREFIX, which derives them; a test compares them).
INFRA_MAC_PREFIX=0a:00

# Tenant isolation on the management server (address classes from
# components/model/ipplan.py, in boot.env), loaded before CloudStack listens:
#   8096  never (the unauthenticated integration API; integration.api.port is 0)
#   9595  the loopback only (CloudStack's Prometheus exporter, scraped by the
#         CloudWatch agent on this server)
#   9090  cluster traffic: the other management servers only
#   8250  agents and system VMs: the KVM hosts and the pod's system range only
#   8080  UI/API: from the overlay only the router and the management servers;
#         from outside the overlay whatever the router forwards (its security
#         group admits the VPC and adminCidrs), unless the UI/API is behind the
#         load balancer (read_ui_forward): then nothing from outside the overlay
#         on the overlay device, and at this instance's VPC address what its
#         security groups admit (the load balancer's group; otherwise nothing
#         reaches that address but VXLAN and IGMP). "What the router forwards"
#         is known by the frame's source MAC, not only by its source address:
#         any NIC on cloudbr0 (a virtual router's public NIC, a system VM) can
#         forge an address outside the overlay and so pass the router's group.
#         Only an infrastructure node's cloudbr0 has a MAC with INFRA_MAC_PREFIX
#         (overlay-network.sh), the KVM hosts drop VM frames claiming one
#         (kvm-host.sh, vm_port_rules), neither they nor the management servers
#         route, and keepalived announces the gateway with the active router's
#         own MAC (router.sh: no use_vmac): such a frame from outside the overlay
#         is the router's.
#   system VMs and tenants: nothing else
# setup_firewall closed: 8080 from loopback only, until the admin password is
# the secret's (set_admin_password): a fresh installation's admin logs in with
# CloudStack's documented default password, and whoever reached the UI/API
# first could take the cloud over and keep API keys of his own. The table
# written last is the one loaded at every later boot (csec2_load_firewall).
# setup_firewall open: 8080 as above.
setup_firewall() {
    local api_gate=""
    # What reaches the overlay device from outside the overlay came through the router,
    # when the router forwards the UI/API at all. `ether` in the inet family's input
    # hook: the link-layer header of a frame received on an Ethernet device (nft(8),
    # "ETHERNET HEADER EXPRESSION"; nft adds the `meta iiftype ether` dependency).
    local router_gate="meta nfproto ipv4 iifname \"$OVERLAY_BRIDGE\" ip saddr != $CSEC2_OVERLAY_CIDR tcp dport 8080"
    ((UI_FORWARDED)) && router_gate+=" ether saddr & ff:ff:00:00:00:00 != $INFRA_MAC_PREFIX:00:00:00:00"
    router_gate+=" counter drop"
    case $1 in
    closed) api_gate='iifname != "lo" tcp dport 8080 counter drop' ;;
    open) ;;
    *) csec2_die "setup_firewall: '$1' is not closed or open" ;;
    esac
    csec2_load_firewall cloudstack_ec2_management <<NFT
table inet cloudstack_ec2_management {
    chain input {
        type filter hook input priority filter - 10; policy accept;
        tcp dport 8096 counter drop
        iifname != "lo" tcp dport 9595 counter drop
        $api_gate
        $router_gate
        iifname "lo" accept
        ct state established,related accept
        meta nfproto ipv4 tcp dport 9090 ip saddr != { $CSEC2_MANAGEMENT_RANGE } counter drop
        meta nfproto ipv4 tcp dport 8250 ip saddr { $CSEC2_HOST_RANGE, $CSEC2_SYSTEM_RANGE } accept
        tcp dport 8250 counter drop
        meta nfproto ipv4 tcp dport 8080 ip saddr $CSEC2_OVERLAY_CIDR ip saddr != { $CSEC2_OVERLAY_GATEWAY, $CSEC2_MANAGEMENT_RANGE } counter drop
        meta nfproto ipv4 ip saddr $CSEC2_OVERLAY_CIDR ip saddr != $CSEC2_INFRA_CIDR counter drop
        meta nfproto ipv6 tcp dport { 8080, 8250, 9090 } drop
    }
}
NFT
}

# -------------------------------------------------------- load balancer ----

# The UI/API load balancer (components/resources/loadbalancer.py) connects to
# this instance's VPC address from subnets of its own, outside the dedicated
# one. A member's default route leads into the overlay (overlay-network.sh),
# where the router drops the replies (their source is no overlay address). So
# a connection that arrives on the underlay device is answered through it, as
# the load balancer expects: nftables marks its conntrack entry when its first
# packet comes in, copies that mark onto every packet this host sends in it
# (a route chain: the kernel routes a packet again when its mark changes,
# nft(8) "CHAINS"), and `ip rule` looks marked packets up in a table whose
# default route is the VPC router on the underlay device, from the underlay
# address (the overlay network's route to the instance metadata service names
# both, as for EC2's link-local services). No list of the load balancer's
# subnets is needed: a load balancer added after this server booted reaches
# it. What the router forwards arrives on the overlay device, unmarked, and is
# answered through the overlay as before. Who may connect on the underlay is
# its security groups' business (8080 from the load balancer's group only).
# Rules and routes do not survive a reboot: set at every run, before
# CloudStack is installed or started by this run.
REPLY_MARK=0xec2
REPLY_TABLE=3778  # REPLY_MARK in decimal
REPLY_RULE_PRIORITY=3778
REPLY_NFT=$CSEC2_ROOT/etc/cloudstack-ec2/underlay-replies.nft
route_replies() {
    local service=169.254.169.254 via dev src
    csec2_step "answer connections that come in on the underlay through it (nftables mark $REPLY_MARK, routing table $REPLY_TABLE)"
    read -r via dev src < <(ip -4 -o route show "$service/32" | awk '{
        for (i = 1; i < NF; i++) { if ($i == "via") v = $(i + 1); if ($i == "dev") d = $(i + 1); if ($i == "src") s = $(i + 1) }
        print v, d, s; exit }') || true  # no such route: read meets the end of its input
    [[ -n $via && -n $dev && -n $src ]] ||
        csec2_die "no route to $service through the underlay (the overlay network sets it: journalctl -u cloudstack-ec2-overlay)"
    ip route replace default via "$via" dev "$dev" src "$src" table "$REPLY_TABLE" ||
        csec2_die "cannot route table $REPLY_TABLE via $via dev $dev"
    while ip rule del fwmark "$REPLY_MARK" table "$REPLY_TABLE" 2>/dev/null; do :; done
    ip rule add fwmark "$REPLY_MARK" table "$REPLY_TABLE" priority "$REPLY_RULE_PRIORITY" ||
        csec2_die "cannot add the rule of mark $REPLY_MARK to table $REPLY_TABLE"
    mkdir -p "$(dirname "$REPLY_NFT")"
    cat >"$REPLY_NFT" <<NFT
table ip cloudstack_ec2_replies
delete table ip cloudstack_ec2_replies
table ip cloudstack_ec2_replies {
    chain incoming {
        type filter hook prerouting priority mangle; policy accept;
        iifname "$dev" ip daddr $src meta l4proto tcp ct state new ct mark set $REPLY_MARK
    }
    chain outgoing {
        type route hook output priority mangle; policy accept;
        ct mark $REPLY_MARK meta mark set ct mark
    }
}
NFT
    nft -f "$REPLY_NFT" || csec2_die "nftables refused $REPLY_NFT"
}

# ------------------------------------------------------------- packages ----

# A server new to a bootstrapped cloud (an additional one, or a replaced first one)
# installs exactly the version the first server published (publish_version): with
# cloudstackVersion "X.Y" the newest X.Y.z of the day may be newer than the running
# servers' and, started beside them, would upgrade the live database (check_running_versions
# refuses it). Read as the hosts read it: only as the first server wrote it
# (csec2_wait_anchor). A server with cloudstack-management installed keeps it: the
# upgrade (components/model/upgrades.py, its "first" and "server" steps) installs the
# new version itself before it re-runs this script with the new version in boot.env.
install_packages() {
    local management common version remedy=""
    management=$(csec2_cloudstack_package cloudstack-management)
    common=$(csec2_cloudstack_package cloudstack-common)
    csec2_setup_cloudstack_repo
    csec2_step "packages: cloudstack-management, MySQL client, NFS client"
    if ((BOOTSTRAPPED)) && ! dpkg-query -W -f='${Status}' cloudstack-management 2>/dev/null | grep -q "install ok installed"; then
        csec2_wait_anchor cloudstack-version version \
            "the first management server writes it once cloudstack-management is installed"
        [[ $version =~ ^[0-9][A-Za-z0-9.+:~-]*$ ]] ||
            csec2_die "SSM parameter $(csec2_name cloudstack-version) is '$version'; expected a package version"
        csec2_of_configured_version "$version" ||
            csec2_die "the running management servers run cloudstack-management $version, but this server is configured for CloudStack $CSEC2_CLOUDSTACK_VERSION: only the upgrade moves a running cloud to another release (README, \"Upgrading CloudStack\")"
        csec2_log "installing cloudstack-management $version, the running management servers' version"
        management=cloudstack-management=$version common=cloudstack-common=$version
        remedy="every management server must run cloudstack-management $version, which $CSEC2_CLOUDSTACK_REPO_URL no longer has, and the deployment keeps no copy of it: install cloudstack-common and cloudstack-management $version on this server from their .deb files (/var/cache/apt/archives on the first management server keeps those it installed) and run the boot script again (systemctl start cloudstack-ec2-boot.service), or upgrade the cloud to a version upstream has (README, \"Upgrading CloudStack\")"
    fi
    # cloudstack-common follows the same pin: management depends on exactly its version.
    CSEC2_RETRY_REMEDY=$remedy csec2_apt_install "$management" "$common" mysql-client nfs-common
}

# KVM hosts install exactly this version of cloudstack-agent: with a version
# "X.Y", a host added months later would otherwise get a newer X.Y.z agent than
# this server runs. Written at every run (only when it differs), so an upgraded
# server republishes. A trust anchor (csec2_publish_anchor): the hosts install
# what it names as root, so only this server may write it. Not rendered into
# the hosts' boot.env by the deployer instead: with cloudstackVersion "X.Y" only
# this server knows which X.Y.z it installed.
publish_version() {
    local version
    first_server || return 0
    csec2_step "publish the cloudstack-management version to $(csec2_name cloudstack-version)"
    version=$(dpkg-query -W -f='${Version}' cloudstack-management) ||
        csec2_die "cannot read the installed version of cloudstack-management"
    [[ $version =~ ^[0-9][A-Za-z0-9.+:~-]*$ ]] || csec2_die "unexpected cloudstack-management version '$version'"
    csec2_publish_anchor cloudstack-version "$version"
    publish_packages "$version"
}

# The packages a KVM host installs, kept by the deployment at this exact version:
# an upstream repository index may list only the newest patch release of a
# series, and a host added after the next one could not install this version.
# s3://<boot-script bucket>/packages/<version>/<package>.deb, fixed names: the
# hosts may only s3:GetObject under packages/ (no s3:ListBucket), and check
# each file's Package and Version fields before installing it. Only this
# server may s3:PutObject there (components/resources/management.py). An
# upgrade re-runs this script on the first server: it keeps the new version.
# apt-get(8), download: "download the given binary package into the current
# directory"; NAME=VERSION selects the exact version.
PACKAGES_PUBLISHED=$CSEC2_STATE_DIR/packages-published

publish_packages() {
    local version=$1 dir pkg here=$PWD
    [[ $(cat "$PACKAGES_PUBLISHED" 2>/dev/null) == "$version" ]] && return 0
    csec2_step "keep cloudstack-agent and cloudstack-common $version in s3://$CSEC2_STAGE2_BUCKET/packages/$version/"
    csec2_apt_update
    dir=$(mktemp -d "$CSEC2_PRIVATE_DIR/packages.XXXXXX")
    for pkg in cloudstack-agent cloudstack-common; do
        cd "$dir" || csec2_die "cannot enter $dir"
        CSEC2_RETRY_REMEDY="$CSEC2_CLOUDSTACK_REPO_URL no longer has $version: the KVM hosts cannot get it either; upgrade (README, \"Upgrading CloudStack\")" \
            csec2_retry "apt-get download $pkg=$version" apt-get "${CSEC2_APT_OPTIONS[@]}" download "$pkg=$version"
        cd "$here" || csec2_die "cannot return to $here"
        csec2_aws s3 cp --only-show-errors "$dir/${pkg}_"*.deb "s3://$CSEC2_STAGE2_BUCKET/packages/$version/$pkg.deb" ||
            csec2_die "cannot upload $pkg $version to s3://$CSEC2_STAGE2_BUCKET/packages/$version/"
    done
    rm -rf "$dir"
    mkdir -p "$(dirname "$PACKAGES_PUBLISHED")"
    printf '%s\n' "$version" >"$PACKAGES_PUBLISHED"
}

# --------------------------------------------------------- database TLS ----

# Every connection to the database verifies the server: TLS, the server's
# certificate checked against AWS's RDS certificate bundle of this region and
# its name against the endpoint (MySQL's ssl-mode=VERIFY_IDENTITY, Connector/J's
# sslMode=VERIFY_IDENTITY). RDS refuses connections without TLS
# (require_secure_transport, components/resources/database.py), but only the
# client can tell the database from a man in the middle, who would otherwise
# read the passwords: an unverified TLS connection accepts any certificate.
# Paths on the instance (the files are public certificates: world-readable,
# written by root only).
DB_CA_BUNDLE=/etc/cloudstack-ec2/rds-ca-bundle.pem
DB_TRUSTSTORE=/etc/cloudstack-ec2/rds-truststore.p12
# Connector/J and keytool need a password for a PKCS12 truststore (keytool(1):
# at least 6 characters); it guards nothing secret.
DB_TRUSTSTORE_PASSWORD=cloudstack-ec2
# Read by every mysql client through /etc/mysql/my.cnf (!includedir
# /etc/mysql/conf.d/): also the mysql that cloudstack-setup-databases runs
# (runMysql: mysql --user --host --port --password, no TLS option of its own).
MYSQL_TLS_CNF=/etc/mysql/conf.d/cloudstack-ec2-tls.cnf
DB_CA_CHANGED=0

# The region's bundle from AWS, over HTTPS verified by the system's CAs. At a
# later boot a failed download keeps the bundle already there.
fetch_db_ca_bundle() {
    local file=$CSEC2_ROOT$DB_CA_BUNDLE tmp
    tmp=$(mktemp "$CSEC2_PRIVATE_DIR/rds-ca.XXXXXX")
    if ! curl -fsS --proto '=https' --tlsv1.2 --retry 5 --retry-delay 5 --max-time 60 -o "$tmp" \
        "$CSEC2_DB_CA_BUNDLE_URL"; then
        [[ -s $file ]] ||
            csec2_die "could not download the RDS certificate bundle $CSEC2_DB_CA_BUNDLE_URL (internet through the router?)"
        csec2_log "WARNING: could not download $CSEC2_DB_CA_BUNDLE_URL: keeping the bundle of an earlier boot"
        return 0
    fi
    grep -q -- '-----BEGIN CERTIFICATE-----' "$tmp" ||
        csec2_die "$CSEC2_DB_CA_BUNDLE_URL holds no PEM certificate"
    if cmp -s "$tmp" "$file"; then
        csec2_log "$DB_CA_BUNDLE is up to date"
        return 0
    fi
    mkdir -p "$(dirname "$file")"
    install -m 0644 "$tmp" "$file"
    DB_CA_CHANGED=1
    csec2_log "$DB_CA_BUNDLE: $(grep -c -- '-----BEGIN CERTIFICATE-----' "$file") certificates from $CSEC2_DB_CA_BUNDLE_URL"
}

# import_certificates BUNDLE STORE PASSWORD ALIAS MODE: STORE becomes a new
# PKCS12 truststore (file mode MODE) of every certificate of the PEM file
# BUNDLE, named ALIAS-1, ALIAS-2, ...; sets IMPORTED to their number.
# keytool -importcert takes one certificate a call (keytool(1)); the password
# reaches it through the environment (-storepass:env), never the process list.
import_certificates() {
    local bundle=$1 store=$2 alias=$4 mode=$5 dir cert out n=0
    dir=$(mktemp -d "$CSEC2_PRIVATE_DIR/truststore.XXXXXX")
    awk -v dir="$dir" '/-----BEGIN CERTIFICATE-----/ { n++; file = sprintf("%s/%03d.pem", dir, n) } n { print > file }' \
        "$bundle"
    for cert in "$dir"/*.pem; do
        [[ -e $cert ]] || csec2_die "$bundle holds no PEM certificate"
        n=$((n + 1))
        out=$(CSEC2_STOREPASS=$3 keytool -importcert -noprompt -alias "$alias-$n" -file "$cert" \
            -keystore "$dir/store.p12" -storetype PKCS12 -storepass:env CSEC2_STOREPASS 2>&1) ||
            csec2_die "keytool could not import certificate $n of $bundle: $(head -c 300 <<<"$out")"
    done
    mkdir -p "$(dirname "$store")"
    install -m "$mode" "$dir/store.p12" "$store"
    rm -rf "$dir"
    IMPORTED=$n
}

# Connector/J reads trusted certificates from a Java keystore only
# (trustCertificateKeyStoreType: JKS or PKCS12).
build_db_truststore() {
    local store=$CSEC2_ROOT$DB_TRUSTSTORE
    if [[ -s $store ]] && ((!DB_CA_CHANGED)); then
        csec2_log "$DB_TRUSTSTORE is up to date"
        return 0
    fi
    import_certificates "$CSEC2_ROOT$DB_CA_BUNDLE" "$store" "$DB_TRUSTSTORE_PASSWORD" rds-ca 0644
    csec2_log "$DB_TRUSTSTORE: the $IMPORTED certificates of $DB_CA_BUNDLE"
}

# The company directory over LDAPS (the stack's ldap.ldaps): CloudStack's LDAP
# client trusts only the truststore the setting ldap.truststore names, opened
# with ldap.truststore.password (LdapContextFactory.enableSSL sets them as
# javax.net.ssl.trustStore / trustStorePassword); the registration sets both,
# the password from the secret CSEC2_SECRET_LDAP_TRUSTSTORE, which the first
# management server generates here, so every server's store opens with it.
# Rebuilt at a boot that finds another CA in the secret (the CA it was built
# from is kept beside the boot's state); the running server then restarts
# (LDAP_TRUSTSTORE_CHANGED): the JVM reads javax.net.ssl.trustStore once, when
# it makes its default SSLContext, and keeps that. Readable by the management
# server's user, cloud, only.
LDAP_TRUSTSTORE_CHANGED=0
setup_ldap_truststore() {
    [[ -n ${CSEC2_SECRET_LDAP_CA-} ]] || return 0
    csec2_step "LDAPS: the directory's CA certificates in $CSEC2_LDAP_TRUSTSTORE"
    local ca password pem store=$CSEC2_ROOT$CSEC2_LDAP_TRUSTSTORE built=$CSEC2_STATE_DIR/ldap-truststore-ca.pem
    first_secret_value "$CSEC2_SECRET_LDAP_TRUSTSTORE" ldap-truststore
    csec2_wait_secret "$CSEC2_SECRET_LDAP_CA" ca
    csec2_wait_secret "$CSEC2_SECRET_LDAP_TRUSTSTORE" password
    csec2_add_secret "$password"
    pem=$(secret_file ldap-ca.pem "$ca")
    if [[ -s $store ]] && cmp -s "$pem" "$built"; then
        csec2_log "$CSEC2_LDAP_TRUSTSTORE is up to date"
        return 0
    fi
    import_certificates "$pem" "$store" "$password" ldap-ca 0640
    chown root:cloud "$store"
    mkdir -p "$CSEC2_STATE_DIR"
    install -m 0644 "$pem" "$built"
    LDAP_TRUSTSTORE_CHANGED=1
    csec2_log "$CSEC2_LDAP_TRUSTSTORE: $IMPORTED certificate(s) of secret $CSEC2_SECRET_LDAP_CA"
}

# The [client] lines that make a mysql client verify the server.
mysql_tls_options() {
    printf 'ssl-mode=VERIFY_IDENTITY\nssl-ca=%s\n' "$DB_CA_BUNDLE"
}

setup_database_tls() {
    csec2_step "database TLS: RDS certificate bundle, Java truststore, mysql client options"
    fetch_db_ca_bundle
    build_db_truststore
    local file=$CSEC2_ROOT$MYSQL_TLS_CNF
    mkdir -p "$(dirname "$file")"
    { printf '[client]\n' && mysql_tls_options; } >"$file"
    chmod 0644 "$file"
}

# ------------------------------------------------------------- database ----

# write_option_file FILE USER PASSWORD: a root-only option file of the mysql
# client for the database as USER, verifying the server. The password is quoted,
# each '\' written as '\\' (MySQL manual, "Using Option Files": escape sequences
# in option values).
write_option_file() {
    (
        umask 077
        printf '[client]\nhost=%s\nport=%s\nuser=%s\npassword="%s"\nconnect-timeout=5\n' \
            "$DB_HOST" "$DB_PORT" "$2" "${3//\\/\\\\}" >"$1"
        mysql_tls_options >>"$1"
    )
}

# The boot's SQL runs as the RDS master user while bootstrapping (it creates the
# `cloud` user and its grants) and as `cloud` in steady state: everything it does
# then is inside the `cloud` database, where that user has every right.
write_mysql_option_file() {
    if ((BOOTSTRAPPED)); then
        write_cloud_option_file
        MYSQL_CNF=$CLOUD_CNF DB_LOGIN_USER=$DB_CLOUD_USER
    else
        MYSQL_CNF=$CSEC2_PRIVATE_DIR/master.cnf DB_LOGIN_USER=$DB_MASTER_USER
        write_option_file "$MYSQL_CNF" "$DB_MASTER_USER" "$DB_MASTER_PASSWORD"
    fi
}

# mysql as DB_LOGIN_USER (write_mysql_option_file); the SQL comes on stdin.
db_sql() {
    mysql --defaults-extra-file="$MYSQL_CNF" --batch --skip-column-names
}

# shellcheck disable=SC2317  # called through csec2_wait_until
database_answers() {
    local err=$CSEC2_PRIVATE_DIR/mysql-error
    db_sql <<<"SELECT 1;" >/dev/null 2>"$err" && return 0
    cat "$err" >&2
    # ERROR 1045: the server answered and refused the password.
    ((BOOTSTRAPPED)) && grep -q "ERROR 1045" "$err" && cloud_password_from_previous
}

# In steady state the master user is out of reach: a new password put into the
# db-cloud secret is set by the cloud user itself, logged in with the one it
# replaced (PutSecretValue moves AWSPREVIOUS to the version that was AWSCURRENT:
# Secrets Manager API Reference, PutSecretValue). An account may change its own
# password with CURRENT_USER(), REPLACE naming the current one (MySQL manual,
# "ALTER USER Statement").
cloud_password_from_previous() {
    local json previous cnf=$CSEC2_PRIVATE_DIR/cloud-previous.cnf
    json=$(csec2_aws secretsmanager get-secret-value --secret-id "$CSEC2_SECRET_DB_CLOUD" \
        --version-stage AWSPREVIOUS --query SecretString --output text 2>/dev/null) || return 1
    csec2_json_get password previous <<<"$json" 2>/dev/null || return 1
    [[ -n $previous && $previous != "$DB_CLOUD_PASSWORD" && $previous != *[\'\"\\:@/[:space:]]* ]] || return 1
    csec2_add_secret "$previous"
    write_option_file "$cnf" "$DB_CLOUD_USER" "$previous"
    mysql --defaults-extra-file="$cnf" --batch --skip-column-names >/dev/null <<<"ALTER USER CURRENT_USER() IDENTIFIED WITH caching_sha2_password BY '$DB_CLOUD_PASSWORD' REPLACE '$previous';" ||
        return 1
    csec2_log "user '$DB_CLOUD_USER': set the password of $CSEC2_SECRET_DB_CLOUD, logged in with its previous one (AWSPREVIOUS)"
    DB_PASSWORD_SET=1
}

wait_for_database() {
    csec2_step "wait for the database $DB_HOST:$DB_PORT"
    write_mysql_option_file
    local password="master secret right?"
    ((!BOOTSTRAPPED)) ||
        password="the password in $CSEC2_SECRET_DB_CLOUD the one MySQL has for it (README, Secrets: rotating it)?"
    csec2_wait_until "database $DB_HOST:$DB_PORT to accept connections as $DB_LOGIN_USER" \
        "$CSEC2_WAIT_DATABASE_SECONDS" database_answers ||
        csec2_die "database $DB_HOST:$DB_PORT did not accept connections within $CSEC2_WAIT_DATABASE_SECONDS s as $DB_LOGIN_USER (security group admits 3306 from $CSEC2_OVERLAY_IP/32? RDS available? $password its certificate verified by $DB_CA_BUNDLE and naming $DB_HOST? see the mysql errors above)"
}

# Succeeds when table $1.$2 exists.
table_exists() {
    local count
    count=$(db_sql <<<"SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = '$1' AND table_name = '$2';") ||
        csec2_die "could not query information_schema on $DB_HOST:$DB_PORT"
    [[ $count =~ ^[0-9]+$ ]] || csec2_die "unexpected answer '$count' to the query for table $1.$2"
    ((count > 0))
}

schema_exists() {
    table_exists cloud version
}

# The schema is deployed only when this marker exists: create-schema.sql
# creates cloud.version among its first tables, so a setup that failed halfway
# leaves a `cloud.version` behind. The marker is a table of our own database,
# created in one statement once cloudstack-setup-databases succeeded, the schema
# is there and db.properties points at it.
MARKER_DB=cloudstack_ec2
MARKER_TABLE=schema_deployed

marker_exists() {
    table_exists "$MARKER_DB" "$MARKER_TABLE"
}

write_marker() {
    db_sql <<SQL
CREATE DATABASE IF NOT EXISTS \`$MARKER_DB\`;
CREATE TABLE \`$MARKER_DB\`.\`$MARKER_TABLE\` AS SELECT '$1' AS how, NOW() AS deployed_at;
SQL
}

# A schema without the marker that a management server has run on (cloud.mshost
# has rows): deployed by a boot script older than the marker, or by hand.
schema_in_use() {
    local rows
    table_exists cloud mshost || return 1
    rows=$(db_sql <<<"SELECT COUNT(*) FROM \`cloud\`.\`mshost\`;") ||
        csec2_die "could not count the rows of cloud.mshost on $DB_HOST:$DB_PORT"
    [[ $rows =~ ^[0-9]+$ ]] || csec2_die "unexpected answer '$rows' to the query of cloud.mshost"
    ((rows > 0))
}

write_cloud_option_file() {
    CLOUD_CNF=$CSEC2_PRIVATE_DIR/cloud.cnf
    write_option_file "$CLOUD_CNF" "$DB_CLOUD_USER" "$DB_CLOUD_PASSWORD"
}

cloud_user_can_log_in() {
    mysql --defaults-extra-file="$CLOUD_CNF" --batch --skip-column-names <<<"SELECT 1;" >/dev/null 2>&1
}

# On RDS `--deploy-as` is not used: its create-database.sql drops and recreates
# `cloud`, creates a procedure in the `mysql` schema and grants global rights an
# RDS master user may be refused. Instead the databases, the user and its
# grants are ensured here (idempotent, no data touched) and the schema is
# created with `--schema-only`, only when it is not there yet.
DB_PASSWORD_SET=0
# deployed: this run deployed the schema (the first server's first boot); joined: the
# schema was there (an additional server, a replaced or rebooted one).
SCHEMA_HOW=joined
# Set when db.properties was rewritten: a running management server restarts.
DB_PROPERTIES_CHANGED=0

ensure_database_user() {
    csec2_step "database: cloud/cloud_usage databases, user '$DB_CLOUD_USER' and grants"
    db_sql <<SQL
CREATE DATABASE IF NOT EXISTS \`cloud\`;
CREATE DATABASE IF NOT EXISTS \`cloud_usage\`;
CREATE USER IF NOT EXISTS '$DB_CLOUD_USER'@'%' IDENTIFIED WITH caching_sha2_password BY '$DB_CLOUD_PASSWORD';
GRANT ALL ON \`cloud\`.* TO '$DB_CLOUD_USER'@'%';
GRANT ALL ON \`cloud_usage\`.* TO '$DB_CLOUD_USER'@'%';
GRANT PROCESS ON *.* TO '$DB_CLOUD_USER'@'%';
SQL
    # ALTER USER empties MySQL 8.4's caching_sha2_password cache for the user:
    # only when the secret's password does not work (the secret was changed).
    write_cloud_option_file
    if cloud_user_can_log_in; then
        csec2_log "user '$DB_CLOUD_USER' logs in with the secret's password"
    else
        csec2_log "user '$DB_CLOUD_USER' cannot log in with the secret's password: setting it"
        db_sql <<<"ALTER USER '$DB_CLOUD_USER'@'%' IDENTIFIED WITH caching_sha2_password BY '$DB_CLOUD_PASSWORD';"
        cloud_user_can_log_in || csec2_die "user '$DB_CLOUD_USER' still cannot log in to $DB_HOST:$DB_PORT after ALTER USER"
        DB_PASSWORD_SET=1
    fi
}

db_properties_point_at_database() {
    [[ -r $CS_ETC/db.properties ]] && grep -qx "db.cloud.host=$DB_HOST" "$CS_ETC/db.properties" &&
        grep -qx "db.cloud.port=$DB_PORT" "$CS_ETC/db.properties"
}

# cloudstack-setup-databases since 4.21 (apache/cloudstack PR #11239) aborts
# when the cloud/cloud_usage databases exist unless --force-recreate is given,
# also with --schema-only (#11912; PR #12004 later accepted --schema-only without
# it again); 4.19 and 4.20 refuse the unknown option. ensure_database_user
# creates both databases, empty, before the schema step: on the schema-absent
# path the option is passed whenever the installed tool lists it in --help.
schema_options() {
    local help
    SCHEMA_OPTIONS=(--schema-only)
    help=$(cloudstack-setup-databases --help 2>&1) || true
    if [[ $help == *--force-recreate* ]]; then
        SCHEMA_OPTIONS+=(--force-recreate)
        csec2_log "the tool knows --force-recreate: passing it (the databases are empty)"
    fi
}

# setup_databases CLOUD_URL [OPTION...]: the tool, its output kept out of the log.
setup_databases() {
    local url=$1
    shift
    csec2_run_quiet cloudstack-setup-databases cloudstack-setup-databases "$url" "$@" \
        -m "$MANAGEMENT_KEY" -k "$DATABASE_KEY" -i "$CSEC2_OVERLAY_IP"
}

deploy_schema() {
    local cloud_url=$1
    schema_options
    setup_databases "$cloud_url" "${SCHEMA_OPTIONS[@]}" || csec2_die "cloudstack-setup-databases could not create the schema"
    schema_exists || csec2_die "cloudstack-setup-databases finished but the schema 'cloud' is still missing"
    db_properties_point_at_database || csec2_die "$CS_ETC/db.properties does not point at $DB_HOST:$DB_PORT"
    write_marker "cloudstack-setup-databases ${SCHEMA_OPTIONS[*]}"
    SCHEMA_HOW=deployed
    record_db_password
    csec2_log "schema deployed, marker written"
}

database_step() {
    # The credentials must be on cloudstack-setup-databases' command line (it
    # has no other way to take them); they are never echoed to the log.
    local cloud_url="$DB_CLOUD_USER:$DB_CLOUD_PASSWORD@$DB_HOST:$DB_PORT"
    if ((BOOTSTRAPPED)); then
        csec2_step "database: CloudStack schema (bootstrapped)"
        # wait_for_database logged in as the cloud user with the secret's password.
        schema_exists ||
            csec2_die "the cloud is marked bootstrapped ($(csec2_name "$CSEC2_BOOTSTRAP_MARKER")) but user '$DB_CLOUD_USER' finds no schema 'cloud' on $DB_HOST:$DB_PORT"
        csec2_log "schema 'cloud' exists (bootstrapped): reusing it"
        configure_db_properties "$cloud_url"
        return 0
    fi
    # Not bootstrapped: the first server (any other waited for the marker in bootstrap_state).
    ensure_database_user
    csec2_step "database: CloudStack schema"
    if marker_exists; then
        csec2_log "schema 'cloud' already exists (marker $MARKER_DB.$MARKER_TABLE): reusing it"
    elif schema_in_use; then
        csec2_log "schema 'cloud' already exists and a management server has used it: reusing it, writing the marker"
        write_marker "adopted: in use"
    elif schema_exists; then
        # cloud.version but no marker and never used: an earlier schema step
        # failed halfway. Nothing in it was ever used: start it again, empty.
        csec2_log "schema 'cloud' is half deployed (no marker, never used): dropping cloud and cloud_usage, deploying again"
        db_sql <<<"DROP DATABASE IF EXISTS \`cloud\`; DROP DATABASE IF EXISTS \`cloud_usage\`;"
        ensure_database_user
        csec2_step "database: CloudStack schema"
        deploy_schema "$cloud_url"
        return 0
    else
        csec2_log "schema 'cloud' not found in $DB_HOST:$DB_PORT: creating it"
        deploy_schema "$cloud_url"
        return 0
    fi
    configure_db_properties "$cloud_url"
}

# configure_db_properties CLOUD_URL: db.properties for the existing schema.
configure_db_properties() {
    local cloud_url=$1
    if ! db_properties_point_at_database; then
        # A replaced instance: configure this machine for the existing database
        # (what the install guide does for an additional management server).
        csec2_log "configuring this server for the existing database (cloudstack-setup-databases without schema deploy)"
    elif ((DB_PASSWORD_SET)) || ! db_password_recorded; then
        # db.properties holds the password encrypted with the management key:
        # after a rotation (ALTER USER above, or the secret and the user changed
        # together) the server would log in with the old one.
        csec2_log "the database password changed: rewriting db.properties; the management server restarts"
    else
        csec2_log "db.properties is up to date"
        return 0
    fi
    setup_databases "$cloud_url" || csec2_die "cloudstack-setup-databases could not configure this server"
    db_properties_point_at_database || csec2_die "$CS_ETC/db.properties does not point at $DB_HOST:$DB_PORT"
    record_db_password
    DB_PROPERTIES_CHANGED=1
}

# ------------------------------------------------------ the schema lock ----

# No two management servers run the database step at once, also when one is replaced
# or boots again while another starts: the step runs under MySQL's named lock
# (GET_LOCK), taken in a session of its own that stays open for the whole step. MySQL
# releases the lock when that session ends: RELEASE_LOCK, the client exiting, or the
# connection dropping (MySQL manual, "Locking Functions"), so a server that dies
# holding it never blocks the others for good. The session's wait_timeout bounds how
# long a vanished holder (its instance terminated without closing the connection)
# keeps it; the holder keeps its own session busy with a statement every
# SCHEMA_LOCK_KEEPALIVE_SECONDS, and that loop ends when this script does.
SCHEMA_LOCK=cloudstack_ec2.schema
SCHEMA_LOCK_IDLE_SECONDS=120
SCHEMA_LOCK_KEEPALIVE_SECONDS=30

take_schema_lock() {
    local answer="" script_pid=$$
    csec2_step "database: lock $SCHEMA_LOCK (one database step at a time)"
    coproc SCHEMA_LOCK_SESSION { mysql --defaults-extra-file="$MYSQL_CNF" --batch --skip-column-names --unbuffered; }
    printf "SET SESSION wait_timeout = %d;\nSELECT GET_LOCK('%s', %d);\n" "$SCHEMA_LOCK_IDLE_SECONDS" \
        "$SCHEMA_LOCK" "$CSEC2_WAIT_DATABASE_SECONDS" >&"${SCHEMA_LOCK_SESSION[1]}"
    read -r -t $((CSEC2_WAIT_DATABASE_SECONDS + 60)) answer <&"${SCHEMA_LOCK_SESSION[0]}" || true
    [[ $answer == 1 ]] ||
        csec2_die "could not take the database lock $SCHEMA_LOCK within $CSEC2_WAIT_DATABASE_SECONDS s (another management server in its database step? answer: '$answer')"
    (
        while kill -0 "$script_pid" 2>/dev/null; do
            printf 'DO 0;\n' || exit 0
            sleep "$SCHEMA_LOCK_KEEPALIVE_SECONDS"
        done
    ) >&"${SCHEMA_LOCK_SESSION[1]}" &
    SCHEMA_LOCK_KEEPALIVE=$!
    csec2_log "holding the database lock $SCHEMA_LOCK"
}

release_schema_lock() {
    local fd=${SCHEMA_LOCK_SESSION[1]} pid=$SCHEMA_LOCK_SESSION_PID
    kill "$SCHEMA_LOCK_KEEPALIVE" 2>/dev/null || true
    wait "$SCHEMA_LOCK_KEEPALIVE" 2>/dev/null || true
    printf "DO RELEASE_LOCK('%s');\n" "$SCHEMA_LOCK" >&"$fd"
    exec {fd}>&-
    wait "$pid" || true
    csec2_log "released the database lock $SCHEMA_LOCK"
}

# The database step under the schema lock. Another server than the first has waited
# for the bootstrap marker (bootstrap_state): it joins the schema the first deployed.
setup_database() {
    take_schema_lock
    database_step
    release_schema_lock
}

# Which password db.properties was last written with: a SHA-256 of it, in a
# root-only file (never the password itself).
DB_PASSWORD_RECORD=$CSEC2_STATE_DIR/db-password.sha256

db_password_fingerprint() {
    printf '%s' "$DB_CLOUD_PASSWORD" | sha256sum | cut -d' ' -f1
}

db_password_recorded() {
    [[ -r $DB_PASSWORD_RECORD && $(<"$DB_PASSWORD_RECORD") == "$(db_password_fingerprint)" ]]
}

record_db_password() {
    (umask 077 && db_password_fingerprint >"$DB_PASSWORD_RECORD")
}

# Connector/J's parameters that verify the server, in db.cloud.url.params and
# db.usage.url.params (the packaged db.properties has both keys; the awk below replaces
# their values or adds a missing one).
# TransactionLegacy.buildConnectionUri appends url.params to the JDBC URL
# jdbc:mysql://<db.cloud.host>:<port>/<name>?autoReconnect=...&<url.params>: the
# host is the endpoint's name, which VERIFY_IDENTITY checks. db.cloud.useSSL
# stays false: true sets javax.net.ssl.trustStore for the whole JVM
# (TransactionLegacy.initDataSource), which every other TLS client of the
# server would then use. Earlier parameters of the same kind go, and with them
# allowPublicKeyRetrieval (over TLS caching_sha2_password sends the password
# inside the verified connection and needs no RSA key; retrieving the key
# unverified would let a man in the middle read the password).
DB_TLS_PARAMS="sslMode=VERIFY_IDENTITY&trustCertificateKeyStoreUrl=file:$DB_TRUSTSTORE&trustCertificateKeyStoreType=PKCS12&trustCertificateKeyStorePassword=$DB_TRUSTSTORE_PASSWORD"

db_properties_verify_server() {
    local file=$CS_ETC/db.properties tmp
    tmp=$(mktemp "$CSEC2_PRIVATE_DIR/db.properties.XXXXXX")
    awk -v tls="$DB_TLS_PARAMS" '
        function fix(value,   n, i, parts, kept) {
            n = split(value, parts, "&")
            kept = ""
            for (i = 1; i <= n; i++)
                if (parts[i] != "" && tolower(parts[i]) !~ /^(allowpublickeyretrieval|usessl|requiressl|verifyservercertificate|sslmode|trustcertificatekeystore(url|type|password))=/)
                    kept = kept parts[i] "&"
            return kept tls
        }
        /^db\.(cloud|usage)\.url\.params[ \t]*=/ {
            key = $0; sub(/[ \t]*=.*/, "", key)
            value = $0; sub(/^[^=]*=[ \t]*/, "", value)
            seen[key] = 1
            print key "=" fix(value)
            next
        }
        { print }
        END {
            if (!seen["db.cloud.url.params"]) print "db.cloud.url.params=" tls
            if (!seen["db.usage.url.params"]) print "db.usage.url.params=" tls
        }' "$file" >"$tmp"
    if cmp -s "$tmp" "$file"; then
        csec2_log "db.properties: the database connections verify the server"
    else
        # cat keeps the file's owner and mode (it is readable by the cloud group only).
        cat "$tmp" >"$file"
        DB_PROPERTIES_CHANGED=1
        csec2_log "db.properties: sslMode=VERIFY_IDENTITY with $DB_TRUSTSTORE in db.cloud.url.params and db.usage.url.params"
    fi
    rm -f "$tmp"
}

# ------------------------------------------------------------------ EFS ----

# AWS's recommended NFS options for EFS; _netdev waits for the network at boot.
EFS_OPTIONS="nfsvers=4.1,rsize=1048576,wsize=1048576,hard,timeo=600,retrans=2,noresvport,_netdev"

setup_efs() {
    csec2_step "EFS $EFS_DNS on $CSEC2_EFS_MOUNT_POINT"
    local mnt=$CSEC2_EFS_MOUNT_POINT line tmp
    line="$EFS_DNS:/ $mnt nfs4 $EFS_OPTIONS 0 0"
    touch "$CSEC2_FSTAB"
    if ! grep -qxF "$line" "$CSEC2_FSTAB"; then
        # Replace an older line for the same mount point (e.g. another EFS).
        tmp=$(mktemp "$CSEC2_FSTAB.XXXXXX")
        awk -v m="$mnt" '$2 != m' "$CSEC2_FSTAB" >"$tmp"
        printf '%s\n' "$line" >>"$tmp"
        chmod 0644 "$tmp"
        mv -f "$tmp" "$CSEC2_FSTAB"
    fi
    mkdir -p "$CSEC2_ROOT$mnt"
    if mountpoint -q "$CSEC2_ROOT$mnt"; then
        csec2_log "$mnt already mounted"
    else
        mount "$CSEC2_ROOT$mnt" || csec2_die "mounting $EFS_DNS:/ on $mnt failed (mount target in the CloudStack subnet? NFS admitted by its security group?)"
    fi
    mkdir -p "$CSEC2_ROOT$mnt/$CSEC2_ZONE_NAME/primary" "$CSEC2_ROOT$mnt/$CSEC2_ZONE_NAME/secondary"
}

# ------------------------------------------------------ system VM template ----

system_vm_template() {
    csec2_step "system VM template"
    local major=${CSEC2_CLOUDSTACK_VERSION%%.*} rest minor
    rest=${CSEC2_CLOUDSTACK_VERSION#*.}
    minor=${rest%%.*}
    # Since 4.16 the KVM system VM template ships in the cloudstack-management
    # package and the management server registers and copies it itself when the
    # first NFS image store of a zone is added (for the hypervisors of clusters
    # that exist then: the registration adds the KVM cluster first). So nothing
    # is seeded here: cloud-install-sys-tmplt would only copy it a second time.
    if ((major > 4 || (major == 4 && minor >= 16))); then
        csec2_log "CloudStack $CSEC2_CLOUDSTACK_VERSION registers the KVM system VM template itself when secondary storage is added: not seeding it"
    else
        csec2_die "CloudStack $CSEC2_CLOUDSTACK_VERSION is older than 4.16, which these scripts do not support"
    fi
}

# ------------------------------------------------- management server ----

# Every management server runs the exact same package version: a server of another
# version started beside running ones upgrades (or downgrades) the live database under
# them (apache/cloudstack #11973; refused by CloudStack itself only since 4.20.3 and
# 4.22.1). Checked before this server starts: the other servers whose cloud.mshost row is
# Up and heartbeating (ClusterManagerImpl updates last_update every 1.5 s; a row silent
# for 5 minutes is a server that died without marking itself Down).
# The upstream version of a Debian version: without epoch, Debian revision or suffix.
upstream_version() {
    local v=${1#*:}
    v=${v%%[~+-]*}
    printf '%s' "$v"
}

check_running_versions() {
    local own rows ip version refused=()
    own=$(upstream_version "$(dpkg-query -W -f='${Version}' cloudstack-management)") ||
        csec2_die "cannot read the installed version of cloudstack-management"
    rows=$(db_sql <<<"SELECT service_ip, version FROM \`cloud\`.\`mshost\` WHERE state = 'Up' AND removed IS NULL AND service_ip <> '$CSEC2_OVERLAY_IP' AND last_update > UTC_TIMESTAMP() - INTERVAL 300 SECOND;") ||
        csec2_die "could not read the running management servers from cloud.mshost"
    while IFS=$'\t' read -r ip version; do
        [[ -n $ip ]] || continue
        [[ $(upstream_version "$version") == "$own" ]] || refused+=("$ip runs $version")
    done <<<"$rows"
    ((${#refused[@]} == 0)) ||
        csec2_die "not starting CloudStack $own beside management servers of another version (${refused[*]}): every server must run the same version (upgrade them all together, see the upgrade notes)"
    csec2_log "the running management servers run $own too (or none runs)"
}

# An additional server (or a replaced one) takes CloudStack's SSH key pair from the
# database (ConfigurationServerImpl.updateKeyPairs: "Keypairs already in database,
# updating local copy"; apache/cloudstack #6570) and its injectkeys.sh copies the
# private key to cloudstack-common's id_rsa.cloud; a copy left there from another key
# makes it fail and the server never starts (apache/cloudstack #10943: "Files
# .../.ssh/id_rsa and .../systemvm/id_rsa.cloud differ"). Before such a server's first
# start the local copies go, so the database's pair is the one written.
SYSTEMVM_KEY=$CSEC2_ROOT/usr/share/cloudstack-common/scripts/vm/systemvm/id_rsa.cloud
CS_SSH_DIR=$CSEC2_ROOT/var/lib/cloudstack/management/.ssh

clear_local_key_copies() {
    local f removed=()
    for f in "$SYSTEMVM_KEY" "$CS_SSH_DIR/id_rsa" "$CS_SSH_DIR/id_rsa.pub"; do
        [[ -e $f ]] || continue
        rm -f "$f"
        removed+=("${f#"$CSEC2_ROOT"}")
    done
    ((${#removed[@]} == 0)) ||
        csec2_log "removed local key copies (the database's key pair replaces them): ${removed[*]}"
}

setup_management() {
    csec2_step "cloudstack-setup-management"
    if [[ -e $CSEC2_STATE_DIR/setup-management.done ]] && systemctl is-enabled --quiet cloudstack-management.service; then
        csec2_log "management server already set up and enabled"
        if ! systemctl is-active --quiet cloudstack-management.service; then
            check_running_versions
            systemctl start cloudstack-management.service
        elif ((DB_PROPERTIES_CHANGED || LDAP_TRUSTSTORE_CHANGED)); then
            csec2_log "restarting the management server: db.properties or the LDAPS truststore changed"
            check_running_versions
            systemctl restart cloudstack-management.service
        fi
    else
        check_running_versions
        [[ $SCHEMA_HOW == deployed ]] || clear_local_key_copies
        cloudstack-setup-management
        systemctl enable cloudstack-management.service
        touch "$CSEC2_STATE_DIR/setup-management.done"
    fi
}

# --------------------------------------------------------------- the API ----

# shellcheck disable=SC2317  # called through csec2_wait_until
api_answers() {
    local code
    code=$(curl -s -o /dev/null --max-time 10 -w '%{http_code}' "$API_URL?command=listCapabilities&response=json") || true
    # 401/432 and the like: the API is up, we are just not logged in. 000 (no
    # connection), 404 (webapp not deployed yet) and 5xx: not ready.
    [[ $code =~ ^[2-4][0-9][0-9]$ && $code != 404 ]]
}

wait_for_api() {
    csec2_step "wait for the API on $API_URL"
    csec2_wait_until "CloudStack API on $API_URL" "$CSEC2_WAIT_API_SECONDS" api_answers ||
        csec2_die "the API did not answer on $API_URL within $CSEC2_WAIT_API_SECONDS s (see /var/log/cloudstack/management/management-server.log)"
}

# api COMMAND [name=value | name@file]...: a call in the current login session
# (cookie + sessionkey); prints the JSON answer. name@file sends the content of
# file, so secret values never appear in a process list.
api() {
    local command=$1 arg args=()
    shift
    for arg in "$@"; do
        args+=(--data-urlencode "$arg")
    done
    curl -sS --max-time 60 -b "$CSEC2_PRIVATE_DIR/cookies" -c "$CSEC2_PRIVATE_DIR/cookies" \
        --data-urlencode "command=$command" --data-urlencode "response=json" \
        --data-urlencode "sessionkey@$CSEC2_PRIVATE_DIR/sessionkey" "${args[@]}" "$API_URL"
}

secret_file() {
    local name=$1 value=$2
    (umask 077 && printf '%s' "$value" >"$CSEC2_PRIVATE_DIR/$name")
    printf '%s' "$CSEC2_PRIVATE_DIR/$name"
}

# Logs in as the admin with the password in file $1; sets ADMIN_ID.
api_login() {
    local answer sessionkey
    : >"$CSEC2_PRIVATE_DIR/sessionkey"
    rm -f "$CSEC2_PRIVATE_DIR/cookies"
    answer=$(curl -sS --max-time 60 -c "$CSEC2_PRIVATE_DIR/cookies" \
        --data-urlencode "command=login" --data-urlencode "response=json" \
        --data-urlencode "username=$ADMIN_USER" --data-urlencode "password@$1" \
        --data-urlencode "domain=/" "$API_URL") || return 1
    csec2_json_get loginresponse.sessionkey sessionkey <<<"$answer" 2>/dev/null || return 1
    csec2_json_get loginresponse.userid ADMIN_ID <<<"$answer" || return 1
    (umask 077 && printf '%s' "$sessionkey" >"$CSEC2_PRIVATE_DIR/sessionkey")
}

# shellcheck disable=SC2317  # called through csec2_wait_until
admin_logs_in() {
    api_login "$CSEC2_PRIVATE_DIR/admin-password"
}

set_admin_password() {
    csec2_step "admin password from secret $CSEC2_SECRET_ADMIN"
    local wanted default answer
    wanted=$(secret_file admin-password "$ADMIN_PASSWORD")
    if api_login "$wanted"; then
        csec2_log "admin '$ADMIN_USER' already has the password of the secret"
        return 0
    fi
    # The admin lives in the shared database: only the first server changes the
    # installation's default password; another waits until the secret's works.
    if ! first_server; then
        csec2_wait_until "the first management server to set the admin password" "$CSEC2_WAIT_API_SECONDS" \
            admin_logs_in || csec2_die "cannot log in as '$ADMIN_USER' with the secret's password (the first management server sets it)"
        return 0
    fi
    # A fresh installation's admin password is CloudStack's documented default.
    default=$(secret_file default-password password)
    api_login "$default" ||
        csec2_die "cannot log in as '$ADMIN_USER' with the secret's password nor the installation default; set it by hand or update the secret"
    answer=$(api updateUser "id=$ADMIN_ID" "password@$wanted" "currentpassword@$default")
    csec2_json_has updateuserresponse.user.id <<<"$answer" ||
        csec2_die "updateUser did not change the admin password: $(head -c 300 <<<"$answer")"
    api_login "$wanted" || csec2_die "login with the new admin password failed"
    csec2_log "admin '$ADMIN_USER' password set from the secret"
}

# The UI/API opens to the router and the other management servers only once
# the admin password is the secret's; any failure before stops the boot with
# 8080 still closed (setup_firewall). Recorded: a later run (a reboot) keeps
# 8080 open from its start, so a step failing then does not close the UI/API
# of a running cloud.
ADMIN_PASSWORD_SET=$CSEC2_STATE_DIR/admin-password-set
set_admin_password_then_open_api() {
    if ((BOOTSTRAPPED)); then
        csec2_log "bootstrapped: the admin password was set by the first management server; 8080 open"
        return 0
    fi
    set_admin_password
    csec2_log "admin password set: opening 8080 beyond loopback"
    setup_firewall open
    touch "$ADMIN_PASSWORD_SET"
}

api_gate_at_start() {
    if [[ -e $ADMIN_PASSWORD_SET ]] || ((BOOTSTRAPPED)); then
        setup_firewall open
    else
        setup_firewall closed
    fi
}

# named_id NAME_FIELD NAME LIST_KEY [PATH] <<<ANSWER: prints the id (or the value at the
# dotted PATH, list indexes as numbers) of the item of a list answer whose NAME_FIELD is
# exactly NAME (older releases' listRoles matches names by substring: RoleDaoImpl.findAllByName);
# status 1 when there is none.
named_id() {
    python3 -c '
import json, sys
field, name, key = sys.argv[1:4]
path = sys.argv[4] if len(sys.argv) > 4 else "id"
doc = json.load(sys.stdin)
answer = next(iter(doc.values()), {}) if isinstance(doc, dict) else {}
if "errorcode" in answer:
    sys.exit("CloudStack answered %s: %s" % (answer["errorcode"], answer.get("errortext", "")))
for item in answer.get(key, []):
    if item.get(field) == name:
        for part in path.split("."):
            item = item[int(part)] if isinstance(item, list) else item[part]
        print(item)
        sys.exit(0)
sys.exit(1)
' "$@"
}

# The registration's own role (components/model/registration_account.py): of type
# Admin, allowed the commands in CSEC2_REGISTRATION_RULES, then CSEC2_REGISTRATION_DENY_RULE
# denied, last. A role other than the built-in Root Admin takes its rules in sort order, the
# first match deciding; a command no rule matches is still allowed when its @APICommand
# names the role's type, as nearly every admin command names Admin
# (DynamicRoleBasedAPIAccessChecker.checkApiPermissionByRole): the trailing deny closes that.
# importRole creates the role with its rules in one transaction and refuses a name in use
# (RoleManagerImpl.importRole), but its rules come from a map in no order the caller sets
# (ImportRoleCmd.getRules): it gets the allows only, and the deny is created after them
# (createRolePermission: RolePermissionsDaoImpl.persist puts a new rule last). A role found
# by name loses the rules CSEC2_REGISTRATION_RETIRED_RULES names, gains each it lacks, and
# is reordered (updateRolePermission ruleorder) when the deny is not last. Sets
# REGISTRATION_ROLE_ID.
REGISTRATION_ROLE_ID=""
ensure_registration_role() {
    local name=$CSEC2_REGISTRATION_ROLE answer rules rule id order i=0 args=() allowed=() retired=()
    # Read into arrays: a rule may hold a `*`, which an unquoted expansion would glob.
    read -ra allowed <<<"$CSEC2_REGISTRATION_RULES"
    read -ra retired <<<"$CSEC2_REGISTRATION_RETIRED_RULES"
    answer=$(api listRoles "name=$name")
    if ! REGISTRATION_ROLE_ID=$(named_id name "$name" role <<<"$answer"); then
        for rule in "${allowed[@]}"; do
            args+=("rules[$i].rule=$rule" "rules[$i].permission=allow")
            i=$((i + 1))
        done
        answer=$(api importRole "name=$name" type=Admin "description=$CSEC2_REGISTRATION_ROLE_DESCRIPTION" "${args[@]}")
        csec2_json_get importroleresponse.role.id REGISTRATION_ROLE_ID <<<"$answer" ||
            csec2_die "importRole $name failed: $(head -c 300 <<<"$answer")"
        add_registration_rule "$CSEC2_REGISTRATION_DENY_RULE" deny
        csec2_log "role '$name' created with $i allow rules, then a deny of every other command"
        return 0
    fi
    rules=$(api listRolePermissions "roleid=$REGISTRATION_ROLE_ID")
    for rule in "${retired[@]}"; do
        id=$(named_id rule "$rule" rolepermission <<<"$rules") || continue
        answer=$(api deleteRolePermission "id=$id")
        csec2_json_has deleterolepermissionresponse.success <<<"$answer" ||
            csec2_die "deleteRolePermission $rule for role $name failed: $(head -c 300 <<<"$answer")"
    done
    for rule in "${allowed[@]}"; do
        named_id rule "$rule" rolepermission <<<"$rules" >/dev/null || add_registration_rule "$rule" allow
    done
    named_id rule "$CSEC2_REGISTRATION_DENY_RULE" rolepermission <<<"$rules" >/dev/null ||
        add_registration_rule "$CSEC2_REGISTRATION_DENY_RULE" deny
    order=$(api listRolePermissions "roleid=$REGISTRATION_ROLE_ID" | python3 -c '
import json, sys
rules = json.load(sys.stdin).get("listrolepermissionsresponse", {}).get("rolepermission", [])
if rules and rules[-1]["rule"] != sys.argv[1]:
    print(",".join([r["id"] for r in rules if r["rule"] != sys.argv[1]] + [r["id"] for r in rules if r["rule"] == sys.argv[1]]))
' "$CSEC2_REGISTRATION_DENY_RULE") || csec2_die "cannot read the rules of role $name"
    [[ -z $order ]] && return 0
    answer=$(api updateRolePermission "roleid=$REGISTRATION_ROLE_ID" "ruleorder=$order")
    csec2_json_has updaterolepermissionresponse.success <<<"$answer" ||
        csec2_die "updateRolePermission (the deny last) for role $name failed: $(head -c 300 <<<"$answer")"
}

# add_registration_rule RULE PERMISSION: one more rule of role REGISTRATION_ROLE_ID, after its others.
add_registration_rule() {
    local answer
    answer=$(api createRolePermission "roleid=$REGISTRATION_ROLE_ID" "rule=$1" "permission=$2")
    csec2_json_has createrolepermissionresponse.rolepermission.id <<<"$answer" ||
        csec2_die "createRolePermission $1 ($2) for role $CSEC2_REGISTRATION_ROLE failed: $(head -c 300 <<<"$answer")"
}

# The registration's own account in the ROOT domain (the caller's: the admin's) with
# role REGISTRATION_ROLE_ID; sets REGISTRATION_USER_ID to its user's id. Its password is
# random, in a root-only file removed at once: the account signs in with its API keys
# only, and the admin's password stays the humans' login.
REGISTRATION_USER_ID=""
ensure_registration_account() {
    local name=$CSEC2_REGISTRATION_ACCOUNT answer password=$CSEC2_PRIVATE_DIR/registration-password
    answer=$(api listAccounts "name=$name")
    if REGISTRATION_USER_ID=$(named_id name "$name" account user.0.id <<<"$answer"); then
        return 0
    fi
    (umask 077 && python3 -c 'import secrets; print(secrets.token_urlsafe(32), end="")' >"$password")
    answer=$(api createAccount "username=$name" "password@$password" "roleid=$REGISTRATION_ROLE_ID" \
        "email=$CSEC2_REGISTRATION_EMAIL" "firstname=$CSEC2_REGISTRATION_FIRSTNAME" \
        "lastname=$CSEC2_REGISTRATION_LASTNAME")
    rm -f "$password"
    csec2_json_get createaccountresponse.account.user.0.id REGISTRATION_USER_ID <<<"$answer" ||
        csec2_die "createAccount $name failed: $(head -c 300 <<<"$answer")"
    csec2_log "account '$name' created"
}

# Keys are created only while the secret has no value: existing keys (and the
# registration that uses them) stay valid across re-runs and replacements. They are
# the registration account's, not the admin's (cloudstack-ec2 rotate-keys moves an
# older cloud's secret over to that account).
store_api_keys() {
    local name=$CSEC2_SECRET_API_KEYS answer apikey secretkey err=$CSEC2_PRIVATE_DIR/aws-error
    ((BOOTSTRAPPED)) && return 0
    csec2_step "API keys in $name"
    if csec2_get_secret "$name" >/dev/null 2>"$err"; then
        csec2_log "secret $name already holds API keys: keeping them"
        return 0
    fi
    grep -q ResourceNotFoundException "$err" ||
        csec2_die "cannot read secret $name: $(tr -s '\n' ' ' <"$err" | cut -c1-200)"
    ensure_registration_role
    ensure_registration_account
    answer=$(api registerUserKeys "id=$REGISTRATION_USER_ID")
    csec2_json_get registeruserkeysresponse.userkeys.apikey apikey <<<"$answer" ||
        csec2_die "registerUserKeys returned no keys"
    csec2_json_get registeruserkeysresponse.userkeys.secretkey secretkey <<<"$answer" ||
        csec2_die "registerUserKeys returned no secret key"
    python3 -c 'import json, sys; print(json.dumps({"apikey": sys.stdin.readline().strip(), "secretkey": sys.stdin.readline().strip()}))' \
        <<<"$apikey"$'\n'"$secretkey" >"$(secret_file api-keys.json "")"
    csec2_aws secretsmanager put-secret-value --secret-id "$name" \
        --secret-string "file://$CSEC2_PRIVATE_DIR/api-keys.json" >/dev/null
    csec2_log "API keys of '$CSEC2_REGISTRATION_ACCOUNT' created and stored in $name"
}

# Prints the value of global setting $1.
get_setting() {
    local answer value
    answer=$(api listConfigurations "name=$1")
    # listConfigurations matches names by substring: pick the exact one.
    value=$(python3 -c '
import json, sys
doc = json.load(sys.stdin).get("listconfigurationsresponse", {})
for item in doc.get("configuration", []):
    if item.get("name") == sys.argv[1]:
        print(item.get("value") or "")
        sys.exit(0)
sys.exit("no setting %r" % sys.argv[1])
' "$1" <<<"$answer") || return 1
    printf '%s' "$value"
}

# Sets global setting $1 to $2 unless it is $2 (or $3, another way of saying
# the same); returns 0 when it changed.
ensure_setting() {
    local current answer
    current=$(get_setting "$1") || csec2_die "global setting $1 not found"
    if [[ $current == "$2" || ($# -ge 3 && $current == "$3") ]]; then
        csec2_log "global setting $1 = '$2'"
        return 1
    fi
    answer=$(api updateConfiguration "name=$1" "value=$2")
    csec2_json_has updateconfigurationresponse.configuration.name <<<"$answer" ||
        csec2_die "updateConfiguration $1 failed: $(head -c 300 <<<"$answer")"
    csec2_log "global setting $1: '$current' -> '$2'"
}

# EC2's link-local services, which the overlay script routes to the underlay on
# every member (KVM hosts included): a system VM must never hold one of them as
# its control (link-local) address, or its host cannot reach it. CloudStack
# takes a pod's control addresses from control.cidr when the pod is created
# (ConfigurationManagerImpl.createPod, NetUtils.getLinkLocalIPRange: rows of
# cloud.op_dc_link_local_ip_address_alloc); 169.254.0.0/17 holds none of them.
CONTROL_CIDR=169.254.0.0/17
LL_TABLE="\`cloud\`.\`op_dc_link_local_ip_address_alloc\`"
LL_SERVICES="ip_address IN ('169.254.169.254', '169.254.169.123', '169.254.169.253')"

# Pods created before (an older deployment): their free rows of the services
# are marked taken under our reservation id, which CloudStack never releases
# (it releases by NIC); a service address a system VM already holds is reported.
protect_link_local_services() {
    csec2_step "EC2 link-local services out of CloudStack's control addresses"
    local held
    held=$(db_sql <<<"UPDATE $LL_TABLE SET taken = NOW(), reservation_id = 'cloudstack-ec2' WHERE $LL_SERVICES AND taken IS NULL; SELECT CONCAT('pod ', pod_id, ' NIC ', nic_id, ' ', ip_address) FROM $LL_TABLE WHERE $LL_SERVICES AND nic_id IS NOT NULL;")
    [[ -z $held ]] || csec2_log "WARNING: system VMs hold EC2 link-local addresses (destroy them): ${held//$'\n'/; }"
}

# Console URLs name the router's console Elastic IP (components/model/consoles.py):
# ConsoleProxyManagerImpl.configure reads consoleproxy.static.publicIp (and, when
# it is set, consoleproxy.static.port, default 8443) with configDao.getValue when
# the server starts; assignProxy then puts them into every console URL (port 80
# is left out of it; noVNC's websocket stays on 8080). Neither has a Config or
# ConfigKey entry: no row exists and updateConfiguration refuses the names, so
# the rows are written here, bypassing the API's validation (both values are
# ours: an IPv4 address and 80). Columns: setup/db/create-schema.sql `cloud`.
# `configuration` (`instance` and `name` NOT NULL without default; the columns
# later releases added all have defaults). Category Advanced, not Hidden:
# listConfigurations shows them (ManagementServerImpl.searchForConfigurations).
# consoleproxy.url.domain stays as it is: non-empty, it needs an uploaded
# certificate or the proxy never serves (AgentHookBase.startAgentHttpHandlerInVM).
CONFIG_TABLE="\`cloud\`.\`configuration\`"

# Returns 0 when it wrote the rows (they differed).
ensure_console_rows() {
    local current wanted=$CSEC2_CONSOLE_ADDRESS$'\t80'
    [[ $CSEC2_CONSOLE_ADDRESS =~ ^[0-9]{1,3}(\.[0-9]{1,3}){3}$ ]] ||
        csec2_die "CSEC2_CONSOLE_ADDRESS '$CSEC2_CONSOLE_ADDRESS' is not an IPv4 address (the console Elastic IP)"
    # NULL where there is no row.
    current=$(db_sql <<<"SELECT (SELECT value FROM $CONFIG_TABLE WHERE name = 'consoleproxy.static.publicIp'), (SELECT value FROM $CONFIG_TABLE WHERE name = 'consoleproxy.static.port');") ||
        csec2_die "could not read consoleproxy.static.publicIp/.port from cloud.configuration"
    if [[ $current == "$wanted" ]]; then
        csec2_log "consoleproxy.static.publicIp = '$CSEC2_CONSOLE_ADDRESS', consoleproxy.static.port = '80'"
        return 1
    fi
    db_sql <<SQL || csec2_die "could not write consoleproxy.static.publicIp/.port into cloud.configuration"
INSERT INTO $CONFIG_TABLE (category, instance, component, name, value, description) VALUES
 ('Advanced', 'DEFAULT', 'management-server', 'consoleproxy.static.publicIp', '$CSEC2_CONSOLE_ADDRESS', 'Address in console URLs (cloudstack-ec2: the router console Elastic IP)'),
 ('Advanced', 'DEFAULT', 'management-server', 'consoleproxy.static.port', '80', 'Port in console URLs (cloudstack-ec2: the console page)')
 ON DUPLICATE KEY UPDATE value = VALUES(value);
SQL
    csec2_log "cloud.configuration: consoleproxy.static.publicIp and .port set to $CSEC2_CONSOLE_ADDRESS 80 (were: ${current//$'\t'/ })"
}

configure_settings() {
    csec2_step "global settings: host, management.network.cidr, integration.api.port, control.cidr, console address"
    local changed=0
    if ((BOOTSTRAPPED)); then
        # They live in the shared database, where the first server set them while
        # bootstrapping (the registration keeps `host` naming every server); a
        # replaced server has the same overlay address (its slot of the IP plan).
        csec2_log "bootstrapped: the global settings were set by the first management server"
    else
        configure_api_settings && changed=1
    fi
    # Before the restart: read at start (see ensure_console_rows).
    if [[ -n ${CSEC2_CONSOLE_ADDRESS-} ]] && ensure_console_rows; then
        changed=1
    fi
    if ((changed)); then
        csec2_log "restarting the management server so the settings take effect"
        systemctl restart cloudstack-management.service
        wait_for_api
        ((BOOTSTRAPPED)) || api_login "$CSEC2_PRIVATE_DIR/admin-password" || csec2_die "login after the restart failed"
    fi
}

# The settings only the API sets (as the admin, while bootstrapping); returns 0
# when one changed.
configure_api_settings() {
    local changed=0
    # Agents connect to `host`: every management server's overlay address (the
    # registration keeps the list when the count changes), not whatever address the
    # server guessed. The unauthenticated integration port stays off (0).
    ensure_setting host "$CSEC2_MANAGEMENT_SERVERS" && changed=1
    ensure_setting management.network.cidr "$CSEC2_OVERLAY_CIDR" && changed=1
    ensure_setting integration.api.port 0 "" && changed=1
    # The system VMs' public range (forsystemvms) holds the console proxy's address:
    # strict, no tenant ever gets one of its addresses (older releases read it at start).
    ensure_setting system.vm.public.ip.reservation.mode.strictness true && changed=1
    # CloudStack's Prometheus exporter, which the CloudWatch agent scrapes on the
    # loopback (cloudwatch-agent.sh): read when the server starts
    # (PrometheusExporterServerImpl.start, "management server restart needed"), it
    # answers only the addresses of prometheus.exporter.allowed.ips, compared with
    # the request's source address; this server itself, and the firewall drops 9595
    # from anywhere but the loopback.
    ensure_setting prometheus.exporter.enable true && changed=1
    ensure_setting prometheus.exporter.allowed.ips 127.0.0.1 && changed=1
    # Before the registration creates the pod (it waits for the API keys, stored
    # after this). Only CloudStack's default is changed: another value was chosen.
    if [[ $(get_setting control.cidr) == 169.254.0.0/16 ]] && ensure_setting control.cidr "$CONTROL_CIDR"; then
        changed=1
    fi
    ((changed))
}

# shellcheck disable=SC2317  # called through csec2_wait_until
ssh_key_present() {
    [[ -s $CS_SSH_PUBLIC_KEY ]]
}

# The management server adds KVM hosts with its own SSH key; hosts put the
# public key in their user's authorized_keys (they poll this parameter). A
# trust anchor (csec2_publish_anchor): only this server may write it.
publish_ssh_key() {
    local key
    first_server || return 0
    csec2_step "publish the management server's SSH public key to $(csec2_name management-ssh-public-key)"
    csec2_wait_until "$CS_SSH_PUBLIC_KEY" "$CSEC2_WAIT_API_SECONDS" ssh_key_present ||
        csec2_die "$CS_SSH_PUBLIC_KEY was not created by the management server"
    key=$(<"$CS_SSH_PUBLIC_KEY")
    csec2_publish_anchor management-ssh-public-key "$key"
}

# console-forwards.sh (its timer, every 30 s) keeps the router's console forwards
# on the console proxy CloudStack runs now: from here on, with the API keys stored.
start_console_forwards() {
    [[ -n ${CSEC2_SYSTEM_PUBLIC_RANGE:-} ]] || return 0
    csec2_step "console forwards timer"
    systemctl daemon-reload
    systemctl enable --now cloudstack-ec2-console-forwards.timer
}

# -------------------------------------------------------------------- run ----

csec2_setup_hostname
csec2_setup_overlay
csec2_wait_network
csec2_install_aws_cli
bootstrap_state
fetch_secrets
csec2_setup_ssm_agent
csec2_setup_time_sync
read_ui_forward
api_gate_at_start
route_replies
install_packages
publish_version
fetch_parameters
setup_database_tls
wait_for_database
setup_database
db_properties_verify_server
setup_efs
system_vm_template
setup_ldap_truststore
setup_management
wait_for_api
set_admin_password_then_open_api
configure_settings
protect_link_local_services
store_api_keys
finish_bootstrap
publish_ssh_key
start_console_forwards
csec2_cloudwatch_agent
csec2_finish
