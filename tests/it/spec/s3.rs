//! The spec loader and the S3 harness together: an s3 remote from YAML,
//! with endpoint, bucket and credentials from the environment, reaches a
//! real S3 server (each of `support::s3`'s) through `remote::target_operator`.

use std::collections::HashMap;
use std::path::Path;

use crate::support::{s3, s3_test};

s3_test! {
    #[tokio::test]
    async fn spec_s3_remote_writes_and_reads_through_a_real_server(server) {
        let bucket = server.bucket("spec-s3");
        let tmp = tempfile::tempdir().unwrap();
        let spec_path = tmp.path().join(".devcontainer/workspace-spec.yaml");
        let text = "\
metadata: {org: acme, project: widget, environment: s3test}
persistence:
  enabled: true
  mode: replicated
  default_remote: s3
  remotes:
    s3:
      type: s3
      path_prefix: teams
      options:
        provider: Other
        endpoint: ${RCLONE_S3_ENDPOINT}
        region: us-east-1
  sync:
    - name: ctx
      path: ../ctx
      remote_path: \"{org}/{project}/{env}/ctx\"
";
        let env: HashMap<String, String> = [
            ("RCLONE_BUCKET", bucket.as_str()),
            ("RCLONE_S3_ENDPOINT", server.endpoint()),
            ("RCLONE_S3_ACCESS_KEY_ID", s3::ACCESS_KEY),
            ("RCLONE_S3_SECRET_ACCESS_KEY", s3::SECRET_KEY),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let spec = coltecd::spec::load_str(text, &spec_path, &|k| env.get(k).cloned()).unwrap();
        let target = &spec.targets[0];
        assert_eq!(target.local_path, tmp.path().join("ctx"));
        assert!(!format!("{spec:?}").contains(s3::SECRET_KEY));

        let op = coltecd::remote::target_operator(target).unwrap();
        op.write("notes/hello.txt", "from a spec").await.unwrap();
        let back = op.read("notes/hello.txt").await.unwrap().to_vec();
        assert_eq!(back, b"from a spec");
        assert_eq!(
            server.list_keys(&bucket, ""),
            vec!["teams/acme/widget/s3test/ctx/notes/hello.txt".to_string()]
        );
        assert!(Path::new(&spec_path).parent().is_some());
    }
}
