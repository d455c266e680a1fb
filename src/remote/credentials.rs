//! S3 credentials handed to the request signer without ever being
//! printable.
//!
//! opendal's S3 builder wraps `access_key_id`/`secret_access_key` in
//! reqsign's `StaticCredentialProvider`, whose derived `Debug` prints all
//! three values, and reqsign logs that `Debug` at `debug` level ("Trying
//! credential provider: ...") — so `--log-level debug` printed the secret
//! key. [`SpecCredentials`] replaces the whole provider chain: it holds the
//! spec's [`Secret`]s, its `Debug` prints `***`, and it is the only
//! provider (no environment, profile or instance-metadata lookups).

use reqsign_aws_v4::Credential;
use reqsign_core::{Context, ProvideCredential, ProvideCredentialChain};

use crate::spec::Secret;

/// The static credentials of one s3 remote.
#[derive(Clone)]
pub(super) struct SpecCredentials {
    access_key_id: Secret,
    secret_access_key: Secret,
    session_token: Option<Secret>,
}

impl SpecCredentials {
    pub(super) fn chain(
        access_key_id: &Secret,
        secret_access_key: &Secret,
        session_token: Option<&Secret>,
    ) -> ProvideCredentialChain<Credential> {
        ProvideCredentialChain::new().push(SpecCredentials {
            access_key_id: access_key_id.clone(),
            secret_access_key: secret_access_key.clone(),
            session_token: session_token.cloned(),
        })
    }
}

impl std::fmt::Debug for SpecCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SpecCredentials(***)")
    }
}

impl ProvideCredential for SpecCredentials {
    type Credential = Credential;

    async fn provide_credential(&self, _: &Context) -> reqsign_core::Result<Option<Credential>> {
        Ok(Some(Credential {
            access_key_id: self.access_key_id.expose().to_string(),
            secret_access_key: self.secret_access_key.expose().to_string(),
            session_token: self.session_token.as_ref().map(|t| t.expose().to_string()),
            expires_in: None,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_provider_chain_never_prints_a_credential() {
        let key = Secret::new("AKIAEXAMPLEKEYID0001");
        let secret = Secret::new("example-secret-access-key-value");
        let token = Secret::new("example-session-token-value");
        let provider = SpecCredentials {
            access_key_id: key.clone(),
            secret_access_key: secret.clone(),
            session_token: Some(token.clone()),
        };
        let chain = SpecCredentials::chain(&key, &secret, Some(&token));
        for text in [format!("{provider:?}"), format!("{chain:?}")] {
            for s in [&key, &secret, &token] {
                assert!(!text.contains(s.expose()), "{text}");
            }
        }
    }
}
