//! A fuzz target over the spec loader, run by `cargo test` (so by CI) for
//! a bounded time: mutants of every shipped and fixture spec go through
//! `spec::load_str`, which must return `Ok` or `Err` and never panic.
//!
//! Mutations come from a seeded PRNG (deterministic, so a failure replays)
//! and a dictionary of what broke the loader before or could: YAML nulls
//! and booleans where names go, huge durations, deep brackets, anchors and
//! merges, extra documents, control characters, `${VAR}`s and `{org}`s.
//! A panicking input is saved under `target/fuzz-failures/` and named in
//! the failure.
//!
//! Knobs (environment): `COLTEC_FUZZ_SEED` (default fixed),
//! `COLTEC_FUZZ_ITERATIONS` (default 3000), `COLTEC_FUZZ_SECONDS` (a time
//! budget, default 40: the run stops early rather than slow CI down).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use coltecd::spec;

use crate::support::repo_root;

const DICTIONARY: &[&str] = &[
    "~",
    "null",
    "true",
    "false",
    "0x1F",
    "-1",
    "0",
    "9223372036854775808s",
    "18446744073709551616",
    "10000000d",
    "1e999",
    ".nan",
    ".inf",
    "\"\"",
    "''",
    "[",
    "]",
    "{",
    "}",
    "[[[[[[[[[[[[[[[[",
    "<<: *a",
    "&a ",
    "*a",
    "<<: [*a, *b]",
    "\n---\n",
    "\n...\n",
    ": ",
    "- ",
    "\t",
    " #",
    "|\n",
    ">-\n",
    "${HOME}",
    "${NOPE}",
    "${",
    "$$",
    "{org}",
    "{nope}",
    "..",
    "/",
    "~/",
    "\\",
    "\u{0}",
    "\r",
    "\u{202e}",
    "é",
    "%YAML 1.2\n",
    "!!str ",
    "!!binary ",
    "? ",
    "7d",
    "0s",
    "off",
    "on",
    "http://user:pass@h:9",
    "type: crypt",
    "type: local",
    "wrap_remote: r",
    "remote_path: /",
    "exclude: [\"[\"]",
    "interval: 5",
    "lease: {ttl: 1s, renew_every: 1d}",
    "bwlimit: 99999999999T",
    "priority: 4294967296",
];

/// xorshift64*: small, fast and good enough to pick mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

fn seeds() -> Vec<String> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "yaml" || x == "yml") {
                out.push(p);
            }
        }
    }
    let mut files = Vec::new();
    walk(&repo_root().join("config"), &mut files);
    walk(&repo_root().join("tests/fixtures"), &mut files);
    files.sort();
    let mut out: Vec<String> = files
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .collect();
    out.push(
        "x-a: &a {interval: 60, exclude: [\"*.tmp\"]}\nx-b: &b {priority: 1}\nmetadata: {org: o, project: p, environment: e}\npersistence:\n  enabled: true\n  remotes:\n    r: {type: local, path_prefix: /tmp/r}\n    c: {type: crypt, wrap_remote: r, crypt: {password_env: PW}}\n  sync:\n    - <<: [*a, *b]\n      name: a\n      path: ./a\n    - name: b\n      path: ~/b\n      remote: c\n      remote_path: \"{org}/{project}/{env}/b\"\n  lease: {ttl: 60s, renew_every: 15s}\n  daemon: {debounce: 2s, flush_deadline: 8s}\n".to_string(),
    );
    assert!(out.len() >= 5, "too few seed specs: {}", out.len());
    out
}

fn char_boundary(s: &str, mut i: usize) -> usize {
    i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn mutate(rng: &mut Rng, text: &str, seeds: &[String]) -> String {
    let mut t = text.to_string();
    for _ in 0..1 + rng.below(4) {
        let lines: Vec<&str> = t.split_inclusive('\n').collect();
        let pick_line = |rng: &mut Rng| rng.below(lines.len().max(1));
        t = match rng.below(7) {
            0 => {
                let at = char_boundary(&t, rng.below(t.len() + 1));
                let word = DICTIONARY[rng.below(DICTIONARY.len())];
                format!("{}{word}{}", &t[..at], &t[at..])
            }
            1 => {
                let a = char_boundary(&t, rng.below(t.len() + 1));
                let b = char_boundary(&t, a + rng.below(64));
                format!("{}{}", &t[..a], &t[b..])
            }
            2 if !lines.is_empty() => {
                let i = pick_line(rng);
                let mut v: Vec<&str> = lines.clone();
                v.insert(i, lines[i]);
                v.concat()
            }
            3 if !lines.is_empty() => {
                // Replace the value of a `key: value` line.
                let i = pick_line(rng);
                let word = DICTIONARY[rng.below(DICTIONARY.len())];
                let line = match lines[i].split_once(": ") {
                    Some((k, _)) => format!("{k}: {word}\n"),
                    None => format!("{word}\n"),
                };
                let mut v: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
                v[i] = line;
                v.concat()
            }
            4 if !lines.is_empty() => {
                let i = pick_line(rng);
                let mut v: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
                v[i] = if rng.below(2) == 0 {
                    format!("  {}", v[i])
                } else {
                    v[i].trim_start_matches(' ').to_string()
                };
                v.concat()
            }
            5 if lines.len() > 1 => {
                let (i, j) = (pick_line(rng), pick_line(rng));
                let mut v: Vec<&str> = lines.clone();
                v.swap(i, j);
                v.concat()
            }
            _ => {
                // Splice a line from another seed.
                let other = &seeds[rng.below(seeds.len())];
                let olines: Vec<&str> = other.split_inclusive('\n').collect();
                let line = olines.get(rng.below(olines.len())).copied().unwrap_or("");
                let mut v: Vec<&str> = lines.clone();
                v.insert(rng.below(v.len() + 1), line);
                v.concat()
            }
        };
    }
    t
}

fn env_knob(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

#[test]
fn the_spec_loader_never_panics_on_mutated_specs() {
    let seeds = seeds();
    let seed = env_knob("COLTEC_FUZZ_SEED", 0x5eed_c01e_cd13);
    let iterations = env_knob("COLTEC_FUZZ_ITERATIONS", 3000);
    let budget = Duration::from_secs(env_knob("COLTEC_FUZZ_SECONDS", 40));
    let mut rng = Rng(seed.max(1));
    let env = |k: &str| match k {
        "HOME" => Some("/home/fuzz".to_string()),
        "PW" | "RCLONE_S3_SECRET_ACCESS_KEY" => Some("fuzz-secret-value".to_string()),
        "RCLONE_S3_ACCESS_KEY_ID" => Some("fuzz-access-key".to_string()),
        _ => None,
    };
    let path = Path::new("/ws/.devcontainer/workspace-spec.yaml");
    let started = Instant::now();
    let (mut ran, mut valid) = (0u64, 0u64);
    for _ in 0..iterations {
        if started.elapsed() > budget {
            break;
        }
        let base = &seeds[rng.below(seeds.len())];
        let text = mutate(&mut rng, base, &seeds);
        let outcome = std::panic::catch_unwind(|| spec::load_str(&text, path, &env));
        ran += 1;
        match outcome {
            Ok(Ok(_)) => valid += 1,
            Ok(Err(e)) => {
                // Rendering the error must not panic either.
                let _ = e.to_string();
            }
            Err(_) => {
                let dir = repo_root().join("target/fuzz-failures");
                std::fs::create_dir_all(&dir).unwrap();
                let file = dir.join(format!("seed-{seed:x}-run-{ran}.yaml"));
                std::fs::write(&file, &text).unwrap();
                panic!(
                    "spec::load_str panicked on mutant {ran} (seed {seed:#x}); input saved to {}",
                    file.display()
                );
            }
        }
    }
    eprintln!("spec fuzz: {ran} mutants, {valid} valid, seed {seed:#x}");
    assert!(ran >= 100.min(iterations), "only {ran} mutants ran");
}
