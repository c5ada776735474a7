//! The entity task end to end. On the tiny bundle, whose NER branch tags a capitalised word
//! that does not start the text as a person: `vemo eval ner` counts every gold entity, and a
//! corpus indexed with `tasks = ["semantic", "entities"]` has entity columns in Lance and
//! Parquet that `vemo search --entity` finds. With the NER branch `vemo models pull` ships:
//! hand-tagged sentences are tagged right, and the sample corpus's astronaut is found by name.

use std::path::Path;

use arrow_array::Array;
use arrow_array::cast::AsArray;
use vemo_models::tiny_bundle::{pulled_bundle, sample_corpus};
use vemo_tests::{read_lance, synth_corpus, tiny_bundle, vemo, vemo_ok};

const SENTENCES: &str = "\
Angela NNP B-NP B-PER
Merkel NNP I-NP I-PER
visited VBD B-VP O
Paris NNP B-NP B-LOC
. . O O

Reuters NNP B-NP B-ORG
reported VBD B-VP O
from IN B-PP O
London NNP B-NP B-LOC
on IN B-PP O
Monday NNP B-NP O
. . O O

Barack NNP B-NP B-PER
Obama NNP I-NP I-PER
met VBD B-VP O
executives NNS B-NP O
of IN B-PP O
Microsoft NNP B-NP B-ORG
in IN B-PP O
Seattle NNP B-NP B-LOC
. . O O
";

/// `vemo eval ner` on the tiny bundle: the report counts every gold entity and scores within
/// [0, 1] whatever the weights; a missing data file is a usage error.
#[test]
fn eval_ner_counts_every_gold_entity() {
    let bundle = tiny_bundle();
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("hand.conll");
    std::fs::write(&data, SENTENCES).expect("write");
    let bundle = bundle.display().to_string();
    let data = data.display().to_string();
    let out = vemo_ok(&[
        "eval", "ner", "--data", &data, "--bundle", &bundle, "--json",
    ]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(report["micro"]["gold"], 7, "{report}");
    let f1 = report["micro"]["f1"].as_f64().expect("f1");
    assert!((0.0..=1.0).contains(&f1), "{report}");

    let missing = vemo(&[
        "eval",
        "ner",
        "--data",
        "/nonexistent.conll",
        "--bundle",
        &bundle,
    ]);
    assert_eq!(missing.status.code(), Some(2));
}

/// `entity_keys` of each `items` row of `output`, by id.
fn entity_keys(output: &str) -> std::collections::BTreeMap<String, Vec<String>> {
    let mut rows = std::collections::BTreeMap::new();
    for batch in read_lance(&format!("{output}/items.lance")) {
        let ids = batch.column_by_name("id").expect("id").as_string::<i32>();
        let keys = batch
            .column_by_name("entity_keys")
            .expect("keys")
            .as_list::<i32>();
        let entities = batch
            .column_by_name("entities")
            .expect("entities")
            .as_list::<i32>();
        assert_eq!(keys.len(), entities.len());
        for row in 0..batch.num_rows() {
            let values = keys.value(row);
            let values = values.as_string::<i32>();
            let list = (0..values.len()).map(|i| values.value(i).to_string());
            rows.insert(ids.value(row).to_string(), list.collect());
        }
    }
    rows
}

/// `vemo search --json` hits' ids for `args`, queries encoded with the tiny bundle.
fn search_ids(output: &str, args: &[&str]) -> Vec<String> {
    let bundle = tiny_bundle().display().to_string();
    let mut all = vec!["search", "--index", output, "--bundle", &bundle, "--json"];
    all.extend_from_slice(args);
    let hits: serde_json::Value = serde_json::from_slice(&vemo_ok(&all).stdout).expect("JSON");
    hits.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|h| h["id"].as_str())
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}

/// A synthetic corpus with one caption naming a person, indexed with the entity task on the
/// tiny bundle: the person is that row's entity, in Lance and Parquet, and `vemo search
/// --entity` finds that row alone, by exact or partial name, not under another type, and with
/// a sentence.
#[test]
fn indexed_captions_carry_entities_that_search_finds() {
    let bundle = tiny_bundle();
    let dir = tempfile::tempdir().expect("tempdir");
    let corpus = dir.path().join("corpus");
    let corpus_str = corpus.display().to_string();
    synth_corpus(&corpus, 6, 32);
    let manifest = std::fs::read_to_string(corpus.join("manifest.jsonl")).expect("manifest");
    let named = "synth-0000002";
    let lines: String = manifest
        .lines()
        .map(|line| {
            let mut row: serde_json::Value = serde_json::from_str(line).expect("JSON line");
            if row["id"] == named {
                row["caption"] = "A photo of Eileen Collins beside a red square.".into();
            }
            format!("{row}\n")
        })
        .collect();
    std::fs::write(corpus.join("manifest.jsonl"), lines).expect("manifest");
    let output = dir.path().join("out").display().to_string();
    let job = dir.path().join("job.toml");
    std::fs::write(
        &job,
        format!(
            "[input]\nuri = \"{corpus_str}\"\n[output]\nuri = \"{output}\"\n[model]\n\
             bundle = \"{}\"\ntasks = [\"semantic\", \"entities\"]\n[model.exits]\n\
             text = [6]\nimage = [7]\n[run]\nshard_size = 4\n",
            bundle.display()
        ),
    )
    .expect("job");
    vemo_ok(&["index", "--job", &job.display().to_string()]);

    let keys = entity_keys(&output);
    assert_eq!(keys.len(), 6);
    for (id, list) in &keys {
        match id == named {
            true => assert_eq!(list, &["PER:eileen collins"], "{id}"),
            false => assert!(list.is_empty(), "{id}: {list:?}"),
        }
    }
    let parquet = Path::new(&output).join("parquet/entities");
    assert!(
        std::fs::read_dir(&parquet).map(|d| d.count()).unwrap_or(0) > 0,
        "entities long table parts in {}",
        parquet.display()
    );
    for query in ["Eileen Collins", "eileen collins", "collins"] {
        let ids = search_ids(&output, &["--entity", query]);
        assert_eq!(ids, [named], "--entity {query}");
        let ids = search_ids(&output, &["--entity", query, "--text", "a red square"]);
        assert_eq!(ids, [named], "--entity {query} --text");
    }
    let typed = search_ids(
        &output,
        &["--entity", "Eileen Collins", "--entity-type", "LOC"],
    );
    assert!(
        typed.is_empty(),
        "a PER entity is not found as LOC: {typed:?}"
    );
}

#[test]
fn the_shipped_ner_branch_tags_hand_tagged_sentences() {
    let Some(bundle) = pulled_bundle("the_shipped_ner_branch_tags_hand_tagged_sentences") else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("hand.conll");
    std::fs::write(&data, SENTENCES).expect("write");
    let out = vemo_ok(&[
        "eval",
        "ner",
        "--data",
        &data.display().to_string(),
        "--bundle",
        &bundle.display().to_string(),
        "--json",
    ]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let micro = &report["micro"];
    assert_eq!(micro["gold"], 7);
    let f1 = micro["f1"].as_f64().expect("f1");
    // Dev F1 is 0.80; on these easy sentences the branch finds 6 of 7 (it splits one name).
    assert!(f1 >= 0.7, "micro F1 {f1} on easy sentences: {report}");
    for kind in ["PER", "ORG", "LOC"] {
        let correct = report["per_type"][kind]["correct"].as_u64().expect("count");
        assert!(correct >= 1, "no {kind} entity found: {report}");
    }
}

#[test]
fn indexed_captions_carry_entities_and_search_finds_them() {
    let test = "indexed_captions_carry_entities_and_search_finds_them";
    let (Some(bundle), Some(corpus)) = (pulled_bundle(test), sample_corpus(test)) else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let output = dir.path().join("out").display().to_string();
    let job = dir.path().join("job.toml");
    std::fs::write(
        &job,
        format!(
            "[input]\nuri = \"{}\"\n[output]\nuri = \"{output}\"\n[model]\nbundle = \"{}\"\n\
             tasks = [\"semantic\", \"entities\"]\n[model.exits]\ntext = [6]\nimage = [7]\n\
             [run]\nshard_size = 8\n",
            corpus.display(),
            bundle.display()
        ),
    )
    .expect("job");
    vemo_ok(&["index", "--job", &job.display().to_string()]);

    let batches = read_lance(&format!("{output}/items.lance"));
    let mut astronaut_keys = Vec::new();
    for batch in &batches {
        let ids = batch.column_by_name("id").expect("id").as_string::<i32>();
        let keys = batch
            .column_by_name("entity_keys")
            .expect("keys")
            .as_list::<i32>();
        let entities = batch
            .column_by_name("entities")
            .expect("entities")
            .as_list::<i32>();
        assert_eq!(keys.len(), entities.len());
        for row in 0..batch.num_rows() {
            if ids.value(row) == "astronaut" {
                let values = keys.value(row);
                let values = values.as_string::<i32>();
                astronaut_keys = (0..values.len())
                    .map(|i| values.value(i).to_string())
                    .collect();
            }
        }
    }
    assert!(
        astronaut_keys.iter().any(|k| k == "PER:eileen collins"),
        "astronaut caption entities: {astronaut_keys:?}"
    );
    let parquet = Path::new(&output).join("parquet/entities");
    assert!(
        std::fs::read_dir(&parquet).map(|d| d.count()).unwrap_or(0) > 0,
        "entities long table parts in {}",
        parquet.display()
    );

    let out = vemo_ok(&[
        "search",
        "--index",
        &output,
        "--entity",
        "Eileen Collins",
        "--json",
    ]);
    let hits: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(hits[0]["id"], "astronaut", "{hits}");
    let typed = vemo_ok(&[
        "search",
        "--index",
        &output,
        "--entity",
        "eileen collins",
        "--entity-type",
        "LOC",
        "--json",
    ]);
    let typed: serde_json::Value = serde_json::from_slice(&typed.stdout).expect("JSON");
    assert!(
        typed
            .as_array()
            .is_some_and(|a| a.iter().all(|h| h["id"] != "astronaut")),
        "a PER entity is not found as LOC: {typed}"
    );

    // With a sentence, only the items naming the entity (exactly, or in part) are ranked: the
    // cat sentence alone would rank the cat photo first.
    for entity in ["Eileen Collins", "collins"] {
        let out = vemo_ok(&[
            "search",
            "--index",
            &output,
            "--entity",
            entity,
            "--text",
            "a tabby cat",
            "--json",
        ]);
        let hits: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
        let ids: Vec<&str> = hits
            .as_array()
            .map(|a| a.iter().filter_map(|h| h["id"].as_str()).collect())
            .unwrap_or_default();
        assert_eq!(ids, ["astronaut"], "--entity {entity} --text: {hits}");
    }
    let out = vemo_ok(&[
        "search",
        "--index",
        &output,
        "--text",
        "a tabby cat",
        "--json",
    ]);
    let hits: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(hits[0]["id"], "chelsea", "the sentence alone: {hits}");
}
