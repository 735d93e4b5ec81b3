//! `strata index`: create (optionally waiting for the backfill), list and
//! drop search indexes.

use std::io::IsTerminal;

use anyhow::{anyhow, bail};

use crate::api::pb;
use crate::cli::IndexCmd;
use crate::cli::client::{Client, status};
use crate::cli::output;

pub async fn run(c: &mut Client, cmd: IndexCmd) -> anyhow::Result<()> {
    match cmd {
        IndexCmd::Create { name, fields, kind, bucket, wait } => {
            let req = pb::CreateIndexRequest { bucket: bucket.clone().unwrap_or_default(), name, fields, r#type: kind };
            let mut info = c.create_index(req).await.map_err(status)?.into_inner();
            while wait && info.state == "building" {
                if std::io::stderr().is_terminal() {
                    eprint!("\rbackfilling {}: {:5.1}%", info.name, info.progress * 100.0);
                }
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                let all = c.list_indexes(pb::ListIndexesRequest { bucket: info.bucket.clone() }).await.map_err(status)?.into_inner();
                // On a cluster every node builds its own copy: wait for the
                // slowest (a failing one ends the wait).
                let copies: Vec<pb::IndexInfo> = all.indexes.into_iter().filter(|i| i.name == info.name).collect();
                info = copies
                    .iter()
                    .find(|i| i.state == "failing")
                    .or_else(|| copies.iter().filter(|i| i.state == "building").min_by(|a, b| a.progress.total_cmp(&b.progress)))
                    .or(copies.first())
                    .cloned()
                    .ok_or_else(|| anyhow!("index {} was dropped while it was built", info.name))?;
            }
            if wait && std::io::stderr().is_terminal() {
                eprintln!();
            }
            if info.state == "failing" {
                bail!("index {} is failing: {}", info.name, info.error);
            }
            output::indexes(std::slice::from_ref(&info), false);
        }
        IndexCmd::Ls { bucket, json } => {
            let r = c.list_indexes(pb::ListIndexesRequest { bucket: bucket.unwrap_or_default() }).await.map_err(status)?.into_inner();
            output::indexes(&r.indexes, json);
            if !r.missing.is_empty() {
                eprintln!("warning: {} did not answer: their copies are not shown", r.missing.join(", "));
            }
        }
        IndexCmd::Rm { name, bucket } => {
            c.drop_index(pb::DropIndexRequest { bucket: bucket.unwrap_or_default(), name }).await.map_err(status)?;
        }
    }
    Ok(())
}
