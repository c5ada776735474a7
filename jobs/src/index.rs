//! `vemo index`: job file + flags -> a pipeline run, and its summary.

use std::io::IsTerminal;
use std::process::ExitCode;

use vemo_pipeline::metrics::{self, MetricsFile, Snapshot};
use vemo_pipeline::{ClusterConfig, IndexConfig, run_index};
use vemo_schemas::Task;

use crate::cli::IndexArgs;
use crate::home::{bundle_dir, expand};
use crate::job::JobConfig;

/// Runs `vemo index`.
pub fn run(args: IndexArgs) -> anyhow::Result<ExitCode> {
    let (config, cluster) = configs(&args)?;
    let (metrics, output) = (config.metrics.clone(), config.output.clone());
    let summary = run_index(config, &cluster);
    if let Some(file) = &metrics {
        let snapshot = match &summary {
            Ok(Some(s)) => Snapshot {
                items: s.items_written,
                errors: s.errors_written,
                items_per_s: s.items_per_s,
                shards_committed: s.shards.saturating_sub(s.failures.len()) as u64,
                shards_planned: s.shards as u64,
                elapsed_s: s.elapsed_s,
                finished: Some(s.failures.is_empty()),
            },
            _ => Snapshot {
                finished: Some(false),
                ..Default::default()
            },
        };
        let output = summary
            .as_ref()
            .ok()
            .and_then(Option::as_ref)
            .map_or(output, |s| s.output.clone());
        metrics::write(&file.path, &output, &snapshot);
    }
    let Some(summary) = summary? else {
        tracing::info!(
            process = args.process,
            "Process finished; process 0 reports the run."
        );
        return Ok(ExitCode::SUCCESS);
    };
    println!("{}", serde_json::to_string_pretty(&summary)?);
    let delta = match &summary.delta {
        Some(d) => format!(
            " (incremental: {} added, {} changed, {} retried, {} removed, {} unchanged)",
            d.counts.added,
            d.counts.changed,
            d.counts.retried,
            d.counts.removed,
            d.counts.unchanged
        ),
        None => String::new(),
    };
    crate::say(
        false,
        &format!(
            "Indexed {} items ({} errors, {} already done){delta} into {} (items.lance v{}) in {:.1} s.",
            summary.items_written,
            summary.errors_written,
            summary.skipped,
            summary.output,
            summary.items_version,
            summary.elapsed_s
        ),
    );
    if summary.failures.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        crate::say(
            true,
            &format!(
                "error: {} shard(s) failed and were not committed; rerun the same job to retry \
                 them:",
                summary.failures.len()
            ),
        );
        for failure in &summary.failures {
            crate::say(true, &format!("  {failure}"));
        }
        Ok(ExitCode::from(1))
    }
}

/// The run and cluster configuration of `vemo index` (and `vemo plan`) flags.
pub fn configs(args: &IndexArgs) -> anyhow::Result<(IndexConfig, ClusterConfig)> {
    let job = JobConfig::load(&args.job)?;
    let input = expand(args.input.as_deref().unwrap_or(&job.input.uri));
    let output = expand(args.output.as_deref().unwrap_or(&job.output.uri));
    let bundle = bundle_dir(&expand(args.bundle.as_deref().unwrap_or(&job.model.bundle)));
    if args.processes > 1 && args.job_id.is_none() {
        tracing::warn!(
            "No --job-id in cluster mode: each process stamps its own; pass the same one to all."
        );
    }
    let job_id = args
        .job_id
        .clone()
        .unwrap_or_else(IndexConfig::timestamp_job_id);
    let config = IndexConfig {
        input,
        input_format: job.input.corpus_format(),
        metrics: args
            .metrics_file
            .clone()
            .filter(|_| args.process == 0)
            .map(|path| MetricsFile {
                path,
                interval: std::time::Duration::from_secs(args.metrics_interval.max(1)),
            }),
        output,
        bundle,
        text_exits: job.model.exits.text.clone(),
        image_exits: job.model.exits.image.clone(),
        vector_index_min_rows: job.run.vector_index_min_rows,
        entities: job.model.tasks.contains(&Task::Entities),
        spotting: job.model.tasks.contains(&Task::Spotting),
        batch_size: job.run.batch_size,
        image_batch_size: job.run.image_batch_size,
        shard_size: job.run.shard_size,
        read_concurrency: job.run.read_concurrency,
        limits: job.limits(),
        job_id,
        incremental: !args.no_incremental,
        device: args.device.unwrap_or(job.run.device),
        precision: args.precision.unwrap_or(job.run.precision),
        progress_bar: !args.no_progress && std::io::stderr().is_terminal() && args.process == 0,
    };
    let cluster = ClusterConfig {
        workers: args.workers,
        processes: args.processes,
        process: args.process,
        hostfile: args.hostfile.clone(),
    };
    Ok((config, cluster))
}
