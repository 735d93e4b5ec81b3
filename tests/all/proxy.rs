//! A fault-injecting TCP proxy in front of a node: it forwards connections
//! to the node, except from source addresses it is told to cut off. Those
//! are black-holed (held open, nothing forwarded), like a silent network
//! partition, until healed; then they are closed and peers reconnect.
//!
//! It runs on its own thread and runtime, so tests that block do not stall it.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use tokio::io::copy_bidirectional;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub struct Proxy {
    pub addr: SocketAddr,
    target: Arc<Mutex<Option<SocketAddr>>>,
    blocked: watch::Sender<HashSet<IpAddr>>,
}

impl Proxy {
    pub fn start() -> Proxy {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("proxy bind");
        std_listener.set_nonblocking(true).expect("nonblocking");
        let addr = std_listener.local_addr().expect("proxy addr");
        let target: Arc<Mutex<Option<SocketAddr>>> = Default::default();
        let (blocked, rx) = watch::channel(HashSet::new());
        let t = target.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("proxy runtime");
            rt.block_on(async move {
                let listener = TcpListener::from_std(std_listener).expect("proxy listener");
                while let Ok((conn, from)) = listener.accept().await {
                    let to = *t.lock().expect("target");
                    if let Some(to) = to {
                        tokio::spawn(forward(conn, from.ip(), to, rx.clone()));
                    }
                }
            });
        });
        Proxy { addr, target, blocked }
    }

    /// Where connections go: the node's real address.
    pub fn set_target(&self, to: SocketAddr) {
        *self.target.lock().expect("target") = Some(to);
    }

    /// Cuts off connections from these source addresses.
    pub fn block(&self, from: &[IpAddr]) {
        self.blocked.send_modify(|b| b.extend(from.iter().copied()));
    }

    pub fn heal(&self) {
        self.blocked.send_modify(|b| b.clear());
    }
}

async fn forward(mut conn: TcpStream, from: IpAddr, to: SocketAddr, mut blocked: watch::Receiver<HashSet<IpAddr>>) {
    let is_blocked = |b: &HashSet<IpAddr>| b.contains(&from);
    if !is_blocked(&blocked.borrow_and_update()) {
        let Ok(mut up) = TcpStream::connect(to).await else { return };
        let _ = up.set_nodelay(true);
        let _ = conn.set_nodelay(true);
        tokio::select! {
            _ = copy_bidirectional(&mut conn, &mut up) => return,
            _ = blocked.wait_for(|b| is_blocked(b)) => {}
        }
        // Cut off: hold both ends, forward nothing.
        let _ = blocked.wait_for(|b| !is_blocked(b)).await;
        return;
    }
    let _ = blocked.wait_for(|b| !is_blocked(b)).await;
}
