//! The one preflight shared by `validate`, `start`/`run` and `sync`: which
//! targets can be served with what this environment provides, decided
//! without a network request.
//!
//! A spec can be valid while one of its targets cannot run here: a crypt
//! remote whose password variable is not set, a remote whose client cannot
//! be built. Such a target is *unusable*: `validate` lists it with the
//! reason (exit 6), `start`/`run` serve every other target and show the
//! unusable one in `status` (it waits for a human, it is not retried), and
//! a one-shot `sync` syncs the others and exits 6. Only when no selected
//! target is usable does a command fail outright, with that target's own
//! error and exit code. Since `validate` asks exactly the same question as
//! the commands that act, it reports exactly what they would refuse.
//!
//! What is decided here is local: the client can be built and the keys
//! derived (for a crypt target also where its ciphertext lives, which the
//! lease needs). Whether the server answers, accepts the credentials and
//! honours conditional writes is the lease probe's question, asked when
//! the lease is taken.

use crate::error::{ExitStatus, HasExitStatus};
use crate::remote::RemoteError;
use crate::spec::{Spec, Target};

/// A target that cannot be served here, and why.
#[derive(Debug)]
pub struct Unusable {
    pub target: String,
    pub error: RemoteError,
}

impl Unusable {
    pub fn exit_status(&self) -> ExitStatus {
        self.error.exit_status()
    }
}

/// Whether `t` can be served: its remote client builds (credentials
/// present, crypt keys derived) and, for a crypt target, its physical
/// location (where the lease lives) can be computed.
pub fn check_target(t: &Target) -> Result<(), RemoteError> {
    crate::remote::target_operator(t)?;
    crate::remote::crypt::physical(&t.remote, &t.location())?;
    Ok(())
}

/// Every unusable target of `spec`, in spec order.
pub fn unusable_targets(spec: &Spec) -> Vec<Unusable> {
    spec.targets
        .iter()
        .filter_map(|t| {
            check_target(t).err().map(|error| Unusable {
                target: t.name.clone(),
                error,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec_with_crypt(password_set: bool) -> Spec {
        let dir = tempfile::tempdir().unwrap();
        let yaml = format!(
            "name: t\nmetadata: {{org: o, project: p, environment: e}}\npersistence:\n  enabled: true\n  default_remote: local\n  remotes:\n    local: {{type: local, path_prefix: {root}}}\n    enc:\n      type: crypt\n      wrap_remote: local\n      crypt: {{password_env: PREFLIGHT_TEST_PW}}\n  sync:\n    - {{name: plain, path: {root}/a, direction: push-only}}\n    - {{name: secret, path: {root}/b, direction: push-only, remote: enc}}\n",
            root = dir.path().display()
        );
        let path = dir.path().join("spec.yaml");
        std::fs::write(&path, yaml).unwrap();
        // An obscured password, as rclone takes it (`rclone obscure x`).
        let env = move |k: &str| -> Option<String> {
            (password_set && k == "PREFLIGHT_TEST_PW")
                .then(|| "YmJiYmJiYmJiYmJiYmJiYp3gcEWbAw".to_string())
        };
        crate::spec::load_with_env(&path, &env).unwrap()
    }

    #[test]
    fn a_crypt_target_without_its_password_is_the_only_unusable_one() {
        let spec = spec_with_crypt(false);
        let unusable = unusable_targets(&spec);
        assert_eq!(unusable.len(), 1, "{unusable:?}");
        assert_eq!(unusable[0].target, "secret");
        let msg = unusable[0].error.to_string();
        assert!(msg.contains("PREFLIGHT_TEST_PW"), "{msg}");
        assert!(unusable_targets(&spec_with_crypt(true)).is_empty());
    }
}
