//! `coltecd schema`: print the JSON Schema of `workspace-spec.yaml`.
//!
//! Point the VS Code YAML extension at it, e.g. with
//! `# yaml-language-server: $schema=./workspace-spec.schema.json` after
//! `coltecd schema > .devcontainer/workspace-spec.schema.json`.

use crate::error::{CmdResult, ExitStatus, Fail};

pub fn run() -> CmdResult {
    let text = serde_json::to_string_pretty(&crate::spec::schema())
        .map_err(|e| Fail::new(ExitStatus::Failure, e))?;
    println!("{text}");
    Ok(ExitStatus::Ok)
}
