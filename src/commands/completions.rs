//! `coltecd completions SHELL`: a completion script generated from the clap
//! definition in [`crate::cli`], so it can never drift from the real flags.
//!
//! Install it where the shell looks, e.g.
//! `coltecd completions bash > /usr/share/bash-completion/completions/coltecd`
//! (the devcontainer Feature does this for bash, zsh and fish).

use clap::CommandFactory;

use crate::cli::{Cli, CompletionsArgs};
use crate::error::{CmdResult, ExitStatus};

pub fn run(args: &CompletionsArgs) -> CmdResult {
    super::man::print(&script(args.shell))?;
    Ok(ExitStatus::Ok)
}

/// The completion script for `shell`.
pub fn script(shell: clap_complete::Shell) -> Vec<u8> {
    let mut cmd = Cli::command();
    let mut out = Vec::new();
    // Writing into a Vec cannot fail.
    clap_complete::generate(shell, &mut cmd, "coltecd", &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap_complete::Shell;

    #[test]
    fn every_shell_completes_the_real_subcommands_and_flags() {
        for shell in [
            Shell::Bash,
            Shell::Zsh,
            Shell::Fish,
            Shell::Elvish,
            Shell::PowerShell,
        ] {
            let text = String::from_utf8(script(shell)).unwrap();
            for word in [
                "start",
                "status",
                "restore",
                "lease",
                "completions",
                "config",
                "dry-run",
            ] {
                assert!(text.contains(word), "{shell:?} completion lacks {word}");
            }
        }
    }
}
