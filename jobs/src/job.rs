//! Job files: the TOML that describes a job's data plane, parsed strictly.

use std::path::Path;
use vemo_models::device::{DeviceSpec, Precision};
use vemo_models::pixels::ImageLimits;
use vemo_operators::limits::InputLimits;
use vemo_operators::manifest::CorpusFormat;
use vemo_operators::webdataset::WebDatasetOptions;
use vemo_pipeline::IndexConfig;
use vemo_schemas::Task;

use serde::Deserialize;

use crate::usage;

/// A job file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobConfig {
    /// Where the corpus is.
    pub input: InputConfig,
    /// Where the output goes.
    pub output: OutputConfig,
    /// Which bundle, tasks and exits.
    pub model: ModelConfig,
    /// Batch and shard sizes.
    #[serde(default)]
    pub run: RunConfig,
}

/// `[input]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputConfig {
    /// Manifest file (.jsonl/.parquet) or a folder holding manifest.parquet or manifest.jsonl;
    /// a local path or URI. `${VEMO_HOME}` is expanded.
    pub uri: String,
    /// Corpus format: `manifest` (default) or `webdataset` (`uri` is a `.tar`, a folder or
    /// prefix of `.tar` shards, or a brace pattern such as `s3://b/ds/{00000..00099}.tar`).
    #[serde(default = "default_format")]
    pub format: String,
    /// WebDataset only: take each sample's caption from this field of its `.json` instead of
    /// its `.txt` member.
    #[serde(default)]
    pub caption_field: Option<String>,
    /// When not empty, every image URI must start with one of these prefixes (for example
    /// `["s3://bucket/images/", "file:///data/"]`); another is an `errors` row (stage `read`).
    /// Relative image paths may never leave the manifest's folder, whatever this says.
    #[serde(default)]
    pub allowed_prefixes: Vec<String>,
}

impl InputConfig {
    /// The corpus format the pipeline reads.
    pub fn corpus_format(&self) -> CorpusFormat {
        match self.format.as_str() {
            "webdataset" => CorpusFormat::WebDataset(WebDatasetOptions {
                caption_field: self.caption_field.clone(),
            }),
            _ => CorpusFormat::Manifest,
        }
    }
}

/// `[output]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputConfig {
    /// Output root; a local path (relative to the working directory) or a URI.
    pub uri: String,
}

/// `[model]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// Bundle name under $VEMO_HOME/models, or a folder (default `vemo-mini`).
    #[serde(default = "default_bundle")]
    pub bundle: String,
    /// Tasks: `semantic` (caption and image embeddings), `entities` (named entities of each
    /// caption, from the bundle's NER branch), `spotting` (words written in each image, from
    /// the bundle's detector and recognizer). Default `["semantic"]`.
    #[serde(default = "default_tasks")]
    pub tasks: Vec<Task>,
    /// Exits per tower; default the bundle's default exit.
    #[serde(default)]
    pub exits: ExitsConfig,
}

/// `[model.exits]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExitsConfig {
    /// Text-tower exits (layer counts); one `text_emb_e{N}` column each.
    #[serde(default)]
    pub text: Vec<usize>,
    /// Image-tower exits (stages); one `image_emb_e{N}` column each, plus `image_feat_e7`
    /// when the last stage runs. Only the stages up to the deepest exit run.
    #[serde(default)]
    pub image: Vec<usize>,
}

/// `[run]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// Captions per encoder batch (default 32). Larger uses more memory, rarely faster on CPU.
    #[serde(default = "default_batch")]
    pub batch_size: usize,
    /// Images per image-tower batch (default 4). On CPU small batches are fastest (they stay
    /// in cache); on a GPU raise it.
    #[serde(default = "default_image_batch")]
    pub image_batch_size: usize,
    /// Items per shard (default 256): the unit one worker owns and one commit may include.
    /// Smaller shards balance better and commit sooner; larger ones make fewer files.
    #[serde(default = "default_shard")]
    pub shard_size: usize,
    /// Concurrent image reads per worker (default 16); raise it for object stores.
    #[serde(default = "default_concurrency")]
    pub read_concurrency: usize,
    /// Build an IVF_PQ vector index on each embedding column once `items` has this many rows
    /// (default 10000; at least 256); below it, search is exact.
    #[serde(default = "default_index_rows")]
    pub vector_index_min_rows: usize,
    /// Where the models run: `cpu` (default), `cuda` (each worker on GPU `worker % gpus`) or
    /// `cuda:N`. CUDA needs a vemo built with `--features cuda`.
    #[serde(default)]
    pub device: DeviceSpec,
    /// `auto` (default: bf16 towers on CUDA, f32 on CPU), `f32` or `bf16`.
    #[serde(default)]
    pub precision: Precision,
    /// Largest image object in bytes (default 64 MiB); a larger one is refused from its size.
    #[serde(default = "default_max_image_bytes")]
    pub max_image_bytes: u64,
    /// Largest decoded image, width x height (default 67,108,864 = 8192 x 8192).
    #[serde(default = "default_max_image_pixels")]
    pub max_image_pixels: u64,
    /// Largest ratio of an image's long side to its short side (default 32).
    #[serde(default = "default_max_image_aspect")]
    pub max_image_aspect: u32,
    /// Index what can be read of a truncated or corrupt JPEG, grey where data is missing
    /// (default false: such a file is an `errors` row).
    #[serde(default)]
    pub accept_partial_images: bool,
    /// Longest caption in bytes (default 65,536).
    #[serde(default = "default_max_caption_bytes")]
    pub max_caption_bytes: usize,
    /// Images decoded at once per worker (default: the number of cores). Each may hold
    /// `max_image_pixels` x 4 to 8 bytes while it decodes.
    #[serde(default)]
    pub decode_concurrency: Option<usize>,
    /// Long side of the image kept for text spotting (default 1280; the detector takes ~1000
    /// bytes per pixel of it: 1.6 GB at 1280 x 1280, 6.5 GB at easyocr's 2560).
    #[serde(default = "default_spotting_max_side")]
    pub spotting_max_side: u32,
    /// Text regions one image may have before it is an `errors` row (default 1000).
    #[serde(default = "default_max_spotted_regions")]
    pub max_spotted_regions: usize,
    /// Seconds one HTTP request for an `http(s)://` image may take (default 30).
    #[serde(default = "default_http_timeout_s")]
    pub http_timeout_s: u64,
}

impl Default for RunConfig {
    fn default() -> Self {
        Self {
            batch_size: default_batch(),
            image_batch_size: default_image_batch(),
            shard_size: default_shard(),
            read_concurrency: default_concurrency(),
            vector_index_min_rows: default_index_rows(),
            device: DeviceSpec::default(),
            precision: Precision::default(),
            max_image_bytes: default_max_image_bytes(),
            max_image_pixels: default_max_image_pixels(),
            max_image_aspect: default_max_image_aspect(),
            accept_partial_images: false,
            max_caption_bytes: default_max_caption_bytes(),
            decode_concurrency: None,
            spotting_max_side: default_spotting_max_side(),
            max_spotted_regions: default_max_spotted_regions(),
            http_timeout_s: default_http_timeout_s(),
        }
    }
}

fn default_max_image_bytes() -> u64 {
    ImageLimits::DEFAULT_MAX_BYTES
}
fn default_max_image_pixels() -> u64 {
    ImageLimits::DEFAULT_MAX_PIXELS
}
fn default_max_image_aspect() -> u32 {
    ImageLimits::DEFAULT_MAX_ASPECT
}
fn default_max_caption_bytes() -> usize {
    InputLimits::DEFAULT_MAX_CAPTION_BYTES
}
fn default_spotting_max_side() -> u32 {
    InputLimits::DEFAULT_SPOTTING_MAX_SIDE
}
fn default_max_spotted_regions() -> usize {
    InputLimits::DEFAULT_MAX_SPOTTED_REGIONS
}
fn default_http_timeout_s() -> u64 {
    InputLimits::DEFAULT_HTTP_TIMEOUT_S
}

fn default_format() -> String {
    "manifest".into()
}
fn default_bundle() -> String {
    IndexConfig::DEFAULT_BUNDLE.into()
}
fn default_tasks() -> Vec<Task> {
    vec![Task::Semantic]
}
fn default_batch() -> usize {
    IndexConfig::DEFAULT_BATCH_SIZE
}
fn default_image_batch() -> usize {
    IndexConfig::DEFAULT_IMAGE_BATCH_SIZE
}
fn default_shard() -> usize {
    IndexConfig::DEFAULT_SHARD_SIZE
}
fn default_concurrency() -> usize {
    IndexConfig::DEFAULT_READ_CONCURRENCY
}
fn default_index_rows() -> usize {
    IndexConfig::DEFAULT_VECTOR_INDEX_MIN_ROWS
}

impl JobConfig {
    /// Reads and checks a job file; every problem is a usage error naming the fix.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| usage(format!("cannot read job file {}: {e}", path.display())))?;
        let job: JobConfig = toml::from_str(&text)
            .map_err(|e| usage(format!("job file {}: {e}", path.display())))?;
        job.check()
            .map_err(|e| usage(format!("job file {}: {e}", path.display())))?;
        Ok(job)
    }

    fn check(&self) -> Result<(), String> {
        if !["manifest", "webdataset"].contains(&self.input.format.as_str()) {
            return Err(format!(
                "[input] format = \"{}\" is not supported; use \"manifest\" or \"webdataset\"",
                self.input.format
            ));
        }
        if self.input.caption_field.is_some() && self.input.format != "webdataset" {
            return Err(
                "[input] caption_field applies to format = \"webdataset\" only; a manifest's \
                 caption is its `caption` column"
                    .into(),
            );
        }
        if self.model.tasks.is_empty() {
            return Err(format!(
                "[model] tasks is empty; name at least one of {:?}",
                Task::ALL.map(Task::name)
            ));
        }
        for (name, value) in [
            ("batch_size", self.run.batch_size),
            ("image_batch_size", self.run.image_batch_size),
            ("shard_size", self.run.shard_size),
            ("read_concurrency", self.run.read_concurrency),
            ("max_image_bytes", self.run.max_image_bytes as usize),
            ("max_image_pixels", self.run.max_image_pixels as usize),
            ("max_image_aspect", self.run.max_image_aspect as usize),
            (
                "decode_concurrency",
                self.run.decode_concurrency.unwrap_or(1),
            ),
            ("spotting_max_side", self.run.spotting_max_side as usize),
            ("max_caption_bytes", self.run.max_caption_bytes),
            ("max_spotted_regions", self.run.max_spotted_regions),
            ("http_timeout_s", self.run.http_timeout_s as usize),
        ] {
            if value == 0 {
                return Err(format!("[run] {name} must be at least 1"));
            }
        }
        if let Some(prefix) = self
            .input
            .allowed_prefixes
            .iter()
            .find(|p| !p.contains("://"))
        {
            return Err(format!(
                "[input] allowed_prefixes: `{prefix}` is not a URI; write a full one such as \
                 \"file:///data/images/\" or \"s3://bucket/images/\""
            ));
        }
        Ok(())
    }

    /// The limits this job puts on each item.
    pub fn limits(&self) -> InputLimits {
        let run = &self.run;
        InputLimits {
            image: ImageLimits {
                max_bytes: run.max_image_bytes,
                max_pixels: run.max_image_pixels,
                max_aspect: run.max_image_aspect,
                accept_partial: run.accept_partial_images,
            },
            max_caption_bytes: run.max_caption_bytes,
            decode_concurrency: run
                .decode_concurrency
                .unwrap_or_else(vemo_operators::images::default_decode_concurrency),
            spotting_max_side: run.spotting_max_side,
            max_spotted_regions: run.max_spotted_regions,
            allowed_prefixes: self.input.allowed_prefixes.clone(),
            http_timeout_s: run.http_timeout_s,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> anyhow::Result<JobConfig> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("job.toml");
        std::fs::write(&path, text)?;
        JobConfig::load(&path)
    }

    #[test]
    fn the_sample_job_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/sample.toml");
        let job = JobConfig::load(&path).expect("sample job");
        assert_eq!(job.model.exits.text, vec![3, 6]);
        assert_eq!(job.model.exits.image, vec![4, 7]);
    }

    #[test]
    fn unknown_keys_and_tasks_are_usage_errors() {
        let base = "[input]\nuri = \"x\"\n[output]\nuri = \"y\"\n";
        let err = parse(&format!("{base}[model]\nbundel = \"b\"\n")).expect_err("typo");
        assert!(err.is::<crate::UsageError>());
        assert!(format!("{err}").contains("unknown field `bundel`"), "{err}");
        let err = parse(&format!("{base}[model]\ntasks = [\"ocr\"]\n")).expect_err("task");
        assert!(err.is::<crate::UsageError>());
        assert!(
            format!("{err}").contains("task `ocr` is not available"),
            "{err}"
        );
        let err = parse(&format!("{base}[model]\ntasks = []\n")).expect_err("no task");
        assert!(format!("{err}").contains("tasks is empty"), "{err}");
        let job = parse(&format!("{base}[model]\n")).expect("default tasks");
        assert_eq!(job.model.tasks, [Task::Semantic]);
        let job = parse(&format!(
            "{base}[model]\ntasks = [\"semantic\", \"entities\", \"spotting\"]\n"
        ));
        assert_eq!(job.expect("every task").model.tasks, Task::ALL);
    }

    #[test]
    fn device_and_precision_are_checked() {
        let base = "[input]\nuri = \"x\"\n[output]\nuri = \"y\"\n[model]\n[run]\n";
        let job = parse(&format!(
            "{base}device = \"cuda:1\"\nprecision = \"bf16\"\n"
        ));
        let job = job.expect("valid");
        assert_eq!(job.run.device, DeviceSpec::Cuda(Some(1)));
        assert_eq!(job.run.precision, Precision::Bf16);
        let job = parse(base).expect("defaults");
        assert_eq!(job.run.device, DeviceSpec::Cpu);
        assert_eq!(job.run.precision, Precision::Auto);
        let err = parse(&format!("{base}device = \"gpu0\"\n")).expect_err("device");
        assert!(err.is::<crate::UsageError>());
        assert!(
            format!("{err}").contains("expected cpu, cuda or cuda:N"),
            "{err}"
        );
        let err = parse(&format!("{base}precision = \"fp8\"\n")).expect_err("precision");
        assert!(
            format!("{err}").contains("expected auto, f32 or bf16"),
            "{err}"
        );
    }
}
