//! The text readers against random input: `bundle.toml` (random TOML-ish text and mutations of
//! a real manifest), ICDAR 2015 ground truth (scene files and `gt.txt` crop lists) and CoNLL.
//! Each must return `Ok` or an `Err`, never panic.

#[path = "support/fuzz.rs"]
mod fuzz;
#[path = "support/peak_alloc.rs"]
mod peak_alloc;

use std::path::Path;

use fuzz::{edits, fuzz, mutate};
use proptest::prelude::*;
use vemo_models::bundle::Bundle;
use vemo_models::ner::conll::parse_conll;
use vemo_models::spotting::icdar::{read_crops_gt, read_scene_gt};

#[global_allocator]
static ALLOC: peak_alloc::PeakAlloc = peak_alloc::PeakAlloc;

/// What parsing `len` bytes of text may allocate: a few copies of it, plus room for errors.
fn allowed(len: usize) -> usize {
    64 * len + (1 << 20)
}

/// A `bundle.toml` like the one `vemo models pull` writes, every file it names present.
const BUNDLE: &str = r#"id = "vemo-mini"
version = "1"
exit_heads = "exit_heads.safetensors"

[text]
architecture = "bert"
config = "text/config.json"
weights = "text/model.safetensors"
tokenizer = "text/tokenizer.json"
max_tokens = 256
exits = [3, 6]
default_exit = 6
source = "sentence-transformers/all-MiniLM-L6-v2"

[image]
architecture = "efficientnet-lite0"
weights = "image/model.safetensors"
input_size = 224
resize = 256
exits = [4, 6, 7]
default_exit = 7
source = "efficientnet-lite0"
mean = [0.5, 0.5, 0.5]
std = [0.25, 0.25, 0.25]

[image.conse]
classes = "image/classes.safetensors"
top_k = 10
temperature = 1.0
source = "imagenet"

[ner]
weights = "ner.safetensors"
shared_layers = 4
branch_layers = 2
source = "conll2003"

[spotting]
module = "easyocr"

[spotting.easyocr]
detector = "craft.safetensors"
recognizer = "english_g2.safetensors"
characters = "characters.txt"
source = "easyocr 1.7.2"
"#;

fn write(path: &Path, bytes: &[u8]) {
    std::fs::write(path, bytes).expect("write fuzz input");
}

/// Text built from TOML's punctuation, keys of the bundle and small values.
fn tomlish() -> impl Strategy<Value = String> {
    let pieces = prop::sample::select(vec![
        "\n",
        " ",
        "=",
        "[",
        "]",
        "[[",
        "]]",
        "{",
        "}",
        ",",
        ".",
        "\"",
        "'",
        "'''",
        "\"\"\"",
        "#",
        "\\",
        "\\u",
        "id",
        "version",
        "text",
        "image",
        "ner",
        "spotting",
        "conse",
        "exits",
        "default_exit",
        "mean",
        "std",
        "architecture",
        "clip",
        "bert",
        "efficientnet-lite0",
        "weights",
        "config",
        "1",
        "-1",
        "0",
        "1e999",
        "nan",
        "inf",
        "18446744073709551616",
        "true",
        "1979-05-27T07:32:00Z",
        "\"x\"",
        "[3, 6]",
        "\u{feff}",
        "\r\n",
        "é",
    ]);
    prop::collection::vec(pieces, 0..80).prop_map(|p| p.concat())
}

#[test]
fn sample_bundle_opens() {
    let dir = bundle_dir();
    write(&dir.path().join("bundle.toml"), BUNDLE.as_bytes());
    Bundle::open(dir.path()).expect("the sample bundle opens");
}

fn bundle_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for rel in [
        "exit_heads.safetensors",
        "text/config.json",
        "text/model.safetensors",
        "text/tokenizer.json",
        "image/model.safetensors",
        "image/classes.safetensors",
        "ner.safetensors",
        "craft.safetensors",
        "english_g2.safetensors",
        "characters.txt",
    ] {
        let path = dir.path().join(rel);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        write(&path, b"");
    }
    dir
}

#[test]
fn fuzz_bundle_toml() {
    let dir = bundle_dir();
    let file = dir.path().join("bundle.toml");
    fuzz(
        "bundle.toml (random TOML-ish text, random bytes, mutated manifest)",
        1500,
        prop_oneof![
            tomlish().prop_map(String::into_bytes),
            prop::collection::vec(any::<u8>(), 0..300),
            edits(6).prop_map(|e| mutate(BUNDLE.as_bytes(), &e)),
        ],
        |bytes| {
            write(&file, &bytes);
            let _ = Bundle::open(dir.path());
            allowed(bytes.len())
        },
    );
}

/// A line of an ICDAR scene file: eight numbers-or-not and a transcription, comma-separated.
fn icdar_line() -> impl Strategy<Value = String> {
    let field = prop_oneof![
        any::<i32>().prop_map(|v| v.to_string()),
        any::<f32>().prop_map(|v| v.to_string()),
        Just("nan".to_string()),
        Just("inf".to_string()),
        Just("1e40".to_string()),
        Just(String::new()),
        Just(" 3 ".to_string()),
        "[ -~]{0,6}",
    ];
    (
        prop::collection::vec(field, 0..11),
        "[ -~\u{e9}\u{feff}]{0,12}",
        any::<bool>(),
    )
        .prop_map(|(fields, text, crlf)| {
            let mut line = fields.join(",");
            line.push(',');
            line.push_str(&text);
            if crlf {
                line.push('\r');
            }
            line
        })
}

/// A line of a `gt.txt`: `file, "text"`, with escapes, quotes and separators at random.
fn crops_line() -> impl Strategy<Value = String> {
    "[a-z_0-9./\\\\]{0,10}(, ?)?\"?([ -~]|\\\\\"|\\\\\\\\){0,12}\"?\r?"
}

#[test]
fn fuzz_icdar_ground_truth() {
    let dir = tempfile::tempdir().expect("tempdir");
    let scene = dir.path().join("gt_img_1.txt");
    let crops = dir.path().join("gt.txt");
    fuzz(
        "ICDAR ground truth (scene files and gt.txt: structured lines, random bytes)",
        1500,
        prop_oneof![
            prop::collection::vec(icdar_line(), 0..8).prop_map(|l| l.join("\n").into_bytes()),
            prop::collection::vec(crops_line(), 0..8).prop_map(|l| l.join("\n").into_bytes()),
            prop::collection::vec(any::<u8>(), 0..300),
        ],
        |bytes| {
            write(&scene, &bytes);
            write(&crops, &bytes);
            let _ = read_scene_gt(&scene);
            let _ = read_crops_gt(dir.path());
            allowed(bytes.len())
        },
    );
}

/// A CoNLL line: tokens and tags (IOB1, IOB2, odd ones), blank lines and `-DOCSTART-`.
fn conll_line() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        Just("O".to_string()),
        Just("B-PER".to_string()),
        Just("I-PER".to_string()),
        Just("I-ORG".to_string()),
        Just("B-".to_string()),
        Just("I-".to_string()),
        Just("-".to_string()),
        Just("I-\u{e9}".to_string()),
        Just("-DOCSTART-".to_string()),
        "[!-~]{1,6}",
    ];
    prop_oneof![
        prop::collection::vec(token, 0..5).prop_map(|t| t.join(" ")),
        Just(String::new()),
        Just("\t \r".to_string()),
    ]
}

#[test]
fn fuzz_conll() {
    fuzz(
        "CoNLL (structured lines, random text)",
        2000,
        prop_oneof![
            prop::collection::vec(conll_line(), 0..20).prop_map(|l| l.join("\n")),
            any::<String>(),
        ],
        |text| {
            if let Ok(sentences) = parse_conll(&text, "fuzz") {
                for s in &sentences {
                    assert_eq!(s.words.len(), s.tags.len(), "a tag per word");
                }
            }
            allowed(text.len())
        },
    );
}
