//! Unknown-key detection: the YAML document is walked alongside the JSON
//! Schema generated from [`super::raw`], so the keys the loader accepts are
//! exactly the keys the editor schema offers.
//!
//! - Unknown keys in a closed section (`metadata`, everything under
//!   `persistence`) are errors with a "did you mean" suggestion.
//! - An unknown top-level key close to a known one (`persistance`) is an
//!   error; any other unknown top-level key is a warning (it is ignored).

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

pub(crate) fn check(doc: &Yaml, schema: &Json, text: &str) -> KeyReport {
    let mut report = KeyReport::default();
    let Yaml::Mapping(top) = doc else {
        return report;
    };
    let props = schema.get("properties").and_then(Json::as_object);
    for (k, v) in top {
        let Some(key) = key_str(k) else { continue };
        match props.and_then(|p| p.get(&key)) {
            Some(sub) => walk(v, sub, schema, &key, text, &mut report),
            None => {
                let known: Vec<&str> = props
                    .map(|p| p.keys().map(String::as_str).collect())
                    .unwrap_or_default();
                let mut d = unknown_key(&key, &key, &known, text);
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

fn walk(value: &Yaml, schema: &Json, root: &Json, path: &str, text: &str, out: &mut KeyReport) {
    let schema = resolve(schema, root);
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
                walk(value, alt, root, path, text, out);
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
                    walk(v, sub, root, &sub_path, text, out);
                } else {
                    match additional {
                        Some(Json::Bool(false)) => {
                            let known: Vec<&str> = props
                                .map(|p| p.keys().map(String::as_str).collect())
                                .unwrap_or_default();
                            out.errors.push(unknown_key(&sub_path, &key, &known, text));
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
                            walk(v, sub, root, &sub_path, text, out);
                        }
                        _ => {}
                    }
                }
            }
        }
        Yaml::Sequence(items) => {
            if let Some(item) = schema.get("items") {
                for (i, v) in items.iter().enumerate() {
                    walk(v, item, root, &format!("{path}[{i}]"), text, out);
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

fn unknown_key(path: &str, key: &str, known: &[&str], text: &str) -> Diagnostic {
    let mut d = Diagnostic::new(path, format!("unknown key `{key}`"));
    d.hint = Some(match suggest(key, known) {
        Some(s) => format!("did you mean `{s}`?"),
        None => format!("remove it; the keys allowed here are: {}", known.join(", ")),
    });
    if let Some((line, col)) = find_key_line(text, key) {
        d.line = Some(line);
        d.column = Some(col);
    }
    d
}

/// The closest known key, if it is close enough to be a likely typo.
pub(crate) fn suggest<'a>(key: &str, known: &[&'a str]) -> Option<&'a str> {
    known
        .iter()
        .map(|k| (strsim::jaro_winkler(&key.to_lowercase(), k), *k))
        .filter(|(score, _)| *score >= 0.85)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, k)| k)
}

/// Best-effort position of `key:` for keys serde_yaml's `Value` cannot
/// locate: used only when the key occurs exactly once in the file.
fn find_key_line(text: &str, key: &str) -> Option<(usize, usize)> {
    let mut found = None;
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        let (body, extra) = match trimmed.strip_prefix("- ") {
            Some(b) => (
                b.trim_start(),
                2 + (trimmed.len() - 2 - b.trim_start().len()),
            ),
            None => (trimmed, 0),
        };
        let body = body
            .strip_prefix('"')
            .and_then(|b| b.strip_prefix(key).and_then(|r| r.strip_prefix('"')))
            .or_else(|| body.strip_prefix(key));
        if body.is_some_and(|r| r.trim_start().starts_with(':')) {
            if found.is_some() {
                return None;
            }
            found = Some((i + 1, indent + extra + 1));
        }
    }
    found
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
    }

    #[test]
    fn key_lines() {
        let text = "a:\n  b: 1\n  - c: 2\nd: 3\n  b2: x\n";
        assert_eq!(find_key_line(text, "a"), Some((1, 1)));
        assert_eq!(find_key_line(text, "b"), Some((2, 3)));
        assert_eq!(find_key_line(text, "c"), Some((3, 5)));
        let dup = "x:\n  k: 1\ny:\n  k: 2\n";
        assert_eq!(find_key_line(dup, "k"), None);
    }
}
