//! `docs/usage.md` shows `server --help` of the default build; this keeps the two equal, so the
//! documented options cannot drift from the binary's.

use std::path::Path;

use relay_tests::ServerProcess;

/// The comment line that precedes the documented help block.
const MARKER: &str = "<!-- server --help: kept equal by cli/tests/usage_doc.rs -->";

/// The fenced block after [`MARKER`], lines without trailing blanks (editors strip them).
fn documented_help(doc: &str) -> Vec<String> {
    let (_, after) = doc
        .split_once(MARKER)
        .unwrap_or_else(|| panic!("docs/usage.md lacks the line {MARKER}"));
    let block = after
        .trim_start()
        .strip_prefix("```text\n")
        .expect("a ```text block right after the marker");
    let (block, _) = block
        .split_once("\n```")
        .expect("the block's closing fence");
    block.lines().map(|l| l.trim_end().to_string()).collect()
}

#[test]
#[cfg_attr(
    not(all(feature = "polling", feature = "select", feature = "tls")),
    ignore = "docs/usage.md shows the default build's --help (polling, select, tls)"
)]
fn docs_usage_shows_the_default_builds_help() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/usage.md");
    let doc = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let mut help = ServerProcess::spawn(Path::new(env!("CARGO_BIN_EXE_server")), &["--help"], &[]);
    let (status, output) = help.wait_exit();
    assert!(status.success(), "{status}\n{output}");
    let actual: Vec<String> = output.lines().map(|l| l.trim_end().to_string()).collect();
    let documented = documented_help(&doc);
    if documented != actual {
        panic!(
            "docs/usage.md differs from `server --help`; paste this block there:\n{}",
            actual.join("\n")
        );
    }
}
