//! The timely dataflow of `vemo index`, and [`run_index`], which plans and runs it.
//!
//! ```text
//! input (each worker feeds its own shards, one per epoch)
//!   -> ReadImages -> EncodeCaptions -> EncodeImages -> WriteShard   (on the owning worker)
//!   -> exchange to worker 0 -> CommitEpoch            (one Lance commit per epoch)
//! ```
//!
//! After the last epoch, worker 0's process builds a vector index on each embedding column
//! when `items` is large enough.

use std::cell::RefCell;
use std::collections::HashSet;
use std::rc::Rc;
use std::sync::Arc;

use serde::Serialize;
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::{Operator, Probe};
use timely::dataflow::{InputHandle, ProbeHandle, Stream};
use tokio::runtime::Runtime;
use vemo_operators::batches::RowStamp;
use vemo_operators::bundle::Bundle;
use vemo_operators::faults::Faults;
use vemo_operators::images::ImageReader;
use vemo_operators::lance_io::{count_rows, read_ids, wrap_lance_stores};
use vemo_operators::manifest::read_manifest;
use vemo_operators::models::bert::default_device;
use vemo_operators::models::image_encoder::ImageEncoder;
use vemo_operators::models::text_encoder::TextEncoder;
use vemo_operators::spotting::Spotter;
use vemo_operators::store::{self, Location};
use vemo_schemas::{
    COL_ID, ERRORS_DATASET, EmbeddingColumn, ITEMS_DATASET, VEMO_DIR, items_schema_for,
};

use crate::commit::{CommitStats, Committer};
use crate::config::{ClusterConfig, IndexConfig};
use crate::jobs::JobRecord;
use crate::ledger::Ledger;
use crate::plan::{Plan, Shard, plan_shards, shard_keys};
use crate::process::{ShardProcessor, ShardWritten};
use crate::progress::Progress;
use crate::{Error, Result};

/// Epochs a worker may run ahead of what worker 0 has received.
const EPOCHS_IN_FLIGHT: u64 = 2;

/// What a run did, printed by `vemo index` and written to `_vemo/runs/JOB.json`.
#[derive(Debug, Clone, Serialize)]
pub struct RunSummary {
    pub job_id: String,
    pub input: String,
    pub output: String,
    pub bundle: String,
    pub manifest_items: usize,
    pub skipped: usize,
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
    encoder: Arc<TextEncoder>,
    images: Option<Arc<ImageEncoder>>,
    spotter: Option<Arc<Spotter>>,
    bundle_id: String,
    columns: Vec<EmbeddingColumn>,
    plan: Plan,
    ledger: Ledger,
    keys: Arc<Vec<String>>,
    workers_per_process: usize,
    output: Location,
    items_uri: String,
    errors_uri: String,
    started_us: i64,
}

/// Plans and runs one `vemo index` job on this process's share of the cluster. Returns the
/// summary on the process that holds worker 0, `None` on the others.
pub fn run_index(config: IndexConfig, cluster: &ClusterConfig) -> Result<Option<RunSummary>> {
    let timely_config = cluster.timely_config()?;
    let runtime = Arc::new(
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?,
    );
    // User errors (bundle, exits, manifest) surface here, before any worker starts.
    let bundle = Bundle::open(&config.bundle)?;
    let encoder = Arc::new(match config.entities {
        true => TextEncoder::load_with_ner(&bundle, &config.text_exits, &default_device())?,
        false => TextEncoder::load(&bundle, &config.text_exits, &default_device())?,
    });
    let images = match &bundle.manifest.image {
        Some(_) => Some(Arc::new(ImageEncoder::load(
            &bundle,
            &config.image_exits,
            &default_device(),
        )?)),
        None => None,
    };
    let spotter = match config.spotting {
        true => Some(Arc::new(Spotter::from_bundle(&bundle, &default_device())?)),
        false => None,
    };
    let mut columns: Vec<EmbeddingColumn> = encoder
        .exits()
        .iter()
        .map(|&exit| EmbeddingColumn::joint("text", exit, encoder.dim()))
        .collect();
    if let Some(images) = &images {
        columns.extend(images.columns()?);
    }
    let mut output = store::resolve(&config.output)?;
    if let Some(faults) = Faults::from_env()? {
        tracing::warn!("VEMO_FAULTS is set: writes to the output fail at random (tests only).");
        output.store = faults.wrap(output.store.clone());
        wrap_lance_stores(Arc::new(faults));
    }
    let items_uri = store::join(&output.uri, ITEMS_DATASET);
    let errors_uri = store::join(&output.uri, ERRORS_DATASET);
    let (plan, ledger) = runtime.block_on(async {
        let manifest = read_manifest(&config.input).await?;
        let mut ledger = Ledger::load(&output).await?;
        if cluster.process == 0 {
            roll_forward(&mut ledger, &output).await?;
        }
        // The ids are read (a scan of both tables) only when the ledger alone cannot tell.
        let keys = shard_keys(&manifest.entries, config.shard_size);
        let rows = (
            count_rows(&items_uri).await?,
            count_rows(&errors_uri).await?,
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
        Ok::<_, vemo_operators::Error>((plan, ledger))
    })?;
    tracing::info!(
        items = plan.items(),
        skipped = plan.skipped,
        shards = plan.pending_shards(),
        committed_shards = ledger.shards.len(),
        "Planned run."
    );
    if cluster.process == 0 {
        let record = JobRecord::new(&config, cluster, &plan);
        runtime.block_on(record.write(&output))?;
    }
    let shared = Arc::new(Shared {
        bundle_id: bundle.id(),
        runtime,
        encoder,
        images,
        spotter,
        columns,
        keys: Arc::new(plan.shards.iter().map(|s| s.key.clone()).collect()),
        plan,
        ledger,
        workers_per_process: cluster.workers,
        output,
        items_uri,
        errors_uri,
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
    if let Some(summary) = summary.as_mut() {
        index_columns(&index_runtime, &items_uri, min_rows, summary);
    }
    Ok(summary)
}

/// Finishes what a crashed run left between its `items` commit and the rest: `errors` rows
/// and Parquet parts of committed shards.
async fn roll_forward(ledger: &mut Ledger, output: &Location) -> vemo_operators::Result<()> {
    if let Some(version) = ledger.commit_errors().await? {
        tracing::warn!(
            version,
            "Rolled forward the errors rows of an interrupted commit."
        );
    }
    let moved = ledger.publish_parquet(output).await?;
    if moved > 0 {
        tracing::warn!(
            moved,
            "Rolled forward the Parquet parts of an interrupted commit."
        );
    }
    Ok(())
}

/// Builds the vector indexes after the last commit and records what happened in the summary.
fn index_columns(runtime: &Runtime, items_uri: &str, min_rows: usize, summary: &mut RunSummary) {
    use vemo_operators::vector_search::{IndexOutcome, build_indexes};
    match runtime.block_on(build_indexes(items_uri, min_rows)) {
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
                summary.vector_indexes.push(line);
            }
        }
        Err(e) => summary
            .failures
            .push(format!("building the vector indexes: {e}")),
    }
    let scalar = [
        (
            runtime.block_on(vemo_operators::vector_search::build_entity_index(items_uri)),
            "entity_keys: LABEL_LIST index",
            "the entity index",
        ),
        (
            runtime.block_on(vemo_operators::spotting::search::build_text_index(
                items_uri,
            )),
            "spotted_text: INVERTED (full-text) index",
            "the spotted-text index",
        ),
    ];
    // Each built only when the dataset has its column (Ok(false) otherwise).
    for (outcome, line, what) in scalar {
        match outcome {
            Ok(true) => {
                tracing::info!("Scalar index: {line}");
                summary.vector_indexes.push(line.to_string());
            }
            Ok(false) => {}
            Err(e) => summary.failures.push(format!("building {what}: {e}")),
        }
    }
}

fn run_worker(worker: &mut timely::worker::Worker, shared: &Shared) -> Result<Option<RunSummary>> {
    let (index, peers) = (worker.index(), worker.peers());
    let processor = Rc::new(ShardProcessor {
        runtime: shared.runtime.clone(),
        encoder: shared.encoder.clone(),
        images: shared.images.clone(),
        entities: shared.config.entities,
        spotter: shared.spotter.clone(),
        reader: {
            let reader = match &shared.images {
                Some(images) => {
                    let (resize, crop) = images.input_geometry();
                    ImageReader::with_crop(resize, crop)
                }
                None => ImageReader::default(),
            };
            match shared.spotter {
                Some(_) => reader.keeping_full(),
                None => reader,
            }
        },
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
    });
    let committer = (index == 0).then(|| {
        Rc::new(RefCell::new(Committer {
            runtime: shared.runtime.clone(),
            output: shared.output.clone(),
            job_id: shared.config.job_id.clone(),
            ledger: shared.ledger.clone(),
            keys: shared.keys.clone(),
            peers,
            workers_per_process: shared.workers_per_process,
            items_schema: items_schema_for(
                &shared.columns,
                vemo_schemas::ItemTasks {
                    entities: shared.config.entities,
                    spotting: shared.config.spotting,
                },
            ),
            pending: Default::default(),
            stats: CommitStats::default(),
            progress: Progress::new(
                shared.plan.pending_shards() as u64,
                shared.plan.items(),
                shared.config.progress_bar,
            ),
            processed_shards: 0,
        }))
    });

    let mut input = InputHandle::<u64, CapacityContainerBuilder<Vec<Shard>>>::new();
    let probe = ProbeHandle::new();
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

    for epoch in 0..shared.plan.epochs(peers) {
        if let Some(shard) = shared.plan.shard_at(epoch, index, peers) {
            input.send(shard.clone());
        }
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
        manifest_items: shared.plan.manifest_items,
        skipped: shared.plan.skipped,
        shards: shared.plan.pending_shards(),
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

/// Writes `_vemo/runs/JOB.json` under the output root.
fn write_summary(shared: &Shared, summary: &RunSummary) -> vemo_operators::Result<()> {
    let text = serde_json::to_vec_pretty(summary).unwrap_or_default();
    let runs = shared
        .output
        .child(&format!("{VEMO_DIR}/runs/{}.json", summary.job_id))?;
    shared.runtime.block_on(runs.write(text))
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
