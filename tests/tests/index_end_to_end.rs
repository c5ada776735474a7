//! End-to-end runs of `vemo index` on a synthetic corpus with broken items: 1 worker, 3 workers
//! and 2 processes x 2 workers write the same rows; a rerun adds nothing; a corrupt and a
//! missing image end in `errors` while the job succeeds.

use std::path::Path;

use vemo_tests::rows::{
    ITEMS, assert_complete, assert_same_rows, make_corpus, parquet_ids, read_output, walk,
};
use vemo_tests::{synth_corpus, tiny_bundle, vemo, vemo_bin, vemo_ok, write_job};

fn run_cluster(job: &Path, output: &str, processes: usize, workers: usize, dir: &Path) {
    let base = 23000 + (std::process::id() % 1000) as usize * 4;
    let hostfile = dir.join("hosts.txt");
    let hosts: String = (0..processes)
        .map(|p| format!("127.0.0.1:{}\n", base + p))
        .collect();
    std::fs::write(&hostfile, hosts).expect("hostfile");
    let children: Vec<_> = (0..processes)
        .map(|p| {
            std::process::Command::new(vemo_bin())
                .args([
                    "index",
                    "--job",
                    &job.display().to_string(),
                    "--output",
                    output,
                ])
                .args(["-n", &processes.to_string(), "-p", &p.to_string()])
                .args([
                    "-w",
                    &workers.to_string(),
                    "-h",
                    &hostfile.display().to_string(),
                ])
                .args(["--job-id", "cluster-test"])
                .env("VEMO_LOG", "warn")
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("spawn process")
        })
        .collect();
    for (p, child) in children.into_iter().enumerate() {
        let out = child.wait_with_output().expect("wait");
        assert!(
            out.status.success(),
            "process {p} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn layouts_give_the_same_rows_and_reruns_add_nothing() {
    let bundle = tiny_bundle();
    let dir = tempfile::tempdir().expect("tempdir");
    let corpus = make_corpus(dir.path());
    let out1 = dir.path().join("out-w1");
    let job = write_job(dir.path(), &corpus, &out1.display().to_string(), &bundle, 7);
    let job_str = job.display().to_string();

    let first = vemo_ok(&["index", "--job", &job_str, "-w", "1"]);
    let summary: serde_json::Value = serde_json::from_slice(&first.stdout).expect("summary JSON");
    assert_eq!(summary["items_written"], ITEMS);
    assert_eq!(summary["errors_written"], 3);
    let one = read_output(&out1);
    assert_complete(&one);

    // Rerun on the same output (incremental): the good items are unchanged and skipped, the
    // broken ones are retried and fail again; nothing is duplicated.
    let again = vemo_ok(&["index", "--job", &job_str]);
    let summary: serde_json::Value = serde_json::from_slice(&again.stdout).expect("summary JSON");
    assert_eq!(summary["skipped"], ITEMS);
    assert_eq!(summary["delta"]["retried"], 3, "{summary}");
    assert_eq!(
        (&summary["items_written"], &summary["encoded"]),
        (&0.into(), &0.into())
    );
    let rerun = read_output(&out1);
    assert_same_rows(&one, &rerun, "rerun");

    let out3 = dir.path().join("out-w3").display().to_string();
    vemo_ok(&["index", "--job", &job_str, "--output", &out3, "-w", "3"]);
    let three = read_output(Path::new(&out3));
    assert_same_rows(&one, &three, "3 workers");

    let out_cluster = dir.path().join("out-2x2").display().to_string();
    run_cluster(&job, &out_cluster, 2, 2, dir.path());
    let cluster = read_output(Path::new(&out_cluster));
    assert_same_rows(&one, &cluster, "2 processes x 2 workers");

    // The Parquet long tables hold the same ids as the Lance tables.
    let inspect = vemo_ok(&["inspect", &out3, "--json"]);
    let inspection: serde_json::Value = serde_json::from_slice(&inspect.stdout).expect("JSON");
    assert_eq!(inspection["items"]["rows"], ITEMS);
    assert_eq!(inspection["items"]["metadata"]["vemo.schema_version"], "2");
    let parquet_ids = parquet_ids(&Path::new(&out3).join("parquet/embeddings"));
    assert_eq!(
        parquet_ids.len(),
        ITEMS * 4,
        "one row per item and column: text e3, e6, image e7, image feature"
    );
    let staging = Path::new(&out3).join("_vemo/staging");
    let leftovers = walk(&staging)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"));
    assert_eq!(leftovers.count(), 0, "every staged part was published");
}

#[test]
fn a_bad_job_file_exits_2_with_a_message() {
    let dir = tempfile::tempdir().expect("tempdir");
    let job = dir.path().join("bad.toml");
    std::fs::write(
        &job,
        "[input]\nuri = \"x\"\n[output]\nuri = \"y\"\n[model]\nexitz = 3\n",
    )
    .expect("write");
    let out = vemo(&["index", "--job", &job.display().to_string()]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("unknown field `exitz`"), "{stderr}");
}

#[test]
fn a_missing_manifest_exits_2_with_a_message() {
    let bundle = tiny_bundle();
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("empty-folder");
    std::fs::create_dir_all(&input).expect("mkdir");
    let output = dir.path().join("out").display().to_string();
    let job = write_job(
        dir.path(),
        &input.display().to_string(),
        &output,
        &bundle,
        8,
    );
    let out = vemo(&["index", "--job", &job.display().to_string()]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("manifest.parquet or manifest.jsonl"),
        "{stderr}"
    );
}

#[test]
fn an_unwritable_output_fails_the_job_with_exit_1() {
    let bundle = tiny_bundle();
    let dir = tempfile::tempdir().expect("tempdir");
    let corpus = dir.path().join("corpus");
    synth_corpus(&corpus, 5, 32);
    let corpus = corpus.display().to_string();
    // A regular file where the output folder should be: every write fails.
    let blocker = dir.path().join("blocker");
    std::fs::write(&blocker, b"not a folder").expect("write blocker");
    let output = blocker.join("out").display().to_string();
    let job = write_job(dir.path(), &corpus, &output, &bundle, 2);
    let out = vemo(&["index", "--job", &job.display().to_string()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("blocker/out/items.lance"),
        "the message names the output: {stderr}"
    );
}

#[test]
fn a_lower_image_exit_without_a_trained_head_exits_2_with_a_message() {
    let bundle = tiny_bundle();
    // The same bundle without its heads: links to its weights, a manifest without exit_heads.
    let dir = tempfile::tempdir().expect("tempdir");
    let headless = dir.path().join("headless");
    std::fs::create_dir_all(&headless).expect("mkdir");
    for part in ["text", "image", "ner", "spotting"] {
        if bundle.join(part).exists() {
            std::os::unix::fs::symlink(bundle.join(part), headless.join(part)).expect("link");
        }
    }
    let manifest = std::fs::read_to_string(bundle.join("bundle.toml")).expect("bundle.toml");
    let manifest: String = manifest
        .lines()
        .filter(|l| !l.starts_with("exit_heads"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(headless.join("bundle.toml"), manifest).expect("write bundle.toml");
    let corpus = dir.path().join("corpus");
    synth_corpus(&corpus, 2, 32);
    let corpus = corpus.display().to_string();
    let output = dir.path().join("out").display().to_string();
    let job = write_job(dir.path(), &corpus, &output, &headless, 2);
    let text = std::fs::read_to_string(&job)
        .expect("job")
        .replace("image = [7]", "image = [4, 7]");
    std::fs::write(&job, text).expect("job");
    let out = vemo(&["index", "--job", &job.display().to_string()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("run `vemo train exits`"), "{stderr}");
}

/// The resume path (`--no-incremental`, which never hashes images nor replaces rows): delete
/// an item's `errors` row (after fixing the item) and rerun; the item is processed again,
/// once. A rerun with another shard size then adds nothing.
#[test]
fn deleted_error_rows_are_retried_and_another_shard_size_adds_nothing() {
    let bundle = tiny_bundle();
    let dir = tempfile::tempdir().expect("tempdir");
    let corpus = make_corpus(dir.path());
    let output = dir.path().join("out");
    let uri = output.display().to_string();
    let job = write_job(dir.path(), &corpus, &uri, &bundle, 4);
    let job_arg = job.display().to_string();
    vemo_ok(&["index", "--job", &job_arg, "-w", "2"]);

    let manifest = Path::new(&corpus).join("manifest.jsonl");
    let text = std::fs::read_to_string(&manifest).expect("manifest");
    let fixed: String = text
        .lines()
        .map(|line| {
            let mut row: serde_json::Value = serde_json::from_str(line).expect("JSON line");
            if row["id"] == "broken-long-caption" {
                row["caption"] = "A fixed caption.".into();
            }
            format!("{row}\n")
        })
        .collect();
    assert_ne!(text, fixed, "the manifest line to fix");
    std::fs::write(&manifest, fixed).expect("manifest");
    let errors = output.join("errors.lance").display().to_string();
    tokio::runtime::Runtime::new()
        .expect("runtime")
        .block_on(async {
            let mut dataset = lance::Dataset::open(&errors).await.expect("open errors");
            dataset
                .delete("id = 'broken-long-caption'")
                .await
                .expect("delete");
        });

    let rerun = vemo_ok(&["index", "--job", &job_arg, "-w", "2", "--no-incremental"]);
    let summary: serde_json::Value = serde_json::from_slice(&rerun.stdout).expect("summary");
    assert_eq!(summary["items_written"], 1, "{summary}");
    let out = read_output(&output);
    assert_eq!(out.items.len(), ITEMS + 1);
    assert!(out.items.contains_key("broken-long-caption"));
    assert_eq!(out.errors.len(), 2, "{:?}", out.errors);

    let other = dir.path().join("job-3.toml");
    let text = std::fs::read_to_string(&job).expect("job");
    std::fs::write(&other, text.replace("shard_size = 4", "shard_size = 3")).expect("job");
    let again = vemo_ok(&[
        "index",
        "--job",
        &other.display().to_string(),
        "--no-incremental",
    ]);
    let summary: serde_json::Value = serde_json::from_slice(&again.stdout).expect("summary");
    assert_eq!(
        (&summary["items_written"], &summary["errors_written"]),
        (&0.into(), &0.into()),
        "{summary}"
    );
    assert_eq!(read_output(&output).items.len(), ITEMS + 1);
}
