//! The models of a run's workers: one set per device that this process's workers run on.
//!
//! On the CPU every worker thread shares one set. With `--device cuda` each worker takes GPU
//! `worker_index % gpu_count` (its index across the cluster), so the workers of one process
//! spread over its GPUs and share a set per GPU; `cuda:N` puts them all on GPU N.

use std::sync::Arc;

use candle_core::Device;
use vemo_models::bundle::Bundle;
use vemo_models::models::image_encoder::ImageEncoder;
use vemo_models::models::text_encoder::TextEncoder;
use vemo_models::spotting::Spotter;

use crate::Result;
use crate::config::{ClusterConfig, IndexConfig};

/// The towers and heads one worker runs, all on one device.
pub struct Models {
    /// The caption encoder (with the NER branch when the entity task runs).
    pub text: Arc<TextEncoder>,
    /// The image tower, when the bundle has one.
    pub images: Option<Arc<ImageEncoder>>,
    /// The detector and recognizer, when the spotting task runs.
    pub spotter: Option<Arc<Spotter>>,
    /// The device they run on.
    pub device: Device,
}

impl Models {
    fn load(bundle: &Bundle, config: &IndexConfig, device: &Device) -> Result<Self> {
        let (exits, precision) = (&config.text_exits, config.precision);
        let text = TextEncoder::load_in(bundle, exits, config.entities, device, precision)?;
        let images = match &bundle.manifest.image {
            Some(_) => Some(Arc::new(ImageEncoder::load_in(
                bundle,
                &config.image_exits,
                device,
                precision,
            )?)),
            None => None,
        };
        let spotter = match config.spotting {
            true => Some(Arc::new(Spotter::from_bundle(bundle, device)?)),
            false => None,
        };
        Ok(Self {
            text: Arc::new(text),
            images,
            spotter,
            device: device.clone(),
        })
    }
}

/// The model sets of this process, one per local worker (workers on one device share one).
pub struct ProcessModels {
    by_worker: Vec<Arc<Models>>,
}

impl ProcessModels {
    /// Loads a set for each device this process's workers use. User errors (bundle, exits, a
    /// device this build or machine lacks) surface here, before any worker starts.
    pub fn load(bundle: &Bundle, config: &IndexConfig, cluster: &ClusterConfig) -> Result<Self> {
        let mut by_worker: Vec<Arc<Models>> = Vec::with_capacity(cluster.workers);
        for local in 0..cluster.workers.max(1) {
            let device = config
                .device
                .for_worker(cluster.process * cluster.workers + local)?;
            let loaded = by_worker.iter().find(|m| m.device.same_device(&device));
            let models = match loaded {
                Some(models) => models.clone(),
                None => {
                    tracing::info!(device = ?device, precision = %config.precision, "Loading models.");
                    Arc::new(Models::load(bundle, config, &device)?)
                }
            };
            by_worker.push(models);
        }
        Ok(Self { by_worker })
    }

    /// The set of timely worker `index` (its index across the cluster).
    pub fn of_worker(&self, index: usize) -> &Arc<Models> {
        &self.by_worker[index % self.by_worker.len()]
    }

    /// The set of this process's first worker (the one that plans, adds columns, commits).
    pub fn first(&self) -> &Arc<Models> {
        &self.by_worker[0]
    }
}
