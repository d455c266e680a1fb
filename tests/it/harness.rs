//! The harness itself: a real S3 server reached through the same operator
//! construction the daemon uses.

use coltecd::remote::operator_at;
use coltecd::spec::{Location, RemoteKind, RemoteSpec, S3Remote, Secret};

use crate::support::s3;

fn moto_remote(bucket: &str) -> RemoteSpec {
    RemoteSpec {
        name: "moto".into(),
        kind: RemoteKind::S3(S3Remote {
            bucket: bucket.into(),
            path_prefix: String::new(),
            endpoint: Some(s3::endpoint().into()),
            region: "us-east-1".into(),
            provider: None,
            access_key_id: Some(Secret::new(s3::ACCESS_KEY)),
            secret_access_key: Some(Secret::new(s3::SECRET_KEY)),
            session_token: None,
            path_style: true,
        }),
    }
}

#[tokio::test]
async fn object_round_trips_through_real_s3_server() {
    let bucket = s3::bucket("harness");
    let remote = moto_remote(&bucket);
    let op = operator_at(
        &remote,
        &Location::S3 {
            bucket: bucket.clone(),
            key_prefix: "org/proj/env".into(),
        },
    )
    .unwrap();
    op.write("hello.txt", "hi there").await.unwrap();
    let back = op.read("hello.txt").await.unwrap().to_vec();
    assert_eq!(back, b"hi there");
    assert_eq!(
        s3::list_keys(&bucket, ""),
        vec!["org/proj/env/hello.txt".to_string()]
    );
}

#[tokio::test]
async fn server_honours_conditional_writes() {
    let bucket = s3::bucket("cond");
    let op = operator_at(
        &moto_remote(&bucket),
        &Location::S3 {
            bucket: bucket.clone(),
            key_prefix: String::new(),
        },
    )
    .unwrap();
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
