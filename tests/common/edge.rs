//! The nginx caching edge (`config/nginx-edge.conf` rendered by `scripts/edge.sh`) in front of
//! one origin or several (a cluster's nodes), as a child process of the test.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::cluster::free_port;
use super::tail;

/// nginx run by `scripts/edge.sh` (which execs it: the child's PID is the master's). Dropping
/// it stops nginx gracefully (SIGQUIT: workers finish, logs are flushed), then kills it.
pub struct Edge {
    child: Child,
    dir: PathBuf,
    pub port: u16,
}

impl Edge {
    /// `origin`: `host:port`, or several separated by commas.
    pub fn start(origin: &str, dir: &Path) -> Edge {
        assert!(
            Command::new("nginx")
                .arg("-v")
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success()),
            "nginx is not installed: these tests need Debian's nginx (scripts/setup.sh test)"
        );
        let port = free_port();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/edge.sh");
        let log = std::fs::File::create(dir.join("edge-stderr.log")).unwrap();
        let child = Command::new(script)
            .args([origin, &format!("127.0.0.1:{port}")])
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("run scripts/edge.sh");
        let mut edge = Edge {
            child,
            dir: dir.to_path_buf(),
            port,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(st)) = edge.child.try_wait() {
                panic!(
                    "nginx exited ({st}):\n{}",
                    tail(&dir.join("edge-stderr.log"), 20)
                );
            }
            assert!(Instant::now() < deadline, "nginx did not listen in 10 s");
            std::thread::sleep(Duration::from_millis(50));
        }
        edge
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Graceful stop: flushes the buffered access log.
    pub fn stop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = Command::new("kill")
                .args(["-QUIT", &self.child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(5);
            while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// (status, cache status, request URI) per access-log line.
    pub fn log(&self) -> Vec<(u16, String, String)> {
        let text = std::fs::read_to_string(self.dir.join("access.log")).unwrap_or_default();
        text.lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split(' ').collect();
                let uri = l.rsplit('"').nth(1)?.to_string();
                Some((f.get(1)?.parse().ok()?, f.get(2)?.to_string(), uri))
            })
            .collect()
    }
}

impl Drop for Edge {
    fn drop(&mut self) {
        self.stop();
    }
}
