//! A real cluster for tests: one `nats-server` process with JetStream and ferrocast nodes as
//! separate processes of the release binary (so a node can be killed with SIGKILL and each
//! node's log is its own file).

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{config_toml, require_tool, tail, Http, ServerOpts, TempDir};

/// A free TCP port on loopback (bound and released; the caller binds it next).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Waits until something accepts TCP connections on `addr`.
pub fn wait_listening(addr: SocketAddr, within: Duration, what: &str, log: &std::path::Path) {
    let t0 = Instant::now();
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        assert!(
            t0.elapsed() < within,
            "{what} not listening on {addr} after {within:?}; its log:\n{}",
            tail(log, 40)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A `nats-server -js` on a loopback port, with its JetStream store in a temp dir (kept
/// across [`NatsServer::restart`]).
pub struct NatsServer {
    pub port: u16,
    pub dir: TempDir,
    child: Option<Child>,
}

impl NatsServer {
    pub fn start() -> NatsServer {
        require_tool("nats-server");
        let mut n = NatsServer {
            port: free_port(),
            dir: TempDir::new("nats"),
            child: None,
        };
        n.spawn();
        n
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("nats.log")
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log())
            .expect("nats log");
        let child = Command::new("nats-server")
            .args(["-js", "-a", "127.0.0.1", "-p", &self.port.to_string()])
            .arg("-sd")
            .arg(self.dir.path().join("js"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start nats-server");
        self.child = Some(child);
        let addr: SocketAddr = format!("127.0.0.1:{}", self.port).parse().unwrap();
        wait_listening(addr, Duration::from_secs(20), "nats-server", &self.log());
    }

    /// Stops the server (SIGKILL).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stops and starts it again on the same port and store.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One ferrocast node: the release binary with `[cluster]`, on its own ports.
pub struct Node {
    pub name: String,
    pub http: SocketAddr,
    pub rtmp: SocketAddr,
    pub dir: TempDir,
    pub client: Http,
    child: Option<Child>,
    config: PathBuf,
}

impl Node {
    /// Starts node `name` in the cluster of `nats`, with `opts`' streams and settings, and
    /// waits until it answers `/healthz`.
    pub fn start(name: &str, nats: &NatsServer, opts: &ServerOpts) -> Node {
        let dir = TempDir::new(&format!("node-{name}"));
        let http: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let rtmp: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let mut toml = config_toml(opts, &http.to_string(), &rtmp.to_string());
        toml.push_str(&format!(
            "\n[cluster]\nnats = [\"{}\"]\nnode = \"{name}\"\nadvertise = \"http://{http}\"\n",
            nats.url()
        ));
        super::with_own_chat_store(&mut toml, dir.path());
        let config = dir.path().join("ferrocast.toml");
        std::fs::write(&config, toml).expect("node config");
        let mut node = Node {
            name: name.to_string(),
            http,
            rtmp,
            dir,
            client: Http::new(),
            child: None,
            config,
        };
        node.spawn();
        node
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("ferrocast.log")
    }

    /// Everything this node logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("node log");
        let child = Command::new(env!("CARGO_BIN_EXE_ferrocast"))
            .arg("serve")
            .arg("--config")
            .arg(&self.config)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env(
                "RUST_LOG",
                "info,srt_protocol=error,srt_tokio=error,async_nats=warn",
            )
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start ferrocast node");
        self.child = Some(child);
        wait_listening(
            self.http,
            Duration::from_secs(30),
            &format!("node {}", self.name),
            &self.log_path(),
        );
    }

    /// SIGKILL: no shutdown, no flush.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }

    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.http)
    }

    pub fn rtmp_url(&self, name: &str, key: &str) -> String {
        format!("rtmp://{}/live/{name}?key={key}", self.rtmp)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "---- node {} log (tail) ----\n{}",
                self.name,
                tail(&self.log_path(), 40)
            );
        }
        self.kill9();
    }
}
