//! `vemo status`: a job's progress read from the output's ledger (`vemo_output::ledger`) and
//! job records (`_vemo/jobs/`), without touching the running job.

use std::collections::BTreeMap;
use std::process::ExitCode;

use serde::Serialize;
use vemo_operators::store;
use vemo_output::jobs::JobRecord;
use vemo_output::ledger::Ledger;

use crate::cli::StatusArgs;
use crate::usage;

#[derive(Debug, Serialize)]
struct Status {
    output: String,
    /// The latest job's plan, if a job has started on this output.
    job: Option<JobRecord>,
    shards_committed: usize,
    /// Shards of the latest job's manifest (committed ones included).
    shards_total: Option<usize>,
    items: usize,
    errors: usize,
    /// Shards whose `errors` rows or Parquet parts still wait for a roll-forward.
    errors_pending: usize,
    /// Committed shards per process, and per worker.
    by_process: BTreeMap<usize, usize>,
    by_worker: BTreeMap<usize, usize>,
    /// Commits per job id.
    commits_by_job: BTreeMap<String, usize>,
}

/// Runs `vemo status`.
pub fn run(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let output = store::resolve(&args.output).map_err(|e| usage(e.to_string()))?;
    let (ledger, jobs) = runtime.block_on(async {
        let ledger = Ledger::load(&output).await?;
        let jobs = JobRecord::read_all(&output).await?;
        Ok::<_, vemo_output::Error>((ledger, jobs))
    })?;
    let job = jobs.last().cloned();
    if job.is_none() && ledger.shards.is_empty() {
        return Err(usage(format!(
            "{} holds no vemo job (no _vemo/jobs/ and no committed shards): is it the --output of a `vemo index` run?",
            output.uri
        )));
    }
    let (items, errors) = ledger.totals();
    let mut by_process = BTreeMap::new();
    let mut by_worker = BTreeMap::new();
    let mut errors_pending = 0;
    for (_, shard) in ledger.shards.values() {
        *by_process.entry(shard.process).or_default() += 1;
        *by_worker.entry(shard.worker).or_default() += 1;
        if !shard.error_fragments.is_empty() && !ledger.errors_done.contains(&shard.key) {
            errors_pending += 1;
        }
    }
    let status = Status {
        output: output.uri.clone(),
        shards_total: job.as_ref().map(|j| j.shards_total),
        // An incremental job's progress counts its own shards only.
        shards_committed: match &job {
            Some(j) if j.incremental => {
                let prefix = format!("{}/", j.job_id);
                ledger
                    .shards
                    .keys()
                    .filter(|k| k.starts_with(&prefix))
                    .count()
            }
            _ => ledger.shards.len(),
        },
        items,
        errors,
        errors_pending,
        by_process,
        by_worker,
        commits_by_job: ledger.jobs.clone(),
        job,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        print_text(&status);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_text(s: &Status) {
    println!("output   {}", s.output);
    if let Some(job) = &s.job {
        println!(
            "job      {} (started {}, {} process(es) x {} worker(s), shard size {})",
            job.job_id, job.started_at, job.processes, job.workers_per_process, job.shard_size
        );
    }
    let total = s
        .shards_total
        .map(|t| format!(" of {t}"))
        .unwrap_or_default();
    let percent = s
        .shards_total
        .filter(|&t| t > 0)
        .map(|t| format!(" ({:.1}%)", 100.0 * s.shards_committed as f64 / t as f64))
        .unwrap_or_default();
    println!("shards   {}{total} committed{percent}", s.shards_committed);
    println!("rows     {} items, {} errors", s.items, s.errors);
    if s.errors_pending > 0 {
        println!(
            "pending  {} shard(s) await their errors rows (the next run rolls them forward)",
            s.errors_pending
        );
    }
    let join = |m: &BTreeMap<usize, usize>| {
        m.iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!("process  {}", join(&s.by_process));
    println!("worker   {}", join(&s.by_worker));
    for (job, commits) in &s.commits_by_job {
        println!("commits  {job}: {commits}");
    }
}
