//! `ferrocast check`: the contract's exit codes and `file:line:col: message` lines.

use std::path::PathBuf;
use std::process::Command;

fn ferrocast() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ferrocast"));
    c.current_dir(env!("CARGO_MANIFEST_DIR"));
    c
}

fn temp_config(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ferrocast-cli-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("ferrocast.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn shipped_config_checks_clean() {
    let out = ferrocast().args(["check"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("ok (1 stream(s), 1 pipeline(s))"),
        "{stdout}"
    );
}

#[test]
fn broken_config_lists_every_problem_with_its_position() {
    let path = temp_config(
        "broken",
        "[hls]\nsegment_target = \"2 seconds\"\nwindw = 6\n\n[[stream]]\nname = \"bad name\"\nkey = \"k\"\npipeline = \"nope\"\n",
    );
    let out = ferrocast()
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let p = path.display();
    for want in [
        format!("{p}:2:18: "),
        format!("{p}:3:1: unknown key `windw` in [hls]"),
        format!("{p}:6:8: "),
        format!("{p}:8:12: pipeline `nope`: pipelines/nope.toml not found"),
    ] {
        assert!(
            stderr.lines().any(|l| l.starts_with(&want)),
            "missing `{want}` in:\n{stderr}"
        );
    }
}

#[test]
fn serve_refuses_a_broken_config() {
    let path = temp_config("serve", "[server]\nhttp = \"not an address\"\n");
    let out = ferrocast()
        .args(["serve", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("{}:2:8: ", path.display())),
        "{stderr}"
    );
}
