//! `s3://` for real, against moto's S3 server started on loopback (moto honours conditional
//! puts, `If-None-Match: *`, which Lance's and vemo's commits rely on):
//! - `infra/local/cluster.sh 3 2` reads a corpus from S3 and writes the Lance datasets and
//!   Parquet parts to S3; the result equals a 1-process run on local disk, row for row;
//! - two runs of one job started together on one fresh S3 output never both commit a shard;
//! - the secret key appears in no log, summary or output file;
//! - credentials can come from an AWS profile file instead of the environment;
//! - behind a proxy that answers 503 or drops the connection on 10% of requests, a job still
//!   succeeds with every row: transient errors are retried (object_store's retry layer).

use std::process::{Child, Command, Output, Stdio};

use vemo_tests::rows::{assert_complete, assert_same_rows, make_corpus, read_output, walk};
use vemo_tests::servers::{Server, cluster_sh, free_port, repo_root, start_moto, wait_for_port};
use vemo_tests::{tiny_bundle, vemo_bin, write_job};

const SECRET: &str = "vemo-test-secret-0f3c9a";

fn start_s3() -> Server {
    start_moto(SECRET)
}

fn vemo_s3(server: &Server, args: &[&str]) -> Child {
    Command::new(vemo_bin())
        .args(args)
        .env("VEMO_LOG", "info")
        .envs(server.env())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start vemo")
}

fn succeeded(child: Child, what: &str) -> Output {
    let out = child.wait_with_output().expect("wait");
    assert!(
        out.status.success(),
        "{what} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
fn a_three_process_cluster_indexes_s3_to_s3_like_one_process() {
    let bundle = tiny_bundle();
    let server = start_s3();
    let dir = tempfile::tempdir().expect("tempdir");
    let corpus = make_corpus(dir.path());
    server.objects(&["mkbucket", "s3://vemo"]);
    server.objects(&["upload", &corpus, "s3://vemo/corpus"]);

    let reference = dir.path().join("reference");
    let job = write_job(
        dir.path(),
        "s3://vemo/corpus",
        &reference.display().to_string(),
        &bundle,
        4,
    );
    let job_arg = job.display().to_string();
    succeeded(
        vemo_s3(&server, &["index", "--job", &job_arg, "-w", "1"]),
        "1-process run from S3",
    );

    let cluster_dir = dir.path().join("cluster");
    let out = cluster_sh(
        dir.path(),
        &job,
        (3, 2),
        "cluster",
        &["--output", "s3://vemo/index", "--job-id", "s3-cluster"],
        server.env().chain([("VEMO_LOG", "info")]),
    );
    assert!(
        out.status.success(),
        "cluster.sh 3 2 to s3:// failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let copy = dir.path().join("from-s3");
    server.objects(&["download", "s3://vemo/index", &copy.display().to_string()]);
    let (one, three) = (read_output(&reference), read_output(&copy));
    assert_complete(&three);
    assert_same_rows(&one, &three, "3 processes x 2 workers on S3");
    println!(
        "s3: 3x2 cluster wrote {} items + {} errors to s3://vemo/index, equal to the \
         1-process run row for row",
        three.items.len(),
        three.errors.len()
    );

    // No credential in logs, summaries or output files.
    let mut files = walk(&cluster_dir);
    files.extend(walk(&copy));
    for file in files {
        let bytes = std::fs::read(&file).expect("read");
        let text = String::from_utf8_lossy(&bytes);
        assert!(!text.contains(SECRET), "secret key in {}", file.display());
    }
}

#[test]
fn two_concurrent_runs_on_one_s3_output_commit_each_shard_once() {
    let bundle = tiny_bundle();
    let server = start_s3();
    let dir = tempfile::tempdir().expect("tempdir");
    let corpus = make_corpus(dir.path());
    server.objects(&["mkbucket", "s3://race"]);
    let job = write_job(dir.path(), &corpus, "s3://race/index", &bundle, 2);
    let job_arg = job.display().to_string();
    let runs: Vec<Child> = ["race-a", "race-b"]
        .iter()
        .map(|id| {
            // Resume mode: both runs plan the same shards whichever starts first (an
            // incremental run that starts after the other's first commit plans other shards).
            let args = [
                "index",
                "--job",
                &job_arg,
                "--job-id",
                id,
                "--no-incremental",
            ];
            vemo_s3(&server, &args)
        })
        .collect();
    let mut dropped = 0;
    let mut written = 0;
    for (i, run) in runs.into_iter().enumerate() {
        let out = succeeded(run, &format!("concurrent run {i}"));
        let summary: serde_json::Value = serde_json::from_slice(&out.stdout).expect("summary");
        dropped += summary["already_committed"].as_u64().unwrap_or(0);
        written += summary["shards"].as_u64().unwrap_or(0);
    }
    let copy = dir.path().join("race");
    server.objects(&["download", "s3://race/index", &copy.display().to_string()]);
    let got = read_output(&copy);
    assert_complete(&got);
    let status = vemo_ok_s3(
        &server,
        &["status", "--output", "s3://race/index", "--json"],
    );
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).expect("status");
    println!(
        "two concurrent runs: {written} shard runs in all, {dropped} dropped as already \
         committed by the other run; ledger {} shards; every id once",
        status["shards_committed"]
    );
    assert_eq!(status["shards_committed"], 22, "{status}");
}

#[test]
fn transient_s3_errors_are_retried() {
    let bundle = tiny_bundle();
    let server = start_s3();
    let dir = tempfile::tempdir().expect("tempdir");
    let corpus = make_corpus(dir.path());
    server.objects(&["mkbucket", "s3://flaky"]);
    server.objects(&["upload", &corpus, "s3://flaky/corpus"]);
    let port = free_port();
    let faults_log = dir.path().join("faults.log");
    let mut proxy = Command::new("python3")
        .arg(repo_root().join("infra/stores/flaky_proxy.py"))
        .args([&port.to_string(), &server.env[0].1, "0.1", "11"])
        .stderr(std::fs::File::create(&faults_log).expect("log"))
        .spawn()
        .expect("start the proxy");
    wait_for_port(port, "the flaky proxy");
    let job = write_job(
        dir.path(),
        "s3://flaky/corpus",
        "s3://flaky/index",
        &bundle,
        4,
    );
    let out = Command::new(vemo_bin())
        .args(["index", "--job", &job.display().to_string(), "-w", "2"])
        .env("VEMO_LOG", "warn")
        .envs(server.env())
        .env("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{port}"))
        .output()
        .expect("vemo index");
    let _ = proxy.kill();
    let _ = proxy.wait();
    let faults = std::fs::read_to_string(&faults_log).unwrap_or_default();
    let injected = faults.lines().filter(|l| l.starts_with("fault ")).count();
    assert!(
        out.status.success(),
        "the job failed behind the flaky proxy ({injected} faults):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let copy = dir.path().join("flaky");
    server.objects(&["download", "s3://flaky/index", &copy.display().to_string()]);
    let got = read_output(&copy);
    assert_complete(&got);
    println!(
        "flaky S3: {injected} injected faults (503 or dropped connection, 10% of requests) \
         retried; {} items + {} errors, every id once",
        got.items.len(),
        got.errors.len()
    );
    assert!(injected > 5, "the proxy injected only {injected} faults");
}

#[test]
fn credentials_come_from_an_aws_profile() {
    let bundle = tiny_bundle();
    let server = start_s3();
    let dir = tempfile::tempdir().expect("tempdir");
    let corpus = make_corpus(dir.path());
    server.objects(&["mkbucket", "s3://profile"]);
    server.objects(&["upload", &corpus, "s3://profile/corpus"]);
    let credentials = dir.path().join("credentials");
    std::fs::write(
        &credentials,
        format!("[default]\naws_access_key_id = wrong\n\n[nightly]\naws_access_key_id = vemo-profile-key\naws_secret_access_key = {SECRET}\n"),
    )
    .expect("credentials file");
    let job = write_job(
        dir.path(),
        "s3://profile/corpus",
        "s3://profile/index",
        &bundle,
        8,
    );
    let out = Command::new(vemo_bin())
        .args(["index", "--job", &job.display().to_string(), "-w", "2"])
        .env("VEMO_LOG", "warn")
        .envs(server.env())
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env("AWS_SHARED_CREDENTIALS_FILE", &credentials)
        .env("AWS_CONFIG_FILE", dir.path().join("no-config"))
        .env("AWS_PROFILE", "nightly")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .expect("vemo index");
    assert!(
        out.status.success(),
        "index with profile credentials failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let copy = dir.path().join("profile");
    server.objects(&[
        "download",
        "s3://profile/index",
        &copy.display().to_string(),
    ]);
    assert_complete(&read_output(&copy));
    assert!(!String::from_utf8_lossy(&out.stderr).contains(SECRET));
}

fn vemo_ok_s3(server: &Server, args: &[&str]) -> Output {
    succeeded(vemo_s3(server, args), &format!("vemo {args:?}"))
}

#[test]
fn status_of_an_output_without_a_job_exits_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = vemo_tests::vemo(&["status", "--output", &dir.path().display().to_string()]);
    assert_eq!(out.status.code(), Some(2));
}
