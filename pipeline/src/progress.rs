//! Progress of a run: an indicatif bar on a terminal, periodic log lines otherwise. It runs on
//! the committer (worker 0, process 0), which sees every shard of the cluster, so it is the
//! whole cluster's progress: committed shards and items, items/s, and an ETA from the items
//! still to do. It also writes the metrics file, when the run has one.

use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use crate::metrics::{MetricsWriter, Snapshot};

const LOG_EVERY: Duration = Duration::from_secs(10);

/// Progress as the committer sees it (committed shards and items).
pub struct Progress {
    bar: Option<ProgressBar>,
    started: Instant,
    last_log: Instant,
    shards: u64,
    items_to_do: usize,
    metrics: Option<MetricsWriter>,
}

impl Progress {
    /// A reporter for `shards` shards holding `items_to_do` items; a bar when `bar` is set.
    /// `metrics` writes the metrics file, when the run has one.
    pub fn new(shards: u64, items_to_do: usize, bar: bool, metrics: Option<MetricsWriter>) -> Self {
        let bar = bar.then(|| {
            let bar = ProgressBar::new(shards);
            let style = ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} shards  {msg}  ETA {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar());
            bar.set_style(style);
            bar
        });
        Self {
            bar,
            started: Instant::now(),
            last_log: Instant::now(),
            shards,
            items_to_do,
            metrics,
        }
    }

    /// Reports `shards_done` committed shards with `items` and `errors` rows.
    pub fn update(&mut self, shards_done: u64, items: usize, errors: usize) {
        let rate = (items + errors) as f64 / self.started.elapsed().as_secs_f64().max(1e-9);
        let left = self.items_to_do.saturating_sub(items + errors);
        let eta_s = (rate > 0.0).then(|| (left as f64 / rate).round());
        if let Some(metrics) = &mut self.metrics {
            metrics.maybe_write(&Snapshot {
                items,
                errors,
                items_per_s: rate,
                shards_committed: shards_done,
                shards_planned: self.shards,
                elapsed_s: self.started.elapsed().as_secs_f64(),
                finished: None,
            });
        }
        match &self.bar {
            Some(bar) => {
                bar.set_position(shards_done);
                bar.set_message(format!("{items} items, {errors} errors, {rate:.1} items/s"));
            }
            None if self.last_log.elapsed() >= LOG_EVERY || shards_done == self.shards => {
                self.last_log = Instant::now();
                tracing::info!(
                    shards_done,
                    shards = self.shards,
                    items,
                    errors,
                    items_per_s = format!("{rate:.1}"),
                    eta_s,
                    "Progress (whole cluster)."
                );
            }
            None => {}
        }
    }

    /// Seconds since the run started.
    pub fn elapsed(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// Removes the bar.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
