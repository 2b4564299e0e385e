#!/usr/bin/env python3
"""A stand-in for a PoP's health URL: answers every GET with 200 "ok".

Usage: endpoint.py ADDRESS PORT

The failover benchmark starts one of these per PoP on its own loopback address and kills it
(SIGKILL) to simulate the PoP dying: from then on, connections to ADDRESS:PORT are refused.
"""

import http.server
import sys


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):  # noqa: N802 (the http.server API)
        body = b"ok"
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def main():
    address, port = sys.argv[1], int(sys.argv[2])
    server = http.server.ThreadingHTTPServer((address, port), Handler)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
