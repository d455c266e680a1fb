//! The write gate: fencing between the lease and everything that writes to
//! a remote.
//!
//! The lease keeper holds the [`GateController`]; the sync engine holds
//! [`WriteGate`]s and checks one before every remote write. When the lease
//! can no longer be proven (renewals failing, taken over), the keeper closes
//! the gate *before* another container could consider the lease stale, so a
//! fenced holder never overwrites a successor. Each re-open bumps the
//! generation, telling the engine that the remote may have changed while it
//! was fenced and must be reconciled before pushing again.

use tokio::sync::watch;

#[derive(Debug, Clone, PartialEq, Eq)]
struct GateState {
    open: bool,
    generation: u64,
    reason: String,
}

/// Error returned by [`WriteGate::check`] while fenced.
#[derive(Debug, Clone, thiserror::Error)]
#[error("remote writes are paused: {reason}")]
pub struct Fenced {
    pub reason: String,
}

/// Read side: checked before remote writes.
#[derive(Debug, Clone)]
pub struct WriteGate {
    rx: watch::Receiver<GateState>,
}

/// Write side: owned by whoever proves the right to write (the lease).
#[derive(Debug)]
pub struct GateController {
    tx: watch::Sender<GateState>,
}

/// A new gate, initially open at generation 0.
pub fn gate() -> (GateController, WriteGate) {
    let (tx, rx) = watch::channel(GateState {
        open: true,
        generation: 0,
        reason: String::new(),
    });
    (GateController { tx }, WriteGate { rx })
}

impl WriteGate {
    /// A gate that is never closed, for `lease: off` and pull-only work.
    pub fn always_open() -> WriteGate {
        gate().1
    }

    /// `Ok` while writes are allowed.
    pub fn check(&self) -> Result<(), Fenced> {
        let s = self.rx.borrow();
        if s.open {
            Ok(())
        } else {
            Err(Fenced {
                reason: s.reason.clone(),
            })
        }
    }

    pub fn is_open(&self) -> bool {
        self.rx.borrow().open
    }

    /// Bumped every time the gate re-opens after being closed.
    pub fn generation(&self) -> u64 {
        self.rx.borrow().generation
    }

    /// Resolves once the gate is closed (immediately if it already is); use
    /// in `select!` to abort an in-flight upload when fenced.
    pub async fn closed(&self) {
        let mut rx = self.rx.clone();
        // A dropped controller leaves the gate as it was; wait forever then.
        if rx.wait_for(|s| !s.open).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

impl GateController {
    pub fn close(&self, reason: impl Into<String>) {
        let reason = reason.into();
        self.tx.send_modify(|s| {
            s.open = false;
            s.reason = reason;
        });
    }

    pub fn open(&self) {
        self.tx.send_modify(|s| {
            if !s.open {
                s.open = true;
                s.generation += 1;
                s.reason.clear();
            }
        });
    }

    pub fn is_open(&self) -> bool {
        self.tx.borrow().open
    }

    /// Another read side.
    pub fn subscribe(&self) -> WriteGate {
        WriteGate {
            rx: self.tx.subscribe(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn closing_fences_and_reopening_bumps_generation() {
        let (ctl, g) = gate();
        assert!(g.check().is_ok());
        ctl.close("lease lost");
        assert_eq!(g.check().unwrap_err().reason, "lease lost");
        g.closed().await;
        ctl.open();
        assert!(g.is_open());
        assert_eq!(g.generation(), 1);
    }
}
