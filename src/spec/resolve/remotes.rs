//! Remotes: `s3` (bucket, endpoint, region, credentials from options or the
//! environment), `local` (a directory) and `crypt` (wrapping another remote,
//! with the loop check). A remote with errors resolves to `None` so targets
//! using it do not pile up follow-on errors.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::{Resolver, unknown_remote_hint};
use crate::spec::defaults::{CLOUDFLARE_S3_REGION, DEFAULT_S3_REGION, MAX_CRYPT_NESTING};
use crate::spec::model::*;
use crate::spec::raw::*;
use crate::spec::redact::{mask_userinfo, split_userinfo};

impl Resolver<'_> {
    /// Every remote, `None` where it had errors (so targets using it do not
    /// pile up follow-on errors).
    pub(super) fn remotes(
        &mut self,
        raw: &BTreeMap<String, RawRemote>,
    ) -> BTreeMap<String, Option<RemoteSpec>> {
        let mut out = BTreeMap::new();
        let loops = CryptLoops::new(raw);
        for (name, r) in raw {
            let before = self.errors.len();
            let field = format!("persistence.remotes.{name}");
            let kind = match r.kind.unwrap_or(RawRemoteType::S3) {
                RawRemoteType::S3 => self.s3_remote(&field, name, r).map(RemoteKind::S3),
                RawRemoteType::Local => self.local_remote(&field, r).map(RemoteKind::Local),
                RawRemoteType::Crypt => self
                    .crypt_remote(&field, name, r, raw, &loops)
                    .map(RemoteKind::Crypt),
            };
            let spec = kind
                .filter(|_| self.errors.len() == before)
                .map(|kind| RemoteSpec {
                    name: name.clone(),
                    kind,
                });
            out.insert(name.clone(), spec);
        }
        self.wire_crypt(&mut out);
        out
    }

    /// Give each crypt remote a copy of the remote it wraps, innermost
    /// first: one walk down each chain, each remote filled once (not one
    /// pass over every remote per remote, which was quadratic). Loops were
    /// refused above; a chain deeper than [`MAX_CRYPT_NESTING`] is refused
    /// here, which also bounds the nested copies.
    fn wire_crypt(&mut self, out: &mut BTreeMap<String, Option<RemoteSpec>>) {
        fn inner_of(out: &BTreeMap<String, Option<RemoteSpec>>, name: &str) -> Option<String> {
            match out.get(name) {
                Some(Some(RemoteSpec {
                    kind: RemoteKind::Crypt(c),
                    ..
                })) => Some(c.wrap_remote.clone()),
                _ => None,
            }
        }
        let mut depth: HashMap<String, usize> = HashMap::new();
        let names: Vec<String> = out.keys().cloned().collect();
        for start in &names {
            let mut chain: Vec<String> = Vec::new();
            let mut cur = start.clone();
            while !depth.contains_key(&cur) && chain.len() <= names.len() {
                match inner_of(out, &cur) {
                    Some(inner) => {
                        chain.push(cur);
                        cur = inner;
                    }
                    None => {
                        depth.insert(cur, 0);
                        break;
                    }
                }
            }
            for name in chain.iter().rev() {
                let Some(inner) = inner_of(out, name) else {
                    continue;
                };
                let d = depth.get(&inner).copied().unwrap_or(0) + 1;
                depth.insert(name.clone(), d);
                if d > MAX_CRYPT_NESTING {
                    if d == MAX_CRYPT_NESTING + 1 {
                        self.err(
                            format!("persistence.remotes.{name}.wrap_remote"),
                            format!(
                                "crypt remotes wrap each other more than {MAX_CRYPT_NESTING} deep"
                            ),
                            "wrap the s3 or local remote directly; one crypt layer encrypts everything",
                        );
                    }
                    out.insert(name.clone(), None);
                    continue;
                }
                let wrapped = out.get(&inner).cloned().flatten().map(Box::new);
                if let Some(Some(RemoteSpec {
                    kind: RemoteKind::Crypt(c),
                    ..
                })) = out.get_mut(name)
                {
                    c.wrapped = wrapped;
                }
            }
        }
    }

    fn option(&mut self, field: &str, r: &RawRemote, key: &str) -> Option<String> {
        let v = r.options.0.get(key)?;
        let f = format!("{field}.options.{key}");
        let text = match v {
            NumOrStr::Str(s) => s.clone(),
            other => other.to_string(),
        };
        self.expand(&f, &text).filter(|s| !s.is_empty())
    }

    fn s3_remote(&mut self, field: &str, name: &str, r: &RawRemote) -> Option<S3Remote> {
        let bucket = self.s3_bucket(field, name, r)?;
        let path_prefix =
            self.key_prefix(&format!("{field}.path_prefix"), r.path_prefix.as_deref());
        let provider = self.option(field, r, "provider");
        let endpoint = self.s3_endpoint(field, r);
        let is_cloudflare = provider
            .as_deref()
            .is_some_and(|p| p.eq_ignore_ascii_case("cloudflare"));
        let region = match r.options.0.contains_key("region") {
            true => self.option(field, r, "region"),
            false => self.env_first(&["RCLONE_S3_REGION", "AWS_REGION", "AWS_DEFAULT_REGION"]),
        }
        .unwrap_or_else(|| {
            if is_cloudflare {
                CLOUDFLARE_S3_REGION
            } else {
                DEFAULT_S3_REGION
            }
            .to_string()
        });
        let (access_key_id, secret_access_key, session_token) = self.s3_credentials(field, name, r);
        let credentials_from = self.credentials_from(field, r);
        let path_style = self.s3_path_style(field, r, endpoint.is_some());
        Some(S3Remote {
            bucket,
            path_prefix: path_prefix.unwrap_or_default(),
            endpoint,
            region,
            provider,
            access_key_id,
            secret_access_key,
            session_token,
            credentials_from,
            path_style,
        })
    }

    /// Where the access key id and secret come from, for messages about
    /// rejected credentials: the spec field (and the variables it names) or
    /// the environment variable that was used. Never a value.
    fn credentials_from(&self, field: &str, r: &RawRemote) -> String {
        let one = |key: &str, vars: &[&str]| -> String {
            match r.options.0.get(key) {
                Some(v) => {
                    let text = match v {
                        NumOrStr::Str(s) => s.clone(),
                        _ => String::new(),
                    };
                    let named = var_names(&text);
                    if named.is_empty() {
                        format!("{field}.options.{key}")
                    } else {
                        format!("{field}.options.{key} (${{{}}})", named.join("}, ${"))
                    }
                }
                None => vars
                    .iter()
                    .find(|n| (self.env)(n).is_some_and(|v| !v.is_empty()))
                    .map_or_else(|| vars.join(" / "), |n| n.to_string()),
            }
        };
        format!(
            "{} (access key id) and {} (secret access key)",
            one(
                "access_key_id",
                &["RCLONE_S3_ACCESS_KEY_ID", "AWS_ACCESS_KEY_ID"]
            ),
            one(
                "secret_access_key",
                &["RCLONE_S3_SECRET_ACCESS_KEY", "AWS_SECRET_ACCESS_KEY"]
            ),
        )
    }

    /// `bucket`, else `RCLONE_BUCKET`; `None` (reported) when there is none.
    fn s3_bucket(&mut self, field: &str, name: &str, r: &RawRemote) -> Option<String> {
        let bucket = match &r.bucket {
            Some(b) => self.expand(&format!("{field}.bucket"), b),
            None => self.env_first(&["RCLONE_BUCKET"]),
        };
        let bucket = match bucket.filter(|b| !b.is_empty()) {
            Some(b) => b,
            None => {
                if r.bucket.is_none() {
                    self.err(
                        format!("{field}.bucket"),
                        format!("s3 remote `{name}` has no bucket"),
                        "add `bucket: <name>` to the remote, or set RCLONE_BUCKET in the container's environment",
                    );
                } else if self
                    .errors
                    .last()
                    .is_none_or(|d| d.field != format!("{field}.bucket"))
                {
                    self.err(
                        format!("{field}.bucket"),
                        "is empty",
                        "set it to the bucket name",
                    );
                }
                return None;
            }
        };
        if bucket.contains('/') {
            self.err(
                format!("{field}.bucket"),
                format!(
                    "bucket `{}` contains `/`",
                    r.bucket.as_deref().unwrap_or("$RCLONE_BUCKET")
                ),
                "put the bucket name in `bucket` and any key prefix in `path_prefix`",
            );
        } else if let Err(why) = check_bucket_name(&bucket) {
            let from = match r.bucket.as_deref() {
                Some(raw) if raw != bucket => format!(" (from `{raw}`)"),
                Some(_) => String::new(),
                None => " (from $RCLONE_BUCKET)".into(),
            };
            self.err(
                format!("{field}.bucket"),
                format!("`{bucket}`{from} is not a valid S3 bucket name: {why}"),
                "S3 bucket names are 3-63 characters of lowercase letters, digits, `.` and `-`, \
                 start and end with a letter or digit and are not an IP address (e.g. `acme-devcontainer-state`)",
            );
        }
        Some(bucket)
    }

    /// `options.endpoint`, else the environment, as an http(s) URL without
    /// a trailing `/` (`https://` added when no scheme is given).
    fn s3_endpoint(&mut self, field: &str, r: &RawRemote) -> Option<String> {
        let endpoint = match r.options.0.contains_key("endpoint") {
            true => self.option(field, r, "endpoint"),
            false => self.env_first(&[
                "RCLONE_S3_ENDPOINT",
                "AWS_ENDPOINT_URL_S3",
                "AWS_ENDPOINT_URL",
            ]),
        };
        let endpoint = endpoint.map(|e| {
            if e.contains("://") {
                e.trim_end_matches('/').to_string()
            } else {
                format!("https://{}", e.trim_end_matches('/'))
            }
        });
        // `http://user:password@host`: S3 signs with the access key and
        // never uses userinfo, and every message quoting the URL would
        // print the password. Dropped, with a warning that does not quote it.
        let endpoint = endpoint.map(|e| match split_userinfo(&e) {
            (bare, None) => bare,
            (bare, Some(_)) => {
                self.warn(
                    format!("{field}.options.endpoint"),
                    format!(
                        "the endpoint carries a user name and password (`{}`), which S3 does not use; they are left out",
                        mask_userinfo(&e)
                    ),
                    "remove `user:password@` from the endpoint; S3 credentials go in access_key_id / secret_access_key (or RCLONE_S3_ACCESS_KEY_ID / RCLONE_S3_SECRET_ACCESS_KEY)",
                );
                bare
            }
        });
        if let Some(e) = &endpoint
            && (e.contains(char::is_whitespace)
                || !(e.starts_with("http://") || e.starts_with("https://")))
        {
            self.err(
                format!("{field}.options.endpoint"),
                "is not an http(s) URL",
                "write the endpoint as `https://<account>.r2.cloudflarestorage.com` or `http://host:port`",
            );
        }
        endpoint
    }

    /// (access key id, secret access key, session token) from the options,
    /// else the environment; one key without the other is an error.
    fn s3_credentials(
        &mut self,
        field: &str,
        name: &str,
        r: &RawRemote,
    ) -> (Option<Secret>, Option<Secret>, Option<Secret>) {
        let cred = |this: &mut Self, key: &str, vars: &[&str]| -> Option<Secret> {
            match r.options.0.contains_key(key) {
                true => this.option(field, r, key),
                false => this.env_first(vars),
            }
            .map(Secret::new)
        };
        let access_key_id = cred(
            self,
            "access_key_id",
            &["RCLONE_S3_ACCESS_KEY_ID", "AWS_ACCESS_KEY_ID"],
        );
        let secret_access_key = cred(
            self,
            "secret_access_key",
            &["RCLONE_S3_SECRET_ACCESS_KEY", "AWS_SECRET_ACCESS_KEY"],
        );
        let session_token = cred(
            self,
            "session_token",
            &["RCLONE_S3_SESSION_TOKEN", "AWS_SESSION_TOKEN"],
        );
        if access_key_id.is_some() != secret_access_key.is_some() {
            let (have, missing) = if access_key_id.is_some() {
                ("access_key_id", "secret_access_key")
            } else {
                ("secret_access_key", "access_key_id")
            };
            self.err(
                format!("{field}.options.{missing}"),
                format!("remote `{name}` has an {have} but no {missing}"),
                "set both keys (options or RCLONE_S3_ACCESS_KEY_ID + RCLONE_S3_SECRET_ACCESS_KEY), or neither",
            );
        }
        (access_key_id, secret_access_key, session_token)
    }

    /// `options.force_path_style`; default: path style whenever an endpoint is set.
    fn s3_path_style(&mut self, field: &str, r: &RawRemote, has_endpoint: bool) -> bool {
        match r.options.0.get("force_path_style") {
            None => has_endpoint,
            Some(NumOrStr::Bool(b)) => *b,
            Some(NumOrStr::Str(s)) if s.eq_ignore_ascii_case("true") => true,
            Some(NumOrStr::Str(s)) if s.eq_ignore_ascii_case("false") => false,
            Some(v) => {
                self.err(
                    format!("{field}.options.force_path_style"),
                    format!("`{v}` is not true or false"),
                    "write `force_path_style: true` or `false`",
                );
                has_endpoint
            }
        }
    }

    /// A `/`-separated key prefix: `${VAR}` expanded, no `..`, no empty segments.
    fn key_prefix(&mut self, field: &str, raw: Option<&str>) -> Option<String> {
        let raw = raw?;
        let v = self.expand(field, raw)?;
        self.clean_key(field, raw, &v)
    }

    /// `v` is the expanded value; messages quote `raw`, what the user wrote.
    pub(super) fn clean_key(&mut self, field: &str, raw: &str, v: &str) -> Option<String> {
        let segs: Vec<&str> = v
            .split('/')
            .filter(|s| !s.is_empty() && *s != ".")
            .collect();
        if segs.contains(&"..") {
            self.err(
                field,
                format!("`{raw}` contains `..`"),
                "remote paths cannot climb out of their prefix; remove the `..`",
            );
            return None;
        }
        Some(segs.join("/"))
    }

    fn local_remote(&mut self, field: &str, r: &RawRemote) -> Option<LocalRemote> {
        if r.bucket.is_some() || !r.options.0.is_empty() {
            self.warn(
                field,
                "`bucket` and `options` do not apply to a local remote and are ignored",
                "remove them; `path_prefix` is the remote's root directory",
            );
        }
        let root = match &r.path_prefix {
            Some(p) => self.local_path(&format!("{field}.path_prefix"), p)?,
            None => self.spec_dir.clone(),
        };
        Some(LocalRemote { root })
    }

    fn crypt_remote(
        &mut self,
        field: &str,
        name: &str,
        r: &RawRemote,
        all: &BTreeMap<String, RawRemote>,
        loops: &CryptLoops<'_>,
    ) -> Option<CryptRemote> {
        let wrap = self.crypt_wrap(field, name, r, all, loops);
        let Some(c) = &r.crypt else {
            self.err(
                format!("{field}.crypt"),
                format!("crypt remote `{name}` has no crypt settings"),
                "add `crypt: {password_env: <VAR holding the password>, password2_env: <VAR holding the salt>}`",
            );
            return None;
        };
        let wrap_path = match &r.wrap_path {
            Some(p) => self.key_prefix(&format!("{field}.wrap_path"), Some(p))?,
            None => String::new(),
        };
        let password = (self.env)(&c.password_env)
            .filter(|v| !v.is_empty())
            .map(Secret::new);
        if password.is_none() {
            self.warn(
                format!("{field}.crypt.password_env"),
                format!(
                    "{} is not set, so targets on crypt remote `{name}` cannot be synced",
                    c.password_env
                ),
                format!("set {} in the container's environment", c.password_env),
            );
        }
        let salt = c
            .password2_env
            .as_ref()
            .and_then(|v| (self.env)(v))
            .filter(|v| !v.is_empty())
            .map(Secret::new);
        Some(CryptRemote {
            wrap_remote: wrap?,
            wrapped: None,
            wrap_path,
            password_env: c.password_env.clone(),
            password2_env: c.password2_env.clone(),
            password,
            salt,
            filename_encryption: match c
                .filename_encryption
                .unwrap_or(RawFilenameEncryption::Standard)
            {
                RawFilenameEncryption::Standard => "standard",
                RawFilenameEncryption::Obfuscate => "obfuscate",
                RawFilenameEncryption::Off => "off",
            }
            .to_string(),
            directory_name_encryption: c.directory_name_encryption.unwrap_or(true),
        })
    }

    /// The remote a crypt remote wraps: it must exist, and the chain of
    /// crypt remotes must end (a loop is reported once, at its smallest member).
    fn crypt_wrap(
        &mut self,
        field: &str,
        name: &str,
        r: &RawRemote,
        all: &BTreeMap<String, RawRemote>,
        loops: &CryptLoops<'_>,
    ) -> Option<String> {
        match &r.wrap_remote {
            None => {
                self.err(
                    format!("{field}.wrap_remote"),
                    format!("crypt remote `{name}` has no wrap_remote"),
                    "set `wrap_remote:` to the name of the s3 or local remote it stores its encrypted files in",
                );
                None
            }
            Some(w) if w == name => {
                self.err(
                    format!("{field}.wrap_remote"),
                    format!("crypt remote `{name}` wraps itself"),
                    "point `wrap_remote:` at an s3 or local remote",
                );
                None
            }
            Some(w) if !all.contains_key(w) => {
                let names: Vec<&str> = all.keys().map(String::as_str).collect();
                self.err(
                    format!("{field}.wrap_remote"),
                    format!("remote `{w}` is not defined in persistence.remotes"),
                    unknown_remote_hint(w, &names),
                );
                None
            }
            Some(w) => match loops.cycle_of(name) {
                None => Some(w.clone()),
                Some(cycle) => {
                    // Reported once, at the loop's smallest member.
                    if cycle.iter().min().is_some_and(|m| *m == name) {
                        let at = cycle.iter().position(|m| *m == name).unwrap_or(0);
                        let mut chain: Vec<&str> =
                            cycle[at..].iter().chain(&cycle[..at]).copied().collect();
                        chain.push(name);
                        self.err(
                            format!("{field}.wrap_remote"),
                            format!(
                                "crypt remotes wrap each other in a loop: {}",
                                chain.join(" -> ")
                            ),
                            "make the innermost crypt remote wrap an s3 or local remote",
                        );
                    }
                    None
                }
            },
        }
    }
}

/// The loops among crypt remotes (`a` wraps `b` wraps `a`), found in one
/// pass over the chains (each remote is visited once), so a spec with
/// thousands of remotes is checked in linear time.
pub(super) struct CryptLoops<'a> {
    /// Loop members -> index into `cycles`.
    member: HashMap<&'a str, usize>,
    /// Each loop's members in wrapping order.
    cycles: Vec<Vec<&'a str>>,
}

impl<'a> CryptLoops<'a> {
    pub(super) fn new(all: &'a BTreeMap<String, RawRemote>) -> Self {
        // What a crypt remote wraps (a self-wrap is reported on its own).
        let next = |name: &str| -> Option<&'a str> {
            let (key, r) = all.get_key_value(name)?;
            match (r.kind, r.wrap_remote.as_deref()) {
                (Some(RawRemoteType::Crypt), Some(w)) if w != key.as_str() => {
                    all.get_key_value(w).map(|(k, _)| k.as_str())
                }
                _ => None,
            }
        };
        let mut done: HashSet<&str> = HashSet::new();
        let mut out = CryptLoops {
            member: HashMap::new(),
            cycles: Vec::new(),
        };
        for start in all.keys() {
            let mut path: Vec<&str> = Vec::new();
            let mut on_path: HashMap<&str, usize> = HashMap::new();
            let mut cur = Some(start.as_str());
            while let Some(c) = cur {
                if done.contains(c) {
                    break;
                }
                if let Some(&at) = on_path.get(c) {
                    let cycle = path[at..].to_vec();
                    for m in &cycle {
                        out.member.insert(m, out.cycles.len());
                    }
                    out.cycles.push(cycle);
                    break;
                }
                on_path.insert(c, path.len());
                path.push(c);
                cur = next(c);
            }
            done.extend(path);
        }
        out
    }

    fn cycle_of(&self, name: &str) -> Option<&[&'a str]> {
        self.member.get(name).map(|&i| self.cycles[i].as_slice())
    }
}

/// The names of the `${NAME}` / `${NAME:-default}` variables in `text`.
fn var_names(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("${") {
        rest = &rest[i + 2..];
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if !name.is_empty() {
            out.push(name);
        }
    }
    out
}

/// The S3 bucket naming rules (AWS's, which R2 and MinIO follow): 3 to 63
/// characters, lowercase letters, digits, `.` and `-`, starting and ending
/// with a letter or digit, no `..`, not shaped like an IPv4 address.
pub(crate) fn check_bucket_name(name: &str) -> Result<(), String> {
    let n = name.chars().count();
    if !(3..=63).contains(&n) {
        return Err(format!("it is {n} characters long (3 to 63 allowed)"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '.' || *c == '-'))
    {
        let what = if c.is_ascii_uppercase() {
            "uppercase letters are not allowed".to_string()
        } else {
            format!("`{}` is not allowed", c.escape_debug())
        };
        return Err(what);
    }
    let alnum = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if !alnum(name.chars().next()) || !alnum(name.chars().last()) {
        return Err("it must start and end with a letter or digit".into());
    }
    if name.contains("..") {
        return Err("it contains `..`".into());
    }
    if name.parse::<std::net::Ipv4Addr>().is_ok() {
        return Err("it is shaped like an IP address".into());
    }
    Ok(())
}

#[cfg(test)]
mod bucket_name_tests {
    use super::check_bucket_name;

    #[test]
    fn s3_bucket_naming_rules() {
        for ok in ["abc", "acme-devcontainer-state", "a.b-c.1", &"a".repeat(63)] {
            assert_eq!(check_bucket_name(ok), Ok(()), "{ok}");
        }
        for bad in [
            "ab",
            &"a".repeat(64),
            "Bad_Bucket",
            "bad_bucket",
            "-abc",
            "abc.",
            "a..b",
            "192.168.1.1",
            "caf\u{e9}",
            "a b c",
        ] {
            assert!(check_bucket_name(bad).is_err(), "{bad}");
        }
    }
}
