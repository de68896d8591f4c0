//! `server --generate KIND` (hidden from `--help`): shell completions and the man page, made from
//! the same clap definition that parses the command line, so they cannot drift from it. The
//! copies under `dist/` are made with this and kept current by `cli/tests/generated.rs`.

use std::io::{self, Write};

use clap::ValueEnum;
use clap_complete::Shell;

/// What `--generate` writes to stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Generated {
    /// bash completions.
    Bash,
    /// zsh completions.
    Zsh,
    /// fish completions.
    Fish,
    /// PowerShell completions.
    Powershell,
    /// The man page (roff).
    Man,
}

/// Writes `kind` for `command` to `out`. The version is the package's alone, without the
/// `(+polling ...)` parts of `--version`, so that every build writes the same files.
pub(crate) fn write(
    kind: Generated,
    command: clap::Command,
    out: &mut impl Write,
) -> io::Result<()> {
    let mut command = command.version(env!("CARGO_PKG_VERSION"));
    let shell = match kind {
        Generated::Man => return clap_mangen::Man::new(command).render(out),
        Generated::Bash => Shell::Bash,
        Generated::Zsh => Shell::Zsh,
        Generated::Fish => Shell::Fish,
        Generated::Powershell => Shell::PowerShell,
    };
    clap_complete::generate(shell, &mut command, "server", out);
    Ok(())
}
