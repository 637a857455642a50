//! `sallyport man`: manual pages in roff, generated from the clap definition (the same
//! text as `--help`). Without options the page of `sallyport` itself goes to stdout
//! (`sallyport man | man -l -`); `--out-dir DIR` writes one page per command and
//! subcommand (`sallyport.1`, `sallyport-gateway.1`, `sallyport-keys-rotate.1`, …), which
//! is what the Debian package installs under /usr/share/man/man1.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;

/// Options of `sallyport man`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Write a page for every command and subcommand into this directory (created if
    /// missing) instead of printing the main page.
    #[arg(long, value_name = "DIR")]
    pub out_dir: Option<PathBuf>,
}

/// Prints the main page, or writes every page to `--out-dir`.
pub(crate) fn run(args: Args, command: clap::Command) -> anyhow::Result<ExitCode> {
    match args.out_dir {
        Some(dir) => {
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            write_pages(command, &dir)
                .with_context(|| format!("writing manual pages into {}", dir.display()))?;
        }
        None => {
            let page = render(clap_mangen::Man::new(command))?;
            let mut stdout = std::io::stdout().lock();
            stdout
                .write_all(page.as_bytes())
                .and_then(|()| stdout.flush())
                .context("writing the manual page to stdout")?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// One page per command, named as `man` looks them up (`sallyport-keys-rotate.1`); the
/// walk of `clap_mangen::generate_to`, with each page made ASCII by [`render`].
fn write_pages(command: clap::Command, dir: &Path) -> anyhow::Result<()> {
    fn walk(command: clap::Command, dir: &Path) -> anyhow::Result<()> {
        for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
            walk(sub.clone(), dir)?;
        }
        let man = clap_mangen::Man::new(command);
        let path = dir.join(man.get_filename());
        std::fs::write(&path, render(man)?)
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(())
    }
    // `build` names the subcommands `sallyport-keys-rotate`, as their pages are called.
    let mut command = command.disable_help_subcommand(true);
    command.build();
    walk(command, dir)
}

/// The page as roff in plain ASCII: the help texts use a few non-ASCII characters
/// (`…`, `—`, `→`) that groff without `preconv` reads as invalid input, so each one
/// becomes the `\[uXXXX]` escape that `preconv` (run by `man`) would produce — a
/// six-line substitution, not worth a dependency.
fn render(man: clap_mangen::Man) -> anyhow::Result<String> {
    let mut page = Vec::new();
    man.render(&mut page).context("rendering the manual page")?;
    let page = String::from_utf8(page).context("the rendered manual page is not UTF-8")?;
    let mut ascii = String::with_capacity(page.len());
    for c in page.chars() {
        if c.is_ascii() {
            ascii.push(c);
        } else {
            ascii.push_str(&format!("\\[u{:04X}]", u32::from(c)));
        }
    }
    Ok(ascii)
}
