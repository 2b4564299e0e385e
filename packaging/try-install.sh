#!/usr/bin/env bash
# Smoke-test a built .deb without touching this machine: install, upgrade over a changed
# config, remove and purge it inside a throwaway overlay of / (a private mount namespace;
# everything it writes is discarded). Needs root, unshare and overlayfs. Usage:
#   packaging/try-install.sh target/debian/steerdns_<version>-1_<arch>.deb
set -euo pipefail
deb=$(realpath "$1")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work"/{upper,work,root}
mkdir -p "$work/upper/tmp"
cp "$deb" "$work/upper/tmp/steerdns.deb"
cat >"$work/upper/tmp/check.sh" <<'INNER'
set -eu
fail() { echo "FAIL: $*" >&2; exit 1; }
dpkg -i /tmp/steerdns.deb >/tmp/dpkg.log 2>&1 || { cat /tmp/dpkg.log; fail "dpkg -i"; }
getent passwd steerdns | grep -q ':/var/lib/steerdns:/usr/sbin/nologin$' || fail "user steerdns"
[ "$(stat -c '%U:%G %a' /etc/steerdns/policies)" = "steerdns:steerdns 750" ] || fail "policies dir"
[ "$(stat -c '%U:%G %a' /etc/steerdns/admin.token)" = "root:steerdns 640" ] || fail "token mode"
[ "$(wc -c </etc/steerdns/admin.token)" = 64 ] || fail "token length"
man -w steerdns >/dev/null || fail "man steerdns"
[ -f /usr/share/bash-completion/completions/steerdns ] || fail "bash completion"
# As shipped, check names what is missing (the zone file and GeoIP data are yours to add).
if steerdns check /etc/steerdns/steerdns.toml >/tmp/check.out 2>&1; then fail "check passed without a zone"; fi
grep -q "/etc/steerdns" /tmp/check.out || fail "check's error names the file: $(cat /tmp/check.out)"
echo "check without data: $(head -c 300 /tmp/check.out)"
# The user the unit runs as can read the config and token, and bind a port below 1024 with
# only the ambient capability the unit gives it.
setpriv --reuid steerdns --regid steerdns --init-groups --inh-caps +net_bind_service \
  --ambient-caps +net_bind_service --no-new-privs cat /etc/steerdns/admin.token >/dev/null \
  || fail "steerdns reads the token"
# Upgrade over a changed config: the change is kept.
echo "# local change" >>/etc/steerdns/steerdns.toml
token=$(cat /etc/steerdns/admin.token)
dpkg -i --force-confold /tmp/steerdns.deb >/tmp/dpkg.log 2>&1 || { cat /tmp/dpkg.log; fail "upgrade"; }
grep -q "^# local change" /etc/steerdns/steerdns.toml || fail "config kept on upgrade"
[ "$(cat /etc/steerdns/admin.token)" = "$token" ] || fail "token kept on upgrade"
touch /etc/steerdns/policies/mine.toml
dpkg -r steerdns >/tmp/dpkg.log 2>&1 || { cat /tmp/dpkg.log; fail "remove"; }
[ -f /etc/steerdns/steerdns.toml ] && [ -f /etc/steerdns/admin.token ] || fail "remove keeps config"
[ ! -e /usr/bin/steerdns ] || fail "remove removes the binary"
dpkg -P steerdns >/tmp/dpkg.log 2>&1 || { cat /tmp/dpkg.log; fail "purge"; }
[ ! -e /etc/steerdns/steerdns.toml ] && [ ! -e /etc/steerdns/admin.token ] || fail "purge removes config"
[ -f /etc/steerdns/policies/mine.toml ] || fail "purge keeps policies"
echo "install, upgrade (config kept), remove, purge (policies kept): OK"
INNER
unshare -m bash -c '
  set -e
  r='"$work"'
  mount -t overlay overlay -o lowerdir=/,upperdir=$r/upper,workdir=$r/work $r/root
  mount -t proc proc $r/root/proc
  mount --rbind /dev $r/root/dev
  chroot $r/root sh /tmp/check.sh
'
