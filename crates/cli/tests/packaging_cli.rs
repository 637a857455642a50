//! `sallyport completions` and `sallyport man` through the real binary (issue 12,
//! "Packaging"): what the Debian package installs must cover every subcommand and flag
//! that `--help` shows, and be valid for the programs that read it (bash, groff/man).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure report

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn sallyport(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sallyport"))
        .args(args)
        .output()
        .expect("run sallyport")
}

fn stdout_of(args: &[&str]) -> String {
    let out = sallyport(args);
    assert!(
        out.status.success(),
        "sallyport {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The subcommands `sallyport [path…] --help` lists (without `help`).
fn subcommands(path: &[&str]) -> Vec<String> {
    let mut args = path.to_vec();
    args.push("--help");
    let help = stdout_of(&args);
    let Some((_, commands)) = help.split_once("Commands:\n") else {
        return Vec::new();
    };
    commands
        .lines()
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_owned)
        .collect()
}

/// Every command path: `[]`, `["gateway"]`, `["keys", "rotate"]`, …
fn command_paths() -> Vec<Vec<String>> {
    let mut paths = vec![Vec::new()];
    let mut i = 0;
    while i < paths.len() {
        let path = paths[i].clone();
        let refs: Vec<&str> = path.iter().map(String::as_str).collect();
        for sub in subcommands(&refs) {
            let mut child = path.clone();
            child.push(sub);
            paths.push(child);
        }
        i += 1;
    }
    paths
}

/// The long flags `sallyport [path…] --help` documents (`--config`, `--json`, …).
fn long_flags(path: &[String]) -> BTreeSet<String> {
    let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
    args.push("--help");
    let help = stdout_of(&args);
    let options = help.split_once("Options:\n").map_or("", |(_, o)| o);
    options
        .lines()
        .filter_map(|l| {
            let start = l.find("--")?;
            // Only the flag column (two-space indent), not flags named in descriptions.
            if !l.trim_start().starts_with('-') {
                return None;
            }
            let flag: String = l[start..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                .collect();
            Some(flag)
        })
        .collect()
}

fn fresh_dir(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("packaging-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[test]
fn the_command_tree_is_what_these_tests_expect() {
    // Guards the help parsing below: if it found nothing, every other test would pass
    // vacuously.
    let paths = command_paths();
    let names: Vec<String> = paths.iter().map(|p| p.join(" ")).collect();
    for expected in [
        "gateway",
        "issuer",
        "demo",
        "keys rotate",
        "keys export",
        "user add",
        "session revoke",
        "completions",
        "man",
    ] {
        assert!(names.iter().any(|n| n == expected), "{expected}: {names:?}");
    }
    assert!(long_flags(&["gateway".to_owned()]).contains("--check"));
    assert!(long_flags(&["keys".to_owned(), "export".to_owned()]).contains("--private"));
}

#[test]
fn the_bash_completion_script_names_every_subcommand() {
    let script = stdout_of(&["completions", "bash"]);
    for path in command_paths().iter().filter(|p| !p.is_empty()) {
        // clap_complete's bash script dispatches on `<parent>,<word>)`.
        let parent = std::iter::once("sallyport".to_owned())
            .chain(path[..path.len() - 1].iter().cloned())
            .collect::<Vec<_>>()
            .join("__subcmd__");
        let case = format!("{parent},{})", path[path.len() - 1]);
        assert!(
            script.contains(&case),
            "{case} missing from the bash script"
        );
    }
}

/// Runs the bash completion function as bash would for `words` (the last one being the
/// word under the cursor) and returns the candidates.
fn complete_in_bash(script: &Path, words: &[&str]) -> BTreeSet<String> {
    let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
    let cur = words[words.len() - 1];
    let prev = words[words.len() - 2];
    let program = format!(
        "set -e; source '{}'; COMP_WORDS=({}); COMP_CWORD={}; _sallyport sallyport '{cur}' '{prev}'; \
         printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        script.display(),
        quoted.join(" "),
        words.len() - 1
    );
    let out = Command::new("bash")
        .args(["--noprofile", "--norc", "-c", &program])
        .output()
        .expect("run bash");
    assert!(
        out.status.success(),
        "bash: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[cfg(unix)]
#[test]
fn bash_completes_subcommands_and_flags() {
    let dir = fresh_dir("bash");
    std::fs::create_dir_all(&dir).unwrap();
    let script = dir.join("sallyport.bash");
    std::fs::write(&script, stdout_of(&["completions", "bash"])).unwrap();

    let top = complete_in_bash(&script, &["sallyport", ""]);
    for sub in subcommands(&[]) {
        assert!(top.contains(&sub), "{sub} not offered: {top:?}");
    }
    let keys = complete_in_bash(&script, &["sallyport", "keys", ""]);
    for sub in ["list", "rotate", "export"] {
        assert!(keys.contains(sub), "keys {sub} not offered: {keys:?}");
    }
    let flags = complete_in_bash(&script, &["sallyport", "gateway", "--"]);
    for flag in long_flags(&["gateway".to_owned()]) {
        assert!(
            flags.contains(&flag),
            "gateway {flag} not offered: {flags:?}"
        );
    }
    let shells = complete_in_bash(&script, &["sallyport", "completions", ""]);
    let shells: BTreeSet<&str> = shells
        .iter()
        .map(String::as_str)
        .filter(|w| !w.starts_with('-'))
        .collect();
    assert_eq!(
        shells,
        ["bash", "elvish", "fish", "powershell", "zsh"].into()
    );
}

#[test]
fn every_shell_gets_a_script_and_an_unknown_shell_is_a_usage_error() {
    for (shell, marker) in [
        ("zsh", "#compdef sallyport"),
        ("fish", "complete -c sallyport"),
        ("elvish", "edit:completion:arg-completer[sallyport]"),
        ("powershell", "Register-ArgumentCompleter"),
    ] {
        let script = stdout_of(&["completions", shell]);
        assert!(script.contains(marker), "{shell}: no {marker:?}");
        assert!(script.contains("rotate"), "{shell}: no nested subcommand");
    }
    let out = sallyport(&["completions", "tcsh"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid value 'tcsh'"));
}

/// `groff` when it is installed (Debian's groff-base; `scripts/install-deps` installs
/// it), so the pages are checked by the formatter `man` uses; required under CI.
fn groff() -> Option<&'static str> {
    let found = Command::new("groff").arg("--version").output().is_ok();
    if !found && std::env::var_os("CI").is_some_and(|v| !v.is_empty()) {
        panic!("groff is missing (Debian package groff-base); under CI it is required");
    }
    found.then_some("groff")
}

/// Checks one page: roff structure, only ASCII, every long flag, and (with groff) that
/// it formats without a single warning.
fn check_page(page_path: &Path, path: &[String]) {
    let page = std::fs::read_to_string(page_path).unwrap();
    let name = std::iter::once("sallyport")
        .chain(path.iter().map(String::as_str))
        .collect::<Vec<_>>()
        .join("-");
    assert!(page.is_ascii(), "{name}: not ASCII");
    let th = page
        .lines()
        .find(|l| l.starts_with(".TH "))
        .unwrap_or_else(|| panic!("{name}: no .TH line"));
    assert!(th.starts_with(&format!(".TH {name} 1 ")), "{name}: {th}");
    for section in [".SH NAME", ".SH SYNOPSIS", ".SH DESCRIPTION"] {
        assert!(page.contains(section), "{name}: no {section}");
    }
    for flag in long_flags(path) {
        // roff escapes `-` as `\-`.
        let escaped = flag.replace('-', "\\-");
        assert!(page.contains(&escaped), "{name}: {flag} not documented");
    }
    if let Some(groff) = groff() {
        let out = Command::new(groff)
            .args(["-man", "-Tutf8", "-ww", "-z"])
            .arg(page_path)
            .output()
            .unwrap();
        assert!(out.status.success(), "{name}: groff failed");
        assert!(
            out.stderr.is_empty(),
            "{name}: groff warnings: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn man_writes_a_valid_page_for_every_command() {
    let dir = fresh_dir("man").join("man1");
    stdout_of(&["man", "--out-dir", dir.to_str().unwrap()]);
    let mut expected = BTreeSet::new();
    for path in command_paths() {
        let file = std::iter::once("sallyport")
            .chain(path.iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join("-")
            + ".1";
        check_page(&dir.join(&file), &path);
        expected.insert(file);
    }
    let written: BTreeSet<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(written, expected);

    // The main page names every subcommand's page.
    let main = std::fs::read_to_string(dir.join("sallyport.1")).unwrap();
    for sub in subcommands(&[]) {
        assert!(main.contains(&format!("sallyport\\-{sub}(1)")), "{sub}");
    }
}

#[test]
fn man_without_options_prints_the_main_page() {
    let page = stdout_of(&["man"]);
    let dir = fresh_dir("man-stdout");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("sallyport.1");
    std::fs::write(&file, &page).unwrap();
    check_page(&file, &[]);
}

/// The configuration files the Debian package installs in /etc/sallyport are valid: the
/// gateway's passes `--check`, the issuer's opens a database (here a fresh one: the
/// packaged path is /var/lib/sallyport). packaging/test-deb checks the installed files
/// the same way, as the service user.
#[test]
fn the_packaged_configuration_files_are_valid() {
    let packaging = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../packaging/etc");
    let out = Command::new(env!("CARGO_BIN_EXE_sallyport"))
        .args(["gateway", "--check", "--config"])
        .arg(packaging.join("gateway.toml"))
        .env("SESSION_SECRET", "a-test-secret-that-is-at-least-32-chars")
        .env_remove("SALLYPORT_GATEWAY_CONFIG")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("configuration OK"));

    let db = fresh_dir("packaged-issuer").join("issuer.db");
    let out = Command::new(env!("CARGO_BIN_EXE_sallyport"))
        .args(["keys", "list", "--config"])
        .arg(packaging.join("issuer.toml"))
        .arg("--database-url")
        .arg(format!("sqlite://{}", db.display()))
        .env_remove("SALLYPORT_ISSUER_DATABASE_URL")
        .env_remove("SALLYPORT_KEY_ENCRYPTION_KEY")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("signing"));
}
