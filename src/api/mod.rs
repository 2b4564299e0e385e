//! HTTP endpoints, in two routers on two listeners:
//!
//! - [`public`]: unauthenticated, what monitors and load balancers need (`/healthz`,
//!   `/readyz`, `/metrics`) and, with `[rum]`, the beacon and its ingest ([`rum`]).
//! - [`admin`]: `/api/v1/…`, bearer token, loopback by default: policy edits with ETags and
//!   history, previews, explain, health overrides; and the operator dashboard
//!   ([`dashboard`]): a static page there, its data under `/api/v1/dashboard` behind the token.
//!
//! Both are served by [`serve`]: our accept loop with a connection cap, a header-read
//! timeout and a whole-request timeout, the same on both listeners; and [`limit`]: request
//! rate limits per client network on both, and a failed-authentication limit on the admin
//! listener.
//!
//! Depends on `control` (writes) and `snapshot` (reads).

pub mod admin;
pub mod dashboard;
pub mod limit;
pub mod public;
pub mod rum;
pub mod serve;
pub mod tls;
