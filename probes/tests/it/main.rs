//! Integration tests of steerdns-probes: real servers on 127.0.0.1, port 0.

mod agent;
mod checks;
mod reporter;
mod support;
