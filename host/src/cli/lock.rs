//! `strata lock`: take, renew, release and list locks, and run a command
//! under one.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tonic::Code;

use super::LockCmd;
use super::client::{Client, status};
use crate::api::pb;

/// Unique per acquisition, so a retried acquire is recognised as ours.
fn holder() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    format!("{}:{}:{:08x}", host.trim(), std::process::id(), rand::random::<u32>())
}

fn ms(d: Duration) -> u64 {
    d.as_millis() as u64
}

pub async fn run(c: &mut Client, cmd: LockCmd) -> anyhow::Result<()> {
    match cmd {
        LockCmd::Acquire { name, ttl, wait, holder: h } => {
            let req = pb::LockAcquireRequest { name, holder: h.unwrap_or_else(holder), ttl_ms: ms(ttl), wait_ms: ms(wait) };
            let g = c.lock_acquire(req).await.map_err(status)?.into_inner();
            println!("{}", g.token);
            eprintln!("locked {} for {} (token {}, lease {ttl:?}); release with `strata lock release {} {}`", g.name, g.holder, g.token, g.name, g.token);
        }
        LockCmd::Renew { name, token, ttl } => {
            c.lock_renew(pb::LockRenewRequest { name, token, ttl_ms: ms(ttl) }).await.map_err(status)?;
        }
        LockCmd::Release { name, token } => {
            c.lock_release(pb::LockReleaseRequest { name, token }).await.map_err(status)?;
        }
        LockCmd::Ls { json } => {
            let r = c.list_locks(pb::ListLocksRequest {}).await.map_err(status)?.into_inner();
            if json {
                let v: Vec<_> = r
                    .locks
                    .iter()
                    .map(|g| serde_json::json!({"name": g.name, "holder": g.holder, "token": g.token, "lease_left_ms": g.ttl_ms}))
                    .collect();
                println!("{}", serde_json::Value::Array(v));
            } else {
                println!("{:<30} {:>10} {:>12} HOLDER", "NAME", "TOKEN", "LEASE LEFT");
                for g in r.locks {
                    println!("{:<30} {:>10} {:>12} {}", g.name, g.token, format!("{}ms", g.ttl_ms), g.holder);
                }
            }
        }
        LockCmd::Run { name, ttl, wait, command } => {
            let code = run_under(c, &name, ttl, wait, &command).await?;
            std::process::exit(code);
        }
    }
    Ok(())
}

/// Takes the lock, runs the command with STRATA_LOCK_NAME and
/// STRATA_LOCK_TOKEN set, renews every third of the lease, and kills the
/// command if the lease is lost. Releases the lock when the command ends.
async fn run_under(c: &mut Client, name: &str, ttl: Duration, wait: Duration, command: &[String]) -> anyhow::Result<i32> {
    if ttl < Duration::from_millis(300) {
        bail!("--ttl: at least 300ms, so the lease can be renewed in time");
    }
    let req = pb::LockAcquireRequest { name: name.into(), holder: holder(), ttl_ms: ms(ttl), wait_ms: ms(wait) };
    let asked = Instant::now();
    let g = c.lock_acquire(req).await.map_err(status)?.into_inner();
    // The lease counts from before we asked: never later than the server's.
    let mut lease_end = asked + ttl;
    let mut child = tokio::process::Command::new(&command[0])
        .args(&command[1..])
        .env("STRATA_LOCK_NAME", name)
        .env("STRATA_LOCK_TOKEN", g.token.to_string())
        .spawn()
        .with_context(|| format!("cannot run {:?}", command[0]))?;
    let mut tick = tokio::time::interval(ttl / 3);
    tick.tick().await;
    let outcome = loop {
        tokio::select! {
            s = child.wait() => break Ok(s?),
            _ = tick.tick() => {
                let asked = Instant::now();
                let renew = pb::LockRenewRequest { name: name.into(), token: g.token, ttl_ms: ms(ttl) };
                match c.lock_renew(renew).await {
                    Ok(_) => lease_end = asked + ttl,
                    // Lost for sure: stop at once.
                    Err(e) if e.code() == Code::FailedPrecondition => break Err(e.message().to_string()),
                    // Unsure (no leader for a moment): keep trying while the lease lasts.
                    Err(e) if Instant::now() + ttl / 3 >= lease_end => break Err(format!("could not renew in time: {}", e.message())),
                    Err(_) => {}
                }
            }
        }
    };
    match outcome {
        Ok(s) => {
            let release = pb::LockReleaseRequest { name: name.into(), token: g.token };
            if let Err(e) = c.lock_release(release).await {
                eprintln!("strata: could not release lock {name} (it ends with its lease): {}", e.message());
            }
            Ok(s.code().unwrap_or(128 + 9))
        }
        Err(why) => {
            let _ = child.kill().await;
            eprintln!("strata: lost lock {name} (token {}): {why}; the command was stopped", g.token);
            Ok(75)
        }
    }
}
