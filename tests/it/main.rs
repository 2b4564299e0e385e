//! Integration tests: real servers on ephemeral loopback ports, queried with the real `dig`
//! (package bind9-dnsutils), hickory's client, and hand-built packets over UDP and TCP.

mod support;

mod abuse;
mod admin_api;
mod cdp;
mod cli;
mod config;
mod conformance;
mod cookbook;
mod dashboard;
mod doc_links;
mod durability;
mod edns;
mod explain;
mod fastpath;
mod file_watch;
mod fleet;
mod fleet_outage;
mod fleet_support;
mod fleet_tls_sentinel;
mod geoip;
mod grafana;
mod health;
mod https;
mod import_gdnsd;
mod import_route53;
mod malformed;
mod metrics;
mod observability;
mod packaging;
mod policies;
mod protocol;
mod robustness;
mod rum_browser;
mod rum_ingest;
mod rum_resolver;
mod rum_steering;
mod steering;
mod timed;
mod transport;
