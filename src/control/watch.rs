//! The control plane's background loop: SIGHUP reloads, the policy store's change notices
//! (inotify for a directory), and timed recompiles (hold-down expiry, ramp steps).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;

use super::Controller;
use crate::store::FeedGuard;

/// Background work until cancelled: SIGHUP reloads, policy directory changes, timed
/// recompiles (hold-down expiry, ramp steps). Every publish, by any route, wakes the loop so
/// that it sleeps until the earliest deadline of what is serving now. The SIGHUP handler is installed before this returns, not
/// when the task first runs: a SIGHUP right after startup must reload, not kill the process.
pub fn run(
    controller: Arc<Controller>,
    watch: PolicyWatch,
    cancel: CancellationToken,
) -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    #[cfg(not(unix))]
    let hup: Option<()> = None;
    run_loop(controller, watch, cancel, hup)
}

async fn run_loop(
    controller: Arc<Controller>,
    watch: PolicyWatch,
    cancel: CancellationToken,
    #[cfg(unix)] mut hup: Option<tokio::signal::unix::Signal>,
    #[cfg(not(unix))] _hup: Option<()>,
) {
    let PolicyWatch {
        _feed,
        changes: mut rx,
    } = watch;
    loop {
        let due = controller.next_change();
        let sleep = async {
            match due {
                Some(at) => {
                    tokio::time::sleep(at.duration_since(SystemTime::now()).unwrap_or_default())
                        .await
                }
                None => std::future::pending().await,
            }
        };
        #[cfg(unix)]
        let hangup = async {
            match hup.as_mut() {
                Some(h) => {
                    h.recv().await;
                }
                None => std::future::pending().await,
            }
        };
        #[cfg(not(unix))]
        let hangup = std::future::pending::<()>();
        let c = controller.clone();
        tokio::select! {
            _ = cancel.cancelled() => return,
            // Something was published (an API edit, a health flip, a reload, our own
            // recompile): the earliest deadline may have moved, so compute it again.
            _ = controller.rescheduled.notified() => {}
            _ = hangup => {
                let _ = tokio::task::spawn_blocking(move || c.reload_all()).await;
            }
            Some(()) = rx.recv() => {
                // Editors write several events per save; let them settle.
                tokio::time::sleep(Duration::from_millis(50)).await;
                while rx.try_recv().is_ok() {}
                let _ = tokio::task::spawn_blocking(move || {
                    let _ = c.reload_policies();
                    let _ = c.reload_measurements();
                })
                .await;
            }
            _ = sleep => {
                let _ = tokio::task::spawn_blocking(move || c.recompile_due()).await;
            }
        }
    }
}

/// A watch on the policy store and the notices it sends.
pub struct PolicyWatch {
    _feed: Option<FeedGuard>,
    changes: tokio::sync::mpsc::Receiver<()>,
}

/// Watch the policy store, then re-read it once, so that nothing written between the first
/// load and the watch's start is missed. Call before serving.
pub fn watch(controller: &Controller) -> PolicyWatch {
    let (tx, changes) = tokio::sync::mpsc::channel::<()>(1);
    let store = controller.lock().policy_store.clone();
    let feed = store.and_then(|s| s.watch(tx));
    if feed.is_some() {
        let _ = controller.reload_policies();
    }
    PolicyWatch {
        _feed: feed,
        changes,
    }
}
