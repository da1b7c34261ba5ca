//! The watch page's chat in a real browser against the real chat server: ffmpeg publishes over
//! RTMP to an in-process server, headless Chromium (playwright-core, `tests/browser/chat.js`)
//! opens `/watch/NAME`, and Rust WebSocket clients (tokio-tungstenite) talk in the room.
//!
//! Asserts, with the WebSocket (the page opened with `?name=&token=`, i.e. as a moderator):
//! - a message whose text is markup (`<img src=x onerror=...><b>bold</b>`) appears as that
//!   literal text: no element is created, no script runs (no dialog);
//! - it appears in step with the picture: it arrived while the picture was still before its
//!   `pdt`, was held, and was released when the presented frame's program date-time reached
//!   `pdt` (the page's record of the frame; hls.js's playing date agrees), not before: it was
//!   held at least about as long as the picture needed to get there;
//! - the moderator controls work both ways: a delete from a Rust moderator client removes the
//!   message from the page; the page's delete button removes one for the other clients too;
//! - the page's send box reaches other clients under `?name=`; with the "in step" toggle off a
//!   message shows on arrival, before its picture.
//!
//! And with `?chat=stream` (no WebSocket opened: checked with Playwright's websocket event and
//! the page's own counter) the same kind of message appears from the in-stream metadata alone
//! (ID3 in emsg), when playback reaches its media time; a deletion in the stream removes it.
//!
//! Needs what tests/browser.rs needs (node, Debian's chromium, node_modules/playwright-core,
//! web/vendor/hls.min.js, ffmpeg). Numbers: `cargo test --release --test browser_chat -- --nocapture`.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::browser::{check_prerequisites, root};
use common::ws::{self, WsClient};
use common::{tail, Publisher, ServerOpts, TestServer};
use serde_json::{json, Value};

const STREAM: &str = "chatview";
const KEY: &str = "chat-view-key";
const MOD_TOKEN: &str = "browser-mod-token";
const EXTRA: &str = "\n[chat]\nmoderator_tokens = [\"browser-mod-token\"]\n";
const PUBLISH_CAP_SECS: f64 = 240.0;
const MARKUP: &str = "<img src=x onerror=alert(1)><b>bold</b> & <script>alert(2)</script>";

// ---------------------------------------------------------------------------------------------
// The browser, driven line by line (tests/browser/chat.js)

struct Page {
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
    err: PathBuf,
}

impl Page {
    fn open(url: &str, scratch: &std::path::Path, tag: &str) -> Page {
        let err = scratch.join(format!("chat-js-{tag}.err"));
        let mut child = Command::new("node")
            .arg(root().join("tests/browser/chat.js"))
            .arg(url)
            .current_dir(root())
            .env("TMPDIR", scratch)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&err).unwrap())
            .spawn()
            .expect("start node tests/browser/chat.js");
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        Page {
            child,
            stdin,
            lines,
            err,
        }
    }

    /// Sends one command and waits (blocking this worker thread) for its answer.
    fn cmd(&mut self, c: Value, timeout: Duration) -> Value {
        tokio::task::block_in_place(|| {
            writeln!(self.stdin, "{c}").expect("write to chat.js");
            self.stdin.flush().unwrap();
            let line = self.lines.recv_timeout(timeout).unwrap_or_else(|e| {
                panic!(
                    "chat.js gave no answer to {c} in {timeout:?} ({e}):\n{}",
                    tail(&self.err, 30)
                )
            });
            serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("chat.js printed no JSON ({e}): {line}"))
        })
    }

    fn wait_playing(&mut self) -> Value {
        let r = self.cmd(
            json!({"cmd": "wait-playing", "timeout": 45}),
            Duration::from_secs(60),
        );
        assert_eq!(r["ok"], true, "the page never played with chat ready: {r}");
        r
    }

    /// Waits until playback has settled at its distance from the live edge, so a message's
    /// hold measures the picture's progress, not hls.js's start-up catch-up.
    fn wait_steady(&mut self) -> Value {
        let r = self.cmd(
            json!({"cmd": "wait-steady", "timeout": 30}),
            Duration::from_secs(45),
        );
        assert_eq!(r["ok"], true, "playback never settled: {r}");
        r
    }

    fn wait_shown(&mut self, id: u64) -> Value {
        let r = self.cmd(
            json!({"cmd": "wait-shown", "id": id, "timeout": 20}),
            Duration::from_secs(40),
        );
        assert_eq!(
            r["ok"], true,
            "message {id} never appeared on the page: {r}"
        );
        r
    }

    fn wait_gone(&mut self, id: u64) -> Value {
        let r = self.cmd(
            json!({"cmd": "wait-gone", "id": id, "timeout": 15}),
            Duration::from_secs(30),
        );
        assert_eq!(
            r["ok"], true,
            "message {id} was not removed from the page: {r}"
        );
        r
    }
}

impl Drop for Page {
    fn drop(&mut self) {
        let _ = writeln!(self.stdin, "{}", json!({"cmd": "quit"}));
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A chat client in the test stream's room.
async fn chat(srv: &TestServer, query: &str) -> WsClient {
    ws::connect(srv.http, STREAM, query).await.0
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or(f64::NAN)
}

/// Checks that message `m` was shown as literal text and in step with the picture; returns
/// a one-line report. `stream`: released on the media time of its in-stream event.
fn check_shown(m: &Value, r: &Value, stream: bool) -> String {
    let id = m["id"].as_u64().unwrap();
    let pdt = f(&m["pdt"]);
    let rec = &r["rec"];
    let dom = &r["dom"];
    let ctx = format!(
        "message {m}\npage record {rec}\nDOM {dom}\nalerts {}",
        r["alerts"]
    );
    // Text, never markup.
    assert_eq!(dom["text"], m["text"], "the text differs: {ctx}");
    assert_eq!(dom["textChildElements"], 0, "markup became elements: {ctx}");
    assert_eq!(dom["listImgs"], 0, "an <img> was created: {ctx}");
    assert_eq!(dom["listBolds"], 0, "a <b> was created: {ctx}");
    assert!(
        r["alerts"].as_array().is_some_and(|a| a.is_empty())
            && r["chat"]["pageAlerts"]
                .as_array()
                .is_some_and(|a| a.is_empty()),
        "a dialog was opened (script ran): {ctx}"
    );
    assert_eq!(rec["id"].as_u64(), Some(id), "{ctx}");
    // In step: it arrived before its picture, was held, and released by the picture.
    let reason = rec["reason"].as_str().unwrap_or("");
    assert!(
        reason == "sync" || reason == "sync-timer",
        "not released by the picture (reason {reason:?}; 'behind' would mean the picture \
         had passed pdt when the message arrived): {ctx}"
    );
    let held = f(&rec["heldMs"]);
    let lag_ms = f(&rec["paintAt"]) - f(&rec["frameExpectedDisplay"]);
    if stream {
        let pts = f(&rec["pts"]);
        assert!(pts.is_finite(), "no media time for a stream message: {ctx}");
        let at_arrival = f(&rec["currentTimeAtArrival"]);
        assert!(
            at_arrival < pts,
            "the picture had passed the event when it was parsed: {ctx}"
        );
        if reason == "sync" {
            assert!(
                f(&rec["frameMediaTime"]) >= pts - 0.001,
                "released by a frame before the event's media time: {ctx}"
            );
        }
        assert!(
            f(&rec["currentTimeAtShow"]) >= pts - 0.05,
            "shown before playback reached the event: {ctx}"
        );
        let need_s = pts - at_arrival;
        assert!(
            held >= need_s * 1000.0 / 1.2 - 100.0,
            "held {held:.0} ms, but the picture needed ~{:.0} ms to reach it: {ctx}",
            need_s * 1000.0
        );
        format!(
            "stream: id {id} parsed {:.0} ms ahead of its picture, held {held:.0} ms, \
             paint − frame display {lag_ms:.1} ms, reason {reason}",
            need_s * 1000.0
        )
    } else {
        let at_arrival = f(&rec["playingDateAtArrival"]);
        assert!(
            at_arrival < pdt,
            "the picture was already at/after pdt when the message arrived: {ctx}"
        );
        if reason == "sync" {
            assert!(
                f(&rec["frameDate"]) >= pdt - 1.0,
                "released by a frame whose PDT is before pdt: {ctx}"
            );
        }
        let at_show = f(&rec["playingDateAtShow"]);
        assert!(
            at_show >= pdt - 50.0,
            "shown when hls.js's playing date was {:.0} ms before pdt: {ctx}",
            pdt - at_show
        );
        let need = pdt - at_arrival;
        // hls.js may play up to 1.15x to catch up; allow for that and timer noise.
        assert!(
            held >= need / 1.2 - 100.0,
            "held only {held:.0} ms while the picture needed ~{need:.0} ms to reach pdt: {ctx}"
        );
        assert!(
            held <= need + 3000.0,
            "held {held:.0} ms, far longer than the ~{need:.0} ms the picture needed: {ctx}"
        );
        format!(
            "websocket: id {id} arrived {need:.0} ms before its picture, held {held:.0} ms, \
             playing date at display − pdt {:.0} ms, paint − frame display {lag_ms:.1} ms",
            at_show - pdt
        )
    }
}

/// One test at a time: each runs a Chromium and an ffmpeg, and timing is what they measure.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn live_server() -> (TestServer, Publisher) {
    check_prerequisites();
    std::env::set_current_dir(root()).expect("cd to the crate root");
    let srv = TestServer::start(ServerOpts {
        window: 6,
        grace: "10s",
        streams: vec![(STREAM, KEY)],
        extra: EXTRA,
        ..Default::default()
    })
    .await;
    let scratch = srv.dir.path().to_path_buf();
    let mut publisher =
        Publisher::start(&srv.rtmp_url(STREAM, Some(KEY)), PUBLISH_CAP_SECS, &scratch);
    srv.wait_live(STREAM, &mut publisher, Duration::from_secs(30))
        .await;
    (srv, publisher)
}

/// WebSocket mode, the page as a moderator.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_page_chat_over_websocket_in_step_with_the_picture() {
    let _serial = SERIAL.lock().await;
    let (srv, mut publisher) = live_server().await;
    let scratch = srv.dir.path().to_path_buf();
    let url = format!(
        "http://{}/watch/{STREAM}?name=pagewatcher&token={MOD_TOKEN}",
        srv.http
    );
    let mut page = Page::open(&url, &scratch, "ws");
    let ready = page.wait_playing();
    assert_eq!(ready["chat"]["mode"], "ws", "{ready}");
    assert_eq!(
        ready["chat"]["me"], "pagewatcher",
        "?name= passed through: {ready}"
    );
    assert_eq!(
        ready["chat"]["moderator"], true,
        "?token= passed through: {ready}"
    );
    assert_eq!(
        ready["chat"]["modVisible"], true,
        "moderator controls shown: {ready}"
    );
    assert_eq!(
        ready["chat"]["inputDisabled"], false,
        "send box enabled: {ready}"
    );
    let steady = page.wait_steady();
    println!(
        "steady after {} ms: {}",
        steady["waitedMs"], steady["sample"]
    );

    let mut alice = chat(&srv, "?name=alice").await;
    let mut moder = chat(&srv, &format!("?name=keeper&token={MOD_TOKEN}")).await;

    let m1 = alice.say_and_echo(&format!("hello {MARKUP}")).await;
    let r1 = page.wait_shown(m1["id"].as_u64().unwrap());
    let line1 = check_shown(&m1, &r1, false);
    println!("{line1}");
    assert_eq!(r1["dom"]["name"], "alice", "{r1}");
    assert_eq!(
        r1["dom"]["deleteButton"], true,
        "no delete button for a moderator: {r1}"
    );
    // The same message in the stream (when the server carries chat as timed metadata): its
    // media time maps to the same program date-time.
    if let Some(meta) = r1["meta"].as_object() {
        let d = f(&meta["pdtOfPts"]) - f(&m1["pdt"]);
        println!(
            "in-stream event of id {}: its media time is {d:.0} ms from pdt",
            m1["id"]
        );
        assert!(d.abs() < 400.0, "in-stream event time vs pdt: {d} ms: {r1}");
    }

    let mut lines = vec![line1];
    let part_target = srv.playlist(STREAM, "").await.part_target();
    let mut last_pdt = f(&m1["pdt"]) / 1000.0;
    for i in 0..3 {
        // Each message at its own place on the timeline: the live edge (which stamps pdt) has
        // moved two parts on since the last one.
        srv.wait_edge_past(STREAM, last_pdt, 1.5 * part_target)
            .await;
        let m = alice
            .say_and_echo(&format!("message {i} <i>not italic</i>"))
            .await;
        last_pdt = f(&m["pdt"]) / 1000.0;
        let r = page.wait_shown(m["id"].as_u64().unwrap());
        lines.push(check_shown(&m, &r, false));
    }

    // A moderator client deletes a message: it leaves the page.
    let m2 = alice
        .say_and_echo("to be deleted by a moderator client")
        .await;
    let id2 = m2["id"].as_u64().unwrap();
    page.wait_shown(id2);
    moder.send_json(json!({"type": "delete", "id": id2})).await;
    alice.expect_where("deleted", |v| v["id"] == id2).await;
    page.wait_gone(id2);

    // The page's own delete button: everyone else is told.
    let id1 = m1["id"].as_u64().unwrap();
    let r = page.cmd(
        json!({"cmd": "click-delete", "id": id1}),
        Duration::from_secs(20),
    );
    assert_eq!(r["ok"], true, "{r}");
    alice.expect_where("deleted", |v| v["id"] == id1).await;
    page.wait_gone(id1);

    // The page's send box reaches the other clients, under the page's name.
    let r = page.cmd(
        json!({"cmd": "type-send", "text": "typed <u>on</u> the page"}),
        Duration::from_secs(20),
    );
    assert_eq!(r["ok"], true, "{r}");
    let typed = alice
        .expect_where("message", |v| v["text"] == "typed <u>on</u> the page")
        .await;
    assert_eq!(typed["name"], "pagewatcher", "{typed}");
    page.wait_shown(typed["id"].as_u64().unwrap());

    // "Instant": the toggle off shows a message on arrival, before its picture.
    let r = page.cmd(json!({"cmd": "set-sync"}), Duration::from_secs(20));
    assert_eq!(r["sync"], false, "{r}");
    let m = alice.say_and_echo("instant one").await;
    let r = page.wait_shown(m["id"].as_u64().unwrap());
    let rec = &r["rec"];
    assert_eq!(rec["reason"], "instant", "{r}");
    assert!(
        f(&rec["heldMs"]) < 100.0 && f(&rec["playingDateAtShow"]) < f(&m["pdt"]),
        "with the toggle off the message should show on arrival, before its picture: {r}"
    );
    println!(
        "instant: shown {:.0} ms after arrival, {:.0} ms before its picture",
        f(&rec["heldMs"]),
        f(&m["pdt"]) - f(&rec["playingDateAtShow"])
    );

    let st = page.cmd(json!({"cmd": "state"}), Duration::from_secs(20));
    assert_eq!(st["chat"]["wsOpened"], 1, "the page reconnected: {st}");
    let ws = st["websockets"].as_array().cloned().unwrap_or_default();
    assert_eq!(ws.len(), 1, "{st}");
    assert!(
        ws[0].as_str().unwrap_or("").contains(&format!(
            "/live/{STREAM}/chat?name=pagewatcher&token={MOD_TOKEN}"
        )),
        "{st}"
    );
    assert!(
        st["consoleErrors"].as_array().is_some_and(|a| a.is_empty()),
        "console errors: {st}"
    );
    drop(page);
    if let Some(status) = publisher.try_wait() {
        panic!(
            "ffmpeg exited early ({status}):\n{}",
            tail(&publisher.log, 20)
        );
    }
    drop(publisher);
    println!("browser chat (WebSocket):\n  {}", lines.join("\n  "));
}

/// `?chat=stream`: no WebSocket, the stream's own metadata (emsg/ID3) alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_page_chat_from_in_stream_metadata_alone() {
    let _serial = SERIAL.lock().await;
    let (srv, mut publisher) = live_server().await;
    let scratch = srv.dir.path().to_path_buf();
    let mut alice = chat(&srv, "?name=alice").await;
    let mut moder = chat(&srv, &format!("?name=keeper&token={MOD_TOKEN}")).await;
    let url = format!("http://{}/watch/{STREAM}?chat=stream", srv.http);
    let mut page = Page::open(&url, &scratch, "stream");
    let ready = page.wait_playing();
    assert_eq!(ready["chat"]["mode"], "stream", "{ready}");
    assert_eq!(ready["chat"]["inputDisabled"], true, "read-only: {ready}");
    let steady = page.wait_steady();
    println!(
        "steady after {} ms: {}",
        steady["waitedMs"], steady["sample"]
    );
    let m3 = alice
        .say_and_echo(&format!("from the stream {MARKUP}"))
        .await;
    let id3 = m3["id"].as_u64().unwrap();
    let r3 = page.cmd(
        json!({"cmd": "wait-shown", "id": id3, "timeout": 20}),
        Duration::from_secs(40),
    );
    assert_eq!(
        r3["ok"], true,
        "message {id3} never appeared from the stream; in-stream chat events the page saw: {} \
         (none: the server did not carry chat in the parts' emsg/ID3 metadata): {r3}",
        r3["chat"]["meta"]
    );
    assert_eq!(r3["rec"]["origin"], "stream", "{r3}");
    let line3 = check_shown(&m3, &r3, true);
    println!("browser chat (in-stream metadata): {line3}");
    assert_eq!(
        r3["rec"]["pdt"], m3["pdt"],
        "the event carries the message: {r3}"
    );
    let d = f(&r3["meta"]["pdtOfPts"]) - f(&m3["pdt"]);
    assert!(
        d.abs() < 400.0,
        "the event's media time maps to {d:.0} ms from the message's pdt: {r3}"
    );
    // A deletion travels in the stream too.
    moder.send_json(json!({"type": "delete", "id": id3})).await;
    page.wait_gone(id3);
    let st = page.cmd(json!({"cmd": "state"}), Duration::from_secs(20));
    assert_eq!(
        st["chat"]["wsOpened"], 0,
        "?chat=stream opened a WebSocket: {st}"
    );
    assert!(
        st["websockets"].as_array().is_some_and(|a| a.is_empty()),
        "?chat=stream opened a WebSocket: {st}"
    );
    drop(page);

    if let Some(status) = publisher.try_wait() {
        panic!(
            "ffmpeg exited early ({status}):\n{}",
            tail(&publisher.log, 20)
        );
    }
    drop(publisher);
}
