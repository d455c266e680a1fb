//! The `coltecd` binary: parse arguments, run the command, map the outcome to
//! an exit code. Everything else lives in the library.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = coltecd::cli::Cli::parse();
    match coltecd::commands::dispatch(cli) {
        Ok(status) => status.into(),
        Err(fail) => {
            eprintln!("coltecd: {}", fail.message());
            fail.status.into()
        }
    }
}
