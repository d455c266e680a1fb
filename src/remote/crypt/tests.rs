//! The crypt layer over a local directory: names, contents, sizes, ranges,
//! trash copies, foreign objects and the password check.

use super::*;
use crate::crypt::NameMode;
use opendal::services;

struct Fixture {
    dir: tempfile::TempDir,
}

const RP: &str = "work/space";

impl Fixture {
    fn new() -> Fixture {
        Fixture {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn fs(&self, rel: &str) -> Operator {
        let root = self.dir.path().join(rel);
        Operator::new(services::Fs::default().root(&root.to_string_lossy())).unwrap()
    }

    /// The target operator for `cipher` (the target at `RP`).
    fn op(&self, cipher: Cipher) -> Operator {
        let phys_segments: Vec<String> = cipher
            .names()
            .encrypt_dir(RP)
            .split('/')
            .map(str::to_string)
            .collect();
        let inner = self.fs(&phys_segments.join("/"));
        let shared = Arc::new(Shared {
            cipher,
            remote: "enc".into(),
            password_env: "PW_VAR".into(),
            password2_env: Some("SALT_VAR".into()),
            local: true,
            probe: self.fs(""),
            phys_segments,
            checked: tokio::sync::OnceCell::new(),
        });
        inner.layer(CryptLayer { shared })
    }

    /// Every file under the crypt root: (relative path, bytes).
    fn raw(&self) -> Vec<(String, Vec<u8>)> {
        fn walk(base: &std::path::Path, d: &std::path::Path, out: &mut Vec<(String, Vec<u8>)>) {
            for e in std::fs::read_dir(d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    walk(base, &p, out);
                } else {
                    let rel = p.strip_prefix(base).unwrap().to_string_lossy().into_owned();
                    out.push((rel, std::fs::read(&p).unwrap()));
                }
            }
        }
        let mut out = Vec::new();
        walk(self.dir.path(), self.dir.path(), &mut out);
        out.sort();
        out
    }
}

fn zero(mode: NameMode) -> Cipher {
    Cipher::new("", "", mode, true).unwrap()
}

fn body(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

async fn listed(op: &Operator, dir: &str) -> Vec<(String, u64)> {
    let mut v: Vec<(String, u64)> = op
        .list_with(dir)
        .recursive(true)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.metadata().is_file())
        .map(|e| (e.path().to_string(), e.metadata().content_length()))
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn contents_and_names_round_trip_and_nothing_plain_is_stored() {
    let f = Fixture::new();
    let op = f.op(zero(NameMode::Standard));
    let big = body(3 * 65536 + 1234);
    let mut w = op
        .writer_with("docs/secret-notes.txt")
        .chunk(5 * 65536)
        .await
        .unwrap();
    for c in big.chunks(70_000) {
        w.write(c.to_vec()).await.unwrap();
    }
    w.close().await.unwrap();
    op.write("empty", Vec::<u8>::new()).await.unwrap();
    op.write("exact", body(65536)).await.unwrap();

    assert_eq!(
        op.read("docs/secret-notes.txt").await.unwrap().to_vec(),
        big
    );
    assert_eq!(op.read("empty").await.unwrap().to_vec(), Vec::<u8>::new());
    assert_eq!(op.read("exact").await.unwrap().to_vec(), body(65536));
    let part = op
        .read_with("docs/secret-notes.txt")
        .range(70_000..170_000)
        .await
        .unwrap();
    assert_eq!(part.to_vec(), big[70_000..170_000]);
    assert_eq!(
        op.stat("docs/secret-notes.txt")
            .await
            .unwrap()
            .content_length(),
        big.len() as u64
    );
    assert_eq!(
        listed(&op, "").await,
        vec![
            ("docs/secret-notes.txt".to_string(), big.len() as u64),
            ("empty".to_string(), 0),
            ("exact".to_string(), 65536)
        ]
    );
    for (name, bytes) in f.raw() {
        for plain in ["docs", "secret", "exact", "empty", "work", "space"] {
            assert!(!name.contains(plain), "{name} shows {plain}");
        }
        assert_eq!(&bytes[..8], b"RCLONE\0\0", "{name}");
        assert!(!bytes.windows(64).any(|w| big.windows(64).next() == Some(w)));
    }
}

#[tokio::test]
async fn control_objects_keep_their_names_and_trash_copies_round_trip() {
    let f = Fixture::new();
    let op = f.op(zero(NameMode::Standard));
    op.write(".coltec/manifest.json", b"{\"files\":{\"a/b\":1}}".to_vec())
        .await
        .unwrap();
    op.write("a/b", b"hello".to_vec()).await.unwrap();
    op.copy("a/b", ".coltec/trash/20250101T000000Z/a/b")
        .await
        .unwrap();
    let raw = f.raw();
    let manifest = raw
        .iter()
        .find(|(n, _)| n.ends_with(".coltec/manifest.json"))
        .unwrap();
    assert_eq!(&manifest.1[..8], b"RCLONE\0\0");
    let trash: Vec<&String> = raw
        .iter()
        .map(|(n, _)| n)
        .filter(|n| n.contains("trash"))
        .collect();
    assert_eq!(trash.len(), 1);
    assert!(
        trash[0].ends_with('~') && !trash[0].contains("/a/"),
        "{}",
        trash[0]
    );

    assert_eq!(
        listed(&op, ".coltec/trash/").await,
        vec![(".coltec/trash/20250101T000000Z/a/b".to_string(), 5)]
    );
    assert_eq!(
        op.read(".coltec/trash/20250101T000000Z/a/b")
            .await
            .unwrap()
            .to_vec(),
        b"hello"
    );
    op.delete(".coltec/trash/20250101T000000Z/a/b")
        .await
        .unwrap();
    assert!(listed(&op, ".coltec/trash/").await.is_empty());
    assert_eq!(
        op.read(".coltec/manifest.json").await.unwrap().to_vec(),
        b"{\"files\":{\"a/b\":1}}"
    );
}

#[tokio::test]
async fn names_that_do_not_decrypt_are_listed_marked_under_their_raw_name_and_left_alone() {
    let f = Fixture::new();
    let op = f.op(zero(NameMode::Standard));
    op.write("kept", b"x".to_vec()).await.unwrap();
    let target = zero(NameMode::Standard).names().encrypt_dir(RP);
    let foreign = f.dir.path().join(&target).join("not-encrypted.txt");
    std::fs::write(&foreign, b"plain").unwrap();
    assert_eq!(listed(&op, "").await, vec![("kept".to_string(), 1)]);
    let marked: Vec<(String, Option<String>)> = op
        .list_with("")
        .recursive(true)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.metadata().mode() == opendal::EntryMode::Unknown)
        .map(|e| {
            let ct = e.metadata().content_type().map(str::to_string);
            (e.path().to_string(), ct)
        })
        .collect();
    assert_eq!(
        marked,
        vec![(
            format!("{UNDECRYPTABLE_PREFIX}not-encrypted.txt"),
            Some(UNDECRYPTABLE.to_string())
        )]
    );
    // Listings of control objects only skip them.
    assert!(listed(&op, ".coltec/").await.is_empty());
    assert_eq!(std::fs::read(&foreign).unwrap(), b"plain");
}

#[tokio::test]
async fn a_wrong_password_is_reported_before_anything_is_read_or_written() {
    for mode in [NameMode::Standard, NameMode::Off] {
        let f = Fixture::new();
        f.op(Cipher::new("right", "", mode, true).unwrap())
            .write("dir/file", b"data".to_vec())
            .await
            .unwrap();
        let before = f.raw();
        let wrong = f.op(Cipher::new("wrong", "", mode, true).unwrap());
        for err in [
            wrong
                .list_with("")
                .recursive(true)
                .await
                .map(|_| ())
                .unwrap_err(),
            wrong
                .write("new", b"x".to_vec())
                .await
                .map(|_| ())
                .unwrap_err(),
            wrong.read("dir/file").await.map(|_| ()).unwrap_err(),
        ] {
            assert_eq!(err.kind(), ErrorKind::ConfigInvalid, "{mode:?}: {err}");
            let msg = err.to_string();
            assert!(msg.contains("wrong password or salt"), "{msg}");
            assert!(msg.contains("PW_VAR") && msg.contains("SALT_VAR"), "{msg}");
            assert!(!msg.contains("right") && !msg.contains("wrong\""), "{msg}");
        }
        assert_eq!(f.raw(), before, "{mode:?}: nothing written");
    }
}

#[tokio::test]
async fn off_and_obfuscate_modes_round_trip() {
    for mode in [NameMode::Off, NameMode::Obfuscate] {
        let f = Fixture::new();
        let op = f.op(zero(mode));
        op.write("dir/ünï.txt", body(70_000)).await.unwrap();
        assert_eq!(op.read("dir/ünï.txt").await.unwrap().to_vec(), body(70_000));
        assert_eq!(
            listed(&op, "").await,
            vec![("dir/ünï.txt".to_string(), 70_000)]
        );
        if mode == NameMode::Off {
            assert!(
                f.raw()[0].0.ends_with("dir/ünï.txt.bin"),
                "{:?}",
                f.raw()[0].0
            );
        }
    }
}

#[tokio::test]
async fn debris_of_a_wrong_password_run_neither_blocks_the_right_one_nor_admits_the_wrong_one() {
    let f = Fixture::new();
    let right = || Cipher::new("right", "", NameMode::Standard, true).unwrap();
    let wrong = || Cipher::new("wrong", "", NameMode::Standard, true).unwrap();
    f.op(right()).write("file", b"data".to_vec()).await.unwrap();
    // The wrong operator's local directory (and a lease) appear on disk.
    let w = f.op(wrong());
    assert!(w.list("").await.is_err());
    let lease = f
        .dir
        .path()
        .join(wrong().names().encrypt_dir(RP))
        .join(".coltec");
    std::fs::create_dir_all(&lease).unwrap();
    std::fs::write(lease.join("lease.json"), b"{}").unwrap();
    // A fresh wrong operator is still refused ...
    let err = f.op(wrong()).list("").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConfigInvalid, "{err}");
    // ... and the right one still works.
    assert_eq!(f.op(right()).read("file").await.unwrap().to_vec(), b"data");
}
