//! `coltecd man [--dir DIR]`: the man page, generated from the clap
//! definition in [`crate::cli`] (clap_mangen), plus the sections clap does
//! not know: exit status, environment, files.
//!
//! Without `--dir` it prints `coltecd.1`; with it, it writes `coltecd.1` and
//! one `coltecd-SUBCOMMAND.1` per visible subcommand (what the devcontainer
//! Feature installs into `/usr/local/share/man/man1`).

use std::io::Write;
use std::path::Path;

use clap::CommandFactory;

use crate::cli::{Cli, ManArgs};
use crate::error::{CmdResult, ExitStatus, Fail};

/// Sections appended to `coltecd.1` (roff). Keep in step with README
/// "Exit codes" and `crate::error::ExitStatus`.
const EXTRA_SECTIONS: &str = r#".SH "EXIT STATUS"
.TP
\fB0\fR
ok (\fBstatus\fR: healthy)
.TP
\fB1\fR
unexpected failure, or a pass stopped by the mass\-delete guard (\fBstatus\fR: degraded)
.TP
\fB2\fR
usage error
.TP
\fB3\fR
invalid spec (\fBstatus\fR: the daemon is not running)
.TP
\fB4\fR
a lease on one of the spec's prefixes is held by another container, or the state dir is used by another coltecd
.TP
\fB5\fR
remote unreachable, credentials rejected or missing, or a backend without conditional writes
.TP
\fB6\fR
finished, but some files failed
.SH ENVIRONMENT
.TP
\fBCOLTEC_CONFIG\fR
path of workspace\-spec.yaml (default /workspace/.devcontainer/workspace\-spec.yaml)
.TP
\fBCOLTEC_DISABLED\fR
true, 1 or yes: pause; \fBstart\fR says so, exits 0 and touches nothing
.TP
\fBCOLTEC_STATE_DIR\fR
the local state directory (default ~/.local/share/coltecd/ORG\-PROJECT\-ENV)
.TP
\fBRCLONE_BUCKET\fR, \fBRCLONE_S3_ENDPOINT\fR, \fBRCLONE_S3_REGION\fR, \fBRCLONE_S3_ACCESS_KEY_ID\fR, \fBRCLONE_S3_SECRET_ACCESS_KEY\fR, \fBRCLONE_S3_SESSION_TOKEN\fR
S3/R2 bucket, endpoint, region and credentials; the usual \fBAWS_*\fR variables are the fallback
.TP
\fBRCLONE_CRYPT_PASSWORD\fR, \fBRCLONE_CRYPT_SALT\fR
keys of \fBtype: crypt\fR remotes
.TP
\fBCOLTEC_LOG_LEVEL\fR, \fBCOLTEC_LOG_FORMAT\fR, \fBRUST_LOG\fR
logging
.SH "SEE ALSO"
\fBcoltecd completions\fR prints shell completions; \fBcoltecd schema\fR the JSON Schema of the spec.
"#;

pub fn run(args: &ManArgs) -> CmdResult {
    let fail = |e: std::io::Error| Fail::new(ExitStatus::Failure, e);
    match &args.dir {
        None => print(&page().map_err(fail)?)?,
        Some(dir) => write_pages(dir).map_err(|e| {
            Fail::new(
                ExitStatus::Failure,
                anyhow::anyhow!("writing man pages into {}: {e}", dir.display()),
            )
        })?,
    }
    Ok(ExitStatus::Ok)
}

/// `coltecd.1` as roff.
pub fn page() -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    // No `help` subcommand in the manual: it has no page of its own.
    let cmd = Cli::command().disable_help_subcommand(true);
    clap_mangen::Man::new(cmd).render(&mut out)?;
    out.extend_from_slice(EXTRA_SECTIONS.as_bytes());
    Ok(out)
}

/// `coltecd.1` (with the extra sections) and a page per visible subcommand.
pub fn write_pages(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    clap_mangen::generate_to(Cli::command(), dir)?;
    std::fs::write(dir.join("coltecd.1"), page()?)
}

/// Write to stdout; a closed pipe (`coltecd man | head`) is not an error.
pub(super) fn print(bytes: &[u8]) -> Result<(), Fail> {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(Fail::new(ExitStatus::Failure, e))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn man_page_lists_the_real_subcommands_and_exit_codes() {
        let text = String::from_utf8(page().unwrap()).unwrap();
        assert!(
            text.starts_with(".ie \\n(.g .ds Aq"),
            "not roff: {}",
            &text[..40]
        );
        for word in [
            "coltecd\\-start(1)",
            "coltecd\\-status(1)",
            "coltecd\\-lease(1)",
            "EXIT STATUS",
            "COLTEC_DISABLED",
        ] {
            assert!(text.contains(word), "man page lacks {word}");
        }
    }

    #[test]
    fn man_dir_gets_one_page_per_visible_subcommand() {
        let dir = tempfile::tempdir().unwrap();
        write_pages(dir.path()).unwrap();
        for page in [
            "coltecd.1",
            "coltecd-start.1",
            "coltecd-lease-break.1",
            "coltecd-completions.1",
        ] {
            assert!(dir.path().join(page).is_file(), "{page} missing");
        }
        // Hidden commands stay out of the manual.
        assert!(!dir.path().join("coltecd-lease-hold.1").exists());
        let main = std::fs::read_to_string(dir.path().join("coltecd.1")).unwrap();
        assert!(main.contains("EXIT STATUS"));
    }
}
