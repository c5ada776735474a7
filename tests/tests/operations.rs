//! What batch schedulers and their log and metrics collectors read: `--log-format json` gives
//! one JSON object per stderr line; `--metrics-file` leaves a Prometheus text file (as
//! node_exporter's textfile collector reads it) with the run's items, errors, items/s, shards
//! and the last success time, which a failed run keeps.

use std::collections::BTreeMap;
use std::process::Command;

use vemo_tests::rows::{ITEMS, make_corpus};
use vemo_tests::{tiny_bundle, vemo_bin, write_job};

/// `name{labels} value` samples of a Prometheus text file, checking every line's form.
fn samples(text: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        if line.starts_with("# HELP ") || line.starts_with("# TYPE ") {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("`series value`");
        let name = series.split('{').next().expect("name");
        assert!(
            name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') && series.ends_with('}'),
            "bad sample line {line:?}"
        );
        out.insert(name.to_string(), value.parse().expect("a number"));
    }
    out
}

#[test]
fn json_logs_and_a_prometheus_metrics_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let corpus = make_corpus(dir.path());
    let out = dir.path().join("out");
    let job = write_job(
        dir.path(),
        &corpus,
        &out.display().to_string(),
        &tiny_bundle(),
        4,
    );
    let metrics = dir.path().join("vemo.prom");
    let run = |extra: &[&str]| {
        Command::new(vemo_bin())
            .args([
                "index",
                "--job",
                &job.display().to_string(),
                "--log-format",
                "json",
            ])
            .args([
                "--metrics-file",
                &metrics.display().to_string(),
                "--metrics-interval",
                "1",
            ])
            .args(extra)
            .env("VEMO_LOG", "info")
            .output()
            .expect("vemo")
    };
    let done = run(&[]);
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    let stderr = String::from_utf8_lossy(&done.stderr);
    let mut messages = 0;
    for line in stderr.lines().filter(|l| l.starts_with('{')) {
        let event: serde_json::Value = serde_json::from_str(line).expect("a JSON log line");
        assert!(
            event["level"].is_string() && event["timestamp"].is_string(),
            "{line}"
        );
        messages += usize::from(event["message"].is_string());
    }
    assert!(messages >= 3, "too few JSON log lines:\n{stderr}");
    assert!(
        stderr.lines().all(|l| l.starts_with('{')),
        "a log line that is not JSON:\n{stderr}"
    );
    let first = samples(&std::fs::read_to_string(&metrics).expect("metrics file"));
    assert_eq!(first["vemo_items_written"], ITEMS as f64);
    assert_eq!(first["vemo_errors_written"], 3.0);
    assert_eq!(first["vemo_run_finished"], 1.0);
    assert!(first["vemo_shards_committed"] >= 1.0);
    assert!(first["vemo_items_per_second"] > 0.0);
    let success = first["vemo_last_success_timestamp_seconds"];
    assert!(success > 1.7e9, "{first:?}");

    // A run that fails (its bundle is missing) ends the file without a new success time.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let failed = run(&[
        "--bundle",
        &dir.path().join("no-bundle").display().to_string(),
    ]);
    assert!(!failed.status.success());
    let after = samples(&std::fs::read_to_string(&metrics).expect("metrics file"));
    assert_eq!(after["vemo_last_success_timestamp_seconds"], success);
    assert!(after["vemo_last_write_timestamp_seconds"] > success);
}
