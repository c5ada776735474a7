//! `vemo inspect`: what an output root holds.

use std::process::ExitCode;

use serde::Serialize;
use vemo_operators::lance_io::{DatasetSummary, summarize};
use vemo_operators::store;
use vemo_schemas::{
    ERRORS_DATASET, ITEMS_DATASET, PARQUET_EMBEDDINGS_DIR, PARQUET_ERRORS_DIR, VEMO_DIR,
};

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
    parameters: Option<crate::models::BundleParameters>,
}

/// Runs `vemo inspect`.
pub fn run(args: InspectArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let inspection = runtime.block_on(inspect(&args.uri))?;
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
    let items = summarize(&store::join(&root.uri, ITEMS_DATASET)).await?;
    let errors = summarize(&store::join(&root.uri, ERRORS_DATASET)).await?;
    let mut parquet_parts = Vec::new();
    for dir in [PARQUET_EMBEDDINGS_DIR, PARQUET_ERRORS_DIR] {
        let names = list_names(&root, dir).await?;
        parquet_parts.push((
            dir.to_string(),
            names.iter().filter(|n| n.ends_with(".parquet")).count(),
        ));
    }
    let runs = list_names(&root, &format!("{VEMO_DIR}/runs")).await?;
    let parameters = match bundle_of(&store::join(&root.uri, ITEMS_DATASET)).await {
        Some(id) => installed_bundle(&id).and_then(|b| crate::models::bundle_parameters(&b).ok()),
        None => None,
    };
    Ok(Inspection {
        output: root.uri,
        items,
        errors,
        parquet_parts,
        runs,
        parameters,
    })
}

/// The bundle id recorded in the first row of `items`.
async fn bundle_of(items_uri: &str) -> Option<String> {
    let dataset = vemo_operators::lance_io::open_if_exists(items_uri)
        .await
        .ok()??;
    vemo_operators::vector_search::recorded_bundle(&dataset)
        .await
        .ok()?
}

/// The installed bundle with that id (`name@version`), if any.
fn installed_bundle(id: &str) -> Option<vemo_operators::bundle::Bundle> {
    let name = id.split('@').next()?;
    let bundle = vemo_operators::bundle::Bundle::open(&crate::home::bundle_dir(name)).ok()?;
    (bundle.id() == id).then_some(bundle)
}

async fn list_names(root: &store::Location, dir: &str) -> anyhow::Result<Vec<String>> {
    Ok(root.child(dir)?.list_names().await.unwrap_or_default())
}
