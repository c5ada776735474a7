//! `az://` for real, against Azurite (npm `azurite`, installed by `infra/test.sh`) started on
//! loopback; Azurite honours conditional puts (`If-None-Match: *`), as Lance's commits need.
//! A 3-process cluster reads a corpus from Azure Blob and writes Lance and Parquet there; the
//! result equals a 1-process run on local disk, and a rerun adds nothing.

use std::path::Path;
use std::process::Command;

use vemo_models::tiny_bundle::bundle_required;
use vemo_tests::rows::{assert_complete, assert_same_rows, make_corpus, read_output};
use vemo_tests::servers::{Server, cluster_sh, free_port};
use vemo_tests::{tiny_bundle, vemo_ok, write_job};

/// Azurite's blob server on a free port, or `None` (after saying so) when it is not installed
/// and not required.
fn start_azurite(data: &Path) -> Option<Server> {
    let port = free_port();
    let mut azurite = Command::new("azurite-blob");
    azurite
        .args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string()])
        .arg("--location")
        .arg(data)
        .arg("--skipApiVersionCheck");
    let url = format!("http://127.0.0.1:{port}");
    let env = vec![
        ("AZURE_STORAGE_USE_EMULATOR", "true".into()),
        ("AZURE_STORAGE_ACCOUNT_NAME", "devstoreaccount1".into()),
        ("AZURITE_BLOB_STORAGE_URL", url.clone()),
        ("AZURE_STORAGE_BLOB_URL", format!("{url}/devstoreaccount1")),
    ];
    match Server::start(azurite, port, env) {
        Ok(server) => Some(server),
        Err(e) => {
            assert!(
                !bundle_required(),
                "azurite-blob not found ({e}): infra/test.sh installs it (npm azurite)"
            );
            eprintln!("SKIPPED azure: azurite-blob not installed ({e})");
            None
        }
    }
}

#[test]
fn a_three_process_cluster_indexes_azure_to_azure_like_one_process() {
    let bundle = tiny_bundle();
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(server) = start_azurite(&dir.path().join("azurite")) else {
        return;
    };
    let corpus = make_corpus(dir.path());
    server.objects(&["mkbucket", "az://vemo"]);
    server.objects(&["upload", &corpus, "az://vemo/corpus"]);

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
        let out = cluster_sh(
            dir.path(),
            &job,
            (3, 2),
            run,
            &["--job-id", run],
            server.env(),
        );
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
    server.objects(&["download", "az://vemo/index", &copy.display().to_string()]);
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
