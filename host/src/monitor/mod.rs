//! What an operator watches: Prometheus metrics ([`metrics`]), the health
//! checks ([`health`]), and the HTTP listener that serves `/metrics`,
//! `/healthz` and `/readyz` to scrapers and load balancers.

pub mod health;
pub mod metrics;

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::cluster::node::Cluster;
use crate::objects::Objects;
use crate::plugin::Plugins;

/// The node being watched.
pub struct Monitor {
    pub objects: Arc<Objects>,
    pub plugins: Arc<Plugins>,
    pub cluster: Option<Arc<Cluster>>,
    pub health: health::Health,
    /// Set when the metrics listener is on (the recorder is installed).
    pub prometheus: Option<metrics_exporter_prometheus::PrometheusHandle>,
}

pub fn router(m: Arc<Monitor>) -> Router {
    Router::new().route("/metrics", get(scrape)).route("/healthz", get(alive)).route("/readyz", get(ready)).with_state(m)
}

/// Serves `m` on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: crate::connections::Accepted,
    m: Arc<Monitor>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(m)).with_graceful_shutdown(shutdown).await
}

/// Connections the metrics listener holds at once; more wait to be
/// accepted, so slow or silent clients cannot take the process's files.
pub const MAX_CONNECTIONS: usize = 64;

async fn scrape(State(m): State<Arc<Monitor>>) -> Response {
    let Some(handle) = &m.prometheus else { return (StatusCode::NOT_FOUND, "metrics are off\n").into_response() };
    metrics::refresh(&m).await;
    handle.run_upkeep();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], handle.render()).into_response()
}

/// The process answers: it is alive.
async fn alive() -> &'static str {
    "ok\n"
}

/// 200 when the node can serve (its stores take a write, its plugins are
/// loaded, and on a cluster it is a member that knows a leader), else 503;
/// the body lists every check.
async fn ready(State(m): State<Arc<Monitor>>) -> Response {
    let report = m.health.report();
    let mut body = String::new();
    for c in &report.checks {
        body.push_str(&format!("{} {}: {}\n", if c.ok { "ok  " } else { "FAIL" }, c.name, c.detail));
    }
    let status = if report.ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, body).into_response()
}
