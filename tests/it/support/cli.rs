//! The real `coltecd` binary as the S3 fault and crash tests run it: one
//! command (test credentials, a spec, a state dir of its own, output
//! captured) and one description of what it printed, for assertion
//! messages.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use super::coltecd_bin;
use super::s3;

/// `coltecd --config <spec> <args>` with the test credentials and
/// `COLTEC_STATE_DIR=<state>`; stdin closed, stdout and stderr captured.
pub fn coltecd_s3(spec: &Path, state: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(coltecd_bin());
    s3::with_credentials(&mut cmd)
        .arg("--config")
        .arg(spec)
        .args(args)
        .env("COLTEC_STATE_DIR", state)
        .env_remove("COLTEC_DISABLED")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// Exit status, stdout and stderr of a finished run.
pub fn described(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}
