//! Public, unauthenticated endpoints: `/healthz` (the process is up), `/readyz` (a snapshot is
//! serving, and whether it is stale), `/metrics` (Prometheus text). Reads the published
//! snapshot only.

use std::fmt::Write;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;

use crate::dns::udp::UdpStats;
use crate::health;
use crate::snapshot::Published;

/// What the public endpoints read.
#[derive(Clone)]
struct Shared {
    published: Arc<Published>,
    udp: Arc<UdpStats>,
}

pub fn router(published: Arc<Published>, udp: Arc<UdpStats>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(Shared { published, udp })
}

async fn readyz(State(Shared { published, .. }): State<Shared>) -> (StatusCode, String) {
    let snapshot = published.load();
    let stale = if published.is_stale() {
        " (stale: the last reload failed, see the log)"
    } else {
        ""
    };
    (
        StatusCode::OK,
        format!(
            "ready: generation {}{stale}; geoip {}\n",
            snapshot.generation,
            snapshot.geo.describe()
        ),
    )
}

async fn metrics(State(Shared { published, udp }): State<Shared>) -> String {
    let snapshot = published.load();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# HELP steerdns_snapshot_generation Generation of the serving snapshot.\n\
         # TYPE steerdns_snapshot_generation gauge\n\
         steerdns_snapshot_generation {}\n\
         # HELP steerdns_snapshot_stale 1 when the last reload failed and an older snapshot serves.\n\
         # TYPE steerdns_snapshot_stale gauge\n\
         steerdns_snapshot_stale {}\n\
         # HELP steerdns_zones Zones served.\n\
         # TYPE steerdns_zones gauge\n\
         steerdns_zones {}\n\
         # HELP steerdns_steered_names Steered names served.\n\
         # TYPE steerdns_steered_names gauge\n\
         steerdns_steered_names {}\n\
         # HELP steerdns_geoip_locations Distinct locations in the GeoIP database.\n\
         # TYPE steerdns_geoip_locations gauge\n\
         steerdns_geoip_locations {}\n\
         # HELP steerdns_geoip_location_classes Distinct (continent, country, subdivision) classes: the rows of each decision table.\n\
         # TYPE steerdns_geoip_location_classes gauge\n\
         steerdns_geoip_location_classes {}",
        snapshot.generation,
        u8::from(published.is_stale()),
        snapshot.zones.iter().count(),
        snapshot.steered.len(),
        snapshot.geo.locations().len(),
        snapshot.geo.classes().len(),
    );
    let _ = writeln!(
        out,
        "# HELP steerdns_udp_replies_total UDP replies sent, by path: fast (pre-rendered) or full.\n\
         # TYPE steerdns_udp_replies_total counter\n\
         steerdns_udp_replies_total{{path=\"fast\"}} {}\n\
         steerdns_udp_replies_total{{path=\"full\"}} {}",
        udp.fast.load(Ordering::Relaxed),
        udp.full.load(Ordering::Relaxed),
    );
    let _ = writeln!(
        out,
        "# HELP steerdns_target_health Health of each reported target (1 for its current state).\n\
         # TYPE steerdns_target_health gauge"
    );
    let _ = writeln!(
        out,
        "# HELP steerdns_rum_resolver_map_size Resolvers located as their users (resolver mapping).\n\
         # TYPE steerdns_rum_resolver_map_size gauge\n\
         steerdns_rum_resolver_map_size {}",
        snapshot.resolver_map.len()
    );
    if let Some(rum) = &snapshot.rum {
        let log = rum.log.stats();
        let _ = writeln!(
            out,
            "# HELP steerdns_rum_nonce_queries_total Queries for RUM nonce names, by outcome: logged, or dropped because the log was full.\n\
             # TYPE steerdns_rum_nonce_queries_total counter\n\
             steerdns_rum_nonce_queries_total{{outcome=\"logged\"}} {}\n\
             steerdns_rum_nonce_queries_total{{outcome=\"dropped\"}} {}",
            log.recorded, log.dropped
        );
    }
    for (target, h) in snapshot.health.iter() {
        let target = target.replace(['\\', '"', '\n'], "_");
        for state in [
            health::State::Up,
            health::State::Down,
            health::State::Unknown,
        ] {
            let _ = writeln!(
                out,
                "steerdns_target_health{{target=\"{target}\",state=\"{state}\",forced=\"{}\"}} {}",
                h.forced,
                u8::from(h.state == state)
            );
        }
    }
    out
}
