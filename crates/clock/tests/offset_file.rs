//! The test clock offset file, in a child process (the variable is read once per
//! process, and this crate forbids `unsafe`, so `set_var` is not an option).

use std::process::Command;
use std::time::Duration;

use sallyport_clock::{TEST_OFFSET_ENV, TEST_OFFSET_REREAD_MS, now_ms};

const HOUR_MS: u64 = 3_600_000;

/// Runs `child` (an ignored test of this binary) with the offset file set.
fn run_child(child: &str, file: &std::path::Path) -> std::process::Output {
    Command::new(std::env::current_exe().expect("test binary path"))
        .args(["--exact", child, "--ignored", "--nocapture"])
        .env(TEST_OFFSET_ENV, file)
        .output()
        .expect("spawn the test binary")
}

#[test]
fn debug_builds_follow_the_offset_file_release_builds_ignore_it() {
    let dir = std::env::temp_dir().join(format!("sallyport-clock-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("offset");
    std::fs::write(&file, HOUR_MS.to_string()).expect("write offset");
    let out = run_child("child_follows_the_file", &file);
    std::fs::remove_dir_all(&dir).ok();
    assert!(
        out.status.success(),
        "child failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
#[ignore = "run by debug_builds_follow_the_offset_file_release_builds_ignore_it"]
fn child_follows_the_file() {
    let file = std::path::PathBuf::from(std::env::var_os(TEST_OFFSET_ENV).expect("set by parent"));
    let wall = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_millis() as u64
    };
    let shifted = now_ms();
    if cfg!(debug_assertions) {
        assert!(shifted >= wall() + HOUR_MS - 1_000, "offset not applied");
        // A change is seen after the re-read interval, not before the next call's cost.
        std::fs::write(&file, (-(HOUR_MS as i64)).to_string()).expect("rewrite");
        std::thread::sleep(Duration::from_millis(TEST_OFFSET_REREAD_MS * 3));
        assert!(
            now_ms() <= wall() - HOUR_MS + 1_000,
            "new offset not picked up"
        );
        // Garbage (e.g. a half-written file) keeps the last value.
        std::fs::write(&file, "not a number").expect("rewrite");
        std::thread::sleep(Duration::from_millis(TEST_OFFSET_REREAD_MS * 3));
        assert!(
            now_ms() <= wall() - HOUR_MS + 1_000,
            "garbage reset the offset"
        );
        // A removed file means no offset.
        std::fs::remove_file(&file).expect("remove");
        std::thread::sleep(Duration::from_millis(TEST_OFFSET_REREAD_MS * 3));
        assert!(
            now_ms().abs_diff(wall()) < 1_000,
            "offset kept without a file"
        );
    } else {
        assert!(
            shifted.abs_diff(wall()) < 1_000,
            "a release build honoured the offset"
        );
    }
}
