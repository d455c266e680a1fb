//! `${VAR}` / `$VAR` expansion and the small value parsers (durations,
//! bandwidth limits, paths) the resolver uses.
//!
//! Expansion reads variables through a lookup function instead of the
//! process environment so tests never touch global state.

use std::num::NonZeroU64;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use super::model::BwLimit;
use super::raw::NumOrStr;

/// How the loader reads environment variables.
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Why an expansion failed.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ExpandError {
    /// `${NAME}` / `$NAME` with `NAME` unset.
    Missing(String),
    /// `${` without a closing `}`, or an invalid name inside `${...}`.
    Syntax(String),
}

/// Expand `${NAME}`, `${NAME:-default}`, `$NAME` and `$$` (a literal `$`).
/// A `$` not followed by a name or `{` is kept as is.
pub(crate) fn expand_vars(input: &str, env: EnvLookup<'_>) -> Result<String, ExpandError> {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            out.push('$');
            rest = stripped;
        } else if let Some(body_start) = after.strip_prefix('{') {
            let Some(end) = body_start.find('}') else {
                return Err(ExpandError::Syntax(format!(
                    "`${{{body_start}` has no closing `}}`"
                )));
            };
            let body = &body_start[..end];
            let (name, default) = match body.split_once(":-") {
                Some((n, d)) => (n, Some(d)),
                None => (body, None),
            };
            if !is_var_name(name) {
                return Err(ExpandError::Syntax(format!(
                    "`${{{body}}}` is not a variable reference (names are letters, digits and `_`)"
                )));
            }
            match (env(name), default) {
                (Some(v), _) => out.push_str(&v),
                (None, Some(d)) => out.push_str(d),
                (None, None) => return Err(ExpandError::Missing(name.to_string())),
            }
            rest = &body_start[end + 1..];
        } else {
            let mut len = 0;
            for (i, c) in after.char_indices() {
                if !(c == '_' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit())) {
                    break;
                }
                len = i + c.len_utf8();
            }
            if len == 0 {
                out.push('$');
                rest = after;
            } else {
                let name = &after[..len];
                match env(name) {
                    Some(v) => out.push_str(&v),
                    None => return Err(ExpandError::Missing(name.to_string())),
                }
                rest = &after[len..];
            }
        }
    }
    out.push_str(rest);
    Ok(out)
}

fn is_var_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// What a value parser says is wrong, and how to fix it.
#[derive(Debug)]
pub(crate) struct Invalid {
    pub message: String,
    pub hint: String,
}

impl Invalid {
    fn new(message: impl Into<String>, hint: impl Into<String>) -> Self {
        Invalid {
            message: message.into(),
            hint: hint.into(),
        }
    }
}

const DURATION_HINT: &str =
    "write whole seconds (`300`) or a duration such as `90s`, `5m`, `1h30m`";

/// Integer seconds or a humantime duration (`90s`, `5m`, `1h 30m`, `7d`).
pub(crate) fn parse_duration(v: &NumOrStr) -> Result<Duration, Invalid> {
    match v {
        NumOrStr::Int(i) if *i >= 0 => u64::try_from(*i)
            .map(Duration::from_secs)
            .map_err(|_| Invalid::new(format!("{i} is too large"), DURATION_HINT)),
        NumOrStr::Str(s) => {
            let t = s.trim();
            if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
                return t
                    .parse::<u64>()
                    .map(Duration::from_secs)
                    .map_err(|_| Invalid::new(format!("`{t}` is too large"), DURATION_HINT));
            }
            humantime::parse_duration(t)
                .map_err(|e| Invalid::new(format!("`{t}` is not a duration ({e})"), DURATION_HINT))
        }
        other => Err(Invalid::new(
            format!("`{other}` is not a duration"),
            DURATION_HINT,
        )),
    }
}

const BWLIMIT_HINT: &str = "use rclone syntax: `10M` (MiB/s), `512k` (KiB/s), a plain number (KiB/s), `off`, or `UP:DOWN` such as `10M:off`";

/// rclone `--bwlimit`: `10M`, `512k`, `1.5G`, plain number = KiB/s, `off`,
/// `UP:DOWN`. Timetables are not supported.
pub(crate) fn parse_bwlimit(v: &NumOrStr) -> Result<BwLimit, Invalid> {
    let text = match v {
        NumOrStr::Int(i) => i.to_string(),
        NumOrStr::Float(x) => x.to_string(),
        NumOrStr::Str(s) => s.trim().to_string(),
        NumOrStr::Bool(b) => {
            return Err(Invalid::new(
                format!("`{b}` is not a bandwidth limit"),
                BWLIMIT_HINT,
            ));
        }
    };
    if text.contains(',') || text.contains(' ') {
        return Err(Invalid::new(
            format!(
                "`{text}` looks like an rclone bwlimit timetable, which coltecd does not support"
            ),
            BWLIMIT_HINT,
        ));
    }
    let parts: Vec<&str> = text.split(':').collect();
    match parts.as_slice() {
        [both] => {
            let rate = parse_rate(both).map_err(|m| Invalid::new(m, BWLIMIT_HINT))?;
            Ok(BwLimit {
                up: rate,
                down: rate,
            })
        }
        [up, down] => Ok(BwLimit {
            up: parse_rate(up).map_err(|m| Invalid::new(m, BWLIMIT_HINT))?,
            down: parse_rate(down).map_err(|m| Invalid::new(m, BWLIMIT_HINT))?,
        }),
        _ => Err(Invalid::new(
            format!("`{text}` has more than one `:`"),
            BWLIMIT_HINT,
        )),
    }
}

/// One rate in bytes/s; `None` for `off`/`0`.
fn parse_rate(s: &str) -> Result<Option<NonZeroU64>, String> {
    let s = s.trim();
    if s.is_empty() || s.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, suffix) = s.split_at(split);
    let value: f64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a bandwidth limit"))?;
    // rclone's SizeSuffix: one unit letter, optionally followed by `i` and/or `B`.
    let unit = suffix
        .strip_suffix(['B', 'b'])
        .filter(|u| !u.is_empty())
        .unwrap_or(suffix);
    let unit = unit.strip_suffix('i').unwrap_or(unit);
    let mult: f64 = match unit.to_ascii_lowercase().as_str() {
        "" => 1024.0,
        "b" => 1.0,
        "k" => 1024.0,
        "m" => 1024.0 * 1024.0,
        "g" => 1024.0 * 1024.0 * 1024.0,
        "t" => 1024f64.powi(4),
        "p" => 1024f64.powi(5),
        _ => return Err(format!("`{s}` has an unknown unit `{suffix}`")),
    };
    let bytes = (value * mult).round();
    if !bytes.is_finite() || bytes >= u64::MAX as f64 {
        return Err(format!("`{s}` is too large"));
    }
    Ok(NonZeroU64::new(bytes as u64))
}

/// `~` / `~/x` against `$HOME` (from `env`), relative paths against `base`,
/// then `.`/`..` removed lexically. `None` from `home` when `~` is used
/// without `$HOME` is reported by the caller.
pub(crate) fn resolve_local_path(
    raw: &str,
    base: &Path,
    env: EnvLookup<'_>,
) -> Result<PathBuf, Invalid> {
    let p = if raw == "~" || raw.starts_with("~/") {
        let Some(home) = env("HOME").filter(|h| !h.is_empty()) else {
            return Err(Invalid::new(
                format!("`{raw}` starts with `~` but HOME is not set"),
                "set HOME or write an absolute path",
            ));
        };
        let rest = raw.trim_start_matches('~').trim_start_matches('/');
        Path::new(&home).join(rest)
    } else if raw.starts_with('~') {
        return Err(Invalid::new(
            format!("`{raw}`: `~user` paths are not supported"),
            "write an absolute path or `~/...`",
        ));
    } else {
        base.join(raw)
    };
    Ok(normalize(&p))
}

/// Lexical normalisation: drop `.`, apply `..` (never above `/`).
pub(crate) fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env() -> HashMap<String, String> {
        [("A", "alpha"), ("B_2", "beta"), ("EMPTY", "")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn ex(s: &str) -> Result<String, ExpandError> {
        let e = env();
        expand_vars(s, &|k| e.get(k).cloned())
    }

    #[test]
    fn expands_both_forms_and_defaults() {
        assert_eq!(ex("x-${A}-$B_2/y").unwrap(), "x-alpha-beta/y");
        assert_eq!(ex("$A.$A").unwrap(), "alpha.alpha");
        assert_eq!(ex("${NOPE:-dflt}").unwrap(), "dflt");
        assert_eq!(ex("${EMPTY}x").unwrap(), "x");
        assert_eq!(
            ex("cost $$5 and $ alone and $9").unwrap(),
            "cost $5 and $ alone and $9"
        );
        assert_eq!(ex("plain").unwrap(), "plain");
    }

    #[test]
    fn missing_and_malformed() {
        assert_eq!(ex("${NOPE}"), Err(ExpandError::Missing("NOPE".into())));
        assert_eq!(ex("a$NOPE/b"), Err(ExpandError::Missing("NOPE".into())));
        assert!(matches!(ex("${A"), Err(ExpandError::Syntax(_))));
        assert!(matches!(ex("${A B}"), Err(ExpandError::Syntax(_))));
    }

    #[test]
    fn durations() {
        let d = |v: NumOrStr| parse_duration(&v).map(|d| d.as_secs());
        assert_eq!(d(NumOrStr::Int(60)).unwrap(), 60);
        assert_eq!(d(NumOrStr::Str("90s".into())).unwrap(), 90);
        assert_eq!(d(NumOrStr::Str("5m".into())).unwrap(), 300);
        assert_eq!(d(NumOrStr::Str("1h 30m".into())).unwrap(), 5400);
        assert_eq!(d(NumOrStr::Str("7d".into())).unwrap(), 7 * 86400);
        assert_eq!(d(NumOrStr::Str("120".into())).unwrap(), 120);
        assert!(d(NumOrStr::Str("5 minutes please".into())).is_err());
        assert!(d(NumOrStr::Int(-1)).is_err());
        assert!(d(NumOrStr::Float(1.5)).is_err());
        assert!(d(NumOrStr::Bool(true)).is_err());
    }

    fn bw(s: &str) -> Result<(Option<u64>, Option<u64>), Invalid> {
        parse_bwlimit(&NumOrStr::Str(s.into()))
            .map(|b| (b.up.map(|x| x.get()), b.down.map(|x| x.get())))
    }

    #[test]
    fn bwlimits() {
        const K: u64 = 1024;
        const M: u64 = 1024 * 1024;
        assert_eq!(bw("10M").unwrap(), (Some(10 * M), Some(10 * M)));
        assert_eq!(bw("512k").unwrap(), (Some(512 * K), Some(512 * K)));
        assert_eq!(bw("1.5G").unwrap(), (Some(1536 * M), Some(1536 * M)));
        assert_eq!(bw("100").unwrap(), (Some(100 * K), Some(100 * K)));
        assert_eq!(bw("10MiB").unwrap(), (Some(10 * M), Some(10 * M)));
        assert_eq!(bw("2048B").unwrap(), (Some(2048), Some(2048)));
        assert_eq!(bw("off").unwrap(), (None, None));
        assert_eq!(bw("0").unwrap(), (None, None));
        assert_eq!(bw("10M:off").unwrap(), (Some(10 * M), None));
        assert_eq!(bw("1M:512k").unwrap(), (Some(M), Some(512 * K)));
        assert_eq!(
            parse_bwlimit(&NumOrStr::Int(512))
                .unwrap()
                .up
                .map(|x| x.get()),
            Some(512 * K)
        );
        assert!(bw("fast").is_err());
        assert!(bw("10X").is_err());
        assert!(bw("1M:2M:3M").is_err());
        assert!(bw("08:00,512k 12:00,10M").is_err());
    }

    #[test]
    fn local_paths() {
        let e = env();
        let home = |k: &str| {
            if k == "HOME" {
                Some("/home/me".to_string())
            } else {
                e.get(k).cloned()
            }
        };
        let base = Path::new("/ws/.devcontainer");
        assert_eq!(
            resolve_local_path("~/x/../y", base, &home).unwrap(),
            PathBuf::from("/home/me/y")
        );
        assert_eq!(
            resolve_local_path("../data", base, &home).unwrap(),
            PathBuf::from("/ws/data")
        );
        assert_eq!(
            resolve_local_path("/abs/./p/", base, &home).unwrap(),
            PathBuf::from("/abs/p")
        );
        assert!(resolve_local_path("~/x", base, &|_| None).is_err());
        assert!(resolve_local_path("~bob/x", base, &home).is_err());
    }
}
