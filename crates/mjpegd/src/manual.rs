//! The man page and the shell completions, generated from the command line's own definition (clap), so
//! they cannot drift from the flags: `mjpegd man > mjpegd.1` (hidden; `scripts/package.sh` runs it) and
//! `mjpegd completions bash|zsh|fish`.

use crate::cli::Cli;
use clap::CommandFactory;
use std::io::Write;

/// Writes the man page (roff) to standard output.
pub fn man_page() -> anyhow::Result<()> {
    let mut out = Vec::new();
    clap_mangen::Man::new(Cli::command()).render(&mut out)?;
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(&out)?;
    stdout.flush()?;
    Ok(())
}

/// Writes the completion script for `shell` to standard output.
pub fn completions(shell: clap_complete::Shell) -> anyhow::Result<()> {
    let mut cmd = Cli::command();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, "mjpegd", &mut out);
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(&out)?;
    stdout.flush()?;
    Ok(())
}
