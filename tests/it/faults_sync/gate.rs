//! Fencing while a multipart upload is being created: the answer to
//! CreateMultipartUpload arrives after the write gate closed. The upload
//! it created must still be aborted (a dropped answer would leave an
//! upload whose id the writer never learned, parts and all).

use std::sync::Arc;
use std::time::{Duration, Instant};

use coltecd::sync::{PassScope, SyncError};

use super::{Opts, Remote, side_with_gate};
use crate::support::proxy::{Proxy, Seen};
use crate::support::s3_test;

fn is_create(s: &Seen) -> bool {
    s.method == "POST" && s.target.contains("?uploads") && !s.target.contains("uploadId")
}

fn created_id(s: &Seen) -> Option<String> {
    let (_, rest) = s.reply.split_once("<UploadId>")?;
    Some(rest.split_once("</UploadId>")?.0.to_string())
}

fn upload_id(target: &str) -> Option<String> {
    let (_, query) = target.split_once('?')?;
    query
        .split('&')
        .find_map(|p| p.strip_prefix("uploadId="))
        .map(crate::support::sigv4::decode)
}

s3_test! {
    #[tokio::test]
    async fn an_upload_created_after_the_gate_closed_is_aborted(server) {
        let proxy = Arc::new(Proxy::start(server.endpoint()));
        let remote = Remote::s3_at(server, "gate-late-create", &proxy.endpoint);
        let (ctl, gate) = coltecd::remote::gate();
        let a = side_with_gate(&remote, &Opts::default(), gate);
        // Past the snapshot limit: streamed, multipart (created once the
        // first parts were read).
        let body: Vec<u8> = (0..20u32 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
        a.write("big.bin", &body);
        proxy.hold_answers_when(is_create);
        let watch = proxy.clone();
        let closer = tokio::spawn(async move {
            let started = Instant::now();
            while watch.held() == 0 {
                assert!(started.elapsed() < Duration::from_secs(60), "no multipart create seen");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            // The create is applied upstream, its answer held: fence now,
            // and deliver the answer only after the writer saw the gate.
            ctl.close("taken over by another container");
            tokio::time::sleep(Duration::from_millis(300)).await;
            watch.release();
            ctl
        });
        let err = a
            .run(PassScope::Full { verify: false }, false)
            .await
            .unwrap_err();
        let _ctl = closer.await.unwrap();
        assert!(matches!(err, SyncError::Fenced { .. }), "{err}");
        assert!(remote.user_keys().await.is_empty());
        let seen = proxy.seen();
        let ids: Vec<String> = seen.iter().filter(|s| is_create(s)).filter_map(created_id).collect();
        assert_eq!(ids.len(), 1, "one multipart upload created: {seen:?}");
        let aborted = seen.iter().any(|s| {
            s.method == "DELETE" && upload_id(&s.target).as_deref() == Some(ids[0].as_str())
        });
        assert!(aborted, "upload {} created after the gate closed was never aborted", ids[0]);
    }
}
