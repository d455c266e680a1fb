//! The control socket: how `status`, `stop` and `sync --now` talk to the
//! running daemon.
//!
//! A unix stream socket `control.sock` in the state dir (which is 0700; the
//! socket itself is made 0600). One request per connection: the client
//! writes one JSON line ([`Request`]), the daemon answers one JSON line
//! ([`Response`]). The client side is plain blocking std code so commands
//! need no runtime to ask.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::net::UnixListener;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::scheduler::{SchedulerCommand, TargetSynced};
use super::status::DaemonStatus;
use crate::error::{ExitStatus, HasExitStatus};
use crate::state_dir::StateDir;

/// Name of the socket inside the state dir.
pub const SOCKET_FILE: &str = "control.sock";

/// Largest request or response line accepted (a status of many targets is
/// well below this).
const MAX_LINE: usize = 4 << 20;

/// What a client may ask.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "request", rename_all = "kebab-case")]
pub enum Request {
    /// The live status.
    Status,
    /// Run a full pass of every target now and answer when done.
    SyncNow,
    /// Flush pending changes, release the lease and exit.
    Stop,
}

/// Result of one target's pass triggered by [`Request::SyncNow`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncNowOutcome {
    pub target: String,
    /// `None` when the pass succeeded.
    pub error: Option<String>,
    pub uploaded: u64,
    pub downloaded: u64,
    pub failed: u64,
}

/// What the daemon answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "response", rename_all = "kebab-case")]
pub enum Response {
    Status { status: Box<DaemonStatus> },
    Synced { outcomes: Vec<SyncNowOutcome> },
    Stopping { pid: u32 },
    Error { message: String },
}

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("no coltecd daemon is running for state dir {dir} (no answer on {socket})")]
    NotRunning { dir: PathBuf, socket: PathBuf },
    #[error("talking to the daemon over {socket} failed: {source}")]
    Io {
        socket: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the daemon sent an answer this coltecd does not understand ({0}); are two versions installed?"
    )]
    Protocol(String),
    #[error("the daemon refused the request: {0}")]
    Refused(String),
}

impl HasExitStatus for ControlError {
    fn exit_status(&self) -> ExitStatus {
        match self {
            ControlError::NotRunning { .. } => ExitStatus::NOT_RUNNING,
            _ => ExitStatus::Failure,
        }
    }
}

pub fn socket_path(state_dir: &Path) -> PathBuf {
    state_dir.join(SOCKET_FILE)
}

/// Ask the daemon of `state_dir` and wait for its answer. `SyncNow` waits
/// as long as the passes take; the others give up after 10 s.
pub fn request(state_dir: &StateDir, req: Request) -> Result<Response, ControlError> {
    let socket = socket_path(state_dir.path());
    let io = |source| ControlError::Io {
        socket: socket.clone(),
        source,
    };
    let stream = match UnixStream::connect(&socket) {
        Ok(s) => s,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Err(ControlError::NotRunning {
                dir: state_dir.path().to_path_buf(),
                socket,
            });
        }
        Err(e) => return Err(io(e)),
    };
    let timeout = match req {
        Request::SyncNow => None,
        _ => Some(Duration::from_secs(10)),
    };
    stream.set_read_timeout(timeout).map_err(io)?;
    stream
        .set_write_timeout(Some(Duration::from_secs(10)))
        .map_err(io)?;
    let mut line =
        serde_json::to_string(&req).map_err(|e| ControlError::Protocol(e.to_string()))?;
    line.push('\n');
    (&stream).write_all(line.as_bytes()).map_err(io)?;
    let mut reader = BufReader::new(&stream).take(MAX_LINE as u64);
    let mut answer = String::new();
    reader.read_line(&mut answer).map_err(io)?;
    if answer.is_empty() {
        return Err(ControlError::Protocol(
            "the daemon closed the connection without answering".into(),
        ));
    }
    match serde_json::from_str(&answer) {
        Ok(Response::Error { message }) => Err(ControlError::Refused(message)),
        Ok(r) => Ok(r),
        Err(e) => Err(ControlError::Protocol(e.to_string())),
    }
}

use std::io::Read as _;

/// `coltecd sync --now`: ask the running daemon for a full pass of every
/// target (listing the remote) and wait for the outcome. `Err(NotRunning)`
/// (exit 3) when no daemon runs; the caller may then run a one-shot pass.
pub fn sync_now(state_dir: &StateDir) -> Result<Vec<SyncNowOutcome>, ControlError> {
    match request(state_dir, Request::SyncNow)? {
        Response::Synced { outcomes } => Ok(outcomes),
        other => Err(ControlError::Protocol(format!(
            "expected the sync outcome, got {other:?}"
        ))),
    }
}

/// Bind the socket (replacing a stale one: the caller holds the state-dir
/// lock, so no live daemon can own it) with owner-only permissions.
pub(crate) fn bind(state_dir: &Path) -> std::io::Result<UnixListener> {
    let path = socket_path(state_dir);
    match std::fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let listener = UnixListener::bind(&path)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Answer `Status` from `status` directly; hand everything else to the
/// scheduler over `commands`. Returns when `cancel` fires; every
/// connection task is tracked and joined.
pub(crate) async fn serve(
    listener: UnixListener,
    status: Arc<dyn Fn() -> DaemonStatus + Send + Sync>,
    commands: mpsc::Sender<SchedulerCommand>,
    cancel: CancellationToken,
) {
    let mut conns: JoinSet<()> = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            _ = cancel.cancelled() => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => continue,
            a = listener.accept() => a,
        };
        let stream = match accepted {
            Ok((s, _)) => s,
            Err(e) => {
                tracing::warn!(error = %e, "control socket accept failed");
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = tokio::time::sleep(Duration::from_millis(100)) => continue,
                }
            }
        };
        let status = status.clone();
        let commands = commands.clone();
        conns.spawn(async move {
            if let Err(e) = handle(stream, status, commands).await {
                tracing::debug!(error = %e, "control connection ended with an error");
            }
        });
    }
    // Let answers in flight (a `stop`'s "stopping") reach their clients;
    // then cut off whoever is still connected.
    drop(listener);
    let drained = tokio::time::timeout(Duration::from_secs(2), async {
        while conns.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        conns.abort_all();
        while conns.join_next().await.is_some() {}
    }
}

async fn handle(
    stream: tokio::net::UnixStream,
    status: Arc<dyn Fn() -> DaemonStatus + Send + Sync>,
    commands: mpsc::Sender<SchedulerCommand>,
) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut reader = tokio::io::BufReader::new(read);
    let mut line = String::new();
    let n = tokio::time::timeout(Duration::from_secs(10), async {
        let mut limited = (&mut reader).take(MAX_LINE as u64);
        tokio::io::AsyncBufReadExt::read_line(&mut limited, &mut line).await
    })
    .await
    .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no request within 10 s"))??;
    let _ = n;
    let response = match serde_json::from_str::<Request>(line.trim()) {
        Err(e) => Response::Error {
            message: format!("unknown request: {e}"),
        },
        Ok(Request::Status) => Response::Status {
            status: Box::new(status()),
        },
        Ok(Request::SyncNow) => {
            let (reply, rx) = oneshot::channel();
            ask(&commands, SchedulerCommand::SyncNow { reply }, rx)
                .await
                .map(|outcomes| Response::Synced {
                    outcomes: outcomes.into_iter().map(SyncNowOutcome::from).collect(),
                })
                .unwrap_or_else(shutting_down)
        }
        Ok(Request::Stop) => {
            let (reply, rx) = oneshot::channel();
            ask(&commands, SchedulerCommand::Stop { reply }, rx)
                .await
                .map(|pid| Response::Stopping { pid })
                .unwrap_or_else(shutting_down)
        }
    };
    let mut out = serde_json::to_string(&response).map_err(std::io::Error::other)?;
    out.push('\n');
    write.write_all(out.as_bytes()).await?;
    write.shutdown().await
}

/// Send `cmd` to the scheduler and wait for its answer on `rx`; `None`
/// when it is gone (shutting down).
async fn ask<T>(
    commands: &mpsc::Sender<SchedulerCommand>,
    cmd: SchedulerCommand,
    rx: oneshot::Receiver<T>,
) -> Option<T> {
    commands.send(cmd).await.ok()?;
    rx.await.ok()
}

fn shutting_down() -> Response {
    Response::Error {
        message: "the daemon is shutting down".into(),
    }
}

impl From<TargetSynced> for SyncNowOutcome {
    fn from(t: TargetSynced) -> SyncNowOutcome {
        SyncNowOutcome {
            target: t.target,
            error: t.error,
            uploaded: t.uploaded,
            downloaded: t.downloaded,
            failed: t.failed,
        }
    }
}

#[allow(unused_imports)]
use AsyncBufReadExt as _;
use tokio::io::AsyncReadExt as _;

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn status_and_commands_round_trip() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = StateDir::at(tmp.path());
        let listener = bind(tmp.path()).unwrap();
        let mode = std::fs::metadata(socket_path(tmp.path()))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let (tx, mut rx) = mpsc::channel::<SchedulerCommand>(4);
        let cancel = CancellationToken::new();
        let now = crate::clock::unix_now();
        let snapshot = crate::daemon::status::tests_support::sample(now);
        let snap2 = snapshot.clone();
        let server = tokio::spawn(serve(
            listener,
            Arc::new(move || snap2.clone()),
            tx,
            cancel.clone(),
        ));
        let sup = tokio::spawn(async move {
            while let Some(cmd) = rx.recv().await {
                match cmd {
                    SchedulerCommand::Stop { reply } => {
                        let _ = reply.send(7);
                    }
                    SchedulerCommand::SyncNow { reply } => {
                        let _ = reply.send(vec![TargetSynced {
                            target: "t".into(),
                            error: None,
                            uploaded: 2,
                            downloaded: 1,
                            failed: 0,
                        }]);
                    }
                }
            }
        });
        let d2 = dir.clone();
        let got = tokio::task::spawn_blocking(move || {
            (
                request(&d2, Request::Status).unwrap(),
                request(&d2, Request::Stop).unwrap(),
                request(&d2, Request::SyncNow).unwrap(),
            )
        })
        .await
        .unwrap();
        assert_eq!(
            got.0,
            Response::Status {
                status: Box::new(snapshot)
            }
        );
        assert_eq!(got.1, Response::Stopping { pid: 7 });
        assert_eq!(
            got.2,
            Response::Synced {
                outcomes: vec![SyncNowOutcome {
                    target: "t".into(),
                    error: None,
                    uploaded: 2,
                    downloaded: 1,
                    failed: 0,
                }]
            }
        );
        cancel.cancel();
        server.await.unwrap();
        sup.await.unwrap();
    }

    #[test]
    fn no_daemon_is_not_running() {
        let tmp = tempfile::tempdir().unwrap();
        let err = request(&StateDir::at(tmp.path()), Request::Status).unwrap_err();
        assert!(matches!(err, ControlError::NotRunning { .. }), "{err}");
        assert_eq!(err.exit_status().code(), 3);
    }
}
