//! One module per subcommand; [`dispatch`] is the only entry point.
//! Helpers shared by several subcommands live in `common` (spec, targets,
//! state dir lock, Ctrl-C) and `pass_output` (per-target reports, exit
//! status, progress bar), never in one subcommand's module.

use crate::cli::{Cli, Command};
use crate::error::CmdResult;

mod common;
mod completions;
mod fleet;
mod init;
mod lease;
mod man;
mod pass_output;
mod restore;
mod run;
mod schema;
mod start;
mod status;
mod stop;
mod sync;
mod validate;

/// Run the parsed command line.
pub fn dispatch(cli: Cli) -> CmdResult {
    match cli.command {
        Command::Validate(args) => validate::run(&cli.global, &args),
        Command::Schema => schema::run(),
        Command::Start => start::run(&cli.global),
        Command::Run(args) => run::run(&cli.global, &args),
        Command::Stop(args) => stop::run(&cli.global, &args),
        Command::Status(args) => status::run(&cli.global, &args),
        Command::Init(args) => init::run(&cli.global, &args),
        Command::Sync(args) => sync::run(&cli.global, &args),
        Command::Restore(args) => restore::run(&cli.global, &args),
        Command::Lease(args) => lease::run(&cli.global, &args),
        Command::Fleet(args) => fleet::run(&cli.global, &args),
        Command::Completions(args) => completions::run(&args),
        Command::Man(args) => man::run(&args),
    }
}

/// A multi-threaded tokio runtime for commands that talk to remotes.
pub(crate) use crate::runtime::multi_thread as runtime;
