//! The `s3` remote: bucket (S3 naming rules), endpoint, region, path
//! style, and where the credentials come from (options, named variables or
//! the environment), never their values.

use super::super::Resolver;
use crate::spec::defaults::{CLOUDFLARE_S3_REGION, DEFAULT_S3_REGION};
use crate::spec::model::*;
use crate::spec::raw::*;
use crate::spec::redact::{mask_userinfo, split_userinfo};

impl Resolver<'_> {
    pub(super) fn s3_remote(&mut self, field: &str, name: &str, r: &RawRemote) -> Option<S3Remote> {
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
