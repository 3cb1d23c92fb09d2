#!/bin/sh
# Turns etcd authentication on, idempotently. Run by the chart's hook Job after every
# install and upgrade with etcd.auth.enabled (or by hand with the same variables):
#
#   ETCDCTL_ENDPOINTS       where etcd is (ETCDCTL_CACERT too with TLS)
#   SDP_ETCD_ROOT_PASSWORD  password of etcd's root user (created if missing)
#   SDP_ETCD_USERNAME       the user the SDP daemons and workflows log in as (not root)
#   SDP_ETCD_PASSWORD       its password (set again on every run, so a changed Secret applies)
#   SDP_ETCD_ROLE           its role, read-write on every key (default: sdp)
#
# Passwords reach etcdctl on standard input or in its environment, never on a command
# line. etcdctl reads a password from standard input as one word, so passwords containing
# white space are refused here rather than silently cut short.
set -eu

: "${ETCDCTL_ENDPOINTS:?where etcd is}"
: "${SDP_ETCD_ROOT_PASSWORD:?}" "${SDP_ETCD_USERNAME:?}" "${SDP_ETCD_PASSWORD:?}"
role="${SDP_ETCD_ROLE:-sdp}"
user="$SDP_ETCD_USERNAME"
export ETCDCTL_API=3

fail() {
    echo "etcd-auth: $*" >&2
    exit 1
}
for pw in "$SDP_ETCD_ROOT_PASSWORD" "$SDP_ETCD_PASSWORD"; do
    case "$pw" in *[[:space:]]*) fail "passwords must not contain white space" ;; esac
done
for name in "$user" "$role"; do
    case "$name" in "" | *[!A-Za-z0-9_.-]*) fail "invalid user or role name: $name" ;; esac
done
[ "$user" != root ] || fail "SDP_ETCD_USERNAME must not be root: clients get their own user"

as_root() { ETCDCTL_USER="root:$SDP_ETCD_ROOT_PASSWORD" etcdctl "$@"; }
anonymous() { etcdctl "$@"; }
# has <list> <word>: the word is one of the lines.
has() { printf '%s\n' "$1" | grep -qxF -- "$2"; }

# etcd may still be starting (volume being provisioned, members waiting for each other).
waited=0
until etcdctl endpoint health >/dev/null 2>&1 || as_root endpoint health >/dev/null 2>&1; do
    [ "$waited" -lt "${SDP_ETCD_WAIT:-300}" ] || fail "etcd at $ETCDCTL_ENDPOINTS not healthy after $waited s"
    sleep 2
    waited=$((waited + 2))
done

# Anonymous requests work exactly while authentication is off.
if anonymous user list >/dev/null 2>&1; then
    enabled=false
    ctl=anonymous
else
    enabled=true
    ctl=as_root
    $ctl user list >/dev/null || fail "authentication is on and etcd refuses the root password"
fi

users="$($ctl user list)"
roles="$($ctl role list)"
has "$roles" root || $ctl role add root >/dev/null
has "$users" root || printf '%s\n' "$SDP_ETCD_ROOT_PASSWORD" | $ctl user add root --interactive=false >/dev/null
$ctl user grant-role root root >/dev/null
has "$roles" "$role" || $ctl role add "$role" >/dev/null
# An empty key with --prefix is the whole key space: SDP keys are depth-tagged
# (2/pb/…, 3/tenant/pb/…), so no narrower prefix covers a global prefix's tree.
$ctl role grant-permission "$role" --prefix=true readwrite '' >/dev/null
if has "$users" "$user"; then
    printf '%s\n' "$SDP_ETCD_PASSWORD" | $ctl user passwd "$user" --interactive=false >/dev/null
else
    printf '%s\n' "$SDP_ETCD_PASSWORD" | $ctl user add "$user" --interactive=false >/dev/null
fi
$ctl user grant-role "$user" "$role" >/dev/null
if [ "$enabled" = false ]; then
    $ctl auth enable >/dev/null
    echo "etcd-auth: authentication enabled; clients log in as $user (role $role)"
else
    echo "etcd-auth: authentication already on; $user (role $role) is up to date"
fi
