//! serde_yaml errors as typed values, then as diagnostics.
//!
//! serde_yaml 0.9 exposes one structured part of an error, its
//! [`location`](serde_yaml::Error::location); the field path it tracked and
//! the kind of mistake exist only in its message (`persistence.sync[0].interval:
//! invalid type: string "x", expected u64`), whose wording after the path is
//! serde's own (`serde::de::Error`'s default `invalid_type`, `missing_field`,
//! ...). This file is the only place that reads that text: [`YamlError::new`]
//! turns it into a path, a [`YamlErrorKind`] and a position, and everything
//! downstream (the hint) matches on the kind. The unit tests pin each wording
//! relied on against real serde_yaml errors, so an upgrade that changes one
//! fails here instead of silently degrading the hints.

use super::error::Diagnostic;

/// What kind of mistake a YAML error reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum YamlErrorKind {
    /// A required key is absent.
    MissingField(String),
    /// A value outside an enum; `expected` lists the allowed ones.
    UnknownVariant { expected: Option<String> },
    /// A value of the wrong type or out of range; `expected` is serde's
    /// description (`a boolean`, `u64`, `struct RawSync`, ...).
    WrongValue { expected: Option<String> },
    /// The same key twice in one mapping.
    DuplicateKey,
    /// Anything else: YAML syntax (scanner, parser, anchors).
    Syntax,
}

/// A serde_yaml error, taken apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct YamlError {
    /// `persistence.sync[0].interval`; empty for the document as a whole.
    pub field: String,
    /// What is wrong, without the path and the position.
    pub message: String,
    pub kind: YamlErrorKind,
    /// 1-based (line, column).
    pub position: Option<(usize, usize)>,
}

impl YamlError {
    pub fn new(e: &serde_yaml::Error) -> Self {
        let mut text = e.to_string();
        let loc = e.location();
        if let Some(l) = &loc {
            let suffix = format!(" at line {} column {}", l.line(), l.column());
            if let Some(i) = text.find(&suffix) {
                text.replace_range(i..i + suffix.len(), "");
            }
        }
        // serde_yaml prefixes the field path unless it is the root:
        // "persistence.sync[0].interval: invalid type ..."
        let (field, message) = match text.split_once(": ") {
            Some((p, m)) if is_path(p) => (p.to_string(), m.to_string()),
            _ => (String::new(), text),
        };
        YamlError {
            kind: kind_of(&message),
            field,
            message,
            position: loc.map(|l| (l.line(), l.column())),
        }
    }

    /// How to fix it.
    pub fn hint(&self) -> String {
        match &self.kind {
            YamlErrorKind::MissingField(f) => format!("add `{f}:` here"),
            YamlErrorKind::UnknownVariant { expected: Some(exp) } => format!("use {exp}"),
            YamlErrorKind::UnknownVariant { expected: None } => {
                "use one of the documented values".to_string()
            }
            YamlErrorKind::WrongValue { expected } => wrong_value_hint(expected.as_deref()),
            YamlErrorKind::DuplicateKey => "remove one of the duplicated keys".to_string(),
            YamlErrorKind::Syntax => "fix the YAML syntax: check indentation, `key: value` pairs and quoting (quote values containing `: ` or starting with `*`, `&`, `{`, `[`)".to_string(),
        }
    }

    pub fn diagnostic(&self) -> Diagnostic {
        Diagnostic {
            field: self.field.clone(),
            message: self.message.clone(),
            hint: Some(self.hint()),
            line: self.position.map(|(l, _)| l),
            column: self.position.map(|(_, c)| c),
        }
    }
}

/// A serde_yaml error as a diagnostic: its path, its position, and a hint
/// derived from the kind of mistake.
pub(crate) fn yaml_diagnostic(e: &serde_yaml::Error) -> Diagnostic {
    YamlError::new(e).diagnostic()
}

/// A field path as serde_yaml prints it: `a.b[0].c`, no spaces.
fn is_path(p: &str) -> bool {
    !p.is_empty() && !p.contains(' ') && p.chars().next().is_some_and(|c| c.is_alphabetic())
}

/// serde's wording (`serde::de::Error` default methods) -> the kind.
fn kind_of(message: &str) -> YamlErrorKind {
    let expected = || message.split_once("expected ").map(|(_, e)| e.to_string());
    if let Some(rest) = message.strip_prefix("missing field `") {
        YamlErrorKind::MissingField(rest.split('`').next().unwrap_or_default().to_string())
    } else if message.starts_with("unknown variant") {
        YamlErrorKind::UnknownVariant {
            expected: expected(),
        }
    } else if message.starts_with("invalid type") || message.starts_with("invalid value") {
        YamlErrorKind::WrongValue {
            expected: expected(),
        }
    } else if message.contains("duplicate entry") || message.starts_with("duplicate field") {
        YamlErrorKind::DuplicateKey
    } else {
        YamlErrorKind::Syntax
    }
}

fn wrong_value_hint(expected: Option<&str>) -> String {
    match expected {
        Some("a boolean") => "write `true` or `false` (without quotes)".to_string(),
        Some("a sequence") => "write a list: one `- item` per line, or `[a, b]`".to_string(),
        Some(exp) if exp.starts_with("struct") || exp == "a map" => {
            "write a mapping of `key: value` lines here".to_string()
        }
        Some("u64" | "u32" | "u16" | "u8" | "usize" | "i64" | "i32") => {
            "write a whole number here, without quotes".to_string()
        }
        Some("f64" | "f32") => "write a number here, without quotes".to_string(),
        Some(exp) => format!("write {exp} here"),
        None => "check the value's type against `coltecd schema`".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Inner {
        count: u64,
        on: bool,
        mode: Mode,
        list: Vec<String>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "kebab-case")]
    enum Mode {
        PushOnly,
        PullOnly,
    }

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Outer {
        items: Vec<Inner>,
    }

    fn err(text: &str) -> YamlError {
        let e = serde_yaml::from_str::<Outer>(text).expect_err("must not parse");
        YamlError::new(&e)
    }

    const OK: &str = "count: 1, on: true, mode: push-only, list: []";

    #[test]
    fn a_wrong_type_has_its_path_position_and_expected_type() {
        let e = err(&format!(
            "items:\n  - {{{OK}}}\n  - {{count: x, on: true, mode: push-only, list: []}}\n"
        ));
        assert_eq!(e.field, "items[1].count");
        assert_eq!(e.message, "invalid type: string \"x\", expected u64");
        assert_eq!(
            e.kind,
            YamlErrorKind::WrongValue {
                expected: Some("u64".into())
            }
        );
        assert_eq!(e.position, Some((3, 13)));
        assert_eq!(e.hint(), "write a whole number here, without quotes");
    }

    #[test]
    fn booleans_lists_and_mappings_get_their_own_hints() {
        let e = err("items: [{count: 1, on: yes, mode: push-only, list: []}]");
        assert_eq!(e.field, "items[0].on");
        assert_eq!(e.hint(), "write `true` or `false` (without quotes)");
        let e = err("items: [{count: 1, on: true, mode: push-only, list: 3}]");
        assert_eq!(e.hint(), "write a list: one `- item` per line, or `[a, b]`");
        let e = err("items: [7]");
        assert_eq!(e.hint(), "write a mapping of `key: value` lines here");
    }

    #[test]
    fn a_missing_key_names_it() {
        let e = err("items: [{count: 1, on: true, list: []}]");
        assert_eq!(e.field, "items[0]");
        assert_eq!(e.kind, YamlErrorKind::MissingField("mode".into()));
        assert_eq!(e.hint(), "add `mode:` here");
    }

    #[test]
    fn an_unknown_variant_lists_the_allowed_values() {
        let e = err("items: [{count: 1, on: true, mode: sideways, list: []}]");
        assert_eq!(e.field, "items[0].mode");
        assert_eq!(
            e.kind,
            YamlErrorKind::UnknownVariant {
                expected: Some("`push-only` or `pull-only`".into())
            }
        );
        assert_eq!(e.hint(), "use `push-only` or `pull-only`");
    }

    #[test]
    fn duplicate_keys_and_syntax_errors_are_told_apart() {
        let e = YamlError::new(
            &serde_yaml::from_str::<serde_yaml::Value>("a: 1\na: 2\n").expect_err("duplicate"),
        );
        assert_eq!(e.kind, YamlErrorKind::DuplicateKey);
        let e = err(&format!("items: [{{{OK}, count: 2}}]"));
        assert_eq!(e.kind, YamlErrorKind::DuplicateKey);
        assert_eq!(e.hint(), "remove one of the duplicated keys");
        let e = YamlError::new(
            &serde_yaml::from_str::<serde_yaml::Value>("a: [1\n").expect_err("syntax"),
        );
        assert_eq!(e.kind, YamlErrorKind::Syntax);
        assert_eq!(e.field, "");
        assert!(e.position.is_some());
        assert!(
            e.message.starts_with("did not find expected ',' or ']'"),
            "{}",
            e.message
        );
    }
}
