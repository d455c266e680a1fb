//! Every type error of a document, not just the first: serde stops at the
//! first one, so on failure each independently deserializable part (each
//! sync entry, volume and remote, each `persistence` setting, the
//! metadata) is deserialized on its own.

use super::Diagnostic;
use super::raw;
use super::yaml_error::yaml_diagnostic;

/// Type errors of every independently deserializable part of the document
/// (each sync entry, volume and remote, each `persistence` setting, the
/// metadata), with field paths relative to the document root. Positions are
/// filled in later from the field path.
pub(crate) fn type_errors(doc: &serde_yaml::Value) -> Vec<Diagnostic> {
    use serde::de::DeserializeOwned;
    use serde_yaml::Value;

    fn check<T: DeserializeOwned>(v: &Value, prefix: &str, out: &mut Vec<Diagnostic>) {
        // Round-tripping through text keeps serde_yaml's path tracking.
        let Ok(text) = serde_yaml::to_string(v) else {
            return;
        };
        if let Err(e) = serde_yaml::from_str::<T>(&text) {
            let mut d = yaml_diagnostic(&e);
            d.field = match (prefix, d.field.as_str()) {
                (p, "") => p.to_string(),
                (p, f) if f.starts_with('[') => format!("{p}{f}"),
                (p, f) => format!("{p}.{f}"),
            };
            d.line = None;
            d.column = None;
            out.push(d);
        }
    }
    fn each<T: DeserializeOwned>(v: &Value, prefix: &str, out: &mut Vec<Diagnostic>) {
        match v {
            Value::Sequence(items) => {
                for (i, item) in items.iter().enumerate() {
                    check::<T>(item, &format!("{prefix}[{i}]"), out);
                }
            }
            other => check::<Vec<T>>(other, prefix, out),
        }
    }

    let mut out = Vec::new();
    if let Some(name) = doc.get("name") {
        check::<Option<String>>(name, "name", &mut out);
    }
    if let Some(m) = doc.get("metadata") {
        check::<raw::RawMetadata>(m, "metadata", &mut out);
    }
    let Some(Value::Mapping(p)) = doc.get("persistence") else {
        if let Some(p) = doc.get("persistence") {
            check::<Option<raw::RawPersistence>>(p, "persistence", &mut out);
        }
        return out;
    };
    for (k, v) in p {
        let Some(key) = k.as_str() else { continue };
        let f = format!("persistence.{key}");
        match key {
            "enabled" => check::<Option<bool>>(v, &f, &mut out),
            "mode" => check::<Option<raw::RawMode>>(v, &f, &mut out),
            "scope" => check::<Option<raw::RawScope>>(v, &f, &mut out),
            "mounts" => each::<raw::RawPersistenceMount>(v, &f, &mut out),
            "default_remote" => check::<Option<String>>(v, &f, &mut out),
            "defaults" => check::<Option<raw::RawDefaults>>(v, &f, &mut out),
            "sync" => each::<raw::RawSync>(v, &f, &mut out),
            "lease" => check::<Option<raw::RawLease>>(v, &f, &mut out),
            "safety" => check::<Option<raw::RawSafety>>(v, &f, &mut out),
            "daemon" => check::<Option<raw::RawDaemon>>(v, &f, &mut out),
            "remotes" => match v {
                Value::Mapping(m) => {
                    for (name, r) in m {
                        if let Some(name) = name.as_str() {
                            check::<raw::RawRemote>(r, &format!("{f}.{name}"), &mut out);
                        }
                    }
                }
                other => {
                    check::<std::collections::BTreeMap<String, raw::RawRemote>>(other, &f, &mut out)
                }
            },
            "multi_scope_volumes" => match v {
                Value::Mapping(m) => {
                    for (k2, v2) in m {
                        let Some(k2) = k2.as_str() else { continue };
                        let f2 = format!("{f}.{k2}");
                        match k2 {
                            "environment" => each::<raw::RawVolume>(v2, &f2, &mut out),
                            "global_refs" | "project_refs" => each::<String>(v2, &f2, &mut out),
                            _ => {}
                        }
                    }
                }
                other => check::<Option<raw::RawVolumes>>(other, &f, &mut out),
            },
            _ => {}
        }
    }
    out
}
