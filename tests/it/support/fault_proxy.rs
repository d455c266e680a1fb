//! Seeded random faults for [`super::proxy::Proxy`] (the fault matrix):
//! each request draws, at a given rate, one of the faults a sick S3
//! endpoint or network produces, and every fault actually injected is
//! counted by kind. The proxy's own framing applies them (see
//! `proxy::handle`); this file only decides and counts.

use std::fmt;
use std::time::Duration;

/// One injected fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// `500 InternalError`, not forwarded.
    Error500,
    /// `503 SlowDown`, not forwarded.
    SlowDown,
    /// Connection closed before forwarding: not applied upstream.
    ResetBefore,
    /// Forwarded and applied upstream, then the connection closed
    /// without the answer.
    ResetAfter,
    /// No answer for the stall duration, then closed (not forwarded).
    Stall,
    /// A GET answered `200` with its full `Content-Length` advertised but
    /// only half the body sent, then closed.
    Truncate,
}

pub const KINDS: [Fault; 6] = [
    Fault::Error500,
    Fault::SlowDown,
    Fault::ResetBefore,
    Fault::ResetAfter,
    Fault::Stall,
    Fault::Truncate,
];

impl Fault {
    fn index(self) -> usize {
        KINDS.iter().position(|k| *k == self).unwrap_or(0)
    }

    pub fn name(self) -> &'static str {
        match self {
            Fault::Error500 => "500 InternalError",
            Fault::SlowDown => "503 SlowDown",
            Fault::ResetBefore => "reset before forwarding",
            Fault::ResetAfter => "reset after forwarding",
            Fault::Stall => "stall",
            Fault::Truncate => "truncated GET body",
        }
    }
}

/// What to inject, and what was.
pub struct FaultPlan {
    /// Faulted requests per thousand.
    permille: u64,
    rng: u64,
    pub stall: Duration,
    counts: FaultCounts,
}

#[derive(Debug, Clone, Default)]
pub struct FaultCounts {
    /// Requests the proxy received while the plan was on.
    pub requests: u64,
    by_kind: [u64; KINDS.len()],
}

impl FaultCounts {
    pub fn of(&self, f: Fault) -> u64 {
        self.by_kind[f.index()]
    }

    pub fn total(&self) -> u64 {
        self.by_kind.iter().sum()
    }

    pub fn add(&mut self, other: &FaultCounts) {
        self.requests += other.requests;
        for (a, b) in self.by_kind.iter_mut().zip(other.by_kind) {
            *a += b;
        }
    }
}

impl fmt::Display for FaultCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} faults in {} requests (", self.total(), self.requests)?;
        for (i, k) in KINDS.iter().enumerate() {
            let sep = if i == 0 { "" } else { ", " };
            write!(f, "{sep}{}: {}", k.name(), self.of(*k))?;
        }
        write!(f, ")")
    }
}

impl FaultPlan {
    /// Fault `percent` % of requests, drawn from `seed`; a stall lasts `stall`.
    pub fn new(seed: u64, percent: u64, stall: Duration) -> FaultPlan {
        FaultPlan {
            permille: percent.saturating_mul(10).min(1000),
            rng: seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1,
            stall,
            counts: FaultCounts::default(),
        }
    }

    /// xorshift64*.
    fn next(&mut self) -> u64 {
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// The fault for the next request, if any (a truncation only for a
    /// GET; it is counted once applied, see [`FaultPlan::applied`]).
    pub(super) fn pick(&mut self, method: &str) -> Option<Fault> {
        self.counts.requests += 1;
        if self.next() % 1000 >= self.permille {
            return None;
        }
        let kinds = if method == "GET" {
            KINDS.len()
        } else {
            KINDS.len() - 1
        };
        let f = KINDS[(self.next() % kinds as u64) as usize];
        if f != Fault::Truncate {
            self.applied(f);
        }
        Some(f)
    }

    pub(super) fn applied(&mut self, f: Fault) {
        self.counts.by_kind[f.index()] += 1;
    }

    pub fn counts(&self) -> FaultCounts {
        self.counts.clone()
    }
}
