//! `vemo inspect`: what an output root holds.

use std::process::ExitCode;

use serde::Serialize;
use vemo_operators::lance_io::{DatasetSummary, summarize};
use vemo_operators::store;
use vemo_output::OutputLayout;
use vemo_schemas::{ITEMS_DATASET, PARQUET_EMBEDDINGS_DIR, PARQUET_ERRORS_DIR};

use crate::cli::InspectArgs;
use crate::usage;

#[derive(Debug, Serialize)]
struct Inspection {
    output: String,
    items: Option<DatasetSummary>,
    errors: Option<DatasetSummary>,
    parquet_parts: Vec<(String, usize)>,
    runs: Vec<String>,
    /// Parameters of the bundle that wrote the rows, when it is installed here.
    parameters: Option<vemo_models::parameters::BundleParameters>,
    /// With `--versions`: every version of `items`, oldest first.
    #[serde(skip_serializing_if = "Option::is_none")]
    versions: Option<Vec<VersionLine>>,
}

/// One version of `items`, as `vemo inspect --versions` lists it.
#[derive(Debug, Serialize)]
struct VersionLine {
    version: u64,
    timestamp: String,
    /// The job that committed it (none: created empty, an index, or written outside vemo).
    job_id: Option<String>,
    shards: usize,
    /// Rows it added to `items` and to `errors`.
    items: usize,
    errors: usize,
    /// Ids whose earlier rows it replaced or removed, and the `items` rows it deleted.
    replaced_ids: usize,
    deleted_rows: u64,
}

/// Every version of the `items` dataset at `items_uri` with what its ledger entry says.
async fn versions(items_uri: &str) -> anyhow::Result<Vec<VersionLine>> {
    use vemo_operators::lance_commit::version_properties;
    use vemo_output::ledger::{ITEMS_PROPERTY, LedgerEntry, parse_entry};
    let Some(dataset) = vemo_operators::lance_io::open_if_exists(items_uri).await? else {
        return Ok(Vec::new());
    };
    let listed = dataset.versions().await?;
    // Read the transactions by runs of consecutive versions (a cleanup can leave gaps).
    let mut entries: std::collections::HashMap<u64, LedgerEntry> = Default::default();
    let numbers: Vec<u64> = listed.iter().map(|v| v.version).collect();
    for run in numbers.chunk_by(|a, b| b == &(a + 1)) {
        let (first, last) = (run[0], run[run.len() - 1]);
        for (v, mut p) in version_properties(items_uri, &dataset, first, last).await? {
            if let Some(entry) = p.remove(ITEMS_PROPERTY) {
                entries.insert(v, parse_entry(items_uri, v, &entry)?);
            }
        }
    }
    Ok(listed
        .iter()
        .map(|version| {
            // No entry: a version vemo did not commit rows in (created empty, an index).
            let entry = entries.remove(&version.version);
            let shards = entry
                .as_ref()
                .map(|e| e.shards.as_slice())
                .unwrap_or_default();
            VersionLine {
                version: version.version,
                timestamp: version.timestamp.to_rfc3339(),
                job_id: entry.as_ref().map(|e| e.job_id.clone()),
                shards: shards.len(),
                items: shards.iter().map(|s| s.items).sum(),
                errors: shards.iter().map(|s| s.errors).sum(),
                replaced_ids: shards.iter().map(|s| s.replaces.len()).sum(),
                deleted_rows: entry.as_ref().map_or(0, |e| e.deleted),
            }
        })
        .collect())
}

/// Runs `vemo inspect`.
pub fn run(args: InspectArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut inspection = runtime.block_on(inspect(&args.uri))?;
    if args.versions {
        let items_uri = store::join(&inspection.output, ITEMS_DATASET);
        inspection.versions = Some(runtime.block_on(versions(&items_uri))?);
    }
    if inspection.items.is_none() {
        return Err(usage(format!(
            "{} holds no {ITEMS_DATASET}: is it a vemo output?",
            args.uri
        )));
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&inspection)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("output {}", inspection.output);
    for summary in [&inspection.items, &inspection.errors]
        .into_iter()
        .flatten()
    {
        println!(
            "{}: {} rows, version {} (versions {:?})",
            summary.uri, summary.rows, summary.version, summary.versions
        );
        for (name, data_type) in &summary.columns {
            println!("    {name}: {data_type}");
        }
    }
    for (dir, parts) in &inspection.parquet_parts {
        println!("{dir}: {parts} part files");
    }
    println!("runs: {}", inspection.runs.join(", "));
    if let Some(versions) = &inspection.versions {
        println!("items versions:");
        println!(
            "  version  timestamp                         job                       shards    items   errors  replaced  deleted"
        );
        for v in versions {
            println!(
                "  {:>7}  {:<32}  {:<24}  {:>6}  {:>7}  {:>7}  {:>8}  {:>7}",
                v.version,
                v.timestamp,
                v.job_id.as_deref().unwrap_or("-"),
                v.shards,
                v.items,
                v.errors,
                v.replaced_ids,
                v.deleted_rows
            );
        }
    }
    if let Some(p) = &inspection.parameters {
        println!(
            "model {}: {} parameters (text tower {}, image tower {}, exit heads {}, ConSE table {}, NER branch {}); separate uni-task models: {} (ratio {:.2})",
            p.bundle,
            p.total,
            p.text_tower,
            p.image_tower,
            p.exit_heads,
            p.conse_table,
            p.ner_branch,
            p.separate_uni_task_models,
            p.total as f64 / p.separate_uni_task_models.max(1) as f64
        );
        if p.spotting > 0 {
            println!(
                "spotting modules: {} parameters (CRAFT + english_g2; image-only, not shared)",
                p.spotting
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn inspect(uri: &str) -> anyhow::Result<Inspection> {
    let root = store::resolve(uri)?;
    let layout = OutputLayout::of(&root);
    let items = summarize(&layout.items_uri()).await?;
    let errors = summarize(&layout.errors_uri()).await?;
    let mut parquet_parts = Vec::new();
    for dir in [PARQUET_EMBEDDINGS_DIR, PARQUET_ERRORS_DIR] {
        let names = list_names(&root, dir).await?;
        parquet_parts.push((
            dir.to_string(),
            names.iter().filter(|n| n.ends_with(".parquet")).count(),
        ));
    }
    let runs = layout.runs()?.list_names().await?;
    let parameters = match bundle_of(&layout.items_uri()).await {
        Some(id) => {
            installed_bundle(&id).and_then(|b| vemo_models::parameters::bundle_parameters(&b).ok())
        }
        None => None,
    };
    Ok(Inspection {
        output: root.uri,
        items,
        errors,
        parquet_parts,
        runs,
        parameters,
        versions: None,
    })
}

/// The bundle id recorded in the first row of `items`. Only the optional parameter line needs
/// it, so a failure to read it hides that line (with a warning) instead of failing `inspect`;
/// the reads of `items` that matter (`summarize`, `--versions`) fail loudly.
async fn bundle_of(items_uri: &str) -> Option<String> {
    let read = async {
        let Some(dataset) = vemo_operators::lance_io::open_if_exists(items_uri).await? else {
            return Ok(None);
        };
        vemo_operators::vector_search::recorded_bundle(&dataset).await
    };
    read.await.unwrap_or_else(|e: vemo_operators::Error| {
        tracing::warn!(error = %e, "No model parameters: the bundle of the rows is unreadable.");
        None
    })
}

/// The installed bundle with that id (`name@version`), if any: a bundle that is not installed
/// here (or not this version) only means no parameter line.
fn installed_bundle(id: &str) -> Option<vemo_models::bundle::Bundle> {
    let name = id.split('@').next()?;
    let bundle = vemo_models::bundle::Bundle::open(&crate::home::bundle_dir(name)).ok()?;
    (bundle.id() == id).then_some(bundle)
}

/// The file names under `dir` of the output (none when it does not exist); a failed listing
/// is an error, not zero parts.
async fn list_names(root: &store::Location, dir: &str) -> anyhow::Result<Vec<String>> {
    Ok(root.child(dir)?.list_names().await?)
}
