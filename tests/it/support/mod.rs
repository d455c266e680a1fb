//! Shared helpers for the integration tests.
//!
//! Layout:
//! - `s3`: the two real S3 servers (moto, s3s-fs), buckets, listings and
//!   the one S3 remote builder; [`s3_test!`] runs a test against both;
//! - `sigv4`: signed raw requests for setup and inspection;
//! - `proxy`, `lease_proxy`: HTTP proxies that count or break requests;
//!   `fault_proxy`: the seeded random faults `proxy` injects.

#![allow(dead_code)]

pub mod cli;
pub mod fault_proxy;
pub mod lease_proxy;
pub mod proxy;
pub mod s3;
pub mod sigv4;

use std::path::PathBuf;

/// Path of the built `coltecd` binary.
pub fn coltecd_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_coltecd"))
}

/// The repository root (for `config/` examples and fixtures).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `../shared` beside the repository (CI provides it next to the clone;
/// `COLTEC_SHARED_DIR` points elsewhere, e.g. from a git worktree). Panics
/// with what is missing: a test that needs it must not pass without it.
pub fn shared_dir() -> PathBuf {
    let dir = match std::env::var_os("COLTEC_SHARED_DIR") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => repo_root().join("../shared"),
    };
    assert!(
        dir.is_dir(),
        "{} is missing: the shared fixtures live in ../shared beside the repository \
         (CI provides it; set COLTEC_SHARED_DIR to use another location)",
        dir.display()
    );
    dir
}

/// One S3 test, run against every server of [`s3::S3Server`]: the body is
/// written once with a named `server` parameter, and the macro makes a
/// module named after the test holding one test per server, `moto` and
/// `s3s` (so `sync::round_trip_s3::s3s`). The test attribute is kept as
/// written (`#[test]`, or `#[tokio::test]` with any runtime arguments).
///
/// ```ignore
/// s3_test! {
///     /// What it proves.
///     #[tokio::test]
///     async fn round_trip_s3(server) {
///         round_trip(Remote::s3(server, "round-trip")).await;
///     }
/// }
/// ```
macro_rules! s3_test {
    (
        known_gap_on_s3s: $why:literal;
        $(#[doc = $doc:expr])*
        #[tokio::test $(($($rt:tt)*))?]
        async fn $name:ident($server:ident) $body:block
    ) => {
        $(#[doc = $doc])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            async fn case($server: $crate::support::s3::S3Server) $body

            #[tokio::test $(($($rt)*))?]
            async fn moto() {
                case($crate::support::s3::S3Server::Moto).await
            }

            /// A known gap of coltecd on this server, listed as ignored (with
            /// its reason) in every run rather than hidden; see README "Status".
            #[tokio::test $(($($rt)*))?]
            #[ignore = $why]
            async fn s3s() {
                case($crate::support::s3::S3Server::S3s).await
            }
        }
    };
    (
        $(#[doc = $doc:expr])*
        #[tokio::test $(($($rt:tt)*))?]
        async fn $name:ident($server:ident) $body:block
    ) => {
        $(#[doc = $doc])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            async fn case($server: $crate::support::s3::S3Server) $body

            #[tokio::test $(($($rt)*))?]
            async fn moto() {
                case($crate::support::s3::S3Server::Moto).await
            }

            #[tokio::test $(($($rt)*))?]
            async fn s3s() {
                case($crate::support::s3::S3Server::S3s).await
            }
        }
    };
    (
        $(#[doc = $doc:expr])*
        #[test]
        fn $name:ident($server:ident) $body:block
    ) => {
        $(#[doc = $doc])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            fn case($server: $crate::support::s3::S3Server) $body

            #[test]
            fn moto() {
                case($crate::support::s3::S3Server::Moto)
            }

            #[test]
            fn s3s() {
                case($crate::support::s3::S3Server::S3s)
            }
        }
    };
}
pub(crate) use s3_test;
