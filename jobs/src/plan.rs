//! `vemo plan`: the delta `vemo index` would process on an output, without running it.

use std::process::ExitCode;

use vemo_pipeline::delta::Change;
use vemo_pipeline::plan_index;

use crate::cli::PlanArgs;
use crate::index::configs;

/// Runs `vemo plan`.
pub fn run(args: PlanArgs) -> anyhow::Result<ExitCode> {
    let (mut config, cluster) = configs(&args.index)?;
    config.progress_bar = false;
    let output = config.output.clone();
    let Some(report) = plan_index(config, &cluster)? else {
        return Ok(ExitCode::SUCCESS);
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(ExitCode::SUCCESS);
    }
    match report.items_version {
        0 => println!("plan for {output} (no items yet)"),
        v => println!("plan for {output} against items.lance v{v}"),
    }
    let counts = &report.counts;
    for change in Change::ALL {
        let (name, count) = (change.name(), counts.get(change));
        let sample = report.samples.get(&change).map(|ids| ids.join(", "));
        match sample.filter(|s| !s.is_empty()) {
            Some(ids) => println!("  {name:<9} {count:>9}   e.g. {ids}"),
            None => println!("  {name:<9} {count:>9}"),
        }
    }
    if !report.columns_to_add.is_empty() {
        println!(
            "  columns to add to the rows already indexed: {}",
            report.columns_to_add.join(", ")
        );
    }
    println!(
        "  {} items to encode in {} shards",
        counts.to_encode(),
        report.shards
    );
    Ok(ExitCode::SUCCESS)
}
