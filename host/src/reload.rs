//! SIGHUP and `strata reload`: read the certificates, the token secret and
//! revoked list, and the plugin files again, without a restart. Each part
//! is replaced only when its new files load; what fails keeps the old and
//! says why.

use std::sync::Arc;

use tokio::sync::watch;
use tracing::{info, warn};

use crate::api::auth::Tokens;
use crate::cluster::node::Cluster;
use crate::plugin::Plugins;
use crate::tls::Tls;

/// What a reload can touch.
pub struct Reloader {
    pub tls: Option<Arc<Tls>>,
    pub cluster: Option<Arc<Cluster>>,
    pub tokens: Option<Arc<Tokens>>,
    pub plugins: Arc<Plugins>,
    /// One reload at a time.
    pub busy: tokio::sync::Mutex<()>,
}

/// One part's outcome.
#[derive(Debug, Clone)]
pub struct Item {
    pub what: String,
    pub ok: bool,
    pub detail: String,
}

impl Reloader {
    pub async fn run(&self) -> Vec<Item> {
        let _one = self.busy.lock().await;
        let mut items = Vec::new();
        if let Some(tls) = &self.tls {
            items.push(match tls.reload() {
                Ok(fingerprint) => {
                    // Peers are dialed with the new certificate from now on.
                    if let (Some(c), Some(peer)) = (&self.cluster, tls.peer_client()) {
                        c.network.set_tls(peer);
                    }
                    Item { what: "tls".into(), ok: true, detail: format!("serving certificate sha256:{fingerprint}") }
                }
                Err(e) => Item { what: "tls".into(), ok: false, detail: format!("{e:#}; the old certificates stay") },
            });
        }
        if let Some(tokens) = &self.tokens {
            items.push(match tokens.reload() {
                Ok(()) => Item { what: "tokens".into(), ok: true, detail: "secret and revoked list read".into() },
                Err(e) => Item { what: "tokens".into(), ok: false, detail: format!("{e}; the secret and revoked list in force stay") },
            });
        }
        // Compiling a component takes a while: off the async threads.
        let plugins = self.plugins.clone();
        let reloaded = tokio::task::spawn_blocking(move || plugins.reload()).await.unwrap_or_default();
        for r in reloaded {
            let what = format!("plugin {}", r.name);
            items.push(match r.outcome {
                Ok(version) => Item { what, ok: true, detail: format!("{} {version} now serves new calls", r.kind) },
                Err(e) => Item { what, ok: false, detail: format!("{e}; the old component stays") },
            });
        }
        for i in &items {
            if i.ok {
                info!(what = %i.what, detail = %i.detail, "reloaded");
            } else {
                warn!(what = %i.what, detail = %i.detail, "reload refused");
            }
            metrics::counter!("strata_reloads_total", "result" => if i.ok { "ok" } else { "refused" }).increment(1);
        }
        items
    }

    /// Reloads on every SIGHUP until `stop`. The handler is in place when
    /// this returns (SIGHUP's default would end the process).
    pub fn on_sighup(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        #[cfg(unix)]
        {
            let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
                Ok(h) => h,
                Err(e) => {
                    warn!(error = %e, "cannot catch SIGHUP: reload with `strata reload`");
                    return;
                }
            };
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        _ = hup.recv() => {
                            info!("SIGHUP: reloading");
                            self.run().await;
                        }
                        _ = stop.changed() => return,
                    }
                }
            });
        }
    }
}
