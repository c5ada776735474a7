//! `az://` for real, against Azurite (npm `azurite`, installed by `infra/test.sh`) started on
//! loopback; Azurite honours conditional puts (`If-None-Match: *`), as Lance's commits need.
//! A 3-process cluster reads a corpus from Azure Blob and writes Lance and Parquet there; the
//! result equals a 1-process run on local disk, and a rerun adds nothing.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use vemo_tests::rows::{assert_complete, assert_same_rows, make_corpus, read_output};
use vemo_tests::{bundle_or_skip, vemo_bin, vemo_ok, write_job};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repo root")
        .to_path_buf()
}

/// Azurite's blob server, killed on drop.
struct Azurite {
    child: Child,
    env: Vec<(&'static str, String)>,
    _data: tempfile::TempDir,
}

impl Drop for Azurite {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts Azurite, or `None` (after saying so) when it is not installed and not required.
fn start_azurite() -> Option<Azurite> {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let data = tempfile::tempdir().expect("tempdir");
    let spawned = Command::new("azurite-blob")
        .args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string()])
        .arg("--location")
        .arg(data.path())
        .arg("--skipApiVersionCheck")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let child = match spawned {
        Ok(child) => child,
        Err(e) => {
            assert!(
                std::env::var("VEMO_REQUIRE_BUNDLE").as_deref() != Ok("1"),
                "azurite-blob not found ({e}): infra/test.sh installs it (npm azurite)"
            );
            eprintln!("SKIPPED azure: azurite-blob not installed ({e})");
            return None;
        }
    };
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "azurite did not start"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let url = format!("http://127.0.0.1:{port}");
    let env = vec![
        ("AZURE_STORAGE_USE_EMULATOR", "true".into()),
        ("AZURE_STORAGE_ACCOUNT_NAME", "devstoreaccount1".into()),
        ("AZURITE_BLOB_STORAGE_URL", url.clone()),
        ("AZURE_STORAGE_BLOB_URL", format!("{url}/devstoreaccount1")),
    ];
    Some(Azurite {
        child,
        env,
        _data: data,
    })
}

fn objects(server: &Azurite, args: &[&str]) {
    let out = Command::new("python3")
        .arg(repo_root().join("infra/stores/objects.py"))
        .args(args)
        .envs(server.env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .expect("objects.py");
    assert!(
        out.status.success(),
        "objects.py {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_three_process_cluster_indexes_azure_to_azure_like_one_process() {
    let Some(bundle) = bundle_or_skip("azure cluster") else {
        return;
    };
    let Some(server) = start_azurite() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let corpus = make_corpus(dir.path());
    objects(&server, &["mkbucket", "az://vemo"]);
    objects(&server, &["upload", &corpus, "az://vemo/corpus"]);

    let reference = dir.path().join("reference");
    vemo_ok(&[
        "index",
        "--job",
        &write_job(
            dir.path(),
            &corpus,
            &reference.display().to_string(),
            &bundle,
            4,
        )
        .display()
        .to_string(),
    ]);
    let job = write_job(
        dir.path(),
        "az://vemo/corpus",
        "az://vemo/index",
        &bundle,
        4,
    );
    for run in ["first", "rerun"] {
        let out = Command::new("bash")
            .arg(repo_root().join("infra/local/cluster.sh"))
            .args(["3", "2"])
            .arg(&job)
            .args(["--job-id", run])
            .env("VEMO_BIN", vemo_bin())
            .env("VEMO_CLUSTER_DIR", dir.path().join(run))
            .env("VEMO_LOG", "warn")
            .envs(server.env.iter().map(|(k, v)| (*k, v.as_str())))
            .output()
            .expect("cluster.sh");
        assert!(
            out.status.success(),
            "cluster.sh 3 2 on az:// ({run}) failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        if run == "rerun" {
            let summary: serde_json::Value = serde_json::from_slice(&out.stdout).expect("summary");
            assert_eq!(summary["items_written"], 0, "{summary}");
        }
    }
    let copy = dir.path().join("from-azure");
    objects(
        &server,
        &["download", "az://vemo/index", &copy.display().to_string()],
    );
    let (one, three) = (read_output(&reference), read_output(&copy));
    assert_complete(&three);
    assert_same_rows(&one, &three, "3 processes x 2 workers on Azure Blob");
    println!(
        "azure: 3x2 cluster wrote {} items + {} errors to az://vemo/index (Azurite), equal to \
         the 1-process run; the rerun wrote nothing",
        three.items.len(),
        three.errors.len()
    );
}
