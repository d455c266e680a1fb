//! The harness itself: each real S3 server reached through the same operator
//! construction the daemon uses, with the properties coltecd relies on.

use coltecd::remote::operator_at;
use coltecd::spec::Location;

use crate::support::s3::S3Server;
use crate::support::s3_test;

fn operator(server: S3Server, bucket: &str, key_prefix: &str) -> opendal::Operator {
    operator_at(
        &server.remote(bucket),
        &Location::S3 {
            bucket: bucket.into(),
            key_prefix: key_prefix.into(),
        },
    )
    .unwrap()
}

s3_test! {
    #[tokio::test]
    async fn object_round_trips_through_real_s3_server(server) {
        let bucket = server.bucket("harness");
        let op = operator(server, &bucket, "org/proj/env");
        op.write("hello.txt", "hi there").await.unwrap();
        let back = op.read("hello.txt").await.unwrap().to_vec();
        assert_eq!(back, b"hi there");
        assert_eq!(
            server.list_keys(&bucket, ""),
            vec!["org/proj/env/hello.txt".to_string()]
        );
    }
}

s3_test! {
    /// The raw requests of the harness are signed correctly: a GET with a
    /// wrong signature is refused by s3s-fs, a signed one is not.
    #[test]
    fn raw_requests_are_signed(server) {
        let bucket = server.bucket("signed");
        let r = server.request("PUT", &format!("/{bucket}/a%20b.txt"), &[("x-amz-meta-mtime", "1.5")], b"body");
        assert_eq!(r.status, 200, "{}", r.text());
        let r = server.request("GET", &format!("/{bucket}/a%20b.txt"), &[], b"");
        assert_eq!((r.status, r.body.as_slice()), (200, &b"body"[..]), "{}", r.text());
        assert_eq!(server.list_keys(&bucket, "a "), vec!["a b.txt".to_string()]);
        if server == S3Server::S3s {
            let addr = server.endpoint().trim_start_matches("http://");
            let forged = crate::support::sigv4::Signer {
                addr,
                access_key: crate::support::s3::ACCESS_KEY,
                secret_key: "not-the-secret",
                region: crate::support::s3::REGION,
            }
            .send("GET", &format!("/{bucket}/a%20b.txt"), &[], b"");
            assert_eq!(forged.status, 403, "{}", forged.text());
        }
    }
}

s3_test! {
    #[tokio::test]
    async fn server_honours_conditional_writes(server) {
        let bucket = server.bucket("cond");
        let op = operator(server, &bucket, "");
        let meta = op.write_with("k", "one").if_not_exists(true).await.unwrap();
        let err = op
            .write_with("k", "two")
            .if_not_exists(true)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), opendal::ErrorKind::ConditionNotMatch, "{err}");
        let etag = meta.etag().expect("etag").to_string();
        op.write_with("k", "three").if_match(&etag).await.unwrap();
        let err = op
            .write_with("k", "four")
            .if_match(&etag)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), opendal::ErrorKind::ConditionNotMatch, "{err}");
    }
}
