//! Field-level parsing shared by every stage of the resolver: `${VAR}`
//! expansion, local paths, durations, counts and rates, each reporting its
//! own problem against the field it came from; and the diagnostic helpers.

use std::path::PathBuf;
use std::time::Duration;

use super::Resolver;
use crate::spec::defaults::{MAX_BWLIMIT_BYTES_PER_SEC, MAX_PARALLEL};
use crate::spec::error::Diagnostic;
use crate::spec::expand::{
    ExpandError, Invalid, expand_vars, parse_bwlimit, parse_duration, resolve_local_path,
};
use crate::spec::model::BwLimit;
use crate::spec::raw::NumOrStr;

impl Resolver<'_> {
    pub(super) fn err(
        &mut self,
        field: impl Into<String>,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) {
        self.errors.push(Diagnostic::new(field, message).hint(hint));
    }

    pub(super) fn warn(
        &mut self,
        field: impl Into<String>,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) {
        self.warnings
            .push(Diagnostic::new(field, message).hint(hint));
    }

    pub(super) fn invalid(&mut self, field: impl Into<String>, inv: Invalid) {
        self.err(field, inv.message, inv.hint);
    }

    /// Expand `${VAR}`s in `raw`, reporting a missing variable against `field`.
    /// The expanded value is never put into a message.
    pub(super) fn expand(&mut self, field: &str, raw: &str) -> Option<String> {
        match expand_vars(raw, self.env) {
            Ok(v) => Some(v),
            Err(ExpandError::Missing(var)) => {
                self.err(
                    field,
                    format!("uses ${{{var}}}, which is not set"),
                    format!(
                        "set {var} in the container's environment (a Codespaces secret, `devcontainer up --remote-env`, or fnox), or write `${{{var}:-default}}` for a default"
                    ),
                );
                None
            }
            Err(ExpandError::Syntax(msg)) => {
                self.err(
                    field,
                    msg,
                    "write `${NAME}` or `$NAME`; a literal `$` is written `$$`",
                );
                None
            }
        }
    }

    pub(super) fn env_first(&self, names: &[&str]) -> Option<String> {
        names
            .iter()
            .find_map(|n| (self.env)(n).filter(|v| !v.is_empty()))
    }

    pub(super) fn local_path(&mut self, field: &str, raw: &str) -> Option<PathBuf> {
        let expanded = self.expand(field, raw)?;
        match resolve_local_path(&expanded, &self.spec_dir, self.env) {
            Ok(p) => Some(p),
            Err(mut inv) => {
                // Quote what the user wrote, not what a variable expanded to.
                if expanded != raw {
                    inv.message = inv.message.replace(&expanded, raw);
                }
                self.invalid(field, inv);
                None
            }
        }
    }

    pub(super) fn duration(
        &mut self,
        field: &str,
        v: Option<&NumOrStr>,
        default: Duration,
    ) -> Duration {
        match v {
            None => default,
            Some(v) => match parse_duration(v) {
                Ok(d) => d,
                Err(inv) => {
                    self.invalid(field, inv);
                    default
                }
            },
        }
    }

    /// A duration that must lie in `min ..= max`; out of range is reported
    /// against `field` (with the range) and the default is used instead.
    pub(super) fn duration_in(
        &mut self,
        field: &str,
        v: Option<&NumOrStr>,
        default: Duration,
        (min, max): (Duration, Duration),
    ) -> Duration {
        let d = self.duration(field, v, default);
        if (min..=max).contains(&d) {
            return d;
        }
        let side = if d < min {
            "below the minimum"
        } else {
            "above the maximum"
        };
        self.err(
            field,
            format!(
                "{} is {side} of {}",
                fmt_duration(d),
                fmt_duration(if d < min { min } else { max })
            ),
            format!(
                "use a duration from {} to {} (default {})",
                fmt_duration(min),
                fmt_duration(max),
                fmt_duration(default)
            ),
        );
        default
    }

    /// A count (`transfers`, `checkers`) in `1 ..= MAX_PARALLEL`.
    pub(super) fn count(&mut self, field: &str, v: Option<u64>, default: usize) -> usize {
        match v {
            None => default,
            Some(0) => {
                self.err(
                    field,
                    "must be at least 1",
                    format!("set it to 1 or more (default {default}) or remove it"),
                );
                default
            }
            Some(n) if n > MAX_PARALLEL as u64 => {
                self.err(
                    field,
                    format!("{n} is above the maximum of {MAX_PARALLEL}"),
                    format!("set it from 1 to {MAX_PARALLEL} (default {default}) or remove it"),
                );
                default
            }
            Some(n) => usize::try_from(n).unwrap_or(default),
        }
    }

    pub(super) fn bwlimit(
        &mut self,
        field: &str,
        v: Option<&NumOrStr>,
        default: BwLimit,
    ) -> BwLimit {
        match v {
            None => default,
            Some(v) => match parse_bwlimit(v) {
                Ok(b)
                    if [b.up, b.down]
                        .iter()
                        .flatten()
                        .any(|r| r.get() > MAX_BWLIMIT_BYTES_PER_SEC) =>
                {
                    self.err(
                        field,
                        format!("`{v}` is above the maximum of 1T (1 TiB/s)"),
                        "use a rate such as `10M` (MiB/s), or `off` for no limit",
                    );
                    default
                }
                Ok(b) => b,
                Err(inv) => {
                    self.invalid(field, inv);
                    default
                }
            },
        }
    }
}

/// `90s`, `5m`, `7days`: a duration as users write it.
pub(super) fn fmt_duration(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}
