//! The job TOML parser against random input: TOML-ish text built from the job file's own
//! tables, keys and values, random bytes, and mutations of `examples/sample.toml`. Every load
//! must be `Ok` or a usage error, never a panic.

use std::cell::Cell;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRng, TestRunner};

use crate::job::JobConfig;

const SAMPLE: &str = include_str!("../examples/sample.toml");

/// Text from TOML's punctuation and the job file's vocabulary.
fn tomlish() -> impl Strategy<Value = String> {
    let pieces = prop::sample::select(vec![
        "\n",
        " ",
        "=",
        "[",
        "]",
        "[[",
        "]]",
        "{",
        "}",
        ",",
        ".",
        "\"",
        "'",
        "\"\"\"",
        "#",
        "\\",
        "[input]",
        "[output]",
        "[model]",
        "[model.exits]",
        "[run]",
        "uri",
        "format",
        "manifest",
        "bundle",
        "tasks",
        "text",
        "image",
        "batch_size",
        "shard_size",
        "read_concurrency",
        "device",
        "precision",
        "cuda",
        "cuda:99999999999999999999",
        "bf16",
        "\"semantic\"",
        "\"spotting\"",
        "0",
        "-1",
        "1",
        "18446744073709551616",
        "1e999",
        "nan",
        "true",
        "\"${VEMO_HOME}\"",
        "\u{feff}",
        "\r\n",
        "é",
    ]);
    prop::collection::vec(pieces, 0..120).prop_map(|p| p.concat())
}

/// A mutation of `base`: flip, overwrite, insert, delete or truncate at random positions.
fn mutate(base: &[u8], edits: &[(u8, usize, u8)]) -> Vec<u8> {
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

/// A line of the sample replaced by a line of TOML-ish text: keeps most of a valid job.
fn line_swap(line: usize, text: &str) -> Vec<u8> {
    let mut lines: Vec<&str> = SAMPLE.lines().collect();
    let at = line % lines.len();
    lines[at] = text;
    lines.join("\n").into_bytes()
}

#[test]
fn sample_job_loads() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("job.toml");
    std::fs::write(&path, SAMPLE).expect("write");
    JobConfig::load(&path).expect("the sample job loads");
}

#[test]
fn fuzz_job_toml() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("job.toml");
    let start = std::time::Instant::now();
    // A fixed seed: CI runs the same cases every time, and a failure reproduces.
    let config = Config {
        cases: 1500,
        failure_persistence: None,
        ..Config::default()
    };
    let rng = TestRng::deterministic_rng(config.rng_algorithm);
    let mut runner = TestRunner::new_with_rng(config, rng);
    let (ran, loaded) = (Cell::new(0u32), Cell::new(0u32));
    let strategy = prop_oneof![
        tomlish().prop_map(String::into_bytes),
        prop::collection::vec(any::<u8>(), 0..300),
        prop::collection::vec(any::<(u8, usize, u8)>(), 1..8)
            .prop_map(|e| mutate(SAMPLE.as_bytes(), &e)),
        (any::<usize>(), tomlish()).prop_map(|(line, text)| line_swap(line, &text)),
    ];
    runner
        .run(&strategy, |bytes| {
            ran.set(ran.get() + 1);
            std::fs::write(&path, &bytes).expect("write fuzz input");
            if JobConfig::load(&path).is_ok() {
                loaded.set(loaded.get() + 1);
            }
            Ok(())
        })
        .unwrap_or_else(|e| panic!("job TOML: {e}"));
    println!(
        "fuzzed job TOML (TOML-ish text, random bytes, mutated and line-swapped sample.toml): \
         {} cases, no panic ({} loaded; {:.1} s)",
        ran.get(),
        loaded.get(),
        start.elapsed().as_secs_f64()
    );
}
