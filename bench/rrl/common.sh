# shellcheck shell=bash
# Shared by bench/rrl/flood.sh and bench/rrl/tcp-caps.sh. Source after lib.sh.

# write_demo_config DIR [DNS_TOML]: DIR/steerdns.toml serving the demo (zone, policies, test
# GeoIP data) with the admin API off; DNS_TOML goes right after [dns] (e.g. a
# [dns.rate_limit] table). Listen addresses come from the command line.
write_demo_config() {
  local dir=$1 dns_extra=${2:-}
  mkdir -p "$dir"
  cat >"$dir/steerdns.toml" <<TOML
[dns]
listen = ["127.0.0.1:5353"]
$dns_extra
[http]
listen = "127.0.0.1:8080"
[admin]
listen = "off"
[geoip]
city = "$REPO_ROOT/tests/fixtures/geoip/GeoIP2-City-Test.mmdb"
asn = "$REPO_ROOT/tests/fixtures/geoip/GeoLite2-ASN-Test.mmdb"
[[zone]]
origin = "example.com"
file = "$REPO_ROOT/examples/zones/example.com.zone"
[policies]
dir = "$REPO_ROOT/policies"
TOML
}
