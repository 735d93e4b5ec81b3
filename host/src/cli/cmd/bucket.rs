//! `strata bucket`: create, list and delete buckets.

use crate::api::pb;
use crate::cli::BucketCmd;
use crate::cli::client::{Client, partial, policy_pb, status};
use crate::cli::output;

pub async fn run(c: &mut Client, cmd: BucketCmd, allow_partial: bool) -> anyhow::Result<()> {
    match cmd {
        BucketCmd::Create { name, policy } => {
            let policy = (!policy.is_empty()).then(|| policy_pb(policy)).transpose()?;
            c.create_bucket(pb::CreateBucketRequest { name: name.clone(), policy }).await.map_err(status)?;
            println!("bucket {name} created");
        }
        BucketCmd::Ls { json } => {
            let r = c.list_buckets(pb::ListBucketsRequest {}).await.map_err(status)?.into_inner();
            output::buckets(&r.buckets, json);
            partial(&r.missing, allow_partial)?;
        }
        BucketCmd::Rm { name } => {
            c.delete_bucket(pb::DeleteBucketRequest { name: name.clone() }).await.map_err(status)?;
            println!("bucket {name} deleted");
        }
    }
    Ok(())
}
