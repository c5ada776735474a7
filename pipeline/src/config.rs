//! What a run needs to know: the data plane ([`IndexConfig`]) and the cluster shape
//! ([`ClusterConfig`], timely's own `-w -n -p -h` flags).

use std::path::PathBuf;

use timely::CommunicationConfig;
use vemo_models::device::{DeviceSpec, Precision};
use vemo_operators::limits::InputLimits;

use crate::{Error, Result};

/// The data plane of one `vemo index` run.
#[derive(Debug, Clone)]
pub struct IndexConfig {
    /// Manifest file or folder URI.
    pub input: String,
    /// Output root URI.
    pub output: String,
    /// Model bundle folder.
    pub bundle: PathBuf,
    /// Text-tower exits to write (empty: the bundle's default).
    pub text_exits: Vec<usize>,
    /// Image-tower exits to write (empty: the bundle's default); ignored when the bundle has
    /// no image tower.
    pub image_exits: Vec<usize>,
    /// Run the entity task: the bundle's NER branch tags every caption.
    pub entities: bool,
    /// Run the spotting task: the bundle's detector and recognizer read the words in every
    /// image.
    pub spotting: bool,
    /// Build a vector index on each embedding column once `items` has at least this many rows.
    pub vector_index_min_rows: usize,
    /// Captions per encoder batch.
    pub batch_size: usize,
    /// Images per image-tower batch (small batches stay in cache: 4 was fastest on CPU).
    pub image_batch_size: usize,
    /// Items per shard (the unit of work one worker owns).
    pub shard_size: usize,
    /// Concurrent image reads per worker.
    pub read_concurrency: usize,
    /// What one item may cost, and where images may be read from.
    pub limits: InputLimits,
    /// Id stamped on every row of this run; all processes of a cluster must share it.
    pub job_id: String,
    /// When the output holds rows already: bring it to this corpus (encode added, changed and
    /// failed items, delete removed ones). Otherwise only add the ids it lacks.
    pub incremental: bool,
    /// Where the models run (`cuda`: each worker on GPU `worker_index % gpu_count`).
    pub device: DeviceSpec,
    /// The towers' precision (`auto`: bf16 on CUDA, f32 on CPU).
    pub precision: Precision,
    /// Draw a progress bar (else log lines).
    pub progress_bar: bool,
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
