//! vemo-tests: helpers for the end-to-end tests in `tests/`: finding the `vemo` binary and the
//! model bundle, running jobs, and reading their output back.
//!
//! Tests of mechanics run on the tiny bundle ([`tiny_bundle`]: vemo-mini's architectures with
//! seeded random weights, written by the tests themselves) and never skip. Tests whose
//! assertions need real weights take the pulled bundle from
//! [`vemo_models::tiny_bundle::pulled_bundle`], which skips them with a message when it is absent, unless `VEMO_REQUIRE_BUNDLE=1` (set by `infra/test.sh`),
//! which makes its absence a failure.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Path of the `vemo` binary: `$VEMO_BIN`, else `target/<profile>/vemo` beside this test.
pub fn vemo_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("VEMO_BIN") {
        return bin.into();
    }
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/test-hash -> target/<profile>/vemo
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target profile dir");
    let bin = profile_dir.join("vemo");
    assert!(
        bin.exists(),
        "{} is missing: build it first (`cargo build -p vemo-jobs`; infra/test.sh does)",
        bin.display()
    );
    bin
}

pub mod rows;
pub mod servers;

/// The tiny bundle's folder, written once per machine (see `vemo_models::tiny_bundle`).
pub fn tiny_bundle() -> PathBuf {
    vemo_models::tiny_bundle::tiny_bundle().expect("write the tiny bundle")
}

/// Runs `vemo` with `args`, returning its output.
pub fn vemo(args: &[&str]) -> Output {
    Command::new(vemo_bin())
        .args(args)
        .env("VEMO_LOG", "warn")
        .output()
        .expect("start vemo")
}

/// Runs `vemo` with `args` and extra environment variables, returning its output.
pub fn vemo_with_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(vemo_bin())
        .args(args)
        .env("VEMO_LOG", "warn")
        .envs(env.iter().copied())
        .output()
        .expect("start vemo")
}

/// Runs `vemo` with `VEMO_HOME` set to `home`, asserting it exited 0.
pub fn vemo_ok_in_home(home: &Path, args: &[&str]) -> Output {
    let out = Command::new(vemo_bin())
        .args(args)
        .env("VEMO_LOG", "warn")
        .env("VEMO_HOME", home)
        .output()
        .expect("start vemo");
    assert!(
        out.status.success(),
        "VEMO_HOME={} vemo {args:?} failed ({}):\n{}",
        home.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs `vemo` and asserts it exited 0.
pub fn vemo_ok(args: &[&str]) -> Output {
    let out = vemo(args);
    assert!(
        out.status.success(),
        "vemo {args:?} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Writes the seeded synthetic corpus of `vemo corpus synth` (`items` photos of `size` pixels,
/// `manifest.jsonl`) into `dir`.
pub fn synth_corpus(dir: &Path, items: usize, size: u32) {
    vemo_ok(&[
        "corpus",
        "synth",
        "--items",
        &items.to_string(),
        "--output",
        &dir.display().to_string(),
        "--size",
        &size.to_string(),
    ]);
}

/// Writes a job file for `input` -> `output` with `bundle`, text exits 3 and 6, image exit 7,
/// small shards, captions of at most 100 bytes.
pub fn write_job(
    dir: &Path,
    input: &str,
    output: &str,
    bundle: &Path,
    shard_size: usize,
) -> PathBuf {
    let job = format!(
        "[input]\nuri = \"{input}\"\n[output]\nuri = \"{output}\"\n[model]\nbundle = \"{}\"\n\
         [model.exits]\ntext = [3, 6]\nimage = [7]\n[run]\nbatch_size = 8\nshard_size = {shard_size}\n\
         max_caption_bytes = 100\n",
        bundle.display()
    );
    let path = dir.join(format!("job-{}.toml", output.replace(['/', ':'], "_")));
    std::fs::write(&path, job).expect("write job file");
    path
}

/// Every row of the Lance dataset at `uri`, as the batches a plain scan returns.
pub fn read_lance(uri: &str) -> Vec<arrow_array::RecordBatch> {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        use futures_util::TryStreamExt;
        let dataset = lance::Dataset::open(uri).await.expect("open dataset");
        dataset
            .scan()
            .try_into_stream()
            .await
            .expect("scan")
            .try_collect()
            .await
            .expect("read")
    })
}
