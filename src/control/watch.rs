//! The control plane's background loop: SIGHUP reloads, the policy store's change notices
//! (inotify for a directory), and timed recompiles (hold-down expiry, ramp steps).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;

use super::Controller;
use crate::store::FeedGuard;

/// SIGHUP, caught from now on (`None` where there is no SIGHUP or it cannot be caught).
#[cfg(unix)]
pub type Hangup = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
pub type Hangup = Option<()>;

/// Catch SIGHUP from now on, for [`run`]. Called first thing at start, before the first
/// snapshot is loaded and anything listens: SIGHUP's default action kills the process, so a
/// SIGHUP in the startup window (a deploy script reloading as soon as the port answers)
/// must find the handler installed; it is then taken as a reload once [`run`] runs.
pub fn hangup() -> Hangup {
    #[cfg(unix)]
    return tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    #[cfg(not(unix))]
    None
}

/// Background work until cancelled: SIGHUP reloads (`hup`, from [`hangup`]), policy
/// directory changes, timed recompiles (hold-down expiry, ramp steps). Every publish, by any
/// route, wakes the loop so that it sleeps until the earliest deadline of what is serving now.
pub fn run(
    controller: Arc<Controller>,
    watch: PolicyWatch,
    hup: Hangup,
    cancel: CancellationToken,
) -> impl std::future::Future<Output = ()> {
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
