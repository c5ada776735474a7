//! WebDataset input (`[input] format = "webdataset"`): the test corpus (with its corrupt,
//! missing and over-long items) written as `.tar` shards in img2dataset's layout by
//! `infra/tests/make_webdataset.py`, then
//! - on local disk, 1 process: the same rows as the corpus given as a manifest; a rerun
//!   writes nothing;
//! - a truncated tar and a tar with a broken header: `errors` rows (stage `read`) for the cut
//!   sample, the sample that lost its image header and the unreadable bytes; every other
//!   sample indexed;
//! - in moto's S3 server, named by a brace pattern, on a 3-process cluster: the same rows.

use std::path::{Path, PathBuf};
use std::process::Command;

use vemo_tests::rows::{
    Output, assert_complete, assert_items_as, assert_same_rows, make_corpus, read_output,
};
use vemo_tests::servers::{cluster_sh, repo_root, start_moto};
use vemo_tests::{tiny_bundle, vemo_ok, write_job};

/// Samples per tar: the 43 items make 3 tars.
const PER_TAR: usize = 16;

/// The test corpus in `dir`, as tars in `dir/shards` and as the rows a manifest run of it
/// writes (the reference).
fn corpus_as_shards(dir: &Path) -> (PathBuf, Output) {
    let corpus = make_corpus(dir);
    let shards = dir.join("shards");
    let status = Command::new("python3")
        .arg(repo_root().join("infra/tests/make_webdataset.py"))
        .arg(Path::new(&corpus).join("manifest.jsonl"))
        .arg(&shards)
        .arg(PER_TAR.to_string())
        .status()
        .expect("python3");
    assert!(status.success(), "make_webdataset.py failed");
    (shards, reference(dir, &corpus))
}

/// A job reading WebDataset shards at `input` (the test job otherwise).
fn webdataset_job(dir: &Path, input: &str, output: &str, shard_size: usize) -> std::path::PathBuf {
    let job = write_job(dir, input, output, &tiny_bundle(), shard_size);
    let text = std::fs::read_to_string(&job).expect("job");
    let text = text.replacen("[output]", "format = \"webdataset\"\n[output]", 1);
    std::fs::write(&job, text).expect("job");
    job
}

fn index(job: &Path, extra: &[&str]) -> serde_json::Value {
    let job = job.display().to_string();
    let mut args = vec!["index", "--job", &job, "-w", "2"];
    args.extend_from_slice(extra);
    let out = vemo_ok(&args);
    serde_json::from_slice(&out.stdout).expect("summary JSON")
}

fn reference(dir: &Path, corpus: &str) -> Output {
    let out = dir.join("reference");
    let job = write_job(dir, corpus, &out.display().to_string(), &tiny_bundle(), 4);
    vemo_ok(&["index", "--job", &job.display().to_string()]);
    read_output(&out)
}

#[test]
fn tar_shards_index_like_the_same_manifest_and_damaged_tars_keep_what_they_can() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (shards, expected) = corpus_as_shards(dir.path());

    let out = dir.path().join("wds");
    let job = webdataset_job(
        dir.path(),
        &shards.display().to_string(),
        &out.display().to_string(),
        4,
    );
    let first = index(&job, &[]);
    let got = read_output(&out);
    assert_complete(&got);
    assert_same_rows(&expected, &got, "WebDataset shards vs the manifest");
    assert_eq!(first["manifest_items"], expected.items.len() + 3);
    // An incremental rerun leaves the 40 items alone and retries the 3 errors (as for a
    // manifest); a resumed run writes nothing.
    let again = index(&job, &[]);
    assert_eq!(again["items_written"], 0, "{again}");
    assert_eq!(again["delta"]["unchanged"], 40, "{again}");
    assert_eq!(again["delta"]["retried"], 3, "{again}");
    let resumed = index(&job, &["--no-incremental"]);
    assert_eq!(
        resumed["items_written"], 0,
        "a resumed rerun writes nothing: {resumed}"
    );
    assert_eq!(
        resumed["errors_written"], 0,
        "a resumed rerun writes nothing: {resumed}"
    );

    // Damage a copy: cut 00001.tar inside an image, break an image header in 00002.tar.
    let damaged = dir.path().join("damaged");
    std::fs::create_dir(&damaged).expect("mkdir");
    for entry in std::fs::read_dir(&shards).expect("shards").flatten() {
        std::fs::copy(entry.path(), damaged.join(entry.file_name())).expect("copy");
    }
    let report = Command::new("python3")
        .arg(repo_root().join("infra/tests/make_webdataset.py"))
        .args(["--damage", &damaged.display().to_string()])
        .output()
        .expect("python3");
    assert!(report.status.success(), "make_webdataset.py --damage");
    let report: serde_json::Value = serde_json::from_slice(&report.stdout).expect("report");
    let out = dir.path().join("wds-damaged");
    let job = webdataset_job(
        dir.path(),
        &damaged.display().to_string(),
        &out.display().to_string(),
        4,
    );
    index(&job, &[]);
    let got = read_output(&out);
    for key in ["truncated_id", "headless_id", "damaged_id"] {
        let id = report[key].as_str().expect("id");
        assert_eq!(
            got.errors.get(id).map(String::as_str),
            Some("read"),
            "{key} {id}: {:?}",
            got.errors
        );
    }
    // 00001.tar keeps its first two samples; its third is cut and the rest are lost with it.
    let lost_in_cut = PER_TAR - 3;
    assert_eq!(
        got.items.len() + got.errors.len(),
        expected.items.len() + expected.errors.len() - lost_in_cut + 1,
        "every readable sample once in items or errors (the cut one under its tar's name), \
         and one row more for the damaged bytes"
    );
    assert_items_as(&got, &expected, "damaged tars vs the manifest");
    println!(
        "webdataset: 3 tars = manifest row for row; damaged copy: {} items, errors {:?}",
        got.items.len(),
        got.errors
    );
}

#[test]
fn tar_shards_in_s3_index_on_a_three_process_cluster_like_the_manifest() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (shards, expected) = corpus_as_shards(dir.path());

    let server = start_moto("vemo-webdataset-secret");
    server.objects(&["mkbucket", "s3://wds"]);
    server.objects(&["upload", &shards.display().to_string(), "s3://wds/ds"]);
    let out = dir.path().join("cluster-out");
    let job = webdataset_job(
        dir.path(),
        "s3://wds/ds/{00000..00002}.tar",
        &out.display().to_string(),
        4,
    );
    let run = cluster_sh(
        dir.path(),
        &job,
        (3, 1),
        "cluster",
        &["--job-id", "wds-cluster"],
        server.env(),
    );
    assert!(
        run.status.success(),
        "cluster.sh 3 1 on S3 shards failed:\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let got = read_output(&out);
    assert_complete(&got);
    assert_same_rows(&expected, &got, "3 processes on S3 WebDataset shards");
}
