//! `coltecd init -- <cmd…>`: see [`crate::daemon::init`].

use crate::cli::{GlobalArgs, InitArgs};
use crate::error::CmdResult;

pub fn run(global: &GlobalArgs, args: &InitArgs) -> CmdResult {
    crate::daemon::init::run(&global.config, &global.into(), &args.command)
}
