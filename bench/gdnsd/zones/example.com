; example.com for gdnsd, used by bench/dnsperf-vs-gdnsd.sh: the same names as
; steerdns' embedded demo zone.
$TTL 3600
@        60 SOA  ns1 hostmaster (
                     1        ; serial
                     3600     ; refresh
                     600      ; retry
                     604800   ; expire
                     60 )     ; negative-cache TTL
@           NS   ns1
ns1         A    127.0.0.1

; Steered names, TTL 30 as in steerdns. DYNC = dynamic CNAME, DYNA = dynamic
; A/AAAA; the geoip plugin resolves both per query from the ECS address if the
; query carries one, else from the query's source address.
www      30 DYNC geoip!www
pop      30 DYNA geoip!pop
