//! Crash and resume on a real 3-process cluster (`infra/local/cluster.sh 3 2`, loopback TCP):
//! one process is killed with SIGKILL at a crash point (`VEMO_CRASH_AT`), the launcher takes
//! the others down, and a rerun of the same job must leave every input id in `items` or
//! `errors` exactly once, with the rows of a clean 1-process run. (Two points also run on one
//! process, where the commits, and so what a crash leaves, are deterministic.) Then the same with write
//! faults injected at random into the output store (`VEMO_FAULTS`), rerun until a run succeeds.

use std::path::Path;
use std::process::Output;

use vemo_tests::rows::{
    ITEMS, assert_complete, assert_same_rows, make_corpus, parquet_ids, read_output,
};
use vemo_tests::servers::cluster_sh;
use vemo_tests::{tiny_bundle, vemo_ok, write_job};

/// Items in the corpus: the synthetic ones and the three broken ones (the last shard).
const ALL_ITEMS: usize = ITEMS + 3;
/// 4 items a shard: 11 shards, two epochs on 6 workers; shard 10 holds only broken items.
const SHARD_SIZE: usize = 4;

/// Runs `infra/local/cluster.sh N W JOB --output OUTPUT --job-id RUN` with `env`.
fn cluster(
    dir: &Path,
    job: &Path,
    output: &str,
    layout: (usize, usize),
    run: &str,
    env: &[(&str, String)],
) -> Output {
    let env = env.iter().map(|(k, v)| (*k, v.as_str()));
    cluster_sh(
        dir,
        job,
        layout,
        run,
        &["--output", output, "--job-id", run],
        env,
    )
}

fn status(output: &str) -> serde_json::Value {
    let out = vemo_ok(&["status", "--output", output, "--json"]);
    serde_json::from_slice(&out.stdout).expect("status JSON")
}

/// Checks the finished output against the clean reference and says what it checked.
fn assert_exactly_once(reference: &Path, output: &Path, what: &str) {
    let got = read_output(output);
    assert_complete(&got);
    assert_same_rows(&read_output(reference), &got, what);
    let mut errors = parquet_ids(&output.join("parquet/errors"));
    errors.sort();
    assert_eq!(errors.len(), 3, "{what}: errors Parquet rows");
    let embeddings = parquet_ids(&output.join("parquet/embeddings"));
    // One long-table row per item and embedding column (text e3, e6, image e7, feature e7).
    assert_eq!(
        embeddings.len(),
        ITEMS * 4,
        "{what}: embeddings Parquet rows"
    );
    println!(
        "{what}: {} ids in items + {} in errors = {ALL_ITEMS}, each once; rows equal the \
         1-process run; Parquet: {} embedding rows, {} error rows",
        got.items.len(),
        got.errors.len(),
        embeddings.len(),
        errors.len()
    );
}

#[test]
fn a_process_killed_at_any_point_is_redone_exactly_once_by_a_rerun() {
    let bundle = tiny_bundle();
    let dir = tempfile::tempdir().expect("tempdir");
    let corpus = make_corpus(dir.path());
    let reference = dir.path().join("reference");
    let ref_uri = reference.display().to_string();
    let job = write_job(dir.path(), &corpus, &ref_uri, &bundle, SHARD_SIZE);
    vemo_ok(&["index", "--job", &job.display().to_string(), "-w", "1"]);

    // On 3 x 2, process 2 owns shard 4 (workers 4 and 5) and process 0 commits; how shards
    // group into commits depends on timing, so the Lance-commit point is the first (items v1).
    // On 1 x 1 a worker runs at most two epochs ahead of the commits, so a crash before shard
    // 5's commit, or inside the commit of items v2, always leaves part of the job committed.
    let points = [
        ("before-write:4", (3, 2), (0, 11)),
        ("before-commit:7", (3, 2), (0, 11)),
        ("manifest-put:items.lance@1", (3, 2), (0, 0)),
        ("mid-commit:10", (3, 2), (1, 11)),
        ("before-commit:5", (1, 1), (1, 5)),
        ("manifest-put:items.lance@2", (1, 1), (1, 10)),
    ];
    for (i, (point, layout, committed)) in points.iter().enumerate() {
        let output = dir.path().join(format!("out-{i}"));
        let uri = output.display().to_string();
        let crash = [("VEMO_CRASH_AT", point.to_string())];
        let first = cluster(
            dir.path(),
            &job,
            &uri,
            *layout,
            &format!("crash-{i}"),
            &crash,
        );
        assert!(!first.status.success(), "{point}: the cluster should fail");
        let stderr = String::from_utf8_lossy(&first.stderr);
        assert!(stderr.contains("failed"), "{point}: {stderr}");
        let crashed = match output.join("_vemo").exists() {
            true => status(&uri),
            false => serde_json::json!({}),
        };
        let after_crash = crashed["shards_committed"].as_u64().unwrap_or(0);
        if *point == "mid-commit:10" {
            // Shard 10 (only broken items) is in `items`' ledger, its errors rows are not.
            assert_eq!(crashed["errors_pending"], 1, "{point}: {crashed}");
            println!(
                "{point}: after the crash 1 shard waited for its errors rows (rolled forward)"
            );
        }
        assert!(
            (committed.0..=committed.1).contains(&after_crash),
            "{point}: {after_crash} shards committed before the crash, expected {committed:?}"
        );
        let rerun = cluster(dir.path(), &job, &uri, (3, 2), &format!("rerun-{i}"), &[]);
        assert!(
            rerun.status.success(),
            "{point}: rerun failed:\n{}",
            String::from_utf8_lossy(&rerun.stderr)
        );
        let summary: serde_json::Value =
            serde_json::from_slice(&rerun.stdout).expect("summary JSON");
        println!(
            "{point}: the crashed run committed {after_crash} of 11 shards; the rerun wrote {} \
             items and {} errors in {} shards",
            summary["items_written"], summary["errors_written"], summary["shards"]
        );
        assert_exactly_once(&reference, &output, point);
        // Every shard the rerun planned is committed (an incremental rerun, on an output with
        // rows, plans the rest as shards of its own; otherwise the ledger's 11).
        let done = status(&uri);
        assert_eq!(
            done["shards_committed"], done["shards_total"],
            "{point}: {done}"
        );
        assert_eq!(done["errors_pending"], 0, "{point}: {done}");
    }
}

#[test]
fn random_write_faults_end_exactly_once_after_reruns() {
    let bundle = tiny_bundle();
    let dir = tempfile::tempdir().expect("tempdir");
    let corpus = make_corpus(dir.path());
    let reference = dir.path().join("reference");
    let job = write_job(
        dir.path(),
        &corpus,
        &reference.display().to_string(),
        &bundle,
        SHARD_SIZE,
    );
    vemo_ok(&["index", "--job", &job.display().to_string(), "-w", "1"]);

    let output = dir.path().join("faulty");
    let uri = output.display().to_string();
    let mut failed_runs = 0;
    // Faulty runs until one succeeds; after 12, clean runs (each run keeps what it committed).
    for run in 0..20 {
        let env = match run < 12 {
            true => vec![("VEMO_FAULTS", format!("0.04:{}", 100 + run))],
            false => Vec::new(),
        };
        let out = cluster(
            dir.path(),
            &job,
            &uri,
            (3, 1),
            &format!("faults-{run}"),
            &env,
        );
        if out.status.success() {
            break;
        }
        failed_runs += 1;
    }
    let done = status(&uri);
    println!(
        "write faults at 4% per write: {failed_runs} failed run(s) before one succeeded; \
         ledger: {} shards, {} items, {} errors",
        done["shards_committed"], done["items"], done["errors"]
    );
    assert_eq!(done["shards_committed"], done["shards_total"], "{done}");
    assert_exactly_once(&reference, &output, "random write faults");
}

#[test]
fn the_ledger_outlives_cleanup_of_old_versions() {
    let bundle = tiny_bundle();
    let dir = tempfile::tempdir().expect("tempdir");
    let corpus = make_corpus(dir.path());
    let output = dir.path().join("out");
    let uri = output.display().to_string();
    let job = write_job(dir.path(), &corpus, &uri, &bundle, SHARD_SIZE);
    vemo_ok(&["index", "--job", &job.display().to_string(), "-w", "1"]);
    let snapshots = output.join("_vemo/ledger/snapshots");
    assert_eq!(std::fs::read_dir(&snapshots).expect("snapshots").count(), 1);
    // Keep only the latest version of items: the transactions of the others are gone.
    let items = output.join("items.lance").display().to_string();
    let removed = tokio::runtime::Runtime::new()
        .expect("runtime")
        .block_on(async {
            let dataset = lance::Dataset::open(&items).await.expect("open");
            dataset
                .cleanup_old_versions(chrono::TimeDelta::zero(), Some(true), None)
                .await
                .expect("cleanup")
        });
    assert!(removed.old_versions > 0, "nothing cleaned up");
    let done = status(&uri);
    assert_eq!(done["shards_committed"], 11, "{done}");
    let job = job.display().to_string();
    let rerun = vemo_ok(&["index", "--job", &job, "-w", "1", "--no-incremental"]);
    let summary: serde_json::Value = serde_json::from_slice(&rerun.stdout).expect("summary");
    assert_eq!(summary["shards"], 0, "{summary}");
    // An incremental rerun reads the rows, not the ledger: it retries the 3 broken items only.
    let rerun = vemo_ok(&["index", "--job", &job, "-w", "1"]);
    let summary: serde_json::Value = serde_json::from_slice(&rerun.stdout).expect("summary");
    assert_eq!(
        (&summary["encoded"], &summary["errors_written"]),
        (&0.into(), &3.into())
    );
    println!(
        "ledger snapshot: {} old versions of items cleaned up; the ledger still names all 11 \
         shards and a rerun plans none",
        removed.old_versions
    );
}
