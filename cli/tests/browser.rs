//! The chat page in a real browser: Debian's Chromium, headless, driven by Python Playwright
//! (`tests/browser/chat_in_two_pages.py`). Two pages and one TCP client chat through the binary
//! on each backend; each sees the others' messages and never its own, and HTML in a message shows
//! as text. Ignored by default (it needs Chromium and Playwright, which `.ci/run` installs); CI
//! runs it with `--ignored`, where a missing browser fails it.
//!
//! `RELAY_SCREENSHOT=docs/img/chat-page.png` saves page A at a phone's size (the docs' picture).

mod common;
use common::backends;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;

use wait_timeout::ChildExt;

use relay_tests::TIMEOUT;

/// Chromium: `RELAY_CHROMIUM`, else `chromium` or `chromium-browser` on the PATH.
fn chromium() -> PathBuf {
    if let Some(path) = std::env::var_os("RELAY_CHROMIUM") {
        return PathBuf::from(path);
    }
    ["chromium", "chromium-browser"]
        .iter()
        .find_map(|name| which::which(name).ok())
        .expect("no Chromium on the PATH (apt-get install chromium; or set RELAY_CHROMIUM)")
}

#[ignore = "needs Chromium and Python Playwright (.ci/run installs both and runs it with --ignored)"]
#[test]
fn two_browser_pages_and_a_tcp_client_chat() {
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/browser/chat_in_two_pages.py");
    let chromium = chromium();
    let screenshot = std::env::var("RELAY_SCREENSHOT").ok();
    for (i, backend) in backends().into_iter().enumerate() {
        let args = ["--framing", "line", "--tag", "--announce"];
        let bin = Path::new(env!("CARGO_BIN_EXE_server"));
        let (server, chat, http) = relay_tests::start_with_http(bin, backend, &args);
        let mut command = Command::new("python3");
        command
            .arg(&script)
            .args(["--page", &format!("http://{http}/")])
            .args(["--chat", &chat.to_string()])
            .arg("--chromium")
            .arg(&chromium)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let (Some(file), 0) = (&screenshot, i) {
            command.args(["--screenshot", file]);
        }
        let mut child = command.spawn().expect("run python3");
        let readers: Vec<_> = [
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
        ]
        .into_iter()
        .flatten()
        .map(|mut pipe| {
            thread::spawn(move || {
                let mut text = String::new();
                let _ = pipe.read_to_string(&mut text);
                text
            })
        })
        .collect();
        // Several bounded waits inside; this only stops a wedged browser.
        let status = child
            .wait_timeout(TIMEOUT * 6)
            .expect("wait for the browser script");
        let Some(status) = status else {
            let _ = child.kill();
            panic!("{backend}: the browser script did not finish");
        };
        let out: String = readers
            .into_iter()
            .map(|r| r.join().unwrap_or_default())
            .collect();
        assert!(
            status.success() && out.contains("browser chat ok"),
            "{backend}: {status}\n{out}\nserver:\n{}",
            server.seen.join("\n")
        );
    }
}
