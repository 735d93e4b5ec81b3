//! `strata lock`: take, renew, release and list locks, and run a command
//! under one.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tonic::Code;

use crate::api::pb;
use crate::cli::LockCmd;
use crate::cli::client::{Client, status};

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
            eprintln!(
                "locked {} for {} (token {}, lease {ttl:?}); release with `strata lock release {} {}`",
                g.name, g.holder, g.token, g.name, g.token
            );
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
/// command's whole process group if the lease is lost or is about to run
/// out unrenewed. Releases the lock when the command ends; a SIGINT or
/// SIGTERM to `strata` stops the command and releases too.
async fn run_under(c: &mut Client, name: &str, ttl: Duration, wait: Duration, command: &[String]) -> anyhow::Result<i32> {
    if ttl < Duration::from_millis(300) {
        bail!("--ttl: at least 300ms, so the lease can be renewed in time");
    }
    let req = pb::LockAcquireRequest { name: name.into(), holder: holder(), ttl_ms: ms(ttl), wait_ms: ms(wait) };
    let asked = Instant::now();
    let g = c.lock_acquire(req).await.map_err(status)?.into_inner();
    // The lease counts from before we asked: never later than the server's.
    // Stop a tenth of it early, for clock rate differences.
    let margin = ttl / 10;
    let mut lease_end = asked + ttl - margin;
    let mut child = tokio::process::Command::new(&command[0])
        .args(&command[1..])
        .env("STRATA_LOCK_NAME", name)
        .env("STRATA_LOCK_TOKEN", g.token.to_string())
        .process_group(0)
        .spawn()
        .with_context(|| format!("cannot run {:?}", command[0]))?;
    let group = child.id().map(|p| p as i32);
    let mut tick = tokio::time::interval(ttl / 3);
    tick.tick().await;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let outcome = loop {
        tokio::select! {
            s = child.wait() => break Ok(s?),
            _ = tokio::time::sleep_until(lease_end.into()) => break Err("the lease ran out before it could be renewed".to_string()),
            _ = tokio::signal::ctrl_c() => break Err("interrupted".to_string()),
            _ = term.recv() => break Err("terminated".to_string()),
            _ = tick.tick() => {
                let asked = Instant::now();
                let renew = pb::LockRenewRequest { name: name.into(), token: g.token, ttl_ms: ms(ttl) };
                match tokio::time::timeout_at(lease_end.into(), c.lock_renew(renew)).await {
                    Ok(Ok(_)) => lease_end = asked + ttl - margin,
                    // Lost for sure: stop at once.
                    Ok(Err(e)) if e.code() == Code::FailedPrecondition => break Err(e.message().to_string()),
                    // Unsure (no leader for a moment): try again while the lease lasts.
                    Ok(Err(_)) => {}
                    Err(_) => break Err("the lease ran out before it could be renewed".to_string()),
                }
            }
        }
    };
    let code = match outcome {
        Ok(s) => s.code().unwrap_or(128 + 9),
        Err(why) => {
            if let Some(pgid) = group {
                kill_group(pgid);
            }
            let _ = child.wait().await;
            eprintln!("strata: stopped the command under lock {name} (token {}): {why}", g.token);
            75
        }
    };
    let release = pb::LockReleaseRequest { name: name.into(), token: g.token };
    if let Err(e) = c.lock_release(release).await {
        eprintln!("strata: could not release lock {name} (it ends with its lease): {}", e.message());
    }
    Ok(code)
}

/// SIGKILL to every process of the group: a shell's children too.
fn kill_group(pgid: i32) {
    // SAFETY: kill(2) with a negative pid signals a process group; it
    // touches no memory of ours.
    unsafe {
        libc::kill(-pgid, libc::SIGKILL);
    }
}
