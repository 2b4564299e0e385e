#!/usr/bin/env bash
# EDNS compliance battery, after ISC's EDNS compliance tests (genreport / ednscomp), run with
# `dig` against a running steerdns. For each test it prints the query, the behaviour RFC 6891
# (and ISC's report) expects, and PASS or FAIL with the reasons; it exits 1 if any test fails.
#
#   conformance/edns.sh                 # the demo (`steerdns serve`) on 127.0.0.1:5353
#   conformance/edns.sh large           # conformance/large.toml on 127.0.0.1:5354
#   conformance/edns.sh -s ::1 -p 5354 -z large.test -b a.large.test/A/120 ...
#
# Options (after the preset, if any):
#   -s ADDR        server address (default 127.0.0.1)
#   -p PORT        server port (demo 5353, large 5354)
#   -z ZONE        zone apex the ISC tests query (demo example.com, large large.test)
#   -b NAME/TYPE/N a large RRset of N records of TYPE at NAME, for the truncation tests
#                  (repeatable; replaces the preset's list). N counts records of TYPE in the
#                  answer and authority sections of the whole (TCP) reply.
#   -v             print dig's output for every test, not only for failures
#
# Needs dig (Debian package bind9-dnsutils). See conformance/README.md.
set -u

server=127.0.0.1 port="" zone="" verbose=0 preset=demo
declare -a big=()
if [[ $# -gt 0 && $1 != -* ]]; then preset=$1; shift; fi
case $preset in
demo)
    port=5353 zone=example.com
    big=(big.example.com/TXT/4)
    ;;
large)
    port=5354 zone=large.test
    big=(a.large.test/A/120 aaaa.large.test/AAAA/80 mx.large.test/MX/80
        txt.large.test/TXT/12 _sip._tcp.large.test/SRV/80 caa.large.test/CAA/60
        ptr.large.test/PTR/80 naptr.large.test/NAPTR/40 sshfp.large.test/SSHFP/40
        _443._tcp.www.large.test/TLSA/40 deleg.large.test/NS/40)
    ;;
*) echo "unknown preset $preset (demo or large)" >&2; exit 2 ;;
esac
custom_big=0
while getopts "s:p:z:b:v" opt; do
    case $opt in
    s) server=$OPTARG ;;
    p) port=$OPTARG ;;
    z) zone=$OPTARG ;;
    b) [[ $custom_big == 0 ]] && big=() && custom_big=1; big+=("$OPTARG") ;;
    v) verbose=1 ;;
    *) exit 2 ;;
    esac
done
shift $((OPTIND - 1))
[[ $# -eq 0 ]] || { echo "unexpected argument $1 (the preset comes first)" >&2; exit 2; }
command -v dig >/dev/null || { echo "dig not found: install bind9-dnsutils" >&2; exit 2; }

passed=0 failed=0
out="" reasons=()

# Run dig; its output is in $out. Every query is +norec +noad (an authoritative server is asked
# what it holds) with one try, so a lost reply is a failure rather than a retry.
q() { out=$(dig "@$server" -p "$port" +tries=1 +time=2 +norec +noad "$@" 2>&1); }

# --- checks on $out; each adds a reason when it does not hold
fail() { reasons+=("$*"); }
got_reply() { grep -q '^;; ->>HEADER<<-' <<<"$out" || { fail "no reply"; return 1; }; }
# The last header wins: dig prints the UDP reply and then the TCP one when it retried.
header() { grep '^;; ->>HEADER<<-' <<<"$out" | tail -1; }
flagline() { grep '^;; flags:' <<<"$out" | tail -1; }
status_is() { header | grep -q "status: $1," || fail "status $(header | sed 's/.*status: \([A-Z]*\).*/\1/'), want $1"; }
flag() { flagline | sed 's/^;; flags://; s/;.*//' | grep -qw "$1"; }
want_flag() { flag "$1" || fail "$1 flag clear, want set"; }
want_noflag() { ! flag "$1" || fail "$1 flag set, want clear"; }
count() { flagline | sed -n "s/.*$1: \([0-9]*\).*/\1/p"; }
# The OPT pseudosection of the last reply: from its heading to the next blank line.
opt() { awk '/^;; OPT PSEUDOSECTION:/{o=""; on=1; next} on&&/^$/{on=0} on{o=o $0 "\n"} END{printf "%s", o}' <<<"$out"; }
edns_line() { opt | grep '^; EDNS:'; }
want_opt() {
    local line; line=$(edns_line)
    [[ -n $line ]] || { fail "no OPT record in the reply"; return; }
    grep -q 'version: 0,' <<<"$line" || fail "OPT version not 0: $line"
}
want_noopt() { [[ -z $(edns_line) ]] || fail "OPT in the reply to a query without one"; }
want_do() { edns_line | grep -q 'flags:.*\bdo\b' || fail "DO not echoed: $(edns_line)"; }
want_nodo() { ! edns_line | grep -q 'flags:.*\bdo\b' || fail "DO set without being asked"; }
want_nombz() { ! edns_line | grep -q 'MBZ' || fail "unknown EDNS flags echoed: $(edns_line)"; }
# Options we do not implement must not come back: unknown ones print as "; OPT=<code>:".
want_noecho() {
    local o
    for o in "$@"; do
        ! opt | grep -q "^; $o" || fail "option $o echoed: $(opt | grep "^; $o")"
    done
}
answer_types() { awk '/^;; ANSWER SECTION:/{on=1; next} on&&/^$/{on=0} on&&!/^;/{print $4}' <<<"$out"; }
want_soa() { [[ $(answer_types) == SOA ]] || fail "answer is [$(answer_types | tr '\n' ' ')], want one SOA"; }
want_noanswer() { [[ $(count ANSWER) == 0 ]] || fail "$(count ANSWER) answer records, want none"; }
size() { sed -n 's/^;; MSG SIZE  rcvd: //p' <<<"$out" | tail -1; }
want_size_le() { local s; s=$(size); [[ -n $s && $s -le $1 ]] || fail "reply of ${s:-?} bytes, want at most $1"; }
want_transport() { grep '^;; SERVER:' <<<"$out" | tail -1 | grep -q "($1)" || fail "reply not over $1"; }
# dig's own complaints about a reply it parsed: trailing bytes, mismatched ID or question,
# malformed sections.
want_wellformed() {
    local w; w=$(grep -iE 'extra bytes|malformed|mismatch|parse|unexpected|FORMERR' <<<"$out" | grep -v '^; <<>>')
    [[ -z $w ]] || fail "dig: $w"
}
# Records of a section as dig printed them (owner TTL class type data).
section() { awk -v s=";; $1 SECTION:" '$0==s{on=1; next} on&&/^$/{on=0} on&&!/^;/' <<<"$out"; }
# The header's counts must match what dig read (ADDITIONAL counts our OPT too).
want_counts_match() {
    local a u d o=0
    a=$(section ANSWER | wc -l) u=$(section AUTHORITY | wc -l) d=$(section ADDITIONAL | wc -l)
    [[ -n $(edns_line) ]] && o=1
    [[ $(count ANSWER) == "$a" && $(count AUTHORITY) == "$u" && $(count ADDITIONAL) == $((d + o)) ]] ||
        fail "header counts $(count ANSWER)/$(count AUTHORITY)/$(count ADDITIONAL) but records $a/$u/$((d + o))"
}
# Records of TYPE in the answer and authority sections.
n_of_type() { { section ANSWER; section AUTHORITY; } | awk -v t="$1" '$4==t' | wc -l; }

report() { # name, query text, expectation
    local name=$1 query=$2 expect=$3
    if [[ ${#reasons[@]} -eq 0 ]]; then
        passed=$((passed + 1))
        printf 'PASS  %-16s %s\n' "$name" "$query"
    else
        failed=$((failed + 1))
        printf 'FAIL  %-16s %s\n' "$name" "$query"
    fi
    printf '      expect: %s\n' "$expect"
    local r
    for r in "${reasons[@]}"; do printf '      FAILED: %s\n' "$r"; done
    if [[ $verbose == 1 || ${#reasons[@]} -gt 0 ]]; then sed 's/^/      | /' <<<"$out"; fi
    reasons=()
}

# One test: name, expectation, dig arguments; the checks follow as a function named check_<name>.
run() {
    local name=$1 expect=$2; shift 2
    q "$@"
    if got_reply; then "check_${name//[@-]/_}"; fi
    report "$name" "dig $* @$server -p $port" "$expect"
}

echo "EDNS compliance battery: $server port $port, zone $zone ($(dig -v 2>&1))"
echo

# --- ISC's tests, at the zone apex, as their report sends them (genreport's dig equivalents)
check_plain() { status_is NOERROR; want_flag aa; want_soa; want_noopt; want_wellformed; }
run plain "NOERROR, AA, the SOA; no OPT in the reply (RFC 6891 §7: no OPT unless asked)" \
    +noedns SOA "$zone"

check_edns() { status_is NOERROR; want_flag aa; want_soa; want_opt; want_nodo; want_wellformed; }
run edns "NOERROR, AA, the SOA, an OPT of version 0 (RFC 6891 §6.1.1)" \
    +edns=0 +nocookie SOA "$zone"

check_edns1() { status_is BADVERS; want_opt; want_noanswer; want_wellformed; }
run edns1 "BADVERS, an OPT of version 0 (the version we speak), no answer (RFC 6891 §6.1.3)" \
    +edns=1 +noednsneg +nocookie SOA "$zone"

check_edns_512() { status_is NOERROR; want_flag aa; want_opt; want_do; want_size_le 512; want_counts_match; want_wellformed; }
run edns@512 "NOERROR within 512 bytes (TC if it does not fit), OPT v0 kept, DO echoed (RFC 6891 §6.2.5, §7)" \
    +edns=0 +nocookie +dnssec +ignore +bufsize=512 DNSKEY "$zone"

check_ednsopt() { status_is NOERROR; want_flag aa; want_soa; want_opt; want_noecho OPT=100; want_wellformed; }
run ednsopt "NOERROR, the SOA, OPT v0; the unknown option 100 ignored and not echoed (RFC 6891 §6.1.2)" \
    +edns=0 +nocookie +ednsopt=100 SOA "$zone"

check_edns1opt() { status_is BADVERS; want_opt; want_noanswer; want_noecho OPT=100; want_wellformed; }
run edns1opt "BADVERS, OPT v0, no answer, option 100 not echoed (RFC 6891 §6.1.3)" \
    +edns=1 +noednsneg +nocookie +ednsopt=100 SOA "$zone"

check_do() { status_is NOERROR; want_flag aa; want_soa; want_opt; want_do; want_wellformed; }
run do "NOERROR, the SOA, OPT v0 with DO echoed (RFC 3225 §3)" \
    +edns=0 +nocookie +dnssec SOA "$zone"

check_ednsflags() { status_is NOERROR; want_flag aa; want_soa; want_opt; want_nombz; want_wellformed; }
run ednsflags "NOERROR, the SOA, OPT v0 with the unknown flag 0x0080 cleared (RFC 6891 §6.1.4)" \
    +edns=0 +nocookie +ednsflags=0x0080 SOA "$zone"

check_optlist() {
    status_is NOERROR; want_flag aa; want_soa; want_opt; want_wellformed
    # We implement ECS only: it comes back with source 0 and scope 0 (RFC 7871 §7.1.2);
    # NSID, EXPIRE and COOKIE are not implemented and so not echoed.
    opt | grep -q '^; CLIENT-SUBNET: 0.0.0.0/0/0$' || fail "ECS not echoed as 0.0.0.0/0/0: $(opt | grep SUBNET)"
    want_noecho NSID EXPIRE COOKIE
}
run optlist "NOERROR, the SOA, OPT v0; ECS echoed as 0.0.0.0/0/0; NSID, EXPIRE, COOKIE (not implemented) ignored" \
    +edns=0 +nsid +subnet=0.0.0.0/0 +expire +cookie=0102030405060708 SOA "$zone"

check_ednstcp() { status_is NOERROR; want_flag aa; want_noflag tc; want_opt; want_do; want_transport TCP; want_wellformed; }
run ednstcp "over TCP: NOERROR, OPT v0 with DO echoed, never TC (RFC 6891 §7; RFC 7766)" \
    +edns=0 +nocookie +dnssec +bufsize=512 +tcp DNSKEY "$zone"

# --- Truncation: each large RRset, whole RRs only (RFC 2181 §9, RFC 9471), then all of it
# over TCP.
for spec in "${big[@]}"; do
    IFS=/ read -r name type n <<<"$spec"

    check_trunc512() {
        status_is NOERROR; want_flag tc; want_noopt; want_size_le 512; want_counts_match; want_wellformed
        [[ $(n_of_type "$type") -lt $n ]] || fail "all $n records in 512 bytes: nothing to truncate"
    }
    run trunc512 "no EDNS: TC set, at most 512 bytes, only whole RRs (header counts = records), no OPT" \
        +noedns +ignore "$name" "$type"

    check_trunc512do() {
        status_is NOERROR; want_flag tc; want_opt; want_do; want_size_le 512; want_counts_match; want_wellformed
    }
    run trunc512do "EDNS 512 with DO: TC set, at most 512 bytes, whole RRs, OPT v0 kept with DO (RFC 6891 §7)" \
        +edns=0 +nocookie +dnssec +bufsize=512 +ignore "$name" "$type"

    check_trunc1232() {
        status_is NOERROR; want_flag tc; want_opt; want_size_le 1232; want_counts_match; want_wellformed
    }
    run trunc1232 "EDNS 1232: TC set, at most 1232 bytes, whole RRs, OPT v0 kept" \
        +edns=0 +nocookie +bufsize=1232 +ignore "$name" "$type"

    check_retrytcp() {
        status_is NOERROR; want_noflag tc; want_transport TCP; want_counts_match; want_wellformed
        grep -q 'Truncated, retrying in TCP mode' <<<"$out" || fail "the UDP reply was not truncated"
        [[ $(n_of_type "$type") == "$n" ]] || fail "$(n_of_type "$type") $type records over TCP, want $n"
    }
    run retrytcp "no EDNS: TC over UDP, then dig's retry over TCP gets all $n $type records" \
        +noedns "$name" "$type"
done

echo
echo "$passed passed, $failed failed"
[[ $failed -eq 0 ]]
