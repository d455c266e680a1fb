//! Whether a SIGHUP may swap a running daemon's spec for a newly loaded
//! one: only when what is synced where is unchanged. Anything else needs a
//! restart (a new lease, a new reconcile).
//!
//! The comparison is on typed values: a [`TargetKey`] per target, built by
//! destructuring the spec's structs field by field, so a field added to
//! the spec does not compile here until someone decides whether changing
//! it needs a restart.

use std::path::Path;

use crate::spec::{
    CryptRemote, Direction, LocalRemote, Location, RemoteKind, RemoteSpec, S3Remote, Secret, Spec,
    Target,
};

/// What of a target must stay the same across a reload.
#[derive(Debug, PartialEq)]
struct TargetKey<'a> {
    name: &'a str,
    local_path: &'a Path,
    direction: Direction,
    location: Location,
    remote_name: &'a str,
    remote: RemoteKey<'a>,
    excludes: &'a [String],
    priority: u32,
}

/// Every setting of a remote (credentials compared as values, never
/// printed: [`Secret`]'s `Debug` is `***`).
#[derive(Debug, PartialEq)]
enum RemoteKey<'a> {
    S3 {
        bucket: &'a str,
        path_prefix: &'a str,
        endpoint: Option<&'a str>,
        region: &'a str,
        provider: Option<&'a str>,
        access_key_id: Option<&'a Secret>,
        secret_access_key: Option<&'a Secret>,
        session_token: Option<&'a Secret>,
        path_style: bool,
    },
    Local {
        root: &'a Path,
    },
    Crypt {
        wrap_remote: &'a str,
        wrap_path: &'a str,
        password: Option<&'a Secret>,
        salt: Option<&'a Secret>,
        filename_encryption: &'a str,
        directory_name_encryption: bool,
    },
}

impl<'a> TargetKey<'a> {
    fn of(t: &'a Target) -> TargetKey<'a> {
        let Target {
            name,
            local_path,
            remote_name,
            remote,
            remote_path: _, // in `location`
            direction,
            interval: _, // reloadable
            priority,
            excludes,
            // Tuning the engine took at start; a reload leaves it as it was.
            transfers: _,
            checkers: _,
            bwlimit: _,
        } = t;
        TargetKey {
            name,
            local_path,
            direction: *direction,
            location: t.location(),
            remote_name,
            remote: RemoteKey::of(remote),
            excludes: excludes.patterns(),
            priority: *priority,
        }
    }
}

impl<'a> RemoteKey<'a> {
    fn of(r: &'a RemoteSpec) -> RemoteKey<'a> {
        match &r.kind {
            RemoteKind::S3(S3Remote {
                bucket,
                path_prefix,
                endpoint,
                region,
                provider,
                access_key_id,
                secret_access_key,
                session_token,
                path_style,
                // Derived from the fields above and the spec text.
                credentials_from: _,
            }) => RemoteKey::S3 {
                bucket,
                path_prefix,
                endpoint: endpoint.as_deref(),
                region,
                provider: provider.as_deref(),
                access_key_id: access_key_id.as_ref(),
                secret_access_key: secret_access_key.as_ref(),
                session_token: session_token.as_ref(),
                path_style: *path_style,
            },
            RemoteKind::Local(LocalRemote { root }) => RemoteKey::Local { root },
            RemoteKind::Crypt(CryptRemote {
                wrap_remote,
                // A copy of the wrapped remote, which is compared under its own name.
                wrapped: _,
                wrap_path,
                // Only the names of the variables: the values are compared below.
                password_env: _,
                password2_env: _,
                password,
                salt,
                filename_encryption,
                directory_name_encryption,
            }) => RemoteKey::Crypt {
                wrap_remote,
                wrap_path,
                password: password.as_ref(),
                salt: salt.as_ref(),
                filename_encryption,
                directory_name_encryption: *directory_name_encryption,
            },
        }
    }
}

/// Whether a SIGHUP may swap `old` for `new` in a running daemon: only when
/// what is synced where (targets, their directions, remotes, excludes and
/// priorities) and the lease settings are unchanged.
pub fn reload_verdict(old: &Spec, new: &Spec) -> Result<(), String> {
    if old.workspace != new.workspace {
        return Err(format!(
            "the workspace changed ({} -> {})",
            old.workspace.slug(),
            new.workspace.slug()
        ));
    }
    if keys(old) != keys(new) {
        return Err("targets, their paths, remotes, excludes or priorities changed".to_string());
    }
    if old.lease != new.lease {
        return Err("lease settings changed".to_string());
    }
    Ok(())
}

fn keys(s: &Spec) -> Vec<TargetKey<'_>> {
    s.targets.iter().map(TargetKey::of).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: &str = r#"
name: reload-test
metadata: { org: o, project: p, environment: e }
persistence:
  enabled: true
  default_remote: primary
  remotes:
    primary:
      type: s3
      bucket: bkt
      options: { endpoint: "http://127.0.0.1:9", region: auto }
  sync:
    - name: state
      path: /tmp/coltec-reload-test
      remote_path: "{org}/{project}/{env}/state"
      interval: INTERVAL
      priority: 1
"#;

    fn spec(interval: u32, key: &str) -> Spec {
        let text = SPEC.replace("INTERVAL", &interval.to_string());
        let env = |k: &str| match k {
            "AWS_ACCESS_KEY_ID" => Some(key.to_string()),
            "AWS_SECRET_ACCESS_KEY" => Some("secret".to_string()),
            _ => None,
        };
        crate::spec::load_str(&text, Path::new("/tmp/spec.yaml"), &env).unwrap()
    }

    #[test]
    fn an_interval_change_reloads() {
        assert_eq!(reload_verdict(&spec(60, "k1"), &spec(120, "k1")), Ok(()));
    }

    #[test]
    fn changed_credentials_need_a_restart_though_they_print_the_same() {
        let (old, new) = (spec(60, "k1"), spec(60, "k2"));
        assert_eq!(format!("{:?}", old.targets), format!("{:?}", new.targets));
        let why = reload_verdict(&old, &new).unwrap_err();
        assert!(why.contains("remotes"), "{why}");
    }
}
