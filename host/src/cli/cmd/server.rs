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

/// The standard gRPC health check, on a channel of its own to `addr`.
pub async fn health(addr: &str) -> anyhow::Result<()> {
    let channel = tonic::transport::Endpoint::from_shared(addr.to_string())?.connect().await?;
    let mut h = tonic_health::pb::health_client::HealthClient::new(channel);
    let r = h.check(tonic_health::pb::HealthCheckRequest { service: String::new() }).await.map_err(status)?.into_inner();
    let serving = r.status == tonic_health::pb::health_check_response::ServingStatus::Serving as i32;
    println!("{}", if serving { "SERVING" } else { "NOT_SERVING" });
    if !serving {
        bail!("the server is not serving");
    }
    Ok(())
}
