//! Unknown-key detection: the YAML document is walked alongside the JSON
//! Schema generated from [`super::raw`], so the keys the loader accepts are
//! exactly the keys the editor schema offers.
//!
//! - Unknown keys in a closed section (`metadata`, everything under
//!   `persistence`) are errors with a "did you mean" suggestion.
//! - An unknown top-level key close to a known one (`persistance`) is an
//!   error; any other unknown top-level key is a warning (it is ignored).

use std::collections::HashMap;

use serde_json::Value as Json;
use serde_yaml::Value as Yaml;

use super::error::Diagnostic;
use super::raw::{IGNORED_SECTIONS, KNOWN_OPTIONS};

/// Findings of the walk: errors and warnings.
#[derive(Debug, Default)]
pub(crate) struct KeyReport {
    pub errors: Vec<Diagnostic>,
    pub warnings: Vec<Diagnostic>,
}

pub(crate) fn check(doc: &Yaml, schema: &Json) -> KeyReport {
    let mut report = KeyReport::default();
    let Yaml::Mapping(top) = doc else {
        return report;
    };
    let props = schema.get("properties").and_then(Json::as_object);
    for (k, v) in top {
        let Some(key) = key_str(k) else { continue };
        match props.and_then(|p| p.get(&key)) {
            Some(sub) => walk(v, sub, schema, &key, &mut report),
            None => {
                let known: Vec<&str> = props
                    .map(|p| p.keys().map(String::as_str).collect())
                    .unwrap_or_default();
                // `x-...` keys hold YAML anchors for reuse (as in docker compose).
                if key.starts_with("x-") {
                    continue;
                }
                let mut d = unknown_key(&key, &key, &known);
                if suggest(&key, &known).is_some() {
                    report.errors.push(d);
                } else {
                    d.message = format!("unknown top-level section `{key}` is ignored");
                    d.hint = Some(format!(
                        "remove it if it is a mistake; coltecd reads `metadata` and `persistence` (and accepts {})",
                        IGNORED_SECTIONS.join(", ")
                    ));
                    report.warnings.push(d);
                }
            }
        }
    }
    report
}

fn key_str(k: &Yaml) -> Option<String> {
    match k {
        Yaml::String(s) => Some(s.clone()),
        Yaml::Number(n) => Some(n.to_string()),
        Yaml::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Follow `$ref` into `definitions` / `$defs`.
fn resolve<'a>(schema: &'a Json, root: &'a Json) -> &'a Json {
    let mut s = schema;
    for _ in 0..16 {
        let Some(r) = s.get("$ref").and_then(Json::as_str) else {
            break;
        };
        let name = r.rsplit('/').next().unwrap_or_default();
        let found = root
            .get("definitions")
            .and_then(|d| d.get(name))
            .or_else(|| root.get("$defs").and_then(|d| d.get(name)));
        match found {
            Some(f) => s = f,
            None => break,
        }
    }
    s
}

fn walk(value: &Yaml, schema: &Json, root: &Json, path: &str, out: &mut KeyReport) {
    let mut schema = resolve(schema, root);
    // schemars wraps a `$ref` with a description in a one-element `allOf`.
    while let Some([only]) = schema
        .get("allOf")
        .and_then(Json::as_array)
        .map(Vec::as_slice)
    {
        schema = resolve(only, root);
    }
    // Option<T> and hand-written unions: pick the alternative that fits the value's shape.
    for comb in ["anyOf", "oneOf"] {
        if let Some(alts) = schema.get(comb).and_then(Json::as_array) {
            let want = match value {
                Yaml::Mapping(_) => "object",
                Yaml::Sequence(_) => "array",
                _ => return,
            };
            if let Some(alt) = alts
                .iter()
                .map(|a| resolve(a, root))
                .find(|a| has_type(a, want))
            {
                walk(value, alt, root, path, out);
            }
            return;
        }
    }
    match value {
        Yaml::Mapping(map) => {
            let props = schema.get("properties").and_then(Json::as_object);
            let additional = schema.get("additionalProperties");
            for (k, v) in map {
                let Some(key) = key_str(k) else { continue };
                let sub_path = format!("{path}.{key}");
                if let Some(sub) = props.and_then(|p| p.get(&key)) {
                    walk(v, sub, root, &sub_path, out);
                } else {
                    match additional {
                        Some(Json::Bool(false)) => {
                            let known: Vec<&str> = props
                                .map(|p| p.keys().map(String::as_str).collect())
                                .unwrap_or_default();
                            out.errors.push(unknown_key(&sub_path, &key, &known));
                        }
                        Some(sub @ Json::Object(_)) => {
                            // Remote options: rclone passthrough keys are accepted but unused.
                            if path.ends_with(".options") && props.is_some() {
                                let mut d = Diagnostic::new(
                                    &sub_path,
                                    format!("option `{key}` is not used by coltecd and is ignored"),
                                );
                                if let Some(s) = suggest(&key, KNOWN_OPTIONS) {
                                    d.hint = Some(format!("did you mean `{s}`?"));
                                }
                                out.warnings.push(d);
                            }
                            walk(v, sub, root, &sub_path, out);
                        }
                        _ => {}
                    }
                }
            }
        }
        Yaml::Sequence(items) => {
            if let Some(item) = schema.get("items") {
                for (i, v) in items.iter().enumerate() {
                    walk(v, item, root, &format!("{path}[{i}]"), out);
                }
            }
        }
        _ => {}
    }
}

fn has_type(schema: &Json, want: &str) -> bool {
    match schema.get("type") {
        Some(Json::String(t)) => t == want,
        Some(Json::Array(ts)) => ts.iter().any(|t| t == want),
        _ => want == "object" && schema.get("properties").is_some(),
    }
}

fn unknown_key(path: &str, key: &str, known: &[&str]) -> Diagnostic {
    let mut d = Diagnostic::new(path, format!("unknown key `{key}`"));
    d.hint = Some(match suggest(key, known) {
        Some(s) => format!("did you mean `{s}`?"),
        None => format!("remove it; the keys allowed here are: {}", known.join(", ")),
    });
    d
}

/// The closest known key, if it is close enough to be a likely typo.
pub(crate) fn suggest<'a>(key: &str, known: &[&'a str]) -> Option<&'a str> {
    let key = key.to_lowercase();
    known
        .iter()
        .filter(|k| {
            // Short names (`r3` for `r2`) are judged by edit distance, longer
            // ones by Jaro-Winkler, which favours a shared prefix.
            let edits = strsim::levenshtein(&key, k);
            strsim::jaro_winkler(&key, k) >= 0.85
                || edits <= 1
                || (edits <= 2 && key.chars().count() >= 5)
        })
        .min_by(|a, b| {
            strsim::levenshtein(&key, a)
                .cmp(&strsim::levenshtein(&key, b))
                .then(strsim::jaro_winkler(&key, b).total_cmp(&strsim::jaro_winkler(&key, a)))
        })
        .copied()
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Seg {
    Key(String),
    Index(usize),
}

fn parse_field(field: &str) -> Vec<Seg> {
    let mut out = Vec::new();
    for part in field.split('.') {
        let (key, mut idx) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if !key.is_empty() {
            out.push(Seg::Key(key.to_string()));
        }
        while let Some(rest) = idx.strip_prefix('[') {
            let Some(end) = rest.find(']') else { break };
            if let Ok(n) = rest[..end].parse() {
                out.push(Seg::Index(n));
            }
            idx = &rest[end + 1..];
        }
    }
    out
}

/// Best-effort 1-based line:column of `field` (`persistence.sync[1].interval`)
/// in block-style YAML, for diagnostics the parser cannot place (unknown
/// keys, semantic errors). Falls back to the deepest enclosing key found;
/// `None` when not even the first segment is found. For many fields, build
/// one [`Locator`] instead: each `locate` reads the whole text.
pub(crate) fn locate(text: &str, field: &str) -> Option<(usize, usize)> {
    Locator::new(text).locate(field)
}

/// Every key path of a text and where it first appears, read in one pass
/// so that placing thousands of diagnostics stays linear in the text.
/// Paths are interned as a tree (parent node, segment) -> node, so memory
/// is linear in the number of lines however deep or long the keys are.
pub(crate) struct Locator {
    children: HashMap<(usize, Seg), usize>,
    /// Node -> first (line, column); node 0 is the document root.
    positions: Vec<Option<(usize, usize)>>,
}

impl Locator {
    pub(crate) fn new(text: &str) -> Locator {
        let mut loc = Locator {
            children: HashMap::new(),
            positions: vec![None],
        };
        // (indent column, segment, node)
        let mut stack: Vec<(usize, Seg, usize)> = Vec::new();
        let mut in_block_scalar: Option<usize> = None;
        for (lineno, line) in text.lines().enumerate() {
            let indent = line.len() - line.trim_start_matches(' ').len();
            let mut rest = &line[indent..];
            if rest.is_empty() || rest.starts_with('#') || rest.starts_with("---") {
                continue;
            }
            if let Some(bi) = in_block_scalar {
                if indent > bi {
                    continue;
                }
                in_block_scalar = None;
            }
            let mut col = indent;
            while rest == "-" || rest.starts_with("- ") {
                let mut next = 0;
                while let Some((i, seg, _)) = stack.last() {
                    if *i > col {
                        stack.pop();
                    } else if *i == col {
                        if let Seg::Index(n) = seg {
                            next = n + 1;
                            stack.pop();
                        }
                        break;
                    } else {
                        break;
                    }
                }
                loc.enter(&mut stack, col, Seg::Index(next), (lineno + 1, col + 1));
                let after = rest.get(1..).unwrap_or_default();
                let trimmed = after.trim_start_matches(' ');
                col += 1 + (after.len() - trimmed.len());
                rest = trimmed;
            }
            if let Some(key) = line_key(rest) {
                while stack.last().is_some_and(|(i, _, _)| *i >= col) {
                    stack.pop();
                }
                loc.enter(&mut stack, col, Seg::Key(key), (lineno + 1, col + 1));
                let value = rest
                    .split_once(':')
                    .map(|(_, v)| v.trim())
                    .unwrap_or_default();
                if value.starts_with('|') || value.starts_with('>') {
                    in_block_scalar = Some(col);
                }
                if value.starts_with('[') {
                    // `exclude: [a, b, c]`: each item gets its own column.
                    let parent = stack.last().map_or(0, |(_, _, node)| *node);
                    let offset = rest
                        .split_once(':')
                        .map_or(0, |(k, v)| k.len() + 1 + v.len() - v.trim_start().len());
                    loc.flow_items(parent, value, (lineno + 1, col + offset + 1));
                }
            }
        }
        loc
    }

    fn enter(
        &mut self,
        stack: &mut Vec<(usize, Seg, usize)>,
        col: usize,
        seg: Seg,
        pos: (usize, usize),
    ) {
        let parent = stack.last().map_or(0, |(_, _, node)| *node);
        let next_id = self.positions.len();
        let node = *self
            .children
            .entry((parent, seg.clone()))
            .or_insert(next_id);
        if node == next_id {
            self.positions.push(Some(pos));
        }
        stack.push((col, seg, node));
    }

    /// The items of a one-line flow sequence `[a, "b", c]` starting at
    /// `at` (1-based line, column of the `[`), as children of `parent`.
    fn flow_items(&mut self, parent: usize, value: &str, at: (usize, usize)) {
        let mut index = 0;
        let mut depth = 0usize;
        let mut quote: Option<char> = None;
        let mut expect_item = false;
        for (i, c) in value.char_indices() {
            if let Some(q) = quote {
                if c == q {
                    quote = None;
                }
                continue;
            }
            if expect_item && depth == 1 && !matches!(c, ' ' | ']' | ',') {
                let node_id = self.positions.len();
                let node = *self
                    .children
                    .entry((parent, Seg::Index(index)))
                    .or_insert(node_id);
                if node == node_id {
                    self.positions
                        .push(Some((at.0, at.1 + value[..i].chars().count())));
                }
                expect_item = false;
            }
            match c {
                '"' | '\'' => quote = Some(c),
                '[' | '{' => {
                    depth += 1;
                    expect_item = depth == 1;
                }
                ']' | '}' => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        return;
                    }
                }
                ',' if depth == 1 => {
                    index += 1;
                    expect_item = true;
                }
                _ => {}
            }
        }
    }

    /// Where `field` (or, failing that, its deepest enclosing key) first appears.
    pub(crate) fn locate(&self, field: &str) -> Option<(usize, usize)> {
        let mut node = 0;
        let mut best = None;
        for seg in parse_field(field) {
            match self.children.get(&(node, seg)) {
                Some(&n) => {
                    node = n;
                    best = self.positions[n].or(best);
                }
                None => break,
            }
        }
        best
    }
}

/// The key of a `key: value` / `key:` line (plain or quoted).
fn line_key(rest: &str) -> Option<String> {
    let (key, after) = if let Some(q) = rest.strip_prefix('"') {
        let end = q.find('"')?;
        (&q[..end], &q[end + 1..])
    } else if let Some(q) = rest.strip_prefix('\'') {
        let end = q.find('\'')?;
        (&q[..end], &q[end + 1..])
    } else {
        let mut idx = None;
        for (i, _) in rest.match_indices(':') {
            let tail = &rest[i + 1..];
            if tail.is_empty() || tail.starts_with(' ') {
                idx = Some(i);
                break;
            }
        }
        let i = idx?;
        (&rest[..i], &rest[i..])
    };
    let after = after.trim_start_matches(' ');
    if !(after == ":" || after.starts_with(": ")) || key.is_empty() || key.starts_with(['{', '[']) {
        return None;
    }
    Some(key.trim_end().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions() {
        let known = ["persistence", "metadata", "name"];
        assert_eq!(suggest("persistance", &known), Some("persistence"));
        assert_eq!(suggest("metdata", &known), Some("metadata"));
        assert_eq!(suggest("foobar", &known), None);
        assert_eq!(suggest("r3", &["r2", "logs"]), Some("r2"));
        assert_eq!(suggest("x", &["r2"]), None);
        assert_eq!(suggest("exlude", &["exclude", "excludes"]), Some("exclude"));
    }

    #[test]
    fn locates_fields_in_block_yaml() {
        let text = "\
name: x
persistence:
  enabled: true
  sync:
    - name: a
      interval: 5
      exclude: [a, b]   # two
    - name: b
      interval: 6
      note: |
        interval: 7
  remotes:
    r2:
      options:
        endpoint: x
list:
- k: 1
- k: 2
";
        assert_eq!(locate(text, "name"), Some((1, 1)));
        assert_eq!(locate(text, "persistence.sync[0].interval"), Some((6, 7)));
        assert_eq!(locate(text, "persistence.sync[1].interval"), Some((9, 7)));
        assert_eq!(locate(text, "persistence.sync[1]"), Some((8, 5)));
        // One-line flow sequence: each item; past its end, the enclosing key.
        assert_eq!(
            locate(text, "persistence.sync[0].exclude[1]"),
            Some((7, 20))
        );
        assert_eq!(
            locate(text, "persistence.sync[0].exclude[0]"),
            Some((7, 17))
        );
        assert_eq!(locate(text, "persistence.sync[0].exclude[2]"), Some((7, 7)));
        assert_eq!(
            locate(text, "persistence.remotes.r2.options.endpoint"),
            Some((15, 9))
        );
        assert_eq!(locate(text, "list[1].k"), Some((18, 3)));
        // Missing key: the deepest existing parent.
        assert_eq!(locate(text, "persistence.defaults.transfers"), Some((2, 1)));
        assert_eq!(locate(text, "metadata.org"), None);
        assert_eq!(locate(text, ""), None);
    }
}
