//! rclone's published name vectors (backend/crypt/cipher_test.go), with
//! the all-zero keys rclone's tests use (empty password).

use super::*;

fn names(mode: NameMode, dirs: bool) -> Names {
    let keys = Keys::derive("", "").unwrap();
    Names::new(&keys, mode, dirs)
}

const SEGMENTS: &[(&str, &str)] = &[
    ("1", "p0e52nreeaj0a5ea7s64m4j72s"),
    ("12", "l42g6771hnv3an9cgc8cr2n1ng"),
    ("123", "qgm4avr35m5loi1th53ato71v0"),
    ("1234", "8ivr2e9plj3c3esisjpdisikos"),
    ("12345", "rh9vu63q3o29eqmj4bg6gg7s44"),
    ("123456", "bn717l3alepn75b2fb2ejmi4b4"),
    ("1234567", "n6bo9jmb1qe3b1ogtj5qkf19k8"),
    ("12345678", "u9t24j7uaq94dh5q53m3s4t9ok"),
    ("123456789", "37hn305g6j12d1g0kkrl7ekbs4"),
    ("1234567890", "ot8d91eplaglb62k2b1trm2qv0"),
    ("12345678901", "h168vvrgb53qnrtvvmb378qrcs"),
    ("123456789012", "s3hsdf9e29ithrqbjqu01t8q2s"),
    ("1234567890123", "cf3jimlv1q2oc553mv7s3mh3eo"),
    ("12345678901234", "moq0uqdlqrblrc5pa5u5c7hq9g"),
    ("123456789012345", "eeam3li4rnommi3a762h5n7meg"),
    (
        "1234567890123456",
        "mijbj0frqf6ms7frcr6bd9h0env53jv96pjaaoirk7forcgpt70g",
    ),
];

#[test]
fn standard_segments_match_rclone_vectors() {
    let n = names(NameMode::Standard, true);
    assert_eq!(n.encrypt_segment(""), "");
    for (plain, enc) in SEGMENTS {
        assert_eq!(n.encrypt_segment(plain), *enc, "encrypting {plain:?}");
        assert_eq!(n.decrypt_segment(enc).as_deref(), Ok(*plain));
        // rclone decodes case-insensitively.
        assert_eq!(
            n.decrypt_segment(&enc.to_uppercase()).as_deref(),
            Ok(*plain)
        );
    }
}

#[test]
fn standard_segments_refuse_what_rclone_refuses() {
    let n = names(NameMode::Standard, true);
    let b32 = |b: &[u8]| BASE32HEX_NOPAD.encode(b).to_ascii_lowercase();
    assert_eq!(n.decrypt_segment("64="), Err(NameError::BadEncoding));
    assert_eq!(n.decrypt_segment("!"), Err(NameError::BadEncoding));
    assert_eq!(
        n.decrypt_segment(&"a".repeat(3328)),
        Err(NameError::TooLong)
    );
    assert_eq!(n.decrypt_segment(&b32(b"a")), Err(NameError::NotBlocks));
    assert_eq!(
        n.decrypt_segment(&b32(b"123456789abcdef")),
        Err(NameError::NotBlocks)
    );
    assert_eq!(
        n.decrypt_segment(&b32(b"123456789abcdef0")),
        Err(NameError::BadPadding)
    );
}

#[test]
fn standard_paths_match_rclone_vectors() {
    let n = names(NameMode::Standard, true);
    for (plain, enc) in [
        ("1", "p0e52nreeaj0a5ea7s64m4j72s"),
        (
            "1/12",
            "p0e52nreeaj0a5ea7s64m4j72s/l42g6771hnv3an9cgc8cr2n1ng",
        ),
        (
            "1/12/123",
            "p0e52nreeaj0a5ea7s64m4j72s/l42g6771hnv3an9cgc8cr2n1ng/qgm4avr35m5loi1th53ato71v0",
        ),
        (
            "1-v2001-02-03-040506-123",
            "p0e52nreeaj0a5ea7s64m4j72s-v2001-02-03-040506-123",
        ),
        (
            "1/12-v2001-02-03-040506-123",
            "p0e52nreeaj0a5ea7s64m4j72s/l42g6771hnv3an9cgc8cr2n1ng-v2001-02-03-040506-123",
        ),
    ] {
        assert_eq!(n.encrypt_file(plain), enc);
        assert_eq!(n.decrypt_file(enc).as_deref(), Ok(plain));
    }
    assert_eq!(
        n.encrypt_dir("1/12"),
        "p0e52nreeaj0a5ea7s64m4j72s/l42g6771hnv3an9cgc8cr2n1ng"
    );
    // One stray block in front: not a whole number of blocks.
    assert_eq!(
        n.decrypt_file("64p0e52nreeaj0a5ea7s64m4j72s"),
        Err(NameError::NotBlocks)
    );

    let n = names(NameMode::Standard, false);
    for (plain, enc) in [
        ("1", "p0e52nreeaj0a5ea7s64m4j72s"),
        ("1/12", "1/l42g6771hnv3an9cgc8cr2n1ng"),
        ("1/12/123", "1/12/qgm4avr35m5loi1th53ato71v0"),
        (
            "1/12-v2001-02-03-040506-123",
            "1/l42g6771hnv3an9cgc8cr2n1ng-v2001-02-03-040506-123",
        ),
    ] {
        assert_eq!(n.encrypt_file(plain), enc);
        assert_eq!(n.decrypt_file(enc).as_deref(), Ok(plain));
    }
    assert_eq!(n.encrypt_dir("1/12/123"), "1/12/123");
    assert_eq!(n.decrypt_dir("1/12/123").as_deref(), Ok("1/12/123"));
}

#[test]
fn off_mode_matches_rclone_vectors() {
    let n = names(NameMode::Off, true);
    assert_eq!(n.encrypt_file("1/12/123"), "1/12/123.bin");
    assert_eq!(n.encrypt_dir("1/12/123"), "1/12/123");
    assert_eq!(n.decrypt_file("1/12/123.bin").as_deref(), Ok("1/12/123"));
    assert_eq!(n.decrypt_file("1/12/123.bix"), Err(NameError::NotEncrypted));
    assert_eq!(n.decrypt_file(".bin"), Err(NameError::NotEncrypted));
    assert_eq!(
        n.decrypt_file("1/12/123-v2001-02-03-040506-123.bin")
            .as_deref(),
        Ok("1/12/123-v2001-02-03-040506-123")
    );
    assert_eq!(
        n.decrypt_file("1/12/123-v1970-01-01-010101-123-v2001-02-03-040506-123.txt.bin")
            .as_deref(),
        Ok("1/12/123-v1970-01-01-010101-123-v2001-02-03-040506-123.txt")
    );
    assert_eq!(n.decrypt_dir(".bin").as_deref(), Ok(".bin"));
}

#[test]
fn obfuscate_mode_matches_rclone_vectors() {
    let n = names(NameMode::Obfuscate, true);
    for (plain, enc) in [
        ("1/12/123/!hello", "49.6/99.23/150.890/53.!!lipps"),
        (
            "1/12/123/!hello-v2001-02-03-040506-123",
            "49.6/99.23/150.890/53-v2001-02-03-040506-123.!!lipps",
        ),
        (
            "1/12/123/hello-v2001-02-03-040506-123.txt",
            "49.6/99.23/150.890/162.uryyB-v2001-02-03-040506-123.GKG",
        ),
        ("\u{a1}", "161.\u{e4}"),
        ("\u{3a0}", "160.\u{3c2}"),
    ] {
        assert_eq!(n.encrypt_file(plain), enc);
        assert_eq!(n.decrypt_file(enc).as_deref(), Ok(plain));
    }
    assert_eq!(n.decrypt_file("!.hello").as_deref(), Ok("hello"));
    assert_eq!(n.decrypt_file("hello"), Err(NameError::NotEncrypted));
    for s in ["1/2/3/4/!hello\u{3a0}", "Avatar The Last Airbender"] {
        assert_eq!(n.decrypt_file(&n.encrypt_file(s)).as_deref(), Ok(s));
    }

    let n = names(NameMode::Obfuscate, false);
    assert_eq!(n.encrypt_file("1/12/123/!hello"), "1/12/123/53.!!lipps");
    assert_eq!(
        n.decrypt_file("1/12/123/53-v2001-02-03-040506-123.!!lipps")
            .as_deref(),
        Ok("1/12/123/!hello-v2001-02-03-040506-123")
    );
}

#[test]
fn unicode_names_round_trip_in_every_mode() {
    for mode in [NameMode::Standard, NameMode::Obfuscate, NameMode::Off] {
        let n = names(mode, true);
        let p = "répertoire/日本語/файл ☃.txt";
        assert_eq!(n.decrypt_file(&n.encrypt_file(p)).as_deref(), Ok(p));
        assert_eq!(n.decrypt_dir(&n.encrypt_dir(p)).as_deref(), Ok(p));
    }
}

#[test]
fn versions_are_only_real_dates() {
    assert!(split_version("a-v2001-02-03-040506-123").is_some());
    assert!(split_version("a-v2001-02-30-040506-123").is_none());
    assert!(split_version("a-v2001-13-03-040506-123").is_none());
    assert!(split_version("a-v2001-02-03-240506-123").is_none());
    assert!(split_version("a-v2001-02-03-040506.123").is_none());
    assert!(split_version("é-v2001-02-03-04050é-123").is_none());
}
