use crate::cli::{GlobalArgs, ValidateArgs};
use crate::error::{CmdResult, ExitStatus};

pub fn run(global: &GlobalArgs, _args: &ValidateArgs) -> CmdResult {
    let _spec = crate::spec::load(&global.config)?;
    Ok(ExitStatus::Ok)
}
