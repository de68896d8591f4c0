//! The shell completions and the man page under `dist/` are what `server --generate KIND` writes
//! today: a changed option shows up here until they are made again (the command is in the
//! failure message and in docs/service.md).

use std::path::{Path, PathBuf};
use std::process::Command;

/// Each `--generate` kind and the committed file it must equal, under `dist/`.
const GENERATED: [(&str, &str); 5] = [
    ("bash", "completions/server.bash"),
    ("zsh", "completions/_server"),
    ("fish", "completions/server.fish"),
    ("powershell", "completions/_server.ps1"),
    ("man", "man/server.1"),
];

fn dist() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../dist")
}

fn generate(kind: &str) -> Vec<u8> {
    let output = Command::new(env!("CARGO_BIN_EXE_server"))
        .args(["--generate", kind])
        .output()
        .unwrap_or_else(|e| panic!("run server --generate {kind}: {e}"));
    assert!(
        output.status.success(),
        "server --generate {kind}: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        !output.stdout.is_empty(),
        "server --generate {kind} wrote nothing"
    );
    output.stdout
}

#[test]
#[cfg_attr(
    not(all(feature = "polling", feature = "select", feature = "tls")),
    ignore = "dist/ holds the default build's completions and man page (polling, select, tls)"
)]
fn committed_completions_and_man_page_are_current() {
    let mut stale = Vec::new();
    for (kind, file) in GENERATED {
        let path = dist().join(file);
        let committed =
            std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        if committed != generate(kind) {
            stale.push(format!(
                "target/debug/server --generate {kind} > dist/{file}"
            ));
        }
    }
    assert!(
        stale.is_empty(),
        "stale files under dist/; make them again (after `cargo build`):\n{}",
        stale.join("\n")
    );
}

#[test]
fn generate_stands_alone_and_names_bad_kinds() {
    // No port is needed with --generate; with anything else it is a usage error (exit 1).
    let output = Command::new(env!("CARGO_BIN_EXE_server"))
        .args(["--generate", "man", "9000"])
        .output()
        .expect("run the server");
    assert_eq!(output.status.code(), Some(1));
    let output = Command::new(env!("CARGO_BIN_EXE_server"))
        .args(["--generate", "tcsh"])
        .output()
        .expect("run the server");
    assert_eq!(output.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("--generate"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&generate("man")).contains(".TH server 1"));
}
