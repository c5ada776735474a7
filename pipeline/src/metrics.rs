//! The run's metrics as a Prometheus text file (`vemo index --metrics-file PATH`), in the form
//! node_exporter's textfile collector reads: written by process 0 every `--metrics-interval`
//! seconds while the run commits shards and once at its end, each time whole and atomically
//! (a temporary file renamed over it). `vemo_last_success_timestamp_seconds` is set by a run
//! that ends without a failure and carried over from the file by one that does not.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Where and how often the metrics are written.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricsFile {
    pub path: PathBuf,
    pub interval: Duration,
}

/// The figures of one write.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// `items` rows written by this run.
    pub items: usize,
    /// `errors` rows written by this run.
    pub errors: usize,
    pub items_per_s: f64,
    pub shards_committed: u64,
    pub shards_planned: u64,
    pub elapsed_s: f64,
    /// The run has ended (`Some(true)`: without a failure).
    pub finished: Option<bool>,
}

/// Writes `snapshot` for the output `output` to `file`; a write that fails is logged, never
/// fatal (metrics must not stop a job).
pub fn write(file: &Path, output: &str, snapshot: &Snapshot) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let last_success = match snapshot.finished {
        Some(true) => Some(now),
        _ => previous_success(file),
    };
    let text = render(output, snapshot, now, last_success);
    let partial = file.with_extension("prom.partial");
    let written = std::fs::write(&partial, text).and_then(|()| std::fs::rename(&partial, file));
    if let Err(e) = written {
        tracing::warn!("cannot write the metrics file {}: {e}", file.display());
    }
}

fn render(output: &str, s: &Snapshot, now: f64, last_success: Option<f64>) -> String {
    let label = format!("{{output=\"{}\"}}", escape(output));
    let mut text = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, value: f64| {
        text.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name}{label} {value}\n"
        ));
    };
    metric(
        "vemo_items_written",
        "gauge",
        "Rows this run wrote to items.",
        s.items as f64,
    );
    metric(
        "vemo_errors_written",
        "gauge",
        "Rows this run wrote to errors.",
        s.errors as f64,
    );
    metric(
        "vemo_items_per_second",
        "gauge",
        "Items and errors committed per second of this run.",
        s.items_per_s,
    );
    metric(
        "vemo_shards_committed",
        "gauge",
        "Shards this run committed.",
        s.shards_committed as f64,
    );
    metric(
        "vemo_shards_planned",
        "gauge",
        "Shards this run set out to commit.",
        s.shards_planned as f64,
    );
    metric(
        "vemo_run_elapsed_seconds",
        "gauge",
        "Seconds since this run started.",
        s.elapsed_s,
    );
    metric(
        "vemo_run_finished",
        "gauge",
        "1 once the run has ended (successfully or not), 0 while it runs.",
        f64::from(u8::from(s.finished.is_some())),
    );
    metric(
        "vemo_last_write_timestamp_seconds",
        "gauge",
        "When this file was written (Unix time).",
        now.floor(),
    );
    if let Some(t) = last_success {
        metric(
            "vemo_last_success_timestamp_seconds",
            "gauge",
            "When a run on this output last ended without a failure (Unix time).",
            t.floor(),
        );
    }
    text
}

/// The last success recorded in the file, if any.
fn previous_success(file: &Path) -> Option<f64> {
    let text = std::fs::read_to_string(file).ok()?;
    text.lines()
        .find(|l| l.starts_with("vemo_last_success_timestamp_seconds{"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Writes a snapshot when the interval has passed since the last one.
#[derive(Debug)]
pub struct MetricsWriter {
    file: MetricsFile,
    output: String,
    last: Option<Instant>,
}

impl MetricsWriter {
    pub fn new(file: MetricsFile, output: String) -> Self {
        Self {
            file,
            output,
            last: None,
        }
    }

    /// Writes `snapshot` if the interval has passed (or nothing was written yet).
    pub fn maybe_write(&mut self, snapshot: &Snapshot) {
        if self.last.is_none_or(|t| t.elapsed() >= self.file.interval) {
            self.last = Some(Instant::now());
            write(&self.file.path, &self.output, snapshot);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn success_is_stamped_and_carried_over_by_a_failed_run() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("vemo.prom");
        let done = Snapshot {
            items: 40,
            errors: 3,
            shards_committed: 11,
            shards_planned: 11,
            finished: Some(true),
            ..Default::default()
        };
        write(&file, "s3://b/\"out\"", &done);
        let text = std::fs::read_to_string(&file).expect("read");
        assert!(text.contains("vemo_items_written{output=\"s3://b/\\\"out\\\"\"} 40\n"));
        assert!(text.contains("# TYPE vemo_errors_written gauge\n"));
        let stamped = previous_success(&file).expect("success stamped");
        let failed = Snapshot {
            finished: Some(false),
            ..done
        };
        write(&file, "s3://b/out", &failed);
        assert_eq!(previous_success(&file), Some(stamped));
        assert!(!dir.path().join("vemo.prom.partial").exists());
    }
}
