//! Incremental re-indexing end to end: index the synthetic corpus, mutate it (add 10%, edit 5%
//! of the captions, replace 5% of the images, delete 5%), check `vemo plan`, rerun on 1 and on
//! 3 workers, and hold the result to a from-scratch index of the mutated corpus: the same rows
//! in `items` and `errors`, Parquet tables that agree with them, and the encoder run only on
//! the added and changed items. The delta itself is held to a sequential oracle in
//! `vemo_pipeline::delta`'s unit tests; here the oracle is the mutation we made.

use std::collections::BTreeSet;
use std::path::Path;

use vemo_tests::rows::{
    ITEMS, assert_same_rows, make_corpus, max_abs_diff, parquet_ids, read_output,
};
use vemo_tests::{tiny_bundle, vemo_ok, write_job};

/// What the mutation does, in items of the 40 (+3 broken) of the corpus.
const ADDED: usize = 4;
const EDITED: usize = 2;
const REPLACED: usize = 2;
const DELETED: usize = 2;
const BROKEN: usize = 3;
/// Of the broken items, the one with a too-long caption is fixed: its retry succeeds.
const FIXED: usize = 1;

/// Adds, edits, replaces and deletes items of the corpus at `corpus` and fixes a broken one
/// (see the constants); new images come from a second synthetic corpus made with another seed.
fn mutate(dir: &Path, corpus: &Path) {
    let other = dir.join("other");
    vemo_ok(&[
        "corpus",
        "synth",
        "--items",
        "8",
        "--output",
        &other.display().to_string(),
        "--size",
        "64",
        "--seed",
        "99",
    ]);
    let manifest = std::fs::read_to_string(corpus.join("manifest.jsonl")).expect("manifest");
    let mut lines: Vec<serde_json::Value> = manifest
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    let images = |i: usize| other.join(format!("images/{i:07}.jpg"));
    // Replace the image bytes of items 0 and 1 (same file name, other picture).
    for (i, line) in lines.iter().take(REPLACED).enumerate() {
        let path = corpus.join(line["image"].as_str().expect("image"));
        std::fs::copy(images(i), path).expect("replace image");
    }
    // Edit the captions of items 2 and 3.
    for line in lines.iter_mut().skip(REPLACED).take(EDITED) {
        let caption = line["caption"].as_str().expect("caption").to_string();
        line["caption"] = format!("{caption} Edited tonight.").into();
    }
    // Fix the too-long caption of one broken item.
    for line in lines
        .iter_mut()
        .filter(|l| l["id"] == "broken-long-caption")
    {
        line["caption"] = "A fixed caption.".into();
    }
    // Delete items 4 and 5.
    let deleted: Vec<serde_json::Value> = lines.drain(4..4 + DELETED).collect();
    assert!(
        deleted
            .iter()
            .all(|l| !l["id"].as_str().unwrap_or("").starts_with("broken"))
    );
    // Add four items.
    for i in 0..ADDED {
        let name = format!("images/added-{i}.jpg");
        std::fs::copy(images(REPLACED + i), corpus.join(&name)).expect("add image");
        lines.push(serde_json::json!({
            "id": format!("added-{i}"),
            "image": name,
            "caption": format!("A new photo number {i}, added tonight."),
        }));
    }
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(corpus.join("manifest.jsonl"), text).expect("write manifest");
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir").flatten() {
        let target = to.join(entry.file_name());
        match entry.path().is_dir() {
            true => copy_dir(&entry.path(), &target),
            false => {
                std::fs::copy(entry.path(), target).expect("copy");
            }
        }
    }
}

fn json(stdout: &[u8]) -> serde_json::Value {
    serde_json::from_slice(stdout).expect("JSON on stdout")
}

/// Ids of a Parquet long table, each once (the embeddings table has a row per column).
fn parquet_id_set(root: &Path, table: &str) -> BTreeSet<String> {
    parquet_ids(&root.join("parquet").join(table))
        .into_iter()
        .collect()
}

/// An incremental run killed after a shard's `items` commit (its deletions and rows landed,
/// its `errors` commit, Parquet parts and pruning not) or before its second commit, then
/// rerun: the output equals a fresh index of the mutated corpus, Parquet included.
#[test]
fn an_incremental_run_killed_mid_way_is_finished_by_a_rerun() {
    let bundle = tiny_bundle();
    let dir = tempfile::tempdir().expect("tempdir");
    let corpus = make_corpus(dir.path());
    let base = dir.path().join("base");
    let job = write_job(dir.path(), &corpus, &base.display().to_string(), &bundle, 7);
    let job = job.display().to_string();
    vemo_ok(&["index", "--job", &job]);
    mutate(dir.path(), Path::new(&corpus));
    let fresh = dir.path().join("fresh");
    vemo_ok(&[
        "index",
        "--job",
        &job,
        "--output",
        &fresh.display().to_string(),
    ]);
    let expected = read_output(&fresh);
    // One worker: the delta (11 items to encode or retry, 2 removals) is shards 0 and 1.
    for point in ["mid-commit:0", "before-commit:1"] {
        let out = dir.path().join(point.replace(':', "-"));
        copy_dir(&base, &out);
        let out_str = out.display().to_string();
        let crashed = vemo_tests::vemo_with_env(
            &["index", "--job", &job, "--output", &out_str],
            &[("VEMO_CRASH_AT", point)],
        );
        assert!(
            !crashed.status.success(),
            "{point}: the run should be killed"
        );
        let rerun = json(&vemo_ok(&["index", "--job", &job, "--output", &out_str]).stdout);
        println!(
            "{point}: the rerun encoded {} items and deleted {} rows",
            rerun["encoded"], rerun["deleted_rows"]
        );
        let got = read_output(&out);
        assert_same_rows(&expected, &got, point);
        let items: BTreeSet<String> = got.items.keys().cloned().collect();
        let errors: BTreeSet<String> = got.errors.keys().cloned().collect();
        assert_eq!(parquet_id_set(&out, "embeddings"), items, "{point}");
        assert_eq!(parquet_id_set(&out, "errors"), errors, "{point}");
        assert_eq!(
            parquet_ids(&out.join("parquet/embeddings")).len(),
            items.len() * 4,
            "{point}: no stale Parquet row"
        );
    }
}

#[test]
fn an_incremental_rerun_equals_a_fresh_index_of_the_mutated_corpus() {
    let bundle = tiny_bundle();
    let dir = tempfile::tempdir().expect("tempdir");
    let corpus = make_corpus(dir.path());
    let out1 = dir.path().join("out-w1");
    let job = write_job(dir.path(), &corpus, &out1.display().to_string(), &bundle, 7);
    let job = job.display().to_string();
    vemo_ok(&["index", "--job", &job, "--job-id", "night-1"]);
    let out3 = dir.path().join("out-w3");
    copy_dir(&out1, &out3);

    // No change: nothing to encode, the broken items are retried (and fail again).
    let plan = json(&vemo_ok(&["plan", "--job", &job, "--json"]).stdout);
    assert_eq!(
        (&plan["added"], &plan["changed"], &plan["removed"]),
        (&0.into(), &0.into(), &0.into())
    );
    assert_eq!(
        (&plan["unchanged"], &plan["retried"]),
        (&ITEMS.into(), &BROKEN.into())
    );

    mutate(dir.path(), Path::new(&corpus));
    let plan = json(&vemo_ok(&["plan", "--job", &job, "--json"]).stdout);
    let unchanged = ITEMS - EDITED - REPLACED - DELETED;
    assert_eq!(plan["added"], ADDED, "{plan}");
    assert_eq!(plan["changed"], EDITED + REPLACED, "{plan}");
    assert_eq!(plan["removed"], DELETED, "{plan}");
    assert_eq!(plan["retried"], BROKEN, "{plan}");
    assert_eq!(plan["unchanged"], unchanged, "{plan}");
    let text = String::from_utf8_lossy(&vemo_ok(&["plan", "--job", &job]).stdout).to_string();
    assert!(
        text.contains("added-0"),
        "a sample of the added ids:\n{text}"
    );

    let fresh = dir.path().join("out-fresh");
    let fresh_str = fresh.display().to_string();
    vemo_ok(&["index", "--job", &job, "--output", &fresh_str]);
    let expected = read_output(&fresh);

    for (workers, out) in [(1, &out1), (3, &out3)] {
        let what = format!("{workers} worker(s)");
        let out_str = out.display().to_string();
        let run = vemo_ok(&[
            "index",
            "--job",
            &job,
            "--output",
            &out_str,
            "-w",
            &workers.to_string(),
            "--job-id",
            "night-2",
        ]);
        let summary = json(&run.stdout);
        assert_eq!(summary["incremental"], true, "{what}");
        // The encoder ran on the added and changed items and the fixed one only (the other
        // retried items fail before it, again).
        let encoded = ADDED + EDITED + REPLACED + FIXED;
        assert_eq!(summary["encoded"], encoded, "{what}: {summary}");
        assert_eq!(summary["items_written"], encoded, "{what}");
        assert_eq!(summary["errors_written"], BROKEN - FIXED, "{what}");
        assert_eq!(
            summary["deleted_rows"],
            EDITED + REPLACED + DELETED,
            "{what}"
        );
        let got = read_output(out);
        assert_same_rows(&expected, &got, &what);

        // The Parquet tables agree with the Lance tables.
        let items: BTreeSet<String> = got.items.keys().cloned().collect();
        let errors: BTreeSet<String> = got.errors.keys().cloned().collect();
        assert_eq!(
            parquet_id_set(out, "embeddings"),
            items,
            "{what}: parquet/embeddings"
        );
        assert_eq!(
            parquet_id_set(out, "errors"),
            errors,
            "{what}: parquet/errors"
        );
        assert_eq!(
            parquet_ids(&out.join("parquet/embeddings")).len(),
            items.len() * 4,
            "{what}: one embeddings row per item and column, no stale row"
        );

        // Each run's version is listed with its job.
        let inspect = json(&vemo_ok(&["inspect", &out_str, "--versions", "--json"]).stdout);
        let versions = inspect["versions"].as_array().expect("versions");
        let last = versions.last().expect("a version");
        assert_eq!(last["version"], summary["items_version"], "{what}");
        assert_eq!(last["job_id"], "night-2", "{what}");
        assert!(versions.iter().any(|v| v["job_id"] == "night-1"), "{what}");
    }
}

/// The `text_emb_e3` column and the entity columns of every row of an output, by id.
fn added_columns(root: &Path) -> std::collections::BTreeMap<String, (Vec<f32>, String)> {
    use arrow_array::Array;
    use arrow_array::cast::AsArray;
    use arrow_array::types::Float32Type;
    let mut rows = std::collections::BTreeMap::new();
    for batch in vemo_tests::read_lance(&root.join("items.lance").display().to_string()) {
        let ids = batch.column_by_name("id").expect("id").as_string::<i32>();
        let e3 = batch
            .column_by_name("text_emb_e3")
            .expect("text_emb_e3")
            .as_fixed_size_list();
        let keys = batch
            .column_by_name("entity_keys")
            .expect("entity_keys")
            .as_list::<i32>();
        for row in 0..batch.num_rows() {
            let vector = e3
                .value(row)
                .as_primitive::<Float32Type>()
                .values()
                .to_vec();
            let list = keys.value(row);
            let names = list.as_string::<i32>();
            let joined: Vec<&str> = (0..names.len()).map(|i| names.value(i)).collect();
            rows.insert(ids.value(row).to_string(), (vector, joined.join("|")));
        }
    }
    rows
}

/// A job that asks for a text exit and the entity task an output was written without adds
/// those columns to its rows (from their captions) instead of re-encoding them: the result
/// equals a fresh index with the new job, Parquet included.
#[test]
fn a_new_text_exit_and_the_entity_task_only_add_columns() {
    let bundle = tiny_bundle();
    let dir = tempfile::tempdir().expect("tempdir");
    let corpus = make_corpus(dir.path());
    let out = dir.path().join("out");
    let out_str = out.display().to_string();
    let job = write_job(dir.path(), &corpus, &out_str, &bundle, 7);
    let text = std::fs::read_to_string(&job).expect("job");
    let narrow = dir.path().join("narrow.toml");
    std::fs::write(&narrow, text.replace("text = [3, 6]", "text = [6]")).expect("job");
    let wide = dir.path().join("wide.toml");
    let with_entities = text.replace(
        "[model.exits]",
        "tasks = [\"semantic\", \"entities\"]\n[model.exits]",
    );
    assert_ne!(with_entities, text, "the job file to widen");
    std::fs::write(&wide, with_entities).expect("job");
    let (narrow, wide) = (narrow.display().to_string(), wide.display().to_string());
    vemo_ok(&["index", "--job", &narrow]);

    let plan = json(&vemo_ok(&["plan", "--job", &wide, "--json"]).stdout);
    assert_eq!(
        plan["columns_to_add"],
        serde_json::json!(["text_emb_e3", "entities", "entity_keys"]),
        "{plan}"
    );
    let summary = json(&vemo_ok(&["index", "--job", &wide]).stdout);
    assert_eq!(summary["encoded"], 0, "no row re-encoded whole: {summary}");
    assert_eq!(
        summary["columns_added"], plan["columns_to_add"],
        "{summary}"
    );

    let fresh = dir.path().join("fresh");
    vemo_ok(&[
        "index",
        "--job",
        &wide,
        "--output",
        &fresh.display().to_string(),
    ]);
    assert_same_rows(&read_output(&fresh), &read_output(&out), "columns added");
    let (expected, got) = (added_columns(&fresh), added_columns(&out));
    assert_eq!(expected.len(), ITEMS);
    for (id, (vector, keys)) in &expected {
        let (other, other_keys) = &got[id];
        let worst = max_abs_diff(vector, other);
        assert!(worst < 1e-5, "{id}: text_emb_e3 differs by {worst}");
        assert_eq!(keys, other_keys, "{id}: entity keys");
    }
    assert_eq!(
        parquet_ids(&out.join("parquet/embeddings")).len(),
        ITEMS * 4,
        "e3, e6, image e7 and the image feature, one row each per item"
    );
    let mut entity_ids = parquet_ids(&out.join("parquet/entities"));
    let mut fresh_ids = parquet_ids(&fresh.join("parquet/entities"));
    entity_ids.sort();
    fresh_ids.sort();
    assert_eq!(entity_ids, fresh_ids, "parquet/entities");

    // The next incremental run with the wide job finds nothing to do.
    let again = json(&vemo_ok(&["index", "--job", &wide]).stdout);
    assert_eq!(again["encoded"], 0, "{again}");
    assert!(again.get("columns_added").is_none(), "{again}");

    // Killed between the commit of the columns and the publishing of their Parquet parts: the
    // rerun publishes them.
    let killed = dir.path().join("killed");
    let killed_str = killed.display().to_string();
    vemo_ok(&["index", "--job", &narrow, "--output", &killed_str]);
    let crashed = vemo_tests::vemo_with_env(
        &[
            "index",
            "--job",
            &wide,
            "--output",
            &killed_str,
            "--job-id",
            "widen",
        ],
        &[("VEMO_CRASH_AT", "columns-committed:widen")],
    );
    assert!(
        !crashed.status.success(),
        "the widening run should be killed"
    );
    let rerun = json(&vemo_ok(&["index", "--job", &wide, "--output", &killed_str]).stdout);
    assert_eq!(rerun["encoded"], 0, "{rerun}");
    assert_eq!(added_columns(&killed).len(), ITEMS);
    assert_eq!(
        parquet_ids(&killed.join("parquet/embeddings")).len(),
        ITEMS * 4
    );
    let mut killed_ids = parquet_ids(&killed.join("parquet/entities"));
    killed_ids.sort();
    assert_eq!(killed_ids, fresh_ids, "parquet/entities after the rerun");
}
