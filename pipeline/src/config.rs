//! What a run needs to know: the data plane ([`IndexConfig`]) and the cluster shape
//! ([`ClusterConfig`], timely's own `-w -n -p -h` flags).

use std::path::PathBuf;

use timely::CommunicationConfig;
use vemo_models::bundle::vemo_home;
use vemo_models::device::{DeviceSpec, Precision};
use vemo_operators::limits::InputLimits;
use vemo_operators::manifest::CorpusFormat;

use crate::metrics::MetricsFile;
use crate::{Error, Result};

/// The data plane of one `vemo index` run: what to read, which models to run on it, where to
/// write, and how the work is cut. `vemo index` fills it from a job file and its flags (each
/// field's job-file key is named below); [`IndexConfig::default`] holds the job file's
/// defaults, so a program sets what it needs and takes the rest:
///
/// ```no_run
/// # use vemo_pipeline::IndexConfig;
/// let config = IndexConfig {
///     input: "s3://bucket/corpus/manifest.parquet".into(),
///     output: "s3://bucket/index".into(),
///     ..Default::default()
/// };
/// ```
#[derive(Debug, Clone)]
pub struct IndexConfig {
    /// The corpus (`[input] uri`): a manifest file (`.jsonl`, `.parquet`) or a folder holding
    /// `manifest.parquet` or `manifest.jsonl`, as a local path or a URI (`file://`,
    /// `memory://`, `s3://`, `gs://`, `az://`). Relative image paths resolve against the
    /// manifest's folder. Default empty: a run must set it.
    pub input: String,
    /// How the corpus is laid out (`[input] format`): a manifest (default) or WebDataset
    /// `.tar` shards, when `input` is a `.tar`, a folder or prefix of them, or a brace
    /// pattern (`s3://bucket/ds/{00000..00099}.tar`).
    pub input_format: CorpusFormat,
    /// Write the run's metrics to this Prometheus text file every interval and at the end
    /// (`--metrics-file`, `--metrics-interval`); process 0 writes it. Default none.
    pub metrics: Option<MetricsFile>,
    /// The output root (`[output] uri`), a local path or a URI: `items.lance`, `errors.lance`,
    /// the Parquet long tables and `_vemo/` go under it. Default empty: a run must set it.
    pub output: String,
    /// The model bundle folder (`[model] bundle`). Default `$VEMO_HOME/models/vemo-mini`.
    pub bundle: PathBuf,
    /// Text-tower exits to write, one `text_emb_e{N}` column each (`[model.exits] text`).
    /// Default empty: the bundle's default exit. An exit the bundle does not offer is an error
    /// before any worker starts.
    pub text_exits: Vec<usize>,
    /// Image-tower exits to write, one `image_emb_e{N}` column each (`[model.exits] image`),
    /// plus `image_feat_e7` when EfficientNet-Lite0's last stage runs; only the layers up to
    /// the deepest exit run. Default empty: the bundle's default exit. Ignored when the bundle
    /// has no image tower.
    pub image_exits: Vec<usize>,
    /// The `entities` task: the bundle's NER branch tags every caption (and the spotted text)
    /// into `entities`, `entity_keys` and the entities long table. Default false; the bundle
    /// must have an `[ner]` branch.
    pub entities: bool,
    /// The `spotting` task: the bundle's detector and recognizer read the words in every image
    /// into `spotted` and `spotted_text`. Default false; the bundle must have `[spotting]`, and
    /// the detector is the costliest model of a run (see `limits.spotting_max_side`).
    pub spotting: bool,
    /// Build a cosine IVF_PQ index on each embedding column once `items` has at least this
    /// many rows (`[run] vector_index_min_rows`; at least 256 in effect, PQ's centroid count);
    /// below it search is exact. Default 10,000; `usize::MAX` never builds one.
    pub vector_index_min_rows: usize,
    /// Captions per text-encoder batch (`[run] batch_size`). Default 32; larger batches use
    /// more memory and are rarely faster on a CPU.
    pub batch_size: usize,
    /// Images per image-tower batch (`[run] image_batch_size`). Default 4: small batches stay
    /// in cache and were fastest on a CPU; raise it on a GPU.
    pub image_batch_size: usize,
    /// Items per shard (`[run] shard_size`): the unit one worker owns and one commit may
    /// include. Default 256; smaller shards balance better and commit sooner, larger ones
    /// write fewer files.
    pub shard_size: usize,
    /// Concurrent image reads per worker (`[run] read_concurrency`). Default 16; raise it for
    /// object stores, whose latency it hides.
    pub read_concurrency: usize,
    /// What one item may cost (image bytes, pixels and aspect, caption bytes, spotted
    /// regions), how many images a worker decodes at once, and where images may be read from
    /// (`[run]` limit keys, `[input] allowed_prefixes`). An item past a limit is an `errors`
    /// row naming the key. Default [`InputLimits::default`].
    pub limits: InputLimits,
    /// Id stamped on every row of this run and naming its summary (`--job-id`); all processes
    /// of a cluster must share it. Default `run-YYYYmmddTHHMMSSZ`, the UTC time the config was
    /// made, as `vemo index` stamps a run without `--job-id`.
    pub job_id: String,
    /// When the output holds rows already, bring it to this corpus: encode added, changed and
    /// failed items and delete removed ones (`vemo index`; `--no-incremental` turns it off).
    /// When false, only add the ids the output lacks. Default true.
    pub incremental: bool,
    /// Where the models run (`[run] device`, `--device`): the CPU, a named GPU, or `cuda`,
    /// each worker on GPU `worker_index % gpu_count`. Default [`DeviceSpec::Cpu`].
    pub device: DeviceSpec,
    /// The towers' precision (`[run] precision`, `--precision`). Default
    /// [`Precision::Auto`]: bf16 towers on CUDA, f32 on the CPU.
    pub precision: Precision,
    /// Draw a progress bar on stderr; else progress goes to the log. Default false (`vemo
    /// index` draws one on a terminal).
    pub progress_bar: bool,
}

impl IndexConfig {
    /// Default [`Self::vector_index_min_rows`].
    pub const DEFAULT_VECTOR_INDEX_MIN_ROWS: usize = 10_000;
    /// Default [`Self::batch_size`].
    pub const DEFAULT_BATCH_SIZE: usize = 32;
    /// Default [`Self::image_batch_size`].
    pub const DEFAULT_IMAGE_BATCH_SIZE: usize = 4;
    /// Default [`Self::shard_size`].
    pub const DEFAULT_SHARD_SIZE: usize = 256;
    /// Default [`Self::read_concurrency`].
    pub const DEFAULT_READ_CONCURRENCY: usize = 16;
    /// Name of the default bundle under `$VEMO_HOME/models`.
    pub const DEFAULT_BUNDLE: &str = "vemo-mini";

    /// A job id from the current UTC time, `run-YYYYmmddTHHMMSSZ`: the default
    /// [`Self::job_id`].
    pub fn timestamp_job_id() -> String {
        chrono::Utc::now().format("run-%Y%m%dT%H%M%SZ").to_string()
    }
}

impl Default for IndexConfig {
    fn default() -> Self {
        Self {
            input: String::new(),
            input_format: CorpusFormat::Manifest,
            metrics: None,
            output: String::new(),
            bundle: vemo_home().join("models").join(Self::DEFAULT_BUNDLE),
            text_exits: Vec::new(),
            image_exits: Vec::new(),
            entities: false,
            spotting: false,
            vector_index_min_rows: Self::DEFAULT_VECTOR_INDEX_MIN_ROWS,
            batch_size: Self::DEFAULT_BATCH_SIZE,
            image_batch_size: Self::DEFAULT_IMAGE_BATCH_SIZE,
            shard_size: Self::DEFAULT_SHARD_SIZE,
            read_concurrency: Self::DEFAULT_READ_CONCURRENCY,
            limits: InputLimits::default(),
            job_id: Self::timestamp_job_id(),
            incremental: true,
            device: DeviceSpec::default(),
            precision: Precision::default(),
            progress_bar: false,
        }
    }
}

/// Timely's cluster shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// Worker threads per process (`-w`).
    pub workers: usize,
    /// Number of processes (`-n`).
    pub processes: usize,
    /// This process's index (`-p`).
    pub process: usize,
    /// File with one `host:port` per process (`-h`); default `localhost:2101+i`.
    pub hostfile: Option<PathBuf>,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            workers: 1,
            processes: 1,
            process: 0,
            hostfile: None,
        }
    }
}

impl ClusterConfig {
    /// The timely configuration for this shape.
    pub fn timely_config(&self) -> Result<timely::Config> {
        if self.workers == 0 || self.processes == 0 {
            return Err(Error::Cluster("-w and -n must be at least 1".into()));
        }
        if self.process >= self.processes {
            return Err(Error::Cluster(format!(
                "-p {} must be less than -n {}",
                self.process, self.processes
            )));
        }
        let communication = if self.processes == 1 {
            CommunicationConfig::Process(self.workers)
        } else {
            CommunicationConfig::Cluster {
                threads: self.workers,
                process: self.process,
                addresses: self.addresses()?,
                report: false,
                zerocopy: false,
            }
        };
        Ok(timely::Config {
            communication,
            worker: timely::WorkerConfig::default(),
        })
    }

    fn addresses(&self) -> Result<Vec<String>> {
        let Some(path) = &self.hostfile else {
            return Ok((0..self.processes)
                .map(|i| format!("localhost:{}", 2101 + i))
                .collect());
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Cluster(format!("hostfile {}: {e}", path.display())))?;
        let hosts: Vec<String> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(str::to_string)
            .collect();
        if hosts.len() < self.processes {
            return Err(Error::Cluster(format!(
                "hostfile {} lists {} hosts but -n is {}",
                path.display(),
                hosts.len(),
                self.processes
            )));
        }
        Ok(hosts.into_iter().take(self.processes).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_config_is_the_job_files() {
        let config = IndexConfig::default();
        assert!(config.bundle.ends_with("models/vemo-mini"), "{config:?}");
        assert_eq!(config.batch_size, 32);
        assert_eq!(config.shard_size, 256);
        assert_eq!(config.limits, InputLimits::default());
        assert_eq!(
            (config.device, config.precision),
            (DeviceSpec::Cpu, Precision::Auto)
        );
        assert!(config.incremental && !config.entities && !config.spotting);
        assert!(config.job_id.starts_with("run-") && config.job_id.ends_with('Z'));
    }

    #[test]
    fn cluster_flags_are_checked() {
        let bad = ClusterConfig {
            processes: 2,
            process: 2,
            ..Default::default()
        };
        assert!(bad.timely_config().is_err());
        let dir = tempfile::tempdir().expect("tempdir");
        let hostfile = dir.path().join("hosts");
        std::fs::write(&hostfile, "127.0.0.1:4000\n").expect("write");
        let short = ClusterConfig {
            processes: 2,
            hostfile: Some(hostfile),
            ..Default::default()
        };
        let err = short
            .timely_config()
            .expect_err("one host for two processes");
        assert!(
            err.to_string().contains("lists 1 hosts but -n is 2"),
            "{err}"
        );
    }
}
