//! The per-shard stages of a worker, each a named timely operator written as an extension
//! trait on a stream of shards, one module each (their order is in [`crate::dataflow`]).
//!
//! Between stages a shard is a [`ShardBatch`]: its items as Arrow rows, each stage adding its
//! columns ([`ItemRows`]). An item that fails moves from the rows to the shard's errors when
//! it fails. A failure of a stage itself (a model or a Lance write) makes the shard a
//! [`ShardFailed`], which the later stages pass on untouched and the committer leaves
//! uncommitted for the next run.

mod captions;
mod images;
mod read;
mod spot;
mod write;

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::{Array, ArrayRef, FixedSizeListArray};
use serde::{Deserialize, Serialize};
use timely::dataflow::Stream;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::Operator;
use vemo_models::models::columns::embedding_array;
use vemo_operators::rows::ItemRows;

pub use captions::{CaptionStage, EncodeCaptions};
pub use images::{EncodeImages, ImageStage};
pub use read::{ReadImages, ReadStage};
pub use spot::{SpotStage, SpotText};
pub use write::{ShardWritten, WriteShard, WriteStage, Written};

/// A shard between two stages.
#[derive(Debug, Clone)]
pub struct ShardBatch {
    pub shard: u64,
    /// The shard's ledger key, and the ids whose earlier rows its commit deletes.
    pub key: String,
    pub replaces: Vec<String>,
    /// Items that went through the text encoder.
    pub encoded: usize,
    /// The items still in the shard, and those that failed.
    pub items: ItemRows,
}

impl ShardBatch {
    /// The shard, failed by `what` (a model or a write failed: no item is to blame).
    pub fn failed(&self, what: impl std::fmt::Display) -> ShardFailed {
        ShardFailed {
            shard: self.shard,
            encoded: self.encoded,
            reason: format!("shard {}: {what}", self.shard),
        }
    }
}

/// Why a stage failed a shard: a model or a write failed, no item is to blame.
#[derive(Debug)]
struct StageError(String);

impl StageError {
    fn new(what: impl std::fmt::Display) -> Self {
        Self(what.to_string())
    }
}

impl From<vemo_operators::Error> for StageError {
    fn from(e: vemo_operators::Error) -> Self {
        Self::new(e)
    }
}

/// A shard a stage failed: nothing of it is committed, the next run does it again.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShardFailed {
    pub shard: u64,
    /// Items that went through the text encoder before it failed.
    pub encoded: usize,
    pub reason: String,
}

/// A shard after a stage: on its way, or failed.
pub type Staged = Result<ShardBatch, ShardFailed>;

/// The shards between two stages of a worker.
pub type Shards<'scope> = Stream<'scope, u64, Vec<Staged>>;

/// A named operator that turns each record of `stream` into one by `logic`, on the worker
/// that holds it (pipeline pact: nothing moves between workers).
fn map_named<'scope, A, B>(
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
                        for record in container.drain(..) {
                            session.give(logic(record));
                        }
                    }
                });
            }
        })
        .container::<Vec<B>>()
}

/// The threads the workers' model passes run on: one pool of all the cores for the process,
/// entered once per shard and stage. A pass started from a pool thread runs its operators'
/// parallel loops there directly; started from a timely worker thread, each loop (hundreds
/// per image in the ONNX graphs) had to be handed to the pool and waited for.
#[derive(Clone)]
pub struct ModelThreads(Option<Arc<rayon::ThreadPool>>);

impl ModelThreads {
    /// The process's pool (built on first use; the calling thread runs the passes itself when
    /// no pool can be built).
    pub fn shared() -> Self {
        static POOL: std::sync::OnceLock<Option<Arc<rayon::ThreadPool>>> =
            std::sync::OnceLock::new();
        let pool = POOL.get_or_init(|| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(rayon::current_num_threads())
                .thread_name(|i| format!("vemo-model-{i}"))
                .build()
                .ok()
                .map(Arc::new)
        });
        Self(pool.clone())
    }

    fn run<R: Send>(&self, pass: impl FnOnce() -> R + Send) -> R {
        match &self.0 {
            Some(pool) => pool.install(pass),
            None => pass(),
        }
    }
}

/// A named stage that runs `logic` on each shard still on its way, on the worker's model
/// `threads`: a shard it fails becomes a [`ShardFailed`]; a failed shard passes on.
fn each_shard<'scope>(
    shards: Shards<'scope>,
    name: &str,
    threads: ModelThreads,
    mut logic: impl FnMut(&mut ShardBatch) -> Result<(), StageError> + Send + 'static,
) -> Shards<'scope> {
    map_named(shards, name, move |staged: Staged| {
        let mut shard = staged?;
        match threads.run(|| logic(&mut shard)) {
            Ok(()) => Ok(shard),
            Err(StageError(what)) => Err(shard.failed(what)),
        }
    })
}

/// What a contained model pass gave for some inputs: the output of those that passed, and
/// the (input, reason) of those that did not.
type Passed<T> = (T, Vec<(usize, String)>);

/// The outputs of the inputs that passed alone (after a batch panicked), and the (input,
/// reason) of those that did not.
fn passed<R>(each: Vec<Result<R, String>>) -> Passed<Vec<R>> {
    let (mut ok, mut failed) = (Vec::new(), Vec::new());
    for (i, one) in each.into_iter().enumerate() {
        match one {
            Ok(output) => ok.push(output),
            Err(reason) => failed.push((i, reason)),
        }
    }
    (ok, failed)
}

/// Embedding columns `dims` wide, each the rows of `parts` one after another (each part the
/// columns of one input).
fn concat_rows(
    parts: &[Vec<FixedSizeListArray>],
    dims: &[usize],
) -> vemo_operators::Result<Vec<FixedSizeListArray>> {
    let mut columns = Vec::with_capacity(dims.len());
    for (c, &dim) in dims.iter().enumerate() {
        let empty = embedding_array(dim, Vec::new())?;
        let mut pieces: Vec<&dyn Array> = vec![&empty];
        for part in parts {
            pieces.push(part.get(c).ok_or_else(|| {
                arrow_schema::ArrowError::InvalidArgumentError("a column is missing".into())
            })?);
        }
        columns.push(
            arrow::compute::concat(&pieces)?
                .as_fixed_size_list()
                .clone(),
        );
    }
    Ok(columns)
}

/// `array` as a column.
fn column(array: FixedSizeListArray) -> ArrayRef {
    Arc::new(array)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// After a batch panicked, the rows of the inputs that passed alone make the columns, in
    /// input order, and the others are named with their reasons.
    #[test]
    fn the_inputs_that_passed_alone_make_the_columns() {
        let one = |v: f32| vec![embedding_array(2, vec![v, -v]).expect("column")];
        let each = vec![Ok(one(1.0)), Err("the model panicked".into()), Ok(one(3.0))];
        let (parts, failed) = passed(each);
        assert_eq!(failed, vec![(1, "the model panicked".to_string())]);
        let columns = concat_rows(&parts, &[2]).expect("columns");
        let values = columns[0]
            .values()
            .as_primitive::<arrow_array::types::Float32Type>();
        assert_eq!(values.values().to_vec(), [1.0, -1.0, 3.0, -3.0]);
        let none = concat_rows(&[], &[2, 5]).expect("no rows");
        assert_eq!(
            none.iter()
                .map(|c| (c.len(), c.value_length()))
                .collect::<Vec<_>>(),
            [(0, 2), (0, 5)],
            "empty columns of the right widths"
        );
    }
}
