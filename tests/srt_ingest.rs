//! SRT ingest end to end: ffmpeg (libsrt) and srt-live-transmit publish MPEG-TS with either
//! streamid form, with and without a passphrase; the result is the same LL-HLS as from RTMP.
//! Refused callers (wrong key or passphrase, no streamid, ...) create nothing, and bad input
//! (garbage datagrams, non-TS payload, a broken PMT) ends only its own session.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::hls::{self, MediaPlaylist};
use common::mp4;
use common::*;

const OPEN: (&str, &str) = ("demo", "s3cret-key");
const CAM: (&str, &str) = ("cam2", "cam2-key");
const LOCKED: (&str, &str) = ("locked", "locked-key");
const PASSPHRASE: &str = "correct-horse-battery";
const VICTIM: (&str, &str) = ("victim", "victim-key");

/// How long a refused caller may take to give up.
const REFUSAL_EXIT: Duration = Duration::from_secs(15);

async fn server(grace: &'static str) -> TestServer {
    TestServer::start(ServerOpts {
        window: 10,
        grace,
        streams: vec![OPEN, CAM, LOCKED, VICTIM],
        passphrases: vec![(LOCKED.0, PASSPHRASE)],
        ..Default::default()
    })
    .await
}

fn acl(name: &str, key: &str) -> String {
    format!("#!::r=live/{name},m=publish,s={key}")
}

/// The clip remuxed to MPEG-TS (what OBS sends over SRT), cached beside the clip.
fn clip_ts() -> PathBuf {
    let path = clip().with_extension("ts");
    if !path.exists() {
        let tmp = path.with_extension(format!("{}.tmp.ts", std::process::id()));
        let out = Command::new(require_tool("ffmpeg"))
            .args(["-hide_banner", "-nostdin", "-loglevel", "error", "-y", "-i"])
            .arg(clip())
            .args(["-c", "copy", "-f", "mpegts"])
            .arg(&tmp)
            .output()
            .expect("run ffmpeg");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::rename(&tmp, &path).unwrap();
    }
    path
}

/// A caller URL for srt-live-transmit: its `latency` is in milliseconds (ffmpeg's in
/// microseconds) and it has no `pkt_size`. 1 s, as for ffmpeg callers (see `srt_url`).
fn slt_url(srv: &TestServer, stream_id: &str, extra: &str) -> String {
    let mut url = format!("srt://{}?streamid={stream_id}&latency=1000", srv.srt);
    if !extra.is_empty() {
        url.push('&');
        url.push_str(extra);
    }
    url
}

/// srt-live-transmit and the process feeding its stdin; both killed on drop.
struct Relay {
    slt: KillOnDrop,
    _feeder: KillOnDrop,
}

impl Relay {
    fn kill(&mut self) {
        let _ = self.slt.0.kill();
    }
}

/// srt-live-transmit sending `input` (a file, as fast as SRT takes it) or, with `None`, an
/// ffmpeg `-re` pipe of the looped clip for `secs`, to `url`. No auto-reconnect: a session
/// the server ends stays ended.
fn srt_live_transmit(url: &str, input: Option<&Path>, secs: f64, log_dir: &Path) -> Relay {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let slt = require_tool("srt-live-transmit");
    // One log per relay: a test that runs several keeps each one's.
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let log = std::fs::File::create(log_dir.join(format!("slt-{n}.log"))).unwrap();
    // srt-live-transmit polls its input: it needs a pipe, not a regular file.
    let mut feeder = match input {
        Some(file) => Command::new("cat")
            .arg(file)
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn cat"),
        // Looped from the FLV clip: looping the TS copy with `-c copy` loses the IDR at
        // every loop point (ffmpeg 5.1), which would leave a 4 s segment where the GOP is 2 s.
        None => Command::new(require_tool("ffmpeg"))
            .args(["-hide_banner", "-nostdin", "-loglevel", "error", "-re"])
            .args(["-stream_loop", "-1", "-i"])
            .arg(clip())
            .args(["-t", &format!("{secs}"), "-c", "copy", "-f", "mpegts", "-"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn ffmpeg"),
    };
    let stdin = Stdio::from(feeder.stdout.take().expect("feeder stdout"));
    let child = Command::new(slt)
        .args(["-q", "-a:no", "file://con", url])
        .stdin(stdin)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn srt-live-transmit");
    Relay {
        slt: KillOnDrop(child),
        _feeder: KillOnDrop(feeder),
    }
}

/// Waits until `name` lists more than `n` segments, then checks the LL-HLS rules and decodes
/// its first `n` (always the same ones, however fast the machine) with ffprobe: H.264 1280x720
/// + AAC 48 kHz stereo, keyframe-first segments, one GOP each.
async fn check_stream(srv: &TestServer, name: &str, n: usize) -> MediaPlaylist {
    let p = srv
        .wait_playlist(
            name,
            Duration::from_secs(40),
            &format!("{} segments of {name}", n + 1),
            |p| p.segments.len() > n,
        )
        .await;
    hls::check_rules(&p);
    let map = p.segments[0].map.clone().expect("EXT-X-MAP");
    let init_bytes = srv.client.get(&srv.media_url(name, &map)).await.body;
    let init = mp4::parse_init(&init_bytes);
    assert_eq!(
        (init.video().width, init.video().height),
        (WIDTH as u16, HEIGHT as u16)
    );
    assert_eq!(init.audio().timescale, 48_000);
    let dir = TempDir::new("srt-check");
    let mut all = vec![init_bytes.to_vec()];
    let complete = &p.segments[..n];
    for s in complete {
        assert!(
            (s.duration - gop_secs()).abs() < 0.05,
            "{name} msn {} lasts {} with a {} s GOP:\n{}",
            s.msn,
            s.duration,
            gop_secs(),
            p.text
        );
        let body = srv.client.get(&srv.media_url(name, &s.uri)).await.body;
        let path = write_file(dir.path(), "seg.mp4", &[&all[0], &body]);
        let (key, pict) = first_video_frame(&path);
        assert!(
            key,
            "{name} {}: first frame is {pict}, not a keyframe",
            s.uri
        );
        all.push(body.to_vec());
    }
    let refs: Vec<&[u8]> = all.iter().map(|v| v.as_slice()).collect();
    let whole = write_file(dir.path(), "window.mp4", &refs);
    let pr = probe(&whole);
    assert_eq!(
        (pr.video_codec.as_str(), pr.audio_codec.as_str()),
        ("h264", "aac")
    );
    assert_eq!((pr.width, pr.height), (WIDTH, HEIGHT));
    assert_eq!((pr.sample_rate, pr.channels), (48_000, 2));
    let total: f64 = complete.iter().map(|s| s.duration).sum();
    let expect = (total * FPS).round() as i64;
    assert!(
        (pr.video_frames as i64 - expect).abs() <= 2 * complete.len() as i64,
        "{name}: {total}s decode to {} frames, expected ~{expect}",
        pr.video_frames
    );
    let expect_audio = total * 48_000.0 / 1024.0;
    assert!(
        (pr.audio_frames as f64 - expect_audio).abs() <= expect_audio * 0.05,
        "{name}: {} AAC frames, expected ~{expect_audio:.0}",
        pr.audio_frames
    );
    let errors = decode_errors(&whole);
    assert!(errors.trim().is_empty(), "{name} decode errors:\n{errors}");
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn srt_callers_publish_ll_hls_with_either_streamid_form() {
    let srv = server("5s").await;
    let dir = srv.dir.path();
    // ffmpeg with the access-control form, ffmpeg with live/NAME?key= percent-encoded (as some
    // encoders send it), and srt-live-transmit with a passphrase (AES-128): three real callers
    // on one UDP port at once.
    let mut a = Publisher::start_srt(&srv.srt_url(Some(&acl(OPEN.0, OPEN.1)), ""), 40.0, dir);
    let encoded = percent_encode(&format!("live/{}?key={}", CAM.0, CAM.1));
    let mut b = Publisher::start_srt(&srv.srt_url(Some(&encoded), ""), 40.0, dir);
    let url = slt_url(
        &srv,
        &acl(LOCKED.0, LOCKED.1),
        &format!("passphrase={PASSPHRASE}&pbkeylen=16"),
    );
    let _c = srt_live_transmit(&url, None, 40.0, dir);

    srv.wait_live(OPEN.0, &mut a, Duration::from_secs(30)).await;
    srv.wait_live(CAM.0, &mut b, Duration::from_secs(30)).await;
    // Five GOPs: past the clip's first loop point (8 s), where a looping publisher is tested.
    let p = check_stream(&srv, OPEN.0, 5).await;
    assert!(!p.endlist);
    check_stream(&srv, CAM.0, 5).await;
    check_stream(&srv, LOCKED.0, 5).await;
    let logs = server_logs();
    assert!(
        logs.lines().any(|l| l.contains("srt publish accepted")
            && l.contains(&format!("stream={}", LOCKED.0))
            && l.contains("encrypted=true")),
        "the encrypted caller is logged as such:\n{logs}"
    );

    // Multivariant: same codecs string an RTMP publish of the same clip gets.
    let mv = srv.get(&format!("/live/{}/index.m3u8", OPEN.0)).await;
    let (variants, _) = hls::parse_multivariant(&mv.text());
    assert_eq!(variants[0].attrs["RESOLUTION"], format!("{WIDTH}x{HEIGHT}"));
    assert!(variants[0].attrs["CODECS"].contains("mp4a.40.2"));

    // A second publisher of a live name is refused, over SRT and over RTMP.
    let mut dup = Publisher::start_srt(&srv.srt_url(Some(&acl(OPEN.0, OPEN.1)), ""), 20.0, dir);
    let status = dup.wait_exit(REFUSAL_EXIT).await;
    assert!(!status.success(), "second SRT publisher: {status}");
    let mut dup_rtmp = Publisher::start(&srv.rtmp_url(OPEN.0, Some(OPEN.1)), 20.0, dir);
    let status = dup_rtmp.wait_exit(REFUSAL_EXIT).await;
    assert!(
        !status.success(),
        "RTMP publisher of an SRT-live name: {status}"
    );
    let dup_line = format!("stream `{}` is already being published", OPEN.0);
    poll(
        Duration::from_secs(10),
        "both duplicate publishers' refusals logged (SRT and RTMP)",
        || async {
            let logs = server_logs();
            let srt = logs
                .lines()
                .any(|l| l.contains("srt publish refused") && l.contains(&dup_line));
            let rtmp = logs
                .lines()
                .any(|l| l.contains("rtmp session ended") && l.contains(&dup_line));
            (srt && rtmp).then_some(())
        },
    )
    .await;

    // The first caller carried on, in the same playlist.
    let later = srv
        .wait_playlist(OPEN.0, Duration::from_secs(15), "two more segments", |q| {
            q.last_segment_msn() >= Some(p.edge_msn() + 2)
        })
        .await;
    // The window may have slid since `p`; its newest segment is still listed, unchanged.
    let last = p.segments.last().unwrap();
    assert_eq!(
        later.segment(last.msn).map(|s| &s.uri),
        Some(&last.uri),
        "same playlist:\n{}\nthen:\n{}",
        p.text,
        later.text
    );
    assert!(!later.segments.iter().any(|s| s.discontinuity));
    assert!(
        a.try_wait().is_none(),
        "first caller was cut off:\n{}",
        a.stderr()
    );

    let m = srv.metrics().await;
    assert!(m.get("ferrocast_srt_connections_total") >= 3.0);
    assert!(m.get("ferrocast_srt_rejected_total") >= 1.0);
    assert_eq!(m.get("ferrocast_live_streams"), 3.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_srt_callers_are_logged_and_create_nothing() {
    let srv = server("5s").await;
    let dir = srv.dir.path();
    let with_pass = format!("passphrase={PASSPHRASE}&pbkeylen=16");
    let attempts: Vec<(&str, String, &str)> = vec![
        (
            "wrong key",
            srv.srt_url(Some(&acl(OPEN.0, "not-the-key")), ""),
            "stream `demo`: wrong key",
        ),
        (
            "missing key",
            srv.srt_url(Some("#!::r=live/demo,m=publish"), ""),
            "stream `demo`: no key given",
        ),
        (
            "unknown stream",
            srv.srt_url(Some("live/ghost?key=x"), ""),
            "stream `ghost` is not configured",
        ),
        ("no streamid", srv.srt_url(None, ""), "no streamid"),
        (
            "playback mode",
            srv.srt_url(Some("#!::r=live/cam2,m=request,s=cam2-key"), ""),
            "mode `request` is not supported",
        ),
        (
            "no passphrase for an encrypted stream",
            srv.srt_url(Some(&acl(LOCKED.0, LOCKED.1)), ""),
            "stream `locked` requires SRT encryption",
        ),
        (
            "wrong passphrase",
            srv.srt_url(
                Some(&acl(LOCKED.0, LOCKED.1)),
                "passphrase=not-the-passphrase&pbkeylen=16",
            ),
            "wrong passphrase",
        ),
        (
            "passphrase for a plain stream",
            srv.srt_url(Some(&acl(CAM.0, CAM.1)), &with_pass),
            "stream `cam2` has no SRT passphrase configured",
        ),
    ];
    let mut pubs: Vec<(&str, Publisher, &str)> = attempts
        .iter()
        .map(|(what, url, log)| (*what, Publisher::start_srt(url, 20.0, dir), *log))
        .collect();
    for (what, publisher, _) in pubs.iter_mut() {
        let status = publisher.wait_exit(REFUSAL_EXIT).await;
        assert!(
            !status.success(),
            "ffmpeg with a {what} exited with {status}; log:\n{}",
            publisher.stderr()
        );
    }
    // This test's server's lines only; a refusal may be logged just after the caller gave up.
    for (what, _, line) in &pubs {
        wait_log_line(
            Duration::from_secs(10),
            &format!("for the {what} refusal (`{line}`)"),
            false,
            |l| l.contains(line),
        )
        .await;
    }
    let logs = server_logs();
    for secret in ["not-the-key", "not-the-passphrase", PASSPHRASE] {
        assert!(!logs.contains(secret), "a secret reached the log: {secret}");
    }
    let m = srv.metrics().await;
    assert!(
        m.get("ferrocast_srt_rejected_total") >= attempts.len() as f64,
        "every refusal is counted"
    );
    assert_eq!(m.get("ferrocast_live_streams"), 0.0);
    assert_eq!(m.get("ferrocast_ingest_frames_total"), 0.0);
    for name in [OPEN.0, CAM.0, LOCKED.0, "ghost"] {
        let r = srv.get(&format!("/live/{name}/index.m3u8")).await;
        assert_eq!(r.status, 404, "{name} exists after refused publishes");
    }
    let api = srv.get("/api/v1/streams").await;
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&api.body).unwrap(),
        serde_json::json!([])
    );
}

/// A copy of the clip's TS with every PMT section's bytes scrambled (its CRC no longer holds).
fn broken_pmt_ts(dir: &Path) -> PathBuf {
    let mut ts = std::fs::read(clip_ts()).unwrap();
    assert_eq!(ts.len() % 188, 0);
    // PAT (PID 0): program_map_PID at section offset 10..12 after the pointer field.
    let pat = ts
        .chunks(188)
        .find(|p| p[0] == 0x47 && (u16::from(p[1] & 0x1f) << 8 | u16::from(p[2])) == 0)
        .expect("a PAT");
    let pmt_pid = u16::from(pat[15] & 0x1f) << 8 | u16::from(pat[16]);
    let mut n = 0;
    for p in ts.chunks_mut(188) {
        if (u16::from(p[1] & 0x1f) << 8 | u16::from(p[2])) == pmt_pid {
            for b in &mut p[10..40] {
                *b ^= 0x5a;
            }
            n += 1;
        }
    }
    assert!(n > 0, "no PMT packets on PID {pmt_pid:#x}");
    let path = dir.join("broken-pmt.ts");
    std::fs::write(&path, ts).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_srt_input_ends_only_its_own_session() {
    let srv = server("3s").await;
    let dir = srv.dir.path();
    let mut healthy = Publisher::start_srt(&srv.srt_url(Some(&acl(OPEN.0, OPEN.1)), ""), 60.0, dir);
    srv.wait_live(OPEN.0, &mut healthy, Duration::from_secs(30))
        .await;
    let before = srv.playlist(OPEN.0, "").await;

    // 1. Garbage datagrams on the SRT port: random bytes, and packets with the control bit
    //    and a handshake type but nonsense after it.
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for i in 0..3000usize {
        let len = 1 + (i * 37) % 1500;
        let mut d: Vec<u8> = (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        if i % 3 == 0 && d.len() >= 16 {
            d[0] = 0x80; // control packet, type 0 (handshake)
            d[1] = 0x00;
        }
        sock.send_to(&d, srv.srt).unwrap();
    }

    // 2. An admitted caller whose payload is not MPEG-TS.
    let noise = dir.join("noise.bin");
    let bytes: Vec<u8> = (0..2_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&noise, bytes).unwrap();
    let url = slt_url(&srv, &acl(VICTIM.0, VICTIM.1), "");
    let mut garbage = srt_live_transmit(&url, Some(&noise), 0.0, dir);
    poll(
        Duration::from_secs(20),
        "the non-TS session to end",
        || async {
            server_logs()
                .lines()
                .any(|l| l.contains("stream=victim") && l.contains("srt session ended"))
                .then_some(())
        },
    )
    .await;
    garbage.kill();

    // 3. TS whose PMT is broken.
    let broken = broken_pmt_ts(dir);
    let mut bad_pmt = srt_live_transmit(&url, Some(&broken), 0.0, dir);
    poll(
        Duration::from_secs(20),
        "the broken-PMT session to end",
        || async {
            let ended = server_logs()
                .lines()
                .filter(|l| l.contains("stream=victim") && l.contains("srt session ended"))
                .count();
            (ended >= 2).then_some(())
        },
    )
    .await;
    bad_pmt.kill();
    let logs = server_logs();
    let ends: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("stream=victim") && l.contains("srt session ended"))
        .collect();
    assert!(
        ends[1].contains("PMT"),
        "the broken-PMT session's end names the PMT: {}",
        ends[1]
    );

    // The healthy stream kept advancing through all of it, in one playlist.
    let after = srv
        .wait_playlist(
            OPEN.0,
            Duration::from_secs(20),
            "three more segments",
            |p| p.last_segment_msn() >= Some(before.edge_msn() + 3),
        )
        .await;
    assert!(
        healthy.try_wait().is_none(),
        "healthy caller died:\n{}",
        healthy.stderr()
    );
    assert!(!after.segments.iter().any(|s| s.discontinuity));
    hls::check_rules(&after);
    assert_eq!(srv.get("/healthz").await.status, 200);
    let m = srv.metrics().await;
    assert!(m.get("ferrocast_srt_errors_total") >= 2.0);
    // The victim never produced a playable stream.
    let victim = srv
        .get(&format!("/live/{}/{RENDITION}/index.m3u8", VICTIM.0))
        .await;
    assert!(
        victim.status == 404 || !victim.text().contains("#EXTINF"),
        "garbage became media:\n{}",
        victim.text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn srt_publisher_back_within_grace_continues_the_playlist() {
    let srv = server("8s").await;
    let dir = srv.dir.path();
    let url = srv.srt_url(Some(&format!("live/{}?key={}", OPEN.0, OPEN.1)), "");
    let mut first = Publisher::start_srt(&url, 7.0, dir);
    srv.wait_live(OPEN.0, &mut first, Duration::from_secs(30))
        .await;
    let status = first.wait_exit(Duration::from_secs(30)).await;
    assert!(
        status.success(),
        "first publish: {status}\n{}",
        first.stderr()
    );
    // SRT delivers what it buffered (its latency) before the session sees the caller's close;
    // then the last part is flushed.
    srv.wait_not_publishing(OPEN.0, Duration::from_secs(10))
        .await;
    let p1 = srv
        .wait_playlist(
            OPEN.0,
            Duration::from_secs(10),
            "the first session's last part flushed",
            |p| p.open.is_none(),
        )
        .await;
    assert!(!p1.endlist, "ended before the grace period");

    let mut second = Publisher::start_srt(&url, 30.0, dir);
    let p2 = srv
        .wait_playlist(
            OPEN.0,
            Duration::from_secs(30),
            "a discontinuity and 2 more segments",
            |p| {
                p.segments.iter().any(|s| s.discontinuity)
                    && p.last_segment_msn() >= Some(p1.edge_msn() + 2)
            },
        )
        .await;
    assert!(second.try_wait().is_none(), "{}", second.stderr());
    let last = p1.segments.last().unwrap();
    assert_eq!(
        p2.segment(last.msn).map(|s| &s.uri),
        Some(&last.uri),
        "same playlist: msn {} unchanged",
        last.msn
    );
    assert!(!p2.endlist);
    hls::check_rules(&p2);
}
