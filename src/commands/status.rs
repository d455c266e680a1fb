//! `coltecd status [--json]`: live from the daemon's control socket, else
//! the last status it wrote, marked "not running". Exit 0 healthy, 1
//! degraded, 3 not running (usable as a HEALTHCHECK / probe).
//!
//! Only this container's daemon counts: when the state dir's pidfile was
//! written in another container (one state volume mounted into two), the
//! control socket is not asked (it would answer for that container) and
//! the status says which container holds the state dir and what to do.

use crate::cli::{GlobalArgs, StatusArgs};
use crate::daemon::control::{self, ControlError, Request, Response};
use crate::daemon::status::{self, DaemonState, DaemonStatus};
use crate::daemon::{self, pidfile};
use crate::error::{CmdResult, ExitStatus, Fail};

pub fn run(global: &GlobalArgs, args: &StatusArgs) -> CmdResult {
    let now = crate::clock::unix_now();
    let (spec, dir) = daemon::locate(&global.config)?;
    let from_file = || -> Option<DaemonStatus> { status::read_file(dir.path()) };
    let fallback = |spec_state: DaemonState| -> DaemonStatus {
        match (&spec, from_file()) {
            (_, Some(f)) => f.as_stopped(now),
            (Some(spec), None) => daemon::status_for_spec(spec, spec_state),
            (None, None) => unreachable_without_spec(dir.path()),
        }
    };
    let foreign = pidfile::foreign(dir.path()).map(|o| foreign_note(dir.path(), &o));
    let mut st = if let Some(note) = &foreign {
        // Not ours: show this container's (stopped) view, never theirs.
        let mut s = match &spec {
            Some(spec) => daemon::status_for_spec(spec, DaemonState::Stopped),
            None => unreachable_without_spec(dir.path()),
        };
        s.state = DaemonState::Stopped;
        s.evaluate(now);
        s.problems.push(note.clone());
        s
    } else if daemon::disabled() {
        let mut s = match &spec {
            Some(spec) => daemon::status_for_spec(spec, DaemonState::Disabled),
            None => from_file().unwrap_or_else(|| unreachable_without_spec(dir.path())),
        };
        s.state = DaemonState::Disabled;
        s.pid = None;
        s
    } else {
        match control::request(&dir, Request::Status) {
            Ok(Response::Status { status }) => *status,
            Ok(other) => {
                return Err(Fail::new(
                    ExitStatus::Failure,
                    anyhow::anyhow!("unexpected answer from the daemon: {other:?}"),
                ));
            }
            Err(ControlError::NotRunning { .. }) => fallback(DaemonState::Stopped),
            Err(e) => match pidfile::live(dir.path()) {
                // Alive but not answering: show the last status as degraded.
                Some(pid) => {
                    let mut s = fallback(DaemonState::Stopped);
                    s.state = DaemonState::Running;
                    s.pid = Some(pid);
                    s.evaluate(now);
                    s.problems.push(format!("the daemon does not answer: {e}"));
                    s.health = status::Health::Degraded;
                    s
                }
                None => fallback(DaemonState::Stopped),
            },
        }
    };
    if foreign.is_none()
        && (st.state != DaemonState::Running || st.health != status::Health::Degraded)
    {
        st.evaluate(now);
    }
    // A status from a daemon (live or its file) names the daemon's build;
    // otherwise the build of this binary.
    st.build.get_or_insert_with(crate::version::build_info);
    let idle = Idle::of(&st, now);
    if args.json {
        let body = serde_json::to_string_pretty(&WithIdle { status: &st, idle })
            .map_err(|e| Fail::new(ExitStatus::Failure, e))?;
        println!("{body}");
    } else {
        print!("{}", st.render_text(now));
        println!("{}", idle.render());
    }
    if let Some(d) = args.idle_for {
        let idle_enough = idle.idle_secs.is_some_and(|s| s >= d.as_secs());
        return Ok(if idle_enough {
            ExitStatus::Ok
        } else {
            ExitStatus::Failure
        });
    }
    Ok(st.health.exit_status())
}

/// How long the workspace has been idle: the `idle` object of `status
/// --json`, what `--idle-for` compares with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
struct Idle {
    /// Last local change pushed, or still pending (unix seconds).
    last_local_change_at: Option<u64>,
    /// Last pass that changed the remote or found it changed.
    last_remote_change_at: Option<u64>,
    /// Since the last local change; since the daemon started when it saw
    /// none; null when neither is known.
    idle_secs: Option<u64>,
    /// Since the last remote change (or the daemon's start).
    remote_idle_secs: Option<u64>,
}

impl Idle {
    fn of(st: &DaemonStatus, now: u64) -> Idle {
        let ts = &st.targets;
        let local = ts
            .iter()
            .filter_map(|t| t.last_local_change_at.max(t.oldest_pending_at))
            .max();
        let remote = ts.iter().filter_map(|t| t.last_remote_change_at).max();
        let since = |t: Option<u64>| t.or(st.started_at).map(|t| now.saturating_sub(t));
        Idle {
            last_local_change_at: local,
            last_remote_change_at: remote,
            idle_secs: since(local),
            remote_idle_secs: since(remote),
        }
    }

    fn render(&self) -> String {
        let part = |secs: Option<u64>, what: &str| match secs {
            Some(s) => format!("idle for {} since the last {what}", status::human_secs(s)),
            None => format!("no {what} known"),
        };
        format!(
            "{}; {}",
            part(self.idle_secs, "local change"),
            part(self.remote_idle_secs, "remote change")
        )
    }
}

/// `status --json`: the status plus the `idle` object.
#[derive(serde::Serialize)]
struct WithIdle<'a> {
    #[serde(flatten)]
    status: &'a DaemonStatus,
    /// How long the workspace has been idle.
    idle: Idle,
}

/// What `status` and `stop` say when the state dir's daemon (live: its
/// control socket accepts a connection) or last pidfile belongs to another
/// container.
pub(super) fn foreign_note(dir: &std::path::Path, other: &pidfile::Owner) -> String {
    let live = std::os::unix::net::UnixStream::connect(control::socket_path(dir)).is_ok();
    let (is, whose) = if live {
        ("is in use by", "that daemon")
    } else {
        ("was last used by", "it")
    };
    format!(
        "the state dir {} {is} a coltecd in ANOTHER container ({}); this container's \
         daemon is not running. `status` and `stop` here act only on this container's \
         daemon: manage {whose} from its own container, and give each container its own \
         state dir (persistence.daemon.state_dir or {})",
        crate::escape::name(&dir.display().to_string()),
        other.describe(),
        crate::state_dir::STATE_DIR_ENV
    )
}

/// Without a spec and without any status file there is nothing to show
/// but "not running".
fn unreachable_without_spec(dir: &std::path::Path) -> DaemonStatus {
    DaemonStatus {
        schema: status::STATUS_SCHEMA,
        state: DaemonState::Stopped,
        source: status::Source::File,
        health: status::Health::NotRunning,
        problems: Vec::new(),
        workspace: format!("(state dir {})", dir.display()),
        spec: Default::default(),
        pid: None,
        started_at: None,
        uptime_secs: None,
        updated_at: crate::clock::unix_now(),
        leases: status::StatusLeases {
            writes_allowed: false,
            fenced_reason: None,
            renew_every_secs: None,
            detail: Vec::new(),
        },
        targets: Vec::new(),
        stop: None,
        build: None,
    }
}
