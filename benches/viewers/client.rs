//! A minimal HTTP/1.1 keep-alive client on one TCP connection, bound to a chosen source
//! address (so that many viewers can spread over 127.0.0.x: ~28k ports per source address).
//! GET only; Content-Length and chunked bodies; bodies are kept (playlists) or counted and
//! dropped (media), so a viewer costs one small buffer, not a copy of every part.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpSocket, TcpStream};

/// Header bytes we accept before calling a response malformed.
const MAX_HEAD: usize = 16 * 1024;
/// Largest body we keep in memory (playlists); media bodies are only counted.
const MAX_KEPT_BODY: usize = 4 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrKind {
    Connect,
    Io,
    Timeout,
    Malformed,
}

impl ErrKind {
    pub fn label(self) -> &'static str {
        match self {
            ErrKind::Connect => "connect",
            ErrKind::Io => "io",
            ErrKind::Timeout => "timeout",
            ErrKind::Malformed => "malformed",
        }
    }
}

pub struct Response {
    pub status: u16,
    /// The body if it was asked for (`keep`), else empty.
    pub body: Vec<u8>,
    pub len: u64,
}

pub struct Conn {
    src: Option<IpAddr>,
    dst: SocketAddr,
    host: String,
    stream: Option<BufReader<TcpStream>>,
    timeout: Duration,
    line: Vec<u8>,
}

impl Conn {
    pub fn new(src: Option<IpAddr>, dst: SocketAddr, host: String, timeout: Duration) -> Conn {
        Conn {
            src,
            dst,
            host,
            stream: None,
            timeout,
            line: Vec::with_capacity(256),
        }
    }

    async fn connect(&mut self) -> Result<(), ErrKind> {
        let sock = match self.dst {
            SocketAddr::V4(_) => TcpSocket::new_v4(),
            SocketAddr::V6(_) => TcpSocket::new_v6(),
        }
        .map_err(|_| ErrKind::Connect)?;
        if let Some(ip) = self.src {
            // Reuse ports in TIME_WAIT from earlier runs; the kernel still picks a free one.
            let _ = sock.set_reuseaddr(true);
            sock.bind(SocketAddr::new(ip, 0))
                .map_err(|_| ErrKind::Connect)?;
        }
        let s = sock.connect(self.dst).await.map_err(|_| ErrKind::Connect)?;
        let _ = s.set_nodelay(true);
        self.stream = Some(BufReader::with_capacity(8 * 1024, s));
        Ok(())
    }

    /// GET `path`; a keep-alive connection the server closed in between is retried once.
    pub async fn get(&mut self, path: &str, keep: bool) -> Result<Response, ErrKind> {
        let fresh = self.stream.is_none();
        match tokio::time::timeout(self.timeout, self.get_once(path, keep)).await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(ErrKind::Io)) if !fresh => {
                self.stream = None;
                match tokio::time::timeout(self.timeout, self.get_once(path, keep)).await {
                    Ok(r) => r,
                    Err(_) => {
                        self.stream = None;
                        Err(ErrKind::Timeout)
                    }
                }
            }
            Ok(Err(e)) => Err(e),
            Err(_) => {
                self.stream = None;
                Err(ErrKind::Timeout)
            }
        }
    }

    async fn get_once(&mut self, path: &str, keep: bool) -> Result<Response, ErrKind> {
        if self.stream.is_none() {
            self.connect().await?;
        }
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nUser-Agent: ferrocast-viewers\r\nAccept: */*\r\n\r\n",
            self.host
        );
        let r = self.exchange(req.as_bytes(), keep).await;
        if r.is_err() {
            self.stream = None;
        }
        r
    }

    async fn read_line(&mut self, head: &mut usize) -> Result<(), ErrKind> {
        let Some(s) = self.stream.as_mut() else {
            return Err(ErrKind::Io);
        };
        self.line.clear();
        let n = s
            .read_until(b'\n', &mut self.line)
            .await
            .map_err(|_| ErrKind::Io)?;
        if n == 0 {
            return Err(ErrKind::Io);
        }
        *head += n;
        if *head > MAX_HEAD {
            return Err(ErrKind::Malformed);
        }
        Ok(())
    }

    async fn exchange(&mut self, req: &[u8], keep: bool) -> Result<Response, ErrKind> {
        let s = self.stream.as_mut().ok_or(ErrKind::Io)?;
        s.get_mut().write_all(req).await.map_err(|_| ErrKind::Io)?;
        let mut head = 0usize;
        self.read_line(&mut head).await?;
        let status = std::str::from_utf8(&self.line)
            .ok()
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|c| c.parse::<u16>().ok())
            .ok_or(ErrKind::Malformed)?;
        let (mut length, mut chunked, mut close) = (None::<u64>, false, false);
        loop {
            self.read_line(&mut head).await?;
            let line = std::str::from_utf8(&self.line).map_err(|_| ErrKind::Malformed)?;
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            let Some((k, v)) = line.split_once(':') else {
                return Err(ErrKind::Malformed);
            };
            let v = v.trim();
            if k.eq_ignore_ascii_case("content-length") {
                length = Some(v.parse().map_err(|_| ErrKind::Malformed)?);
            } else if k.eq_ignore_ascii_case("transfer-encoding") {
                chunked = v.to_ascii_lowercase().contains("chunked");
            } else if k.eq_ignore_ascii_case("connection") {
                close = v.eq_ignore_ascii_case("close");
            }
        }
        let mut body = Vec::new();
        let mut len = 0u64;
        if status == 304 || status == 204 || (100..200).contains(&status) {
            // no body
        } else if chunked {
            loop {
                self.read_line(&mut head).await?;
                let size = std::str::from_utf8(&self.line)
                    .ok()
                    .map(|l| l.trim().split(';').next().unwrap_or("").to_string())
                    .and_then(|h| u64::from_str_radix(&h, 16).ok())
                    .ok_or(ErrKind::Malformed)?;
                if size == 0 {
                    // trailers until the empty line
                    loop {
                        head = 0;
                        self.read_line(&mut head).await?;
                        if self.line.trim_ascii().is_empty() {
                            break;
                        }
                    }
                    break;
                }
                self.body(size, keep, &mut body).await?;
                len += size;
                head = 0;
                self.read_line(&mut head).await?; // CRLF after the chunk
            }
        } else if let Some(n) = length {
            self.body(n, keep, &mut body).await?;
            len = n;
        } else {
            // no length: the body runs to the end of the connection
            let s = self.stream.as_mut().ok_or(ErrKind::Io)?;
            let mut rest = Vec::new();
            s.read_to_end(&mut rest).await.map_err(|_| ErrKind::Io)?;
            len = rest.len() as u64;
            if keep {
                body = rest;
            }
            close = true;
        }
        if close {
            self.stream = None;
        }
        Ok(Response { status, body, len })
    }

    async fn body(&mut self, mut n: u64, keep: bool, out: &mut Vec<u8>) -> Result<(), ErrKind> {
        if keep && out.len() as u64 + n > MAX_KEPT_BODY as u64 {
            return Err(ErrKind::Malformed);
        }
        let s = self.stream.as_mut().ok_or(ErrKind::Io)?;
        while n > 0 {
            let buf = s.fill_buf().await.map_err(|_| ErrKind::Io)?;
            if buf.is_empty() {
                return Err(ErrKind::Io);
            }
            let take = buf.len().min(n as usize);
            if keep {
                out.extend_from_slice(&buf[..take]);
            }
            s.consume(take);
            n -= take as u64;
        }
        Ok(())
    }
}
