//! The indexes of `items` at the end of a run: vector indexes (IVF_PQ) on the embedding
//! columns, the entity LABEL_LIST and the spotted-text INVERTED index; built, or updated in
//! place by an incremental run.

use std::collections::HashSet;

use tokio::runtime::Runtime;
use vemo_operators::char_search::build_text_index;
use vemo_operators::vector_search::{
    IndexOutcome, build_entity_index, build_indexes_except, index_names, update_indexes,
};

/// What [`index_columns`] did: a line per index, and what failed (a failed index build does
/// not fail the run: search falls back to a scan).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IndexReport {
    pub lines: Vec<String>,
    pub failures: Vec<String>,
}

/// Builds the indexes of `items` after the last commit. An `incremental` run updates the
/// indexes the output has (new rows appended, deleted rows masked) and builds only the
/// missing ones; other runs rebuild them all.
pub fn index_columns(
    runtime: &Runtime,
    items_uri: &str,
    min_rows: usize,
    incremental: bool,
) -> IndexReport {
    let mut report = IndexReport::default();
    let existing = match incremental {
        true => update_existing(runtime, items_uri, &mut report),
        false => HashSet::new(),
    };
    build_vector_indexes(runtime, items_uri, min_rows, &existing, &mut report);
    build_scalar_indexes(runtime, items_uri, &existing, &mut report);
    report
}

/// Updates the indexes `items` has; returns their names.
fn update_existing(
    runtime: &Runtime,
    items_uri: &str,
    report: &mut IndexReport,
) -> HashSet<String> {
    let updated = runtime.block_on(async {
        let names = index_names(items_uri).await?;
        if !names.is_empty() {
            update_indexes(items_uri).await?;
        }
        Ok::<_, vemo_operators::Error>(names)
    });
    match updated {
        Ok(names) => {
            let mut sorted: Vec<&String> = names.iter().collect();
            sorted.sort();
            for name in sorted {
                let line = format!("{name}: updated (new rows appended, deleted rows masked)");
                tracing::info!("Index: {line}");
                report.lines.push(line);
            }
            names
        }
        Err(e) => {
            report.failures.push(format!("updating the indexes: {e}"));
            HashSet::new()
        }
    }
}

/// Builds an IVF_PQ index on each embedding column not in `existing` (or says why search on
/// it stays flat).
fn build_vector_indexes(
    runtime: &Runtime,
    items_uri: &str,
    min_rows: usize,
    existing: &HashSet<String>,
    report: &mut IndexReport,
) {
    match runtime.block_on(build_indexes_except(items_uri, min_rows, existing)) {
        Ok(outcomes) => {
            for outcome in outcomes {
                let line = match outcome {
                    IndexOutcome::Built {
                        column,
                        partitions,
                        sub_vectors,
                    } => format!(
                        "{column}: IVF_PQ index, {partitions} partitions, {sub_vectors} sub-vectors, cosine"
                    ),
                    IndexOutcome::Flat { column, rows } => format!(
                        "{column}: no index ({rows} rows < {}), exact flat search",
                        min_rows.max(256)
                    ),
                };
                tracing::info!("Vector index: {line}");
                report.lines.push(line);
            }
        }
        Err(e) => report
            .failures
            .push(format!("building the vector indexes: {e}")),
    }
}

/// Builds the entity LABEL_LIST and the spotted-text INVERTED index when `items` has their
/// columns and they are not in `existing`.
fn build_scalar_indexes(
    runtime: &Runtime,
    items_uri: &str,
    existing: &HashSet<String>,
    report: &mut IndexReport,
) {
    let build = |name: &str, future: std::pin::Pin<Box<dyn Future<Output = _>>>| match existing
        .contains(name)
    {
        true => Ok(false),
        false => runtime.block_on(future),
    };
    let scalar = [
        (
            build(
                "entity_keys_label_list",
                Box::pin(build_entity_index(items_uri)),
            ),
            "entity_keys: LABEL_LIST index",
            "the entity index",
        ),
        (
            build(
                "spotted_text_inverted",
                Box::pin(build_text_index(items_uri)),
            ),
            "spotted_text: INVERTED (full-text) index",
            "the spotted-text index",
        ),
    ];
    // Each built only when the dataset has its column (Ok(false) otherwise).
    for (outcome, line, what) in scalar {
        match outcome {
            Ok(true) => {
                tracing::info!("Scalar index: {line}");
                report.lines.push(line.to_string());
            }
            Ok(false) => {}
            Err(e) => report.failures.push(format!("building {what}: {e}")),
        }
    }
}
