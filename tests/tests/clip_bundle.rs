//! A CLIP bundle end to end, without the vemo-mini bundle: `vemo models add-clip` on the tiny
//! CLIP checkpoint in the Hugging Face layout (`models/tests/golden/clip_tiny`, written by
//! `infra/models/golden_clip.py` and `golden_clip_bundle.py`), into a temporary `VEMO_HOME`;
//! `vemo corpus synth`; `vemo index` at text exits 1, 2 and image exits 1, 3; `vemo search` by a
//! sentence and by an image; `vemo eval retrieval` on the same corpus. The weights are random,
//! so only shapes, counts and the self-match of an image query are checked, not quality.

use std::path::{Path, PathBuf};

use arrow_array::RecordBatch;
use arrow_array::cast::AsArray;
use vemo_tests::vemo_ok_in_home;

const ITEMS: usize = 12;

fn clip_tiny() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/tests/golden/clip_tiny")
}

fn read_items(root: &Path) -> Vec<RecordBatch> {
    vemo_tests::read_lance(&root.join("items.lance").display().to_string())
}

fn json(out: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).expect("JSON on stdout")
}

#[test]
fn clip_bundle_indexes_searches_and_evaluates() {
    let dir = tempfile::tempdir().expect("tempdir");
    let home = dir.path().join("home");
    let path = |p: &Path| p.display().to_string();
    let added = vemo_ok_in_home(
        &home,
        &[
            "models",
            "add-clip",
            "--dir",
            &path(&clip_tiny()),
            "--name",
            "clip-tiny",
        ],
    );
    assert!(String::from_utf8_lossy(&added.stdout).contains("clip-tiny@"));

    let corpus = dir.path().join("corpus");
    let items = ITEMS.to_string();
    vemo_ok_in_home(
        &home,
        &[
            "corpus",
            "synth",
            "--items",
            &items,
            "--size",
            "48",
            "--output",
            &path(&corpus),
        ],
    );
    let output = dir.path().join("out");
    let job = dir.path().join("job.toml");
    std::fs::write(
        &job,
        format!(
            "[input]\nuri = \"{}\"\n[output]\nuri = \"{}\"\n[model]\nbundle = \"clip-tiny\"\n\
             [model.exits]\ntext = [1, 2]\nimage = [1, 3]\n[run]\nbatch_size = 4\nshard_size = 5\n",
            path(&corpus),
            path(&output)
        ),
    )
    .expect("write job");
    vemo_ok_in_home(&home, &["index", "--job", &path(&job), "--no-progress"]);

    let batches = read_items(&output);
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    assert_eq!(rows, ITEMS);
    for batch in &batches {
        for column in ["text_emb_e1", "text_emb_e2", "image_emb_e1", "image_emb_e3"] {
            let emb = batch
                .column_by_name(column)
                .unwrap_or_else(|| panic!("{column} missing"))
                .as_fixed_size_list();
            assert_eq!(emb.value_length(), 16, "{column}: the projection width");
        }
        assert!(batch.column_by_name("image_feat_e3").is_none());
        let bundle = batch
            .column_by_name("bundle")
            .expect("bundle")
            .as_string::<i32>();
        assert!(bundle.value(0).starts_with("clip-tiny@"));
    }

    let index = path(&output);
    for k in [5, ITEMS] {
        let k = k.to_string();
        let hits = json(&vemo_ok_in_home(
            &home,
            &[
                "search",
                "--index",
                &index,
                "--text",
                "a red circle",
                "-k",
                &k,
                "--json",
            ],
        ));
        assert_eq!(hits.as_array().expect("hits").len().to_string(), k);
    }
    let image = corpus.join("images/0000003.jpg");
    let hits = json(&vemo_ok_in_home(
        &home,
        &[
            "search",
            "--index",
            &index,
            "--image",
            &path(&image),
            "-k",
            "3",
            "--json",
        ],
    ));
    assert_eq!(
        hits[0]["id"], "synth-0000003",
        "an image finds itself first: {hits}"
    );

    let manifest = std::fs::read_to_string(corpus.join("manifest.jsonl")).expect("manifest");
    let (mut images, mut annotations) = (Vec::new(), Vec::new());
    for (i, line) in manifest.lines().enumerate() {
        let row: serde_json::Value = serde_json::from_str(line).expect("manifest line");
        let file = corpus.join(row["image"].as_str().expect("image"));
        images.push(serde_json::json!({"id": i, "file_name": path(&file)}));
        annotations.push(serde_json::json!({"image_id": i, "caption": row["caption"]}));
    }
    let coco = dir.path().join("coco");
    std::fs::create_dir_all(&coco).expect("mkdir");
    let set = serde_json::json!({"images": images, "annotations": annotations});
    std::fs::write(coco.join("captions_synth.json"), set.to_string()).expect("write");
    let report = json(&vemo_ok_in_home(
        &home,
        &[
            "eval",
            "retrieval",
            "--corpus",
            &path(&coco),
            "--bundle",
            "clip-tiny",
            "--json",
        ],
    ));
    assert_eq!(report["images"], ITEMS);
    let exits = report["exits"].as_object().expect("exits");
    let mut names: Vec<&str> = exits.keys().map(String::as_str).collect();
    names.sort_unstable();
    assert_eq!(names, ["image_e1", "image_e3", "text_e1"]);
}

/// A folder without the CLIP files, or with another model's config, is a usage error (exit 2)
/// that names what to fix, and leaves no bundle behind.
#[test]
fn add_clip_refuses_a_folder_that_is_not_a_clip_checkpoint() {
    let dir = tempfile::tempdir().expect("tempdir");
    let home = dir.path().join("home");
    let source = dir.path().join("hf");
    std::fs::create_dir_all(&source).expect("mkdir");
    let add = || {
        std::process::Command::new(vemo_tests::vemo_bin())
            .args(["models", "add-clip", "--dir"])
            .arg(&source)
            .args(["--name", "not-clip"])
            .env("VEMO_HOME", &home)
            .output()
            .expect("start vemo")
    };
    let out = add();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing config.json"));
    for file in ["config.json", "model.safetensors", "tokenizer.json"] {
        std::fs::write(source.join(file), r#"{"model_type": "bert"}"#).expect("write");
    }
    let out = add();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("model_type is \"bert\", not \"clip\""),
        "{stderr}"
    );
    assert!(!home.join("models/not-clip").exists());
}
