//! `strata stats` and `strata health`: the server's figures, and whether it
//! is serving.

use anyhow::bail;

use crate::api::pb;
use crate::cli::client::{Client, status};
use crate::cli::output;

pub async fn stats(c: &mut Client, json: bool) -> anyhow::Result<()> {
    let s = c.stats(pb::StatsRequest {}).await.map_err(status)?.into_inner();
    output::stats(&s, json);
    Ok(())
}

/// The server's last health report: each check, and whether it is ready.
pub async fn health(c: &mut Client, json: bool) -> anyhow::Result<()> {
    let r = c.health(pb::HealthRequest {}).await.map_err(status)?.into_inner();
    if json {
        let checks: Vec<_> = r
            .checks
            .iter()
            .map(|c| serde_json::json!({"name": c.name, "ok": c.ok, "detail": c.detail, "readiness": c.readiness}))
            .collect();
        println!("{}", serde_json::json!({"ready": r.ready, "checked_ms": r.checked_ms, "checks": checks}));
    } else {
        for c in &r.checks {
            println!("{} {:<12} {}", if c.ok { "ok  " } else { "FAIL" }, c.name, c.detail);
        }
        println!("{}", if r.ready { "READY" } else { "NOT READY" });
    }
    if !r.ready {
        bail!("the server is not ready: see the failing checks above");
    }
    Ok(())
}

/// `strata reload`: what SIGHUP does, with each part's outcome.
pub async fn reload(c: &mut Client, json: bool) -> anyhow::Result<()> {
    let r = c.reload(pb::ReloadRequest {}).await.map_err(status)?.into_inner();
    if json {
        let items: Vec<_> = r.items.iter().map(|i| serde_json::json!({"what": i.what, "ok": i.ok, "detail": i.detail})).collect();
        println!("{}", serde_json::json!({"items": items}));
    } else if r.items.is_empty() {
        println!("nothing to reload: no [tls], no [auth], no plugin file changed");
    } else {
        for i in &r.items {
            println!("{} {:<12} {}", if i.ok { "ok     " } else { "REFUSED" }, i.what, i.detail);
        }
    }
    if r.items.iter().any(|i| !i.ok) {
        bail!("part of the reload was refused: see above (the old stays in use for it)");
    }
    Ok(())
}
