//! The fuzz loop the parser tests share: a bounded number of proptest cases, each timed and its
//! peak allocation measured, and one line for the CI log (`--show-output`).

use std::cell::Cell;
use std::time::Instant;

use proptest::strategy::Strategy;
use proptest::test_runner::{Config, TestRng, TestRunner};

use super::peak_alloc::peak_of;

/// Runs `cases` cases of `strategy` through `check`, which parses the case (any `Ok` or `Err`
/// will do; a panic fails the test) and returns the most bytes the parse may allocate.
/// Prints `fuzzed <name>: N cases, no panic` with the slowest case and the largest allocation.
pub fn fuzz<S: Strategy>(name: &str, cases: u32, strategy: S, check: impl Fn(S::Value) -> usize)
where
    S::Value: std::fmt::Debug,
{
    let start = Instant::now();
    // A fixed seed: CI runs the same cases every time, and a failure reproduces.
    let config = Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    };
    let rng = TestRng::deterministic_rng(config.rng_algorithm);
    let mut runner = TestRunner::new_with_rng(config, rng);
    let (ran, slowest, largest) = (Cell::new(0u32), Cell::new(0f64), Cell::new(0usize));
    let result = runner.run(&strategy, |value| {
        ran.set(ran.get() + 1);
        let case = Instant::now();
        let (allowed, peak) = peak_of(|| check(value));
        slowest.set(slowest.get().max(case.elapsed().as_secs_f64()));
        largest.set(largest.get().max(peak));
        proptest::prop_assert!(
            peak <= allowed,
            "allocated {peak} bytes, more than the {allowed} the input justifies"
        );
        Ok(())
    });
    if let Err(e) = result {
        panic!("{name}: {e}");
    }
    println!(
        "fuzzed {name}: {} cases, no panic ({:.1} s; slowest case {:.3} s, largest allocation \
         {} KiB)",
        ran.get(),
        start.elapsed().as_secs_f64(),
        slowest.get(),
        largest.get().div_ceil(1024)
    );
}

/// A mutation of a byte string: flip, overwrite, insert, delete or truncate at a position.
pub fn mutate(base: &[u8], edits: &[(u8, usize, u8)]) -> Vec<u8> {
    let mut out = base.to_vec();
    for &(kind, at, byte) in edits {
        if out.is_empty() {
            break;
        }
        let at = at % out.len();
        match kind % 5 {
            0 => out[at] ^= byte | 1,
            1 => out[at] = byte,
            2 => out.insert(at, byte),
            3 => {
                out.remove(at);
            }
            _ => out.truncate(at),
        }
    }
    out
}

/// Up to `n` random edits for [`mutate`].
pub fn edits(n: usize) -> impl Strategy<Value = Vec<(u8, usize, u8)>> {
    proptest::collection::vec(proptest::arbitrary::any::<(u8, usize, u8)>(), 1..=n)
}
