//! Job files: the TOML that describes a job's data plane, parsed strictly.

use std::path::Path;
use vemo_models::device::{DeviceSpec, Precision};

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
    /// Corpus format: `manifest` (default). WebDataset shards are planned.
    #[serde(default = "default_format")]
    pub format: String,
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
    pub tasks: Vec<String>,
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
    #[serde(default = "default_device")]
    pub device: String,
    /// `auto` (default: bf16 towers on CUDA, f32 on CPU), `f32` or `bf16`.
    #[serde(default = "default_precision")]
    pub precision: String,
}

impl Default for RunConfig {
    fn default() -> Self {
        Self {
            batch_size: default_batch(),
            image_batch_size: default_image_batch(),
            shard_size: default_shard(),
            read_concurrency: default_concurrency(),
            vector_index_min_rows: default_index_rows(),
            device: default_device(),
            precision: default_precision(),
        }
    }
}

fn default_format() -> String {
    "manifest".into()
}
fn default_bundle() -> String {
    "vemo-mini".into()
}
fn default_tasks() -> Vec<String> {
    vec!["semantic".into()]
}
fn default_batch() -> usize {
    32
}
fn default_image_batch() -> usize {
    4
}
fn default_shard() -> usize {
    256
}
fn default_concurrency() -> usize {
    16
}
fn default_index_rows() -> usize {
    10_000
}
fn default_device() -> String {
    "cpu".into()
}
fn default_precision() -> String {
    "auto".into()
}

/// Tasks this build can run.
const TASKS: &[&str] = &["semantic", "entities", "spotting"];

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
        if self.input.format != "manifest" {
            return Err(format!(
                "[input] format = \"{}\" is not supported; use \"manifest\"",
                self.input.format
            ));
        }
        if let Some(task) = self
            .model
            .tasks
            .iter()
            .find(|t| !TASKS.contains(&t.as_str()))
        {
            return Err(format!(
                "[model] task `{task}` is not available; tasks are {TASKS:?}"
            ));
        }
        if self.model.tasks.is_empty() {
            return Err(format!(
                "[model] tasks is empty; name at least one of {TASKS:?}"
            ));
        }
        for (name, value) in [
            ("batch_size", self.run.batch_size),
            ("image_batch_size", self.run.image_batch_size),
            ("shard_size", self.run.shard_size),
            ("read_concurrency", self.run.read_concurrency),
        ] {
            if value == 0 {
                return Err(format!("[run] {name} must be at least 1"));
            }
        }
        if let Err(e) = self.run.device.parse::<DeviceSpec>() {
            return Err(format!("[run] {e}"));
        }
        if let Err(e) = self.run.precision.parse::<Precision>() {
            return Err(format!("[run] {e}"));
        }
        Ok(())
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
        assert!(
            format!("{err}").contains("task `ocr` is not available"),
            "{err}"
        );
        assert!(parse(&format!("{base}[model]\n")).is_ok());
    }

    #[test]
    fn device_and_precision_are_checked() {
        let base = "[input]\nuri = \"x\"\n[output]\nuri = \"y\"\n[model]\n[run]\n";
        let job = parse(&format!(
            "{base}device = \"cuda:1\"\nprecision = \"bf16\"\n"
        ));
        assert_eq!(job.expect("valid").run.device, "cuda:1");
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
