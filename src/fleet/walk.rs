//! Finding the targets under a remote root with delimiter listings only.
//!
//! A directory is a coltecd target when its `.coltec/` holds a lease, a
//! manifest, a dirty marker or a trash folder; a `.coltec/` holding only
//! `nested/` markers belongs to an enclosing prefix, which is descended.
//! Nothing below a target is listed except its `.coltec/` (one level): user
//! data and trash are never walked.

use opendal::{ErrorKind, Operator};

/// Directories deeper than this below the root are not searched (the
/// default layout `{org}/{project}/{env}/{target}` is 4).
pub const MAX_DEPTH: usize = 8;

/// Requests one gathering made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Requests {
    /// Delimiter listings (one per page).
    pub lists: u64,
    /// Object reads (lease records, manifests).
    pub gets: u64,
}

/// One object directly inside a target's `.coltec/`.
#[derive(Debug, Clone)]
pub struct ControlObject {
    /// Name inside `.coltec/` (`lease.json`, `probe-…`, `trash/`).
    pub name: String,
    pub size: u64,
    /// Unix seconds, when the listing says.
    pub modified: Option<u64>,
}

/// A target found by the walk: its path below the root (`a/b/c/`, or ``
/// for the root itself) and what its `.coltec/` holds.
#[derive(Debug, Clone)]
pub struct FoundTarget {
    pub path: String,
    pub control: Vec<ControlObject>,
}

impl FoundTarget {
    pub fn has(&self, name: &str) -> bool {
        self.control.iter().any(|c| c.name == name)
    }
}

/// The non-recursive listing of `dir` (without `dir` itself).
pub async fn list_dir(
    op: &Operator,
    dir: &str,
    req: &mut Requests,
) -> Result<Vec<opendal::Entry>, opendal::Error> {
    req.lists += 1;
    let path = if dir.is_empty() { "/" } else { dir };
    match op.list(path).await {
        Ok(v) => Ok(v
            .into_iter()
            .filter(|e| e.path() != path && e.path() != dir && !e.path().is_empty())
            .collect()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

fn name_in<'a>(dir: &str, path: &'a str) -> &'a str {
    path.strip_prefix(dir).unwrap_or(path)
}

/// Requests in flight at once (listings of one level, per-target reads).
pub const CONCURRENCY: usize = 16;

/// What one directory of the walk turned out to be, and whether its
/// `.coltec/` holds nested-lease markers (`nested/`).
struct Visited {
    dir: String,
    target: Option<FoundTarget>,
    descend: Vec<String>,
    nested: bool,
}

/// Everything the walk found: the targets, and the directories whose
/// `.coltec/nested/` holds markers (`fleet gc` reads those).
#[derive(Debug, Clone, Default)]
pub struct Found {
    pub targets: Vec<FoundTarget>,
    pub nested_dirs: Vec<String>,
}

/// List `dir`; a target when its `.coltec/` says so, else its subdirectories.
async fn visit(op: &Operator, dir: String, req: &mut Requests) -> Result<Visited, opendal::Error> {
    let entries = list_dir(op, &dir, req).await?;
    let mut subdirs: Vec<String> = entries
        .iter()
        .map(|e| e.path().to_string())
        .filter(|p| p.ends_with('/'))
        .collect();
    subdirs.sort();
    let control_dir = format!("{dir}.coltec/");
    let mut nested = false;
    if subdirs.contains(&control_dir) {
        let control = list_control(op, &control_dir, req).await?;
        nested = control.iter().any(|c| c.name == "nested/");
        let is_target = control.iter().any(|c| {
            matches!(
                c.name.as_str(),
                "lease.json" | "manifest.json" | "manifest.dirty" | "trash/"
            )
        });
        if is_target {
            return Ok(Visited {
                dir: dir.clone(),
                target: Some(FoundTarget { path: dir, control }),
                descend: Vec::new(),
                nested,
            });
        }
    }
    Ok(Visited {
        dir,
        target: None,
        descend: subdirs.into_iter().filter(|p| *p != control_dir).collect(),
        nested,
    })
}

/// Every target under the operator's root, breadth first (the directories
/// of one level listed concurrently), in key order.
pub async fn find_targets(
    op: &Operator,
    req: &mut Requests,
) -> Result<Vec<FoundTarget>, opendal::Error> {
    Ok(find_all(op, req).await?.targets)
}

/// [`find_targets`], plus the directories holding nested-lease markers.
pub async fn find_all(op: &Operator, req: &mut Requests) -> Result<Found, opendal::Error> {
    use futures::StreamExt;
    let mut found = Found::default();
    let mut level = vec![String::new()];
    for _depth in 0..=MAX_DEPTH {
        let results: Vec<(Requests, Result<Visited, opendal::Error>)> =
            futures::stream::iter(level)
                .map(|dir| async move {
                    let mut r = Requests::default();
                    let v = visit(op, dir, &mut r).await;
                    (r, v)
                })
                .buffered(CONCURRENCY)
                .collect()
                .await;
        let mut next = Vec::new();
        for (r, v) in results {
            req.lists = req.lists.saturating_add(r.lists);
            req.gets = req.gets.saturating_add(r.gets);
            let v = v?;
            if v.nested {
                found.nested_dirs.push(v.dir);
            }
            found.targets.extend(v.target);
            next.extend(v.descend);
        }
        if next.is_empty() {
            break;
        }
        level = next;
    }
    found.targets.sort_by(|a, b| a.path.cmp(&b.path));
    found.nested_dirs.sort();
    Ok(found)
}

async fn list_control(
    op: &Operator,
    control_dir: &str,
    req: &mut Requests,
) -> Result<Vec<ControlObject>, opendal::Error> {
    Ok(list_dir(op, control_dir, req)
        .await?
        .into_iter()
        .map(|e| ControlObject {
            name: name_in(control_dir, e.path()).to_string(),
            size: e.metadata().content_length(),
            modified: e
                .metadata()
                .last_modified()
                .and_then(|t| u64::try_from(t.into_inner().as_second()).ok()),
        })
        .collect())
}

/// Read an object; `None` when it does not exist.
pub async fn read_opt(
    op: &Operator,
    path: &str,
    req: &mut Requests,
) -> Result<Option<Vec<u8>>, opendal::Error> {
    req.gets += 1;
    match op.read(path).await {
        Ok(b) => Ok(Some(b.to_vec())),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}
