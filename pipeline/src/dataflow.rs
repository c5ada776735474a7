//! The timely dataflow of `vemo index`, and [`run_index`], which plans and runs it.
//!
//! ```text
//! input (each worker feeds its own shards, one per epoch)
//!   -> ReadImages -> EncodeCaptions -> EncodeImages -> WriteShard   (on the owning worker)
//!   -> exchange to worker 0 -> CommitEpoch            (one Lance commit per epoch)
//! ```
//!
//! On an output that holds rows (an incremental run), the workers first add the job's missing
//! columns to the rows there (`backfill`, on worker 0) and plan the delta with differential
//! dataflow (`incremental`): each then feeds the shards of the ids it owns.
//!
//! After the last epoch, worker 0's process builds or updates the indexes (`indexes`).

use std::cell::RefCell;
use std::collections::HashSet;
use std::rc::Rc;
use std::sync::Arc;

use arrow_schema::SchemaRef;
use serde::Serialize;
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::{Operator, Probe};
use timely::dataflow::{InputHandle, ProbeHandle, Stream};
use tokio::runtime::Runtime;
use vemo_models::bundle::Bundle;
use vemo_operators::batches::RowStamp;
use vemo_operators::faults::Faults;
use vemo_operators::images::{ImageReader, ReadPolicy};
use vemo_operators::lance_io::{open_if_exists, read_ids, rows_of, wrap_lance_stores};
use vemo_operators::manifest::read_manifest;
use vemo_operators::store::{self, Location};
use vemo_schemas::{COL_ID, EmbeddingColumn, Tower, items_schema_for};

use crate::backfill::{ColumnJob, add_columns, in_order, missing_columns};
use crate::commit::{CommitStats, Committer};
use crate::config::{ClusterConfig, IndexConfig};
use crate::delta::all_gather;
use crate::incremental::{DeltaReport, DeltaSource, plan_delta};
use crate::models::ProcessModels;
use crate::plan::{Plan, Shard, plan_shards, shard_keys};
use crate::process::{ShardProcessor, ShardWritten};
use crate::progress::Progress;
use crate::{Error, Result};
use vemo_output::OutputLayout;
use vemo_output::indexes::index_columns;
use vemo_output::jobs::write_run_summary;
use vemo_output::ledger::Ledger;

/// Epochs a worker may run ahead of what worker 0 has received.
const EPOCHS_IN_FLIGHT: u64 = 2;

/// What a run did, printed by `vemo index` and written to `_vemo/runs/JOB.json`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RunSummary {
    pub job_id: String,
    pub input: String,
    pub output: String,
    pub bundle: String,
    pub manifest_items: usize,
    /// True when the run brought an existing output to this corpus (see `IndexConfig`).
    pub incremental: bool,
    /// The delta an incremental run worked from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delta: Option<DeltaReport>,
    /// Items not processed: already in the output (unchanged, for an incremental run).
    pub skipped: usize,
    /// Items that went through the text encoder.
    pub encoded: usize,
    /// `items` rows deleted (earlier rows of changed, retried and removed ids).
    pub deleted_rows: u64,
    /// Columns added to the rows already in `items` (new text exits, the entity task).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub columns_added: Vec<String>,
    pub shards: usize,
    /// Shards of this run that another run committed first (dropped, not written twice).
    pub already_committed: u64,
    pub workers: usize,
    pub items_written: usize,
    pub errors_written: usize,
    pub items_version: u64,
    pub errors_version: u64,
    pub elapsed_s: f64,
    pub items_per_s: f64,
    /// One line per embedding column: the vector index built, or why search stays flat.
    pub vector_indexes: Vec<String>,
    pub failures: Vec<String>,
}

/// Everything a worker shares with the other workers of its process.
struct Shared {
    config: IndexConfig,
    runtime: Arc<Runtime>,
    models: ProcessModels,
    bundle_id: String,
    columns: Vec<EmbeddingColumn>,
    plan: Plan,
    /// Set for an incremental run: the workers plan the delta themselves.
    delta: Option<DeltaSource>,
    /// Stop after planning (`vemo plan`).
    plan_only: bool,
    /// Columns of the job that `items` lacks: added to its rows before the delta runs.
    missing: Vec<String>,
    items_schema: SchemaRef,
    ledger: Ledger,
    workers_per_process: usize,
    output: Location,
    items_uri: String,
    errors_uri: String,
    /// The manifest's folder: relative image paths may not leave it.
    manifest_folder: String,
    /// The output's caption columns are not nullable (written before they were): an item
    /// without a caption is then an `errors` row, as it was.
    text_not_null: bool,
    started_us: i64,
}

/// Plans and runs one `vemo index` job on this process's share of the cluster. Returns the
/// summary on the process that holds worker 0, `None` on the others.
pub fn run_index(config: IndexConfig, cluster: &ClusterConfig) -> Result<Option<RunSummary>> {
    execute(config, cluster, false)
}

/// Plans a `vemo index` job without running it or writing anything (`vemo plan`): the delta
/// on the process that holds worker 0, `None` on the others.
pub fn plan_index(config: IndexConfig, cluster: &ClusterConfig) -> Result<Option<DeltaReport>> {
    Ok(execute(config, cluster, true)?.map(|summary| summary.delta.unwrap_or_default()))
}

fn execute(
    config: IndexConfig,
    cluster: &ClusterConfig,
    plan_only: bool,
) -> Result<Option<RunSummary>> {
    let timely_config = cluster.timely_config()?;
    let runtime = Arc::new(
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?,
    );
    // User errors (bundle, exits, device, manifest) surface here, before any worker starts.
    let bundle = Bundle::open(&config.bundle)?;
    let models = ProcessModels::load(&bundle, &config, cluster)?;
    let first = models.first().clone();
    let mut columns: Vec<EmbeddingColumn> = first
        .text
        .exits()
        .iter()
        .map(|&exit| EmbeddingColumn::joint(Tower::Text, exit, first.text.dim()))
        .collect();
    if let Some(images) = &first.images {
        columns.extend(images.columns()?);
    }
    let mut output = store::resolve(&config.output)?;
    if let Some(faults) = Faults::from_env()? {
        tracing::warn!("VEMO_FAULTS is set: writes to the output fail at random (tests only).");
        output.store = faults.wrap(output.store.clone());
        wrap_lance_stores(Arc::new(faults));
    }
    let items_uri = OutputLayout::of(&output).items_uri();
    let errors_uri = OutputLayout::of(&output).errors_uri();
    let items_schema = items_schema_for(
        &columns,
        vemo_schemas::ItemTasks {
            entities: config.entities,
            spotting: config.spotting,
        },
    );
    let (mut manifest_folder, mut text_not_null) = (String::new(), false);
    let (plan, ledger, delta, missing, order) = runtime.block_on(async {
        let manifest = read_manifest(&config.input).await?;
        manifest_folder = store::parent(&manifest.uri);
        let mut ledger = Ledger::load(&output).await?;
        if cluster.process == 0 && !plan_only {
            ledger.roll_forward(&output).await?;
        }
        let items = open_if_exists(&items_uri).await?;
        // An output written before caption columns were nullable cannot hold a null there.
        text_not_null = items.as_ref().is_some_and(|d| {
            d.schema()
                .fields
                .iter()
                .any(|f| f.name.starts_with("text_emb_") && !f.nullable)
        });
        let errors = open_if_exists(&errors_uri).await?;
        // New rows keep the output's column order (added columns come last in it).
        let order: Option<Vec<String>> = items
            .as_ref()
            .map(|d| d.schema().fields.iter().map(|f| f.name.clone()).collect());
        if config.incremental && (items.is_some() || errors.is_some()) {
            let missing = match &items {
                Some(items) => missing_columns(items, &items_uri, &items_schema)?,
                None => Vec::new(),
            };
            let source = DeltaSource {
                entries: Arc::new(manifest.entries),
                items,
                errors,
                bundle_id: bundle.id(),
                read_concurrency: config.read_concurrency,
                shard_size: config.shard_size,
                job_id: config.job_id.clone(),
            };
            return Ok((Plan::default(), ledger, Some(source), missing, order));
        }
        // The ids are read (a scan of both tables) only when the ledger alone cannot tell.
        let keys = shard_keys(&manifest.entries, config.shard_size);
        let rows = (
            rows_of(items.as_ref()).await?,
            rows_of(errors.as_ref()).await?,
        );
        let done = match ledger.covers(&keys, rows.0, rows.1) {
            true => None,
            false => {
                tracing::info!("The ledger does not account for every row: skipping by id too.");
                let mut done: HashSet<String> = read_ids(&items_uri, COL_ID).await?;
                done.extend(read_ids(&errors_uri, COL_ID).await?);
                Some(done)
            }
        };
        let plan = plan_shards(
            manifest.entries,
            done.as_ref(),
            &|key| ledger.is_committed(key),
            config.shard_size,
        );
        Ok::<_, Error>((plan, ledger, None, Vec::new(), order))
    })?;
    if delta.is_none() {
        tracing::info!(
            items = plan.items(),
            skipped = plan.skipped,
            shards = plan.pending_shards(),
            committed_shards = ledger.shards.len(),
            "Planned run."
        );
        if cluster.process == 0 && !plan_only {
            let record = crate::job_record::planned(&config, cluster, &plan);
            runtime.block_on(record.write(&output))?;
        }
    }
    let shared = Arc::new(Shared {
        bundle_id: bundle.id(),
        runtime,
        models,
        columns,
        plan,
        delta,
        plan_only,
        items_schema: match order {
            Some(order) => in_order(&items_schema, order.iter().chain(&missing))?,
            None => items_schema,
        },
        missing,
        ledger,
        workers_per_process: cluster.workers,
        output,
        items_uri,
        errors_uri,
        manifest_folder,
        text_not_null,
        started_us: chrono::Utc::now().timestamp_micros(),
        config,
    });
    let index_runtime = shared.runtime.clone();
    let (items_uri, min_rows) = (
        shared.items_uri.clone(),
        shared.config.vector_index_min_rows,
    );
    let guards = timely::execute(timely_config, move |worker| run_worker(worker, &shared))
        .map_err(Error::Dataflow)?;
    let mut summary = None;
    for result in guards.join() {
        match result.map_err(Error::Dataflow)? {
            Ok(Some(s)) => summary = Some(s),
            Ok(None) => {}
            Err(e) => return Err(e),
        }
    }
    if let Some(summary) = summary.as_mut().filter(|_| !plan_only) {
        let report = index_columns(&index_runtime, &items_uri, min_rows, summary.incremental);
        summary.vector_indexes.extend(report.lines);
        summary.failures.extend(report.failures);
    }
    Ok(summary)
}

fn run_worker(worker: &mut timely::worker::Worker, shared: &Shared) -> Result<Option<RunSummary>> {
    let (index, peers) = (worker.index(), worker.peers());
    let models = shared.models.of_worker(index);
    let processor = Rc::new(ShardProcessor {
        runtime: shared.runtime.clone(),
        encoder: models.text.clone(),
        images: models.images.clone(),
        entities: shared.config.entities,
        spotter: models.spotter.clone(),
        prefetched: Default::default(),
        reader: Arc::new({
            let limits = &shared.config.limits;
            let reader = match &models.images {
                Some(images) => {
                    let (resize, crop) = images.input_geometry();
                    ImageReader::with_crop(resize, crop)
                }
                None => ImageReader::default(),
            }
            .within(limits.image, limits.decode_concurrency)
            .with_policy(ReadPolicy {
                root: Some(shared.manifest_folder.clone()),
                allowed_prefixes: limits.allowed_prefixes.clone(),
            });
            match models.spotter {
                Some(_) => reader.keeping_full(limits.spotting_max_side),
                None => reader,
            }
        }),
        columns: shared.columns.clone(),
        stamp: RowStamp {
            bundle: shared.bundle_id.clone(),
            job_id: shared.config.job_id.clone(),
            indexed_at_us: shared.started_us,
        },
        output: shared.output.clone(),
        items_uri: shared.items_uri.clone(),
        errors_uri: shared.errors_uri.clone(),
        batch_size: shared.config.batch_size,
        image_batch_size: shared.config.image_batch_size,
        read_concurrency: shared.config.read_concurrency,
        limits: shared.config.limits.clone(),
        captionless_as_errors: shared.text_not_null,
        items_schema: shared.items_schema.clone(),
    });
    // Every process decided alone whether the output holds rows: they must agree (a run that
    // created the output in between would have them build different dataflows).
    let modes = all_gather(worker, shared.delta.is_some());
    if modes.iter().any(|&m| m != shared.delta.is_some()) {
        return Err(Error::Plan(
            "the processes found the output in different states (another run wrote to it as \
             they started): rerun"
                .into(),
        ));
    }
    let columns_added = add_missing_columns(worker, shared)?;
    let (shards, delta) = match &shared.delta {
        Some(source) => {
            let (shards, report) = plan_delta(worker, &shared.runtime, &processor.reader, source)?;
            if index == 0 {
                tracing::info!(
                    added = report.counts.added,
                    changed = report.counts.changed,
                    retried = report.counts.retried,
                    removed = report.counts.removed,
                    unchanged = report.counts.unchanged,
                    shards = report.shards,
                    "Planned incremental run."
                );
            }
            let report = DeltaReport {
                columns_to_add: shared.missing.clone(),
                ..report
            };
            (shards, Some(report))
        }
        None => {
            let plan = &shared.plan;
            let mine = (0..plan.epochs(peers)).filter_map(|e| plan.shard_at(e, index, peers));
            (mine.cloned().collect(), None)
        }
    };
    let (shards_total, items_total) = match &delta {
        Some(report) => (report.shards, report.counts.to_encode()),
        None => (shared.plan.pending_shards(), shared.plan.items()),
    };
    if index == 0 && shared.plan_only {
        return Ok(Some(RunSummary {
            delta: Some(delta.unwrap_or_else(|| DeltaReport::of_plan(&shared.plan))),
            ..Default::default()
        }));
    }
    if shared.plan_only {
        return Ok(None);
    }
    if let (0, Some(report)) = (index, &delta) {
        let record =
            crate::job_record::for_delta(&shared.config, shared.workers_per_process, peers, report);
        if let Err(e) = shared.runtime.block_on(record.write(&shared.output)) {
            tracing::warn!(error = %e, "Could not write the job record.");
        }
    }
    let committer = (index == 0).then(|| {
        Rc::new(RefCell::new(Committer {
            runtime: shared.runtime.clone(),
            output: shared.output.clone(),
            job_id: shared.config.job_id.clone(),
            ledger: shared.ledger.clone(),
            peers,
            workers_per_process: shared.workers_per_process,
            items_schema: shared.items_schema.clone(),
            pending: Default::default(),
            stats: CommitStats::default(),
            progress: Progress::new(shards_total as u64, items_total, shared.config.progress_bar),
            processed_shards: 0,
        }))
    });

    let mut input = InputHandle::<u64, CapacityContainerBuilder<Vec<Shard>>>::new();
    let probe = ProbeHandle::new();
    let feeder = processor.clone();
    worker.dataflow::<u64, _, _>(|scope| {
        let shards = input.to_stream(scope);
        let (read, captions, images, spot, write) = (
            processor.clone(),
            processor.clone(),
            processor.clone(),
            processor.clone(),
            processor,
        );
        let written = stage(shards, "ReadImages", move |s| read.read_images(s));
        let written = stage(written, "EncodeCaptions", move |s| {
            captions.encode_captions(s)
        });
        let written = stage(written, "EncodeImages", move |s| images.encode_images(s));
        let written = stage(written, "SpotText", move |s| spot.spot_text(s));
        let written = stage(written, "WriteShard", move |s| write.write_shard(s));
        commit_epochs(written, committer.clone()).probe_with(&probe);
    });

    let mut shards = shards.into_iter().peekable();
    while let Some(shard) = shards.next() {
        if let Some(next) = shards.peek() {
            feeder.prefetch(next);
        }
        let epoch = shard.epoch(peers);
        input.advance_to(epoch);
        input.send(shard);
        input.advance_to(epoch + 1);
        // Bound the work in flight: wait until worker 0 has what is older than the window.
        let horizon = (epoch + 1).saturating_sub(EPOCHS_IN_FLIGHT);
        while probe.less_than(&horizon) {
            worker.step_or_park(None);
        }
    }
    input.close();
    while worker.step_or_park(None) {}

    let Some(committer) = committer else {
        return Ok(None);
    };
    let mut committer = committer.borrow_mut();
    let (items_version, errors_version) = committer.finish().unwrap_or_else(|e| {
        committer
            .stats
            .failures
            .push(format!("finishing the datasets: {e}"));
        (0, 0)
    });
    let elapsed_s = committer.progress.elapsed();
    let stats = committer.stats.clone();
    let mut summary = RunSummary {
        job_id: shared.config.job_id.clone(),
        input: shared.config.input.clone(),
        output: shared.output.uri.clone(),
        bundle: shared.bundle_id.clone(),
        manifest_items: match &shared.delta {
            Some(source) => source.entries.len(),
            None => shared.plan.manifest_items,
        },
        incremental: delta.is_some(),
        skipped: match &delta {
            Some(report) => report.counts.unchanged,
            None => shared.plan.skipped,
        },
        delta,
        encoded: stats.encoded,
        deleted_rows: stats.deleted,
        columns_added,
        shards: shards_total,
        already_committed: stats.already_committed,
        workers: peers,
        items_written: stats.items,
        errors_written: stats.errors,
        items_version,
        errors_version,
        elapsed_s,
        items_per_s: (stats.items + stats.errors) as f64 / elapsed_s.max(1e-9),
        vector_indexes: Vec::new(),
        failures: stats.failures,
    };
    if let Err(e) = write_summary(shared, &summary) {
        summary
            .failures
            .push(format!("writing the run summary: {e}"));
    }
    Ok(Some(summary))
}

/// Adds the job's missing columns to the rows of `items` (worker 0 computes them; every
/// worker waits for it). Returns the columns added (on worker 0).
fn add_missing_columns(
    worker: &mut timely::worker::Worker,
    shared: &Shared,
) -> Result<Vec<String>> {
    if shared.missing.is_empty() || shared.plan_only {
        return Ok(Vec::new());
    }
    let failure = match worker.index() {
        0 => {
            let job = ColumnJob {
                encoder: shared.models.first().text.clone(),
                columns: &shared.columns,
                tasks: vemo_schemas::ItemTasks {
                    entities: shared.config.entities,
                    spotting: shared.config.spotting,
                },
                stamp: RowStamp {
                    bundle: shared.bundle_id.clone(),
                    job_id: shared.config.job_id.clone(),
                    indexed_at_us: shared.started_us,
                },
                batch_size: shared.config.batch_size,
                output: &shared.output,
            };
            let added =
                shared
                    .runtime
                    .block_on(add_columns(&shared.items_uri, &shared.missing, job));
            match added {
                Ok(rows) => {
                    tracing::info!(rows, columns = ?shared.missing, "Added columns to items.");
                    String::new()
                }
                Err(e) => e.to_string(),
            }
        }
        _ => String::new(),
    };
    let failures: Vec<String> = all_gather(worker, failure)
        .into_iter()
        .filter(|f| !f.is_empty())
        .collect();
    match failures.is_empty() {
        true => Ok(shared.missing.clone()),
        false => Err(Error::Plan(failures.join("; "))),
    }
}

/// Writes `_vemo/runs/JOB.json` under the output root.
fn write_summary(shared: &Shared, summary: &RunSummary) -> vemo_output::Result<()> {
    let written = write_run_summary(&shared.output, &summary.job_id, summary);
    shared.runtime.block_on(written)
}

/// A named per-shard transform on the owning worker (pipeline pact, no data movement).
fn stage<'scope, A, B>(
    stream: Stream<'scope, u64, Vec<A>>,
    name: &str,
    mut logic: impl FnMut(A) -> B + 'static,
) -> Stream<'scope, u64, Vec<B>>
where
    A: Clone + 'static,
    B: Clone + 'static,
{
    stream
        .unary(Pipeline, name, move |_, _| {
            move |input, output| {
                input.for_each_stamp(|cap, data| {
                    let mut session = output.session(&cap);
                    for container in data {
                        for item in container.drain(..) {
                            session.give(logic(item));
                        }
                    }
                });
            }
        })
        .container::<Vec<B>>()
}

/// CommitEpoch: routes every written shard to worker 0, which commits each epoch once the
/// frontier has passed it. Passes the shards on, so a probe can follow the commits.
fn commit_epochs<'scope>(
    written: Stream<'scope, u64, Vec<ShardWritten>>,
    committer: Option<Rc<RefCell<Committer>>>,
) -> Stream<'scope, u64, Vec<u64>> {
    written
        .unary_frontier(
            Exchange::new(|_: &ShardWritten| 0),
            "CommitEpoch",
            move |_, _| {
                move |(input, frontier), output| {
                    input.for_each_stamp(|cap, data| {
                        // The epoch is the time the owning worker sent the shard at.
                        let epoch = cap.least().copied().unwrap_or_default();
                        let mut session = output.session(&cap);
                        for container in data {
                            for shard in container.drain(..) {
                                session.give(shard.shard);
                                if let Some(committer) = &committer {
                                    committer.borrow_mut().accept(epoch, shard);
                                }
                            }
                        }
                    });
                    if let Some(committer) = &committer {
                        committer
                            .borrow_mut()
                            .commit_complete(|epoch| !frontier.less_equal(&epoch));
                    }
                }
            },
        )
        .container::<Vec<u64>>()
}
