//! Durable chat log in SQLite (system library through rusqlite).
//!
//! One writer thread owns the write connection and commits in groups: it takes every
//! operation queued while the previous transaction was being written (at most
//! [`MAX_BATCH`]), writes them in one transaction, and reports each result through its
//! callback only after the commit returned. With `synchronous=FULL` in WAL mode a commit
//! is on disk when it returns, so an acknowledged (echoed) message survives a crash and
//! there is one fsync per batch, not per message. Readers (history on room open, the
//! time-range API) use their own connections and never wait for the writer.

use std::path::{Path, PathBuf};
use std::sync::mpsc;

use rusqlite::{params, Connection, OpenFlags};

use super::protocol::{ChatMessage, Draft};

/// Operations taken into one transaction at most. A batch is broadcast at once, so every
/// connection's queue (`[chat] send_queue`) must hold at least this many frames.
pub const MAX_BATCH: usize = 128;
/// Rows the time-range API returns at most per request.
pub const MAX_RANGE_ROWS: usize = 10_000;

/// Why the store could not be opened or read.
#[derive(Debug, thiserror::Error)]
#[error("chat store {path}: {source}")]
pub struct StoreError {
    pub path: PathBuf,
    #[source]
    pub source: rusqlite::Error,
}

type Done<T> = Box<dyn FnOnce(Result<T, String>) + Send>;

enum Op {
    Insert(String, Draft, Done<ChatMessage>),
    Delete(String, u64, Done<bool>),
}

/// Handle to the chat log; cheap to clone.
#[derive(Clone)]
pub struct ChatStore {
    path: PathBuf,
    tx: mpsc::Sender<Op>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS messages (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    stream  TEXT    NOT NULL,
    name    TEXT    NOT NULL,
    text    TEXT    NOT NULL,
    ts      INTEGER NOT NULL,
    pdt     INTEGER NOT NULL,
    deleted INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS messages_stream_pdt ON messages (stream, pdt);
";

fn open_conn(path: &Path, flags: OpenFlags) -> Result<Connection, rusqlite::Error> {
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    Ok(conn)
}

impl ChatStore {
    /// Opens (creating it and its folder if needed) the log at `path` and starts the writer.
    pub fn open(path: &Path) -> Result<ChatStore, StoreError> {
        let err = |source| StoreError {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            if let Err(e) = std::fs::create_dir_all(dir) {
                return Err(err(rusqlite::Error::InvalidPath(
                    format!("{}: {e}", dir.display()).into(),
                )));
            }
        }
        let conn = open_conn(path, OpenFlags::default()).map_err(err)?;
        conn.execute_batch(SCHEMA).map_err(err)?;
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("chat-store".into())
            .spawn(move || writer(conn, rx))
            .map_err(|e| {
                err(rusqlite::Error::InvalidPath(
                    format!("writer thread: {e}").into(),
                ))
            })?;
        Ok(ChatStore {
            path: path.to_path_buf(),
            tx,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stores a message; `done` runs on the writer thread after the commit, with its id.
    pub fn insert(&self, stream: &str, draft: Draft, done: Done<ChatMessage>) {
        if let Err(mpsc::SendError(Op::Insert(_, _, done))) =
            self.tx.send(Op::Insert(stream.to_string(), draft, done))
        {
            done(Err("chat store writer stopped".into()));
        }
    }

    /// Marks message `id` of `stream` deleted; `done` gets whether it existed.
    pub fn delete(&self, stream: &str, id: u64, done: Done<bool>) {
        if let Err(mpsc::SendError(Op::Delete(_, _, done))) =
            self.tx.send(Op::Delete(stream.to_string(), id, done))
        {
            done(Err("chat store writer stopped".into()));
        }
    }

    fn reader(&self) -> Result<Connection, StoreError> {
        open_conn(&self.path, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(|source| StoreError {
            path: self.path.clone(),
            source,
        })
    }

    /// The newest `n` undeleted messages of `stream`, oldest first (blocking).
    pub fn recent(&self, stream: &str, n: usize) -> Result<Vec<ChatMessage>, StoreError> {
        let conn = self.reader()?;
        let mut v = query(
            &conn,
            "SELECT id, name, text, ts, pdt FROM messages WHERE stream = ?1 AND deleted = 0 \
             ORDER BY id DESC LIMIT ?2",
            params![stream, n as i64],
        )
        .map_err(|source| StoreError {
            path: self.path.clone(),
            source,
        })?;
        v.reverse();
        Ok(v)
    }

    /// Undeleted messages of `stream` with `from <= pdt < to` (UNIX ms), in timeline order,
    /// at most `limit` (blocking).
    pub fn range(
        &self,
        stream: &str,
        from: u64,
        to: u64,
        limit: usize,
    ) -> Result<Vec<ChatMessage>, StoreError> {
        let conn = self.reader()?;
        query(
            &conn,
            "SELECT id, name, text, ts, pdt FROM messages \
             WHERE stream = ?1 AND deleted = 0 AND pdt >= ?2 AND pdt < ?3 \
             ORDER BY pdt, id LIMIT ?4",
            params![
                stream,
                from.min(i64::MAX as u64) as i64,
                to.min(i64::MAX as u64) as i64,
                limit as i64
            ],
        )
        .map_err(|source| StoreError {
            path: self.path.clone(),
            source,
        })
    }
}

fn query(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<ChatMessage>, rusqlite::Error> {
    let mut stmt = conn.prepare(sql)?;
    let rows = stmt.query_map(params, |r| {
        Ok(ChatMessage {
            id: r.get::<_, i64>(0)? as u64,
            name: r.get(1)?,
            text: r.get(2)?,
            ts: r.get::<_, i64>(3)? as u64,
            pdt: r.get::<_, i64>(4)? as u64,
        })
    })?;
    rows.collect()
}

enum Outcome {
    Inserted(ChatMessage, Done<ChatMessage>),
    Deleted(bool, Done<bool>),
}

fn writer(mut conn: Connection, rx: mpsc::Receiver<Op>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        if let Err(e) = write_batch(&mut conn, batch) {
            tracing::error!(error = %e, "chat store write failed");
        }
    }
}

/// Writes one batch in one transaction; every callback learns the outcome after the commit.
fn write_batch(conn: &mut Connection, batch: Vec<Op>) -> Result<(), String> {
    let tx = match conn.transaction() {
        Ok(tx) => tx,
        Err(e) => {
            fail_all(batch, &e.to_string());
            return Err(e.to_string());
        }
    };
    let mut outcomes = Vec::with_capacity(batch.len());
    let mut failed: Option<String> = None;
    let mut rest = batch.into_iter();
    for op in rest.by_ref() {
        let r = match op {
            Op::Insert(stream, d, done) => match tx.execute(
                "INSERT INTO messages (stream, name, text, ts, pdt) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![stream, d.name, d.text, d.ts as i64, d.pdt as i64],
            ) {
                Ok(_) => Ok(Outcome::Inserted(
                    d.with_id(tx.last_insert_rowid() as u64),
                    done,
                )),
                Err(e) => Err((e, Op::Insert(String::new(), Draft::empty(), done))),
            },
            Op::Delete(stream, id, done) => match tx.execute(
                "UPDATE messages SET deleted = 1 WHERE stream = ?1 AND id = ?2 AND deleted = 0",
                params![stream, id as i64],
            ) {
                Ok(n) => Ok(Outcome::Deleted(n > 0, done)),
                Err(e) => Err((e, Op::Delete(String::new(), 0, done))),
            },
        };
        match r {
            Ok(o) => outcomes.push(o),
            Err((e, op)) => {
                failed = Some(e.to_string());
                fail_all(vec![op], &e.to_string());
                break;
            }
        }
    }
    if let Some(e) = failed {
        // Nothing of this batch was committed: everyone in it hears so.
        drop(tx);
        fail_all(rest.collect(), &e);
        fail_outcomes(outcomes, &e);
        return Err(e);
    }
    if let Err(e) = tx.commit() {
        fail_outcomes(outcomes, &e.to_string());
        return Err(e.to_string());
    }
    for o in outcomes {
        match o {
            Outcome::Inserted(m, done) => done(Ok(m)),
            Outcome::Deleted(found, done) => done(Ok(found)),
        }
    }
    Ok(())
}

fn fail_all(ops: Vec<Op>, e: &str) {
    for op in ops {
        match op {
            Op::Insert(_, _, done) => done(Err(e.to_string())),
            Op::Delete(_, _, done) => done(Err(e.to_string())),
        }
    }
}

fn fail_outcomes(outcomes: Vec<Outcome>, e: &str) {
    for o in outcomes {
        match o {
            Outcome::Inserted(_, done) => done(Err(e.to_string())),
            Outcome::Deleted(_, done) => done(Err(e.to_string())),
        }
    }
}

impl Draft {
    fn empty() -> Draft {
        Draft {
            name: String::new(),
            text: String::new(),
            ts: 0,
            pdt: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc::channel;

    fn temp_db(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "ferrocast-chat-{tag}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        ));
        dir.join("sub").join("chat.db")
    }

    fn draft(text: &str, pdt: u64) -> Draft {
        Draft {
            name: "a".into(),
            text: text.into(),
            ts: pdt + 100,
            pdt,
        }
    }

    fn insert(s: &ChatStore, stream: &str, d: Draft) -> ChatMessage {
        let (tx, rx) = channel();
        s.insert(stream, d, Box::new(move |r| tx.send(r).unwrap()));
        rx.recv().unwrap().unwrap()
    }

    fn delete(s: &ChatStore, stream: &str, id: u64) -> bool {
        let (tx, rx) = channel();
        s.delete(stream, id, Box::new(move |r| tx.send(r).unwrap()));
        rx.recv().unwrap().unwrap()
    }

    #[test]
    fn history_survives_reopening_without_deleted_messages() {
        let path = temp_db("reopen");
        {
            let s = ChatStore::open(&path).unwrap();
            let a = insert(&s, "demo", draft("one", 1000));
            let b = insert(&s, "demo", draft("two", 2000));
            insert(&s, "other", draft("elsewhere", 1500));
            assert!(b.id > a.id);
            assert!(delete(&s, "demo", a.id));
            assert!(!delete(&s, "demo", a.id), "already deleted");
            assert!(!delete(&s, "other", b.id), "wrong room");
        }
        let s = ChatStore::open(&path).unwrap();
        let h = s.recent("demo", 10).unwrap();
        assert_eq!(
            h.iter().map(|m| m.text.as_str()).collect::<Vec<_>>(),
            ["two"]
        );
        let _ = std::fs::remove_dir_all(path.parent().unwrap().parent().unwrap());
    }

    #[test]
    fn range_is_by_pdt_half_open_and_limited() {
        let path = temp_db("range");
        let s = ChatStore::open(&path).unwrap();
        for i in 0..10u64 {
            insert(&s, "demo", draft(&format!("m{i}"), 10_000 + i * 1000));
        }
        let r = s.range("demo", 12_000, 15_000, 100).unwrap();
        assert_eq!(
            r.iter().map(|m| m.text.as_str()).collect::<Vec<_>>(),
            ["m2", "m3", "m4"]
        );
        assert_eq!(s.range("demo", 0, u64::MAX, 4).unwrap().len(), 4);
        assert_eq!(s.recent("demo", 3).unwrap()[0].text, "m7");
        let _ = std::fs::remove_dir_all(path.parent().unwrap().parent().unwrap());
    }

    #[test]
    fn concurrent_inserts_are_grouped_and_all_acknowledged() {
        let path = temp_db("group");
        let s = ChatStore::open(&path).unwrap();
        let (tx, rx) = channel();
        for i in 0..2000u64 {
            let tx = tx.clone();
            s.insert(
                "demo",
                draft("x", i),
                Box::new(move |r| tx.send(r).unwrap()),
            );
        }
        let ids: std::collections::HashSet<u64> =
            (0..2000).map(|_| rx.recv().unwrap().unwrap().id).collect();
        assert_eq!(ids.len(), 2000);
        assert_eq!(s.range("demo", 0, u64::MAX, 5000).unwrap().len(), 2000);
        let _ = std::fs::remove_dir_all(path.parent().unwrap().parent().unwrap());
    }
}
