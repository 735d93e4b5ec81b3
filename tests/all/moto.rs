//! A real S3-compatible server for tests: `moto_server` (PyPI's
//! `moto[server]`, installed with pip when missing) on a free loopback port.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The release the tests run against.
const MOTO: &str = "moto[server]==5.2.1";

pub struct Moto {
    child: Child,
    pub endpoint: String,
}

impl Moto {
    pub fn start() -> Moto {
        let port = std::net::TcpListener::bind("127.0.0.1:0").expect("free port").local_addr().expect("addr").port();
        let child = Command::new(crate::common::pip_tool("moto_server", MOTO))
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto_server");
        let endpoint = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "moto_server did not listen on {port} within 30 s");
            std::thread::sleep(Duration::from_millis(100));
        }
        Moto { child, endpoint }
    }

    /// Makes a bucket (moto accepts unsigned requests).
    pub fn create_bucket(&self, name: &str) {
        let out = Command::new("curl").args(["-sf", "-X", "PUT", &format!("{}/{name}", self.endpoint)]).output().expect("curl");
        assert!(out.status.success(), "creating bucket {name}: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// `[backup.target]`-style options for this server.
    pub fn options_toml(&self) -> String {
        format!(
            "options = {{ endpoint = {:?}, allow_http = \"true\", region = \"us-east-1\", access_key_id = \"test\", secret_access_key = \"test\" }}",
            self.endpoint
        )
    }

    /// Stops the server: its data is gone with it.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        self.stop();
    }
}
