//! `sallyport completions SHELL`: a shell completion script, generated from the same clap
//! definition that parses the command line, so it cannot drift from `--help`.
//!
//! The Debian package installs the bash, zsh and fish scripts in the directories those
//! shells load completions from; for other installs, see `docs/operations.md`.

use std::io::Write as _;
use std::process::ExitCode;

use anyhow::Context as _;
use clap_complete::Shell;

/// Options of `sallyport completions`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: Shell,
}

/// Writes the completion script for `args.shell` to stdout.
pub(crate) fn run(args: Args, mut command: clap::Command) -> anyhow::Result<ExitCode> {
    let name = command.get_name().to_owned();
    let mut out = Vec::new();
    clap_complete::generate(args.shell, &mut command, name, &mut out);
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(&out)
        .and_then(|()| stdout.flush())
        .context("writing the completion script to stdout")?;
    Ok(ExitCode::SUCCESS)
}
