//! `http-floor`: the floor of the beacon benchmark. The same HTTP stack as steerdns's public
//! listener (axum on hyper, one tokio thread) with trivial handlers: `GET /rum/v1/config`
//! answers a fixed token document, `POST /rum/v1/beacons` reads the body and answers 204. What
//! `beaconflood` reaches against it is what the generator and the HTTP stack allow on this
//! machine, with no RUM work at all.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::http::StatusCode;
use axum::routing::{get, post};
use clap::Parser;

/// Trivial RUM endpoints on loopback.
#[derive(Parser, Debug)]
#[command(name = "http-floor")]
struct Args {
    /// Address to listen on (127.0.0.0/8 or [::1]).
    #[arg(long, default_value = "127.0.0.1:8099")]
    listen: SocketAddr,
    /// Exit after this many seconds (default: run until SIGINT/SIGTERM).
    #[arg(long)]
    max_seconds: Option<u64>,
}

const CONFIG: &str =
    r#"{"v":1,"nonce":"00000000000000000000000000000000","token":"floor","targets":[]}"#;

fn main() -> ExitCode {
    let args = Args::parse();
    if !args.listen.ip().is_loopback() {
        eprintln!("http-floor: --listen {}: loopback only", args.listen);
        return ExitCode::FAILURE;
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("http-floor: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let router = Router::new()
            .route(
                "/rum/v1/config",
                get(|| async { ([("content-type", "application/json")], CONFIG) }),
            )
            .route(
                "/rum/v1/beacons",
                post(|body: Bytes| async move {
                    std::hint::black_box(body.len());
                    StatusCode::NO_CONTENT
                }),
            );
        let listener = tokio::net::TcpListener::bind(args.listen).await?;
        eprintln!("http-floor listening on {}", listener.local_addr()?);
        let serve = axum::serve(listener, router);
        match args.max_seconds {
            Some(s) => {
                let _ = tokio::time::timeout(Duration::from_secs(s), serve).await;
                Ok(())
            }
            None => {
                tokio::select! {
                    r = serve => r,
                    _ = tokio::signal::ctrl_c() => Ok(()),
                }
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("http-floor: {e}");
            ExitCode::FAILURE
        }
    }
}
