//! The timely dataflow of `vemo index`, and [`run_index`], which plans and runs it.
//!
//! Each worker feeds its own shards, one per epoch, and reads the next shard's images while it
//! encodes the current one. A shard goes through these stages, on the worker that owns it
//! until the exchange to worker 0 (each a named operator, see [`crate::stages`]):
//!
//! ```text
//! shards.read_images(..)       ReadImages      fetch, hash and decode the images
//!       .encode_captions(..)   EncodeCaptions  caption embeddings at every text exit (entities)
//!       .encode_images(..)     EncodeImages    image embeddings at every image exit (feature)
//!       .spot_text(..)         SpotText        the words in the image (their entities)
//!       .write_shard(..)       WriteShard      uncommitted Lance fragments, staged Parquet parts
//!       .commit_epochs(..)     CommitEpoch     on worker 0: one Lance commit per epoch
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
use lance::Dataset;
use serde::Serialize;
use timely::container::CapacityContainerBuilder;
use timely::dataflow::operators::Probe;
use timely::dataflow::{InputHandle, ProbeHandle};
use timely::worker::Worker;
use tokio::runtime::Runtime;
use vemo_models::bundle::Bundle;
use vemo_operators::batches::RowStamp;
use vemo_operators::faults::Faults;
use vemo_operators::images::{ImageReader, ReadPolicy};
use vemo_operators::lance_io::{open_if_exists, read_ids, rows_of, wrap_lance_stores};
use vemo_operators::manifest::read_corpus;
use vemo_operators::store::{self, Location};
use vemo_schemas::{COL_ID, EmbeddingColumn, ItemTasks, ManifestEntry, Tower, items_schema_for};

use crate::backfill::{ColumnJob, add_columns, in_order, missing_columns};
use crate::commit::{CommitEpochs, CommitStats, Committer};
use crate::config::{ClusterConfig, IndexConfig};
use crate::delta::all_gather;
use crate::incremental::{DeltaReport, DeltaSource, plan_delta};
use crate::metrics::MetricsWriter;
use crate::models::{Models, ProcessModels};
use crate::plan::{Plan, Shard, plan_shards, shard_keys};
use crate::progress::Progress;
use crate::stages::{
    CaptionStage, EncodeCaptions, EncodeImages, ImageStage, ModelThreads, ReadImages, ReadStage,
    SpotStage, SpotText, WriteShard, WriteStage,
};
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

/// The output of a run: its root and its two datasets.
struct Output {
    location: Location,
    items_uri: String,
    errors_uri: String,
}

/// What a run finds before its workers start: the shards to do (or, for an incremental run,
/// what the workers plan the delta from), the ledger, and what the output and the manifest
/// say about the rows to write.
struct Survey {
    plan: Plan,
    ledger: Ledger,
    /// Set for an incremental run: the workers plan the delta themselves.
    delta: Option<DeltaSource>,
    /// Columns of the job that `items` lacks: added to its rows before the delta runs.
    missing: Vec<String>,
    /// The columns of `items` in its order, when it exists (new rows keep it).
    order: Option<Vec<String>>,
    /// The manifest's folder: relative image paths may not leave it.
    manifest_folder: String,
    /// The output's caption columns are not nullable (written before they were): an item
    /// without a caption is then an `errors` row, as it was.
    text_not_null: bool,
}

/// Everything a worker shares with the other workers of its process.
struct Shared {
    config: IndexConfig,
    runtime: Arc<Runtime>,
    models: ProcessModels,
    bundle_id: String,
    /// The embedding columns: the text exits, then the image exits and feature.
    columns: Vec<EmbeddingColumn>,
    /// The `items` schema rows are written in (the output's column order).
    items_schema: SchemaRef,
    output: Output,
    survey: Survey,
    /// Stop after planning (`vemo plan`).
    plan_only: bool,
    workers_per_process: usize,
    started_us: i64,
}

impl Shared {
    /// The values stamped on every row of this run.
    fn stamp(&self) -> RowStamp {
        RowStamp {
            bundle: self.bundle_id.clone(),
            job_id: self.config.job_id.clone(),
            indexed_at_us: self.started_us,
        }
    }

    fn tasks(&self) -> ItemTasks {
        tasks_of(&self.config)
    }
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

/// Opens the bundle, the models and the output, surveys what to do, then runs the workers.
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
    let columns = embedding_columns(models.first())?;
    let output = open_output(&config.output)?;
    let items_schema = items_schema_for(&columns, tasks_of(&config));
    let first = cluster.process == 0;
    let survey = runtime.block_on(survey(
        &config,
        first && !plan_only,
        &output,
        bundle.id(),
        &items_schema,
    ))?;
    if survey.delta.is_none() {
        log_plan(&survey);
        if first && !plan_only {
            let record = crate::job_record::planned(&config, cluster, &survey.plan);
            runtime.block_on(record.write(&output.location))?;
        }
    }
    let shared = Arc::new(Shared {
        bundle_id: bundle.id(),
        runtime,
        models,
        columns,
        items_schema: match &survey.order {
            Some(order) => in_order(&items_schema, order.iter().chain(&survey.missing))?,
            None => items_schema,
        },
        output,
        survey,
        plan_only,
        workers_per_process: cluster.workers,
        started_us: chrono::Utc::now().timestamp_micros(),
        config,
    });
    run_workers(timely_config, shared)
}

/// Runs the workers of this process, then (on worker 0's) builds or updates the indexes.
fn run_workers(timely_config: timely::Config, shared: Arc<Shared>) -> Result<Option<RunSummary>> {
    let (runtime, plan_only) = (shared.runtime.clone(), shared.plan_only);
    let items_uri = shared.output.items_uri.clone();
    let min_rows = shared.config.vector_index_min_rows;
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
        let report = index_columns(&runtime, &items_uri, min_rows, summary.incremental);
        summary.vector_indexes.extend(report.lines);
        summary.failures.extend(report.failures);
    }
    Ok(summary)
}

/// The tasks beyond semantic search that a job runs.
fn tasks_of(config: &IndexConfig) -> ItemTasks {
    ItemTasks {
        entities: config.entities,
        spotting: config.spotting,
    }
}

/// The embedding columns of a run's models: the text exits, then the image tower's columns.
fn embedding_columns(models: &Models) -> Result<Vec<EmbeddingColumn>> {
    let mut columns: Vec<EmbeddingColumn> = models
        .text
        .exits()
        .iter()
        .map(|&exit| EmbeddingColumn::joint(Tower::Text, exit, models.text.dim()))
        .collect();
    if let Some(images) = &models.images {
        columns.extend(images.columns()?);
    }
    Ok(columns)
}

/// The output at `uri`, its writes failing at random when `VEMO_FAULTS` asks for it.
fn open_output(uri: &str) -> Result<Output> {
    let mut location = store::resolve(uri)?;
    if let Some(faults) = Faults::from_env()? {
        tracing::warn!("VEMO_FAULTS is set: writes to the output fail at random (tests only).");
        location.store = faults.wrap(location.store.clone());
        wrap_lance_stores(Arc::new(faults));
    }
    Ok(Output {
        items_uri: OutputLayout::of(&location).items_uri(),
        errors_uri: OutputLayout::of(&location).errors_uri(),
        location,
    })
}

/// Reads the manifest and the output (rolling forward what a crashed run left, when
/// `roll_forward`), and plans the run: the shards to do, or what an incremental run's
/// workers plan the delta from.
async fn survey(
    config: &IndexConfig,
    roll_forward: bool,
    output: &Output,
    bundle_id: String,
    items_schema: &SchemaRef,
) -> Result<Survey> {
    let manifest = read_corpus(&config.input, &config.input_format).await?;
    let mut ledger = Ledger::load(&output.location).await?;
    if roll_forward {
        ledger.roll_forward(&output.location).await?;
    }
    let items = open_if_exists(&output.items_uri).await?;
    let errors = open_if_exists(&output.errors_uri).await?;
    let mut survey = Survey {
        plan: Plan::default(),
        ledger,
        delta: None,
        missing: Vec::new(),
        // New rows keep the output's column order (added columns come last in it).
        order: items
            .as_ref()
            .map(|d| d.schema().fields.iter().map(|f| f.name.clone()).collect()),
        manifest_folder: store::parent(&manifest.uri),
        // An output written before caption columns were nullable cannot hold a null there.
        text_not_null: items.as_ref().is_some_and(|d| {
            d.schema()
                .fields
                .iter()
                .any(|f| f.name.starts_with("text_emb_") && !f.nullable)
        }),
    };
    if config.incremental && (items.is_some() || errors.is_some()) {
        if let Some(items) = &items {
            survey.missing = missing_columns(items, &output.items_uri, items_schema)?;
        }
        survey.delta = Some(DeltaSource {
            entries: Arc::new(manifest.entries),
            items,
            errors,
            bundle_id,
            read_concurrency: config.read_concurrency,
            shard_size: config.shard_size,
            job_id: config.job_id.clone(),
        });
        return Ok(survey);
    }
    let datasets = (items.as_ref(), errors.as_ref());
    survey.plan = plan_fresh(config, &survey.ledger, manifest.entries, datasets, output).await?;
    Ok(survey)
}

/// The shards of `entries` not done yet: the ledger's committed shards are skipped, and when
/// the ledger does not account for every row of `(items, errors)`, every id there too.
async fn plan_fresh(
    config: &IndexConfig,
    ledger: &Ledger,
    entries: Vec<ManifestEntry>,
    (items, errors): (Option<&Dataset>, Option<&Dataset>),
    output: &Output,
) -> Result<Plan> {
    // The ids are read (a scan of both tables) only when the ledger alone cannot tell.
    let keys = shard_keys(&entries, config.shard_size);
    let rows = (rows_of(items).await?, rows_of(errors).await?);
    let done = match ledger.covers(&keys, rows.0, rows.1) {
        true => None,
        false => {
            tracing::info!("The ledger does not account for every row: skipping by id too.");
            let mut done: HashSet<String> = read_ids(&output.items_uri, COL_ID).await?;
            done.extend(read_ids(&output.errors_uri, COL_ID).await?);
            Some(done)
        }
    };
    Ok(plan_shards(
        entries,
        done.as_ref(),
        &|key| ledger.is_committed(key),
        config.shard_size,
    ))
}

/// Logs the plan of a run that is not incremental.
fn log_plan(survey: &Survey) {
    let plan = &survey.plan;
    tracing::info!(
        items = plan.items(),
        skipped = plan.skipped,
        shards = plan.pending_shards(),
        committed_shards = survey.ledger.shards.len(),
        "Planned run."
    );
}

/// The stages of one worker, ready to wire.
struct Stages {
    read: Rc<ReadStage>,
    captions: CaptionStage,
    images: ImageStage,
    spot: SpotStage,
    write: WriteStage,
}

/// One worker: its stages, its share of the shards, the dataflow that runs them, and on worker 0
/// the commits and the run's summary.
fn run_worker(worker: &mut Worker, shared: &Shared) -> Result<Option<RunSummary>> {
    let (index, peers) = (worker.index(), worker.peers());
    let stages = worker_stages(shared, shared.models.of_worker(index));
    agree_on_output(worker, shared)?;
    let columns_added = add_missing_columns(worker, shared)?;
    let (shards, delta) = my_shards(worker, shared, &stages.read.reader)?;
    if shared.plan_only {
        return Ok((index == 0).then(|| RunSummary {
            delta: Some(delta.unwrap_or_else(|| DeltaReport::of_plan(&shared.survey.plan))),
            ..Default::default()
        }));
    }
    if let (0, Some(report)) = (index, &delta) {
        let record =
            crate::job_record::for_delta(&shared.config, shared.workers_per_process, peers, report);
        if let Err(e) = shared
            .runtime
            .block_on(record.write(&shared.output.location))
        {
            tracing::warn!(error = %e, "Could not write the job record.");
        }
    }
    let (shards_total, items_total) = match &delta {
        Some(report) => (report.shards, report.counts.to_encode()),
        None => (
            shared.survey.plan.pending_shards(),
            shared.survey.plan.items(),
        ),
    };
    let committer = (index == 0).then(|| {
        let metrics = shared
            .config
            .metrics
            .clone()
            .map(|file| MetricsWriter::new(file, shared.output.location.uri.clone()));
        let progress = Progress::new(
            shards_total as u64,
            items_total,
            shared.config.progress_bar,
            metrics,
        );
        Rc::new(RefCell::new(new_committer(shared, peers, progress)))
    });
    let read = stages.read.clone();
    let (input, probe) = build_dataflow(worker, stages, committer.clone());
    feed(worker, input, &probe, shards, &read);
    let Some(committer) = committer else {
        return Ok(None);
    };
    let mut committer = committer.borrow_mut();
    let counts = RunCounts {
        shards: shards_total,
        workers: peers,
        columns_added,
    };
    let mut summary = finish(shared, &mut committer, delta, counts);
    if let Err(e) = write_summary(shared, &summary) {
        summary
            .failures
            .push(format!("writing the run summary: {e}"));
    }
    Ok(Some(summary))
}

/// The stages of a worker that runs `models`.
fn worker_stages(shared: &Shared, models: &Models) -> Stages {
    let config = &shared.config;
    let output = &shared.output;
    let reader = Arc::new(image_reader(shared, models));
    let read = ReadStage::new(
        shared.runtime.clone(),
        reader,
        config.read_concurrency,
        shared.items_schema.clone(),
    );
    let threads = ModelThreads::shared();
    Stages {
        read: Rc::new(read),
        captions: CaptionStage {
            encoder: models.text.clone(),
            batch_size: config.batch_size,
            limits: config.limits.clone(),
            entities: config.entities,
            image_tasks: models.images.is_some() || models.spotter.is_some(),
            captionless_as_errors: shared.survey.text_not_null,
            threads: threads.clone(),
        },
        images: ImageStage {
            // The image tower's columns follow the text exits.
            columns: shared.columns[models.text.exits().len()..].to_vec(),
            encoder: models.images.clone(),
            batch_size: config.image_batch_size,
            threads: threads.clone(),
        },
        spot: SpotStage {
            spotter: models.spotter.clone(),
            max_regions: config.limits.max_spotted_regions,
            entities: config.entities.then(|| models.text.clone()),
            batch_size: config.batch_size,
            threads,
        },
        write: WriteStage {
            runtime: shared.runtime.clone(),
            output: output.location.clone(),
            items_uri: output.items_uri.clone(),
            errors_uri: output.errors_uri.clone(),
            items_schema: shared.items_schema.clone(),
            columns: shared.columns.clone(),
            tasks: shared.tasks(),
            stamp: shared.stamp(),
        },
    }
}

/// The image reader of a worker: within the job's limits and read policy, cropping for the
/// image tower and keeping whole images for text spotting when the job runs them.
fn image_reader(shared: &Shared, models: &Models) -> ImageReader {
    let limits = &shared.config.limits;
    let reader = match &models.images {
        Some(images) => {
            let (resize, crop) = images.input_geometry();
            ImageReader::with_crop(resize, crop)
        }
        None => ImageReader::default(),
    }
    .within(limits.image, limits.decode_concurrency)
    .with_http_timeout(std::time::Duration::from_secs(limits.http_timeout_s))
    .with_policy(ReadPolicy {
        root: Some(shared.survey.manifest_folder.clone()),
        allowed_prefixes: limits.allowed_prefixes.clone(),
    });
    match models.spotter {
        Some(_) => reader.keeping_full(limits.spotting_max_side),
        None => reader,
    }
}

/// Every process decided alone whether the output holds rows: they must agree (a run that
/// created the output in between would have them build different dataflows).
fn agree_on_output(worker: &mut Worker, shared: &Shared) -> Result<()> {
    let incremental = shared.survey.delta.is_some();
    let modes = all_gather(worker, incremental);
    match modes.iter().all(|&m| m == incremental) {
        true => Ok(()),
        false => Err(Error::Plan(
            "the processes found the output in different states (another run wrote to it as \
             they started): rerun"
                .into(),
        )),
    }
}

/// The shards this worker feeds, and for an incremental run the delta they come from.
fn my_shards(
    worker: &mut Worker,
    shared: &Shared,
    reader: &ImageReader,
) -> Result<(Vec<Shard>, Option<DeltaReport>)> {
    let (index, peers) = (worker.index(), worker.peers());
    let Some(source) = &shared.survey.delta else {
        let plan = &shared.survey.plan;
        let mine = (0..plan.epochs(peers)).filter_map(|e| plan.shard_at(e, index, peers));
        return Ok((mine.cloned().collect(), None));
    };
    let (shards, report) = plan_delta(worker, &shared.runtime, reader, source)?;
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
        columns_to_add: shared.survey.missing.clone(),
        ..report
    };
    Ok((shards, Some(report)))
}

/// Worker 0's committer.
fn new_committer(shared: &Shared, peers: usize, progress: Progress) -> Committer {
    Committer {
        runtime: shared.runtime.clone(),
        output: shared.output.location.clone(),
        job_id: shared.config.job_id.clone(),
        ledger: shared.survey.ledger.clone(),
        peers,
        workers_per_process: shared.workers_per_process,
        items_schema: shared.items_schema.clone(),
        pending: Default::default(),
        stats: CommitStats::default(),
        progress,
        processed_shards: 0,
    }
}

/// The input of a worker's shards.
type ShardInput = InputHandle<u64, CapacityContainerBuilder<Vec<Shard>>>;

/// Builds the worker's dataflow: its input, the stages, and a probe on the commits.
fn build_dataflow(
    worker: &mut Worker,
    stages: Stages,
    committer: Option<Rc<RefCell<Committer>>>,
) -> (ShardInput, ProbeHandle<u64>) {
    let mut input = ShardInput::new();
    let probe = ProbeHandle::new();
    worker.dataflow::<u64, _, _>(|scope| {
        input
            .to_stream(scope)
            .read_images(stages.read)
            .encode_captions(stages.captions)
            .encode_images(stages.images)
            .spot_text(stages.spot)
            .write_shard(stages.write)
            .commit_epochs(committer)
            .probe_with(&probe);
    });
    (input, probe)
}

/// Feeds `shards` one epoch each, reading the next one's images while the current one runs,
/// and runs the worker until every epoch is done.
fn feed(
    worker: &mut Worker,
    mut input: ShardInput,
    probe: &ProbeHandle<u64>,
    shards: Vec<Shard>,
    read: &ReadStage,
) {
    let peers = worker.peers();
    let mut shards = shards.into_iter().peekable();
    while let Some(shard) = shards.next() {
        if let Some(next) = shards.peek() {
            read.prefetch(next);
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
}

/// What a run's summary counts besides the committer's figures.
struct RunCounts {
    shards: usize,
    workers: usize,
    columns_added: Vec<String>,
}

/// Finishes the datasets after the last epoch and sums up the run (on worker 0).
fn finish(
    shared: &Shared,
    committer: &mut Committer,
    delta: Option<DeltaReport>,
    counts: RunCounts,
) -> RunSummary {
    let (items_version, errors_version) = committer.finish().unwrap_or_else(|e| {
        committer
            .stats
            .failures
            .push(format!("finishing the datasets: {e}"));
        (0, 0)
    });
    let elapsed_s = committer.progress.elapsed();
    let stats = committer.stats.clone();
    let survey = &shared.survey;
    RunSummary {
        job_id: shared.config.job_id.clone(),
        input: shared.config.input.clone(),
        output: shared.output.location.uri.clone(),
        bundle: shared.bundle_id.clone(),
        manifest_items: match &survey.delta {
            Some(source) => source.entries.len(),
            None => survey.plan.manifest_items,
        },
        incremental: delta.is_some(),
        skipped: match &delta {
            Some(report) => report.counts.unchanged,
            None => survey.plan.skipped,
        },
        delta,
        encoded: stats.encoded,
        deleted_rows: stats.deleted,
        columns_added: counts.columns_added,
        shards: counts.shards,
        already_committed: stats.already_committed,
        workers: counts.workers,
        items_written: stats.items,
        errors_written: stats.errors,
        items_version,
        errors_version,
        elapsed_s,
        items_per_s: (stats.items + stats.errors) as f64 / elapsed_s.max(1e-9),
        vector_indexes: Vec::new(),
        failures: stats.failures,
    }
}

/// Adds the job's missing columns to the rows of `items` (worker 0 computes them; every
/// worker waits for it). Returns the columns added (on worker 0).
fn add_missing_columns(worker: &mut Worker, shared: &Shared) -> Result<Vec<String>> {
    let missing = &shared.survey.missing;
    if missing.is_empty() || shared.plan_only {
        return Ok(Vec::new());
    }
    let failure = match worker.index() {
        0 => {
            let job = ColumnJob {
                encoder: shared.models.first().text.clone(),
                columns: &shared.columns,
                tasks: shared.tasks(),
                stamp: shared.stamp(),
                batch_size: shared.config.batch_size,
                output: &shared.output.location,
            };
            let added = add_columns(&shared.output.items_uri, missing, job);
            match shared.runtime.block_on(added) {
                Ok(rows) => {
                    tracing::info!(rows, columns = ?missing, "Added columns to items.");
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
        true => Ok(missing.clone()),
        false => Err(Error::Plan(failures.join("; "))),
    }
}

/// Writes `_vemo/runs/JOB.json` under the output root.
fn write_summary(shared: &Shared, summary: &RunSummary) -> vemo_output::Result<()> {
    let written = write_run_summary(&shared.output.location, &summary.job_id, summary);
    shared.runtime.block_on(written)
}
