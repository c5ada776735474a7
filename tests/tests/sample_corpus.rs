//! The README's main job: the embedded sample corpus indexed with `jobs/examples/sample.toml`,
//! then opened from Python with pylance (`infra/check_output.py`), as a notebook user would.

use std::path::Path;

use vemo_tests::{bundle_or_skip, vemo_home, vemo_ok};

#[test]
fn sample_job_output_opens_in_pylance_and_finds_each_caption_first() {
    let Some(_bundle) = bundle_or_skip("sample_job_output_opens_in_pylance") else {
        return;
    };
    let corpus = vemo_home().join("corpus/sample/manifest.jsonl");
    if !corpus.is_file() {
        assert!(
            std::env::var("VEMO_REQUIRE_BUNDLE").as_deref() != Ok("1"),
            "no sample corpus: run `vemo corpus sample`"
        );
        eprintln!("SKIPPED: no sample corpus at {}", corpus.display());
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root");
    let dir = tempfile::tempdir().expect("tempdir");
    let output = dir.path().join("sample-out").display().to_string();
    let job = root.join("jobs/examples/sample.toml").display().to_string();
    vemo_ok(&["index", "--job", &job, "--output", &output, "-w", "2"]);

    let has_lance = std::process::Command::new("python3")
        .args(["-c", "import lance, pyarrow"])
        .status()
        .is_ok_and(|s| s.success());
    if !has_lance {
        assert!(
            std::env::var("VEMO_REQUIRE_BUNDLE").as_deref() != Ok("1"),
            "pylance missing"
        );
        eprintln!("SKIPPED pylance check: `pip install pylance pyarrow`");
        return;
    }
    let script = root.join("infra/check_output.py");
    let check = std::process::Command::new("python3")
        .arg(&script)
        .arg(&output)
        .arg("16")
        .output()
        .expect("run check_output.py");
    let report = String::from_utf8_lossy(&check.stdout);
    assert!(
        check.status.success(),
        "pylance check failed: {report}\n{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let report: serde_json::Value = serde_json::from_str(report.trim()).expect("report JSON");
    assert_eq!(report["rows"], 16);
    assert_eq!(report["embedding_columns"]["text_emb_e6"], 384);
    assert_eq!(report["schema_version"], "1");
}
