//! Crash points for the crash tests. With `VEMO_CRASH_AT=POINT:WHAT` in the environment, the
//! process kills itself with SIGKILL (as `kill -9` would) when it reaches `point(POINT, WHAT)`:
//! no destructors, no flushing, nothing written after. Unset, a point costs one env lookup.
//!
//! Points: `before-write:SHARD` (a worker, before writing the shard's files),
//! `before-commit:SHARD` (the committer, with the shard's files written, before its commit),
//! `manifest-put:DATASET@VERSION` (inside the conditional commit, just before the manifest
//! put), `mid-commit:SHARD` (after the shard's `items` commit, before `errors` and Parquet),
//! `columns-committed:JOB` (after the commit of columns added to `items`, before their Parquet
//! parts are published).

/// Kills this process if `VEMO_CRASH_AT` names this point.
pub fn point(name: &str, what: &str) {
    let Ok(spec) = std::env::var("VEMO_CRASH_AT") else {
        return;
    };
    if spec != format!("{name}:{what}") {
        return;
    }
    let pid = std::process::id();
    eprintln!("VEMO_CRASH_AT={spec}: killing process {pid} with SIGKILL");
    let _ = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status();
    // `kill` missing: still die without cleanup.
    std::process::abort();
}
