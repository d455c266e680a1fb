//! Checks of the YAML's shape that come before serde_yaml reads it, or
//! explain what its errors cannot: nesting depth, a second document, and
//! `<<` merge keys that do not merge a mapping.
//!
//! Depth first, because of cost: libyaml's scanner (under serde_yaml) does
//! work proportional to the flow-collection depth for every token, so 200 KB
//! of `[[[[...` takes minutes before serde_yaml's own recursion limit is
//! reached. [`check`] drives the same scanner token by token and stops as
//! soon as the depth passes [`MAX_FLOW_DEPTH`], which bounds the work to
//! `MAX_FLOW_DEPTH x tokens`: linear in the file. Using libyaml's own
//! tokens (not a hand-written lexer) means quoting, comments and block
//! scalars are judged exactly as the real parse will judge them.

use std::mem::MaybeUninit;

use serde_yaml::Value;
use unsafe_libyaml as unsafe_yaml;

use super::defaults::MAX_FLOW_DEPTH;
use super::error::Diagnostic;

/// What the token scan found wrong, with a 1-based (line, column).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Shape {
    TooDeep(usize, usize),
    SecondDocument(usize, usize),
}

/// Refuse specs nested deeper than [`MAX_FLOW_DEPTH`] and files with more
/// than one YAML document, with the line where it happens. Syntax errors
/// are left to serde_yaml, which reports them with their position.
pub(crate) fn check(text: &str) -> Result<(), Diagnostic> {
    match scan(text) {
        None => Ok(()),
        Some(Shape::TooDeep(line, column)) => Err(Diagnostic {
            field: String::new(),
            message: format!(
                "the YAML nests `[...]`/`{{...}}` more than {MAX_FLOW_DEPTH} levels deep"
            ),
            hint: Some("a workspace spec needs a few levels; check for unbalanced brackets".into()),
            line: Some(line),
            column: Some(column),
        }),
        Some(Shape::SecondDocument(line, column)) => Err(Diagnostic {
            field: String::new(),
            message: format!(
                "the file holds more than one YAML document: a second one starts at line {line}"
            ),
            hint: Some(
                "a workspace spec is one document: remove the `---` (or `...`) line and merge what follows into the first document"
                    .into(),
            ),
            line: Some(line),
            column: Some(column),
        }),
    }
}

fn scan(text: &str) -> Option<Shape> {
    let mut parser = MaybeUninit::<unsafe_yaml::yaml_parser_t>::uninit();
    // SAFETY: the parser is initialised before use and deleted before
    // return; `text` outlives it. Each token is deleted after it is read,
    // and a token is only read after `yaml_parser_scan` succeeded.
    unsafe {
        if unsafe_yaml::yaml_parser_initialize(parser.as_mut_ptr()).fail {
            return None;
        }
        let parser = parser.as_mut_ptr();
        unsafe_yaml::yaml_parser_set_input_string(parser, text.as_ptr(), text.len() as u64);
        let mut scan = Scan::default();
        let found = loop {
            let mut token = MaybeUninit::<unsafe_yaml::yaml_token_t>::uninit();
            if unsafe_yaml::yaml_parser_scan(parser, token.as_mut_ptr()).fail {
                break None;
            }
            let token = token.as_mut_ptr();
            let kind = (*token).type_;
            let mark = (*token).start_mark;
            unsafe_yaml::yaml_token_delete(token);
            if kind == unsafe_yaml::YAML_STREAM_END_TOKEN {
                break None;
            }
            if let Some(found) =
                scan.token(kind, (mark.line as usize + 1, mark.column as usize + 1))
            {
                break Some(found);
            }
        };
        unsafe_yaml::yaml_parser_delete(parser);
        found
    }
}

/// The state of the token walk.
#[derive(Default)]
struct Scan {
    depth: usize,
    /// A document has begun (explicitly with `---`, or with content).
    in_document: bool,
    /// The document was closed with `...`.
    ended: bool,
}

impl Scan {
    fn token(&mut self, kind: unsafe_yaml::yaml_token_type_t, at: (usize, usize)) -> Option<Shape> {
        match kind {
            unsafe_yaml::YAML_STREAM_START_TOKEN
            | unsafe_yaml::YAML_VERSION_DIRECTIVE_TOKEN
            | unsafe_yaml::YAML_TAG_DIRECTIVE_TOKEN => None,
            unsafe_yaml::YAML_DOCUMENT_START_TOKEN => {
                if self.in_document {
                    return Some(Shape::SecondDocument(at.0, at.1));
                }
                self.in_document = true;
                None
            }
            unsafe_yaml::YAML_DOCUMENT_END_TOKEN => {
                self.ended = self.in_document;
                None
            }
            content => {
                if self.ended {
                    return Some(Shape::SecondDocument(at.0, at.1));
                }
                self.in_document = true;
                match content {
                    unsafe_yaml::YAML_FLOW_SEQUENCE_START_TOKEN
                    | unsafe_yaml::YAML_FLOW_MAPPING_START_TOKEN => {
                        self.depth += 1;
                        (self.depth > MAX_FLOW_DEPTH).then_some(Shape::TooDeep(at.0, at.1))
                    }
                    unsafe_yaml::YAML_FLOW_SEQUENCE_END_TOKEN
                    | unsafe_yaml::YAML_FLOW_MAPPING_END_TOKEN => {
                        self.depth = self.depth.saturating_sub(1);
                        None
                    }
                    _ => None,
                }
            }
        }
    }
}

/// The first `<<` merge key (in document order) whose value is not a
/// mapping or a list of mappings: its field path and what it holds instead.
/// serde_yaml's `apply_merge` reports this without a position; the path
/// lets the caller point at the line.
pub(crate) fn bad_merge(doc: &Value) -> Option<Diagnostic> {
    fn walk(v: &Value, path: &str) -> Option<(String, &'static str)> {
        match v {
            Value::Mapping(m) => {
                for (k, val) in m {
                    let key = match k {
                        Value::String(s) => s.clone(),
                        other => serde_yaml::to_string(other)
                            .map(|s| s.trim_end().to_string())
                            .unwrap_or_default(),
                    };
                    let sub = if path.is_empty() {
                        key.clone()
                    } else {
                        format!("{path}.{key}")
                    };
                    if key == "<<" {
                        let what = match val {
                            Value::Mapping(_) => None,
                            Value::Sequence(items) => items.iter().find_map(|i| match i {
                                Value::Mapping(_) => None,
                                Value::Sequence(_) => Some("a list that holds a list"),
                                Value::Tagged(_) => Some("a list that holds a tagged value"),
                                _ => Some("a list that holds a plain value"),
                            }),
                            Value::Tagged(_) => Some("a tagged value"),
                            Value::Null => Some("nothing (null)"),
                            _ => Some("a plain value"),
                        };
                        if let Some(what) = what {
                            return Some((sub, what));
                        }
                    }
                    if let Some(found) = walk(val, &sub) {
                        return Some(found);
                    }
                }
                None
            }
            Value::Sequence(items) => items
                .iter()
                .enumerate()
                .find_map(|(i, item)| walk(item, &format!("{path}[{i}]"))),
            Value::Tagged(t) => walk(&t.value, path),
            _ => None,
        }
    }
    let (field, what) = walk(doc, "")?;
    Some(
        Diagnostic::new(
            field,
            format!("the `<<` merge key holds {what}, not a mapping to merge"),
        )
        .hint("write `<<: *name` where `&name` marks a mapping of `key: value` lines, or `<<: [*a, *b]` for several"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(text: &str) -> Option<Shape> {
        scan(text)
    }

    #[test]
    fn depth_counts_flow_collections_only() {
        let deep = format!("a: {}{}\n", "[".repeat(65), "]".repeat(65));
        assert_eq!(shape(&deep), Some(Shape::TooDeep(1, 4 + 64)));
        let ok = format!("a: {}{}\n", "[".repeat(64), "]".repeat(64));
        assert_eq!(shape(&ok), None);
        // Brackets in quotes, comments and block scalars are text.
        let quoted = format!("a: \"{0}\"\nb: '{0}' # {0}\nc: |\n  {0}\n", "[".repeat(100));
        assert_eq!(shape(&quoted), None);
        // Deep block nesting is not flow nesting.
        let block: String = (0..100).map(|i| format!("{}a:\n", " ".repeat(i))).collect();
        assert_eq!(shape(&block), None);
    }

    #[test]
    fn a_second_document_is_found_with_its_line() {
        assert_eq!(
            shape("a: 1\n---\nb: 2\n"),
            Some(Shape::SecondDocument(2, 1))
        );
        assert_eq!(
            shape("a: 1\n...\nb: 2\n"),
            Some(Shape::SecondDocument(3, 1))
        );
        assert_eq!(shape("---\n---\n"), Some(Shape::SecondDocument(2, 1)));
        // One explicit document, with or without an end marker.
        assert_eq!(shape("---\na: 1\n...\n"), None);
        assert_eq!(shape("%YAML 1.2\n---\na: 1\n"), None);
        assert_eq!(shape(""), None);
        // Syntax errors are serde_yaml's to report.
        assert_eq!(shape("a: [1\n"), None);
    }

    #[test]
    fn bad_merges_are_located_by_path() {
        let doc: Value = serde_yaml::from_str(
            "x: &m {a: 1}\nl: &l [1]\np:\n  sync:\n    - <<: *m\n      n: 1\n    - <<: [*m, *l]\n",
        )
        .unwrap();
        let d = bad_merge(&doc).unwrap();
        assert_eq!(d.field, "p.sync[1].<<");
        assert!(
            d.message.contains("a list that holds a list"),
            "{}",
            d.message
        );
        let doc: Value = serde_yaml::from_str("a:\n  <<: 3\n").unwrap();
        assert_eq!(bad_merge(&doc).unwrap().field, "a.<<");
        let doc: Value = serde_yaml::from_str("a:\n  <<: {b: 1}\n").unwrap();
        assert_eq!(bad_merge(&doc), None);
    }
}
