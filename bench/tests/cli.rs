//! vemo-bench on the CPU, small: the bf16 parity check of the MiniLM-shaped tower against f32
//! (tolerance: max |a - b| < 0.03 and cosine > 0.998 on unit embeddings, the bf16 line of
//! `tolerance` in main.rs), a throughput table and a decode -> encode run. The figures
//! themselves are not checked (no timed assertions); the tables and the parity verdict are.

use std::process::Command;

fn bench(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_vemo-bench"))
        .args(args)
        .output()
        .expect("run vemo-bench");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "vemo-bench {args:?} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn bf16_parity_of_the_minilm_tower_passes_on_cpu() {
    let out = bench(&["--precision", "bf16", "--only", "minilm", "parity"]);
    let row = out
        .lines()
        .find(|l| l.starts_with("| minilm-l6 text"))
        .expect("parity row");
    assert!(row.ends_with("| yes |"), "{out}");
}

#[test]
fn towers_and_end_to_end_print_their_tables() {
    let out = bench(&[
        "--only",
        "minilm",
        "towers",
        "--batch-sizes",
        "2,4",
        "--seconds",
        "0.1",
    ]);
    assert_eq!(
        out.lines()
            .filter(|l| l.starts_with("| minilm-l6 text |"))
            .count(),
        2,
        "{out}"
    );
    let out = bench(&["e2e", "--count", "8", "--e2e-batch", "4", "--threads", "2"]);
    assert!(
        out.contains("| full | 2 |") && out.contains("| DCT-scaled | 2 |"),
        "{out}"
    );
}

#[test]
fn no_cuda_in_a_cpu_build_is_a_message_and_exit_2() {
    if cfg!(feature = "cuda") {
        return;
    }
    let out = Command::new(env!("CARGO_BIN_EXE_vemo-bench"))
        .args(["--device", "cuda", "parity"])
        .output()
        .expect("run vemo-bench");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--features cuda"));
}
