#!/usr/bin/env bash
# Zonemaster (zonemaster-cli, Debian package zonemaster-cli) in undelegated mode against a
# zone served by steerdns on loopback, offline. Exits 1 if Zonemaster reports any ERROR or
# CRITICAL outside the excluded tests (and the accepted zone-data findings listed below).
#
#   conformance/zonemaster.sh           # conformance/zones/large.test.zone
#   conformance/zonemaster.sh demo      # the demo zone, examples/zones/example.com.zone
#   ZM_LEVEL=INFO conformance/zonemaster.sh   # show every test case's findings, not only NOTICE and up
#
# zonemaster-cli has no port option: it asks port 53. So this script starts its own steerdns
# on 127.0.0.1:53 and 127.0.0.2:53 (the zones' ns1 and ns2), which needs root or
# CAP_NET_BIND_SERVICE, and stops it when done. The binary is $STEERDNS, default
# target/debug/steerdns (built with `cargo build` if missing).
#
# Offline: the root hints point at that same server, which refuses the root zone, so no query
# leaves the machine. Tests that need the internet or public addresses are excluded in
# conformance/zonemaster-profile.json (its test_cases are all of Zonemaster's but these):
#   address01       name server addresses in special-purpose ranges: offline they are loopback
#   address02/03    reverse DNS (PTR) of the name server addresses: the public in-addr.arpa tree
#   connectivity03  AS diversity of the name servers: ASN lookups in public DNS (Cymru, RIPE)
# See conformance/README.md.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
preset=${1:-large}
case $preset in
large)
    origin=large.test zonefile=$here/zones/large.test.zone policies=""
    accept=()
    ;;
demo)
    origin=example.com zonefile=$repo/examples/zones/example.com.zone policies=$repo/policies
    # Zone data, not protocol: the demo's ns1 has an AAAA (::1) and ns2 has none, and
    # Zonemaster wants two IPv6 name servers once there is one.
    accept=(NOT_ENOUGH_IPV6_NS_CHILD)
    ;;
*) echo "unknown preset $preset (large or demo)" >&2; exit 2 ;;
esac

command -v zonemaster-cli >/dev/null || { echo "zonemaster-cli not found: apt-get install zonemaster-cli" >&2; exit 2; }
command -v dig >/dev/null || { echo "dig not found: apt-get install bind9-dnsutils" >&2; exit 2; }
steerdns=${STEERDNS:-$repo/target/debug/steerdns}
if [[ ! -x $steerdns ]]; then (cd "$repo" && cargo build --locked); fi

work=$(mktemp -d)
pid=""
cleanup() {
    if [[ -n $pid ]]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

{
    printf '[dns]\nlisten = ["127.0.0.1:53", "127.0.0.2:53"]\n'
    printf '[http]\nlisten = "off"\n[admin]\nlisten = "off"\n'
    printf '[[zone]]\norigin = "%s"\nfile = "%s"\n' "$origin" "$zonefile"
    if [[ -n $policies ]]; then printf '[policies]\ndir = "%s"\n' "$policies"; fi
} >"$work/steerdns.toml"
printf '.  3600000 NS root.invalid.\nroot.invalid. 3600000 A 127.0.0.1\n' >"$work/hints.zone"

"$steerdns" serve --config "$work/steerdns.toml" >"$work/steerdns.log" 2>&1 &
pid=$!
for _ in $(seq 50); do
    if dig @127.0.0.2 -p 53 +tries=1 +time=1 +short "$origin" SOA 2>/dev/null | grep -q .; then break; fi
    if ! kill -0 "$pid" 2>/dev/null; then
        echo "steerdns did not start (port 53 needs root or CAP_NET_BIND_SERVICE):" >&2
        cat "$work/steerdns.log" >&2
        exit 2
    fi
    sleep 0.2
done

echo "zonemaster-cli $(zonemaster-cli --version 2>/dev/null | head -2 | awk '{print $NF}' | paste -sd' ') on $origin, served by steerdns on 127.0.0.1:53 and 127.0.0.2:53"
start=$(date +%s.%N)
out=$(zonemaster-cli --profile "$here/zonemaster-profile.json" --hints "$work/hints.zone" \
    --ns "ns1.$origin/127.0.0.1" --ns "ns2.$origin/127.0.0.2" --no-ipv6 \
    --level ${ZM_LEVEL:-NOTICE} --raw --show-testcase --count --no-progress "$origin" 2>&1 |
    grep -v '^Loading profile')
end=$(date +%s.%N)
echo "$out"
printf '\nZonemaster took %.1f s\n' "$(echo "$end - $start" | bc)"

errors=$(awk '$2 == "ERROR" || $2 == "CRITICAL"' <<<"$out")
for tag in "${accept[@]}"; do
    if grep -qw "$tag" <<<"$errors"; then
        echo "accepted (zone data, see the script): $tag"
        errors=$(grep -vw "$tag" <<<"$errors" || true)
    fi
done
if [[ -n $errors ]]; then
    echo "FAIL: ERROR or CRITICAL reported:"
    echo "$errors"
    exit 1
fi
echo "PASS: no ERROR or CRITICAL"
