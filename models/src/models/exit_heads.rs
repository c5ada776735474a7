//! Exit heads: small linear maps from a lower exit's features into the joint embedding space,
//! trained by distilling the last exit (see `vemo train exits`), and their safetensors file.
//!
//! A head named `text.e3` maps the pooled text features after layer 3; `image.e4` the pooled
//! output of image stage 4. Every head's output is L2-normalised.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{Linear, Module, Optimizer};
use vemo_schemas::Tower;

use super::l2_normalize;
use crate::{Error, Result};

/// Name of a head in the heads file: `text.e3`, `image.e4`.
pub fn head_name(tower: Tower, exit: usize) -> String {
    format!("{tower}.e{exit}")
}

/// The exit heads of a bundle.
#[derive(Debug, Default)]
pub struct ExitHeads {
    heads: HashMap<String, Linear>,
}

impl ExitHeads {
    /// Loads every `NAME.weight` / `NAME.bias` pair of a safetensors file, as f32 (a shipped
    /// file may hold f16).
    pub fn load(path: &Path, device: &Device) -> Result<Self> {
        let tensors = candle_core::safetensors::load(path, device)?;
        let mut heads = HashMap::new();
        for (key, weight) in &tensors {
            if let Some(name) = key.strip_suffix(".weight") {
                let bias = tensors
                    .get(&format!("{name}.bias"))
                    .map(|b| b.to_dtype(DType::F32))
                    .transpose()?;
                heads.insert(
                    name.to_string(),
                    Linear::new(weight.to_dtype(DType::F32)?, bias),
                );
            }
        }
        Ok(Self { heads })
    }

    /// These heads with their weights in `dtype` (f16 halves a file to ship; [`Self::load`]
    /// reads it back as f32).
    pub fn to_dtype(&self, dtype: DType) -> Result<Self> {
        let mut heads = HashMap::new();
        for (name, head) in &self.heads {
            let bias = head.bias().map(|b| b.to_dtype(dtype)).transpose()?;
            heads.insert(
                name.clone(),
                Linear::new(head.weight().to_dtype(dtype)?, bias),
            );
        }
        Ok(Self { heads })
    }

    /// The head of `tower` at `exit`, if trained.
    pub fn get(&self, tower: Tower, exit: usize) -> Option<&Linear> {
        self.heads.get(&head_name(tower, exit))
    }

    /// Adds or replaces a head.
    pub fn insert(&mut self, tower: Tower, exit: usize, head: Linear) {
        self.heads.insert(head_name(tower, exit), head);
    }

    /// Names of the heads, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.heads.keys().cloned().collect();
        names.sort();
        names
    }

    /// Parameters of all heads.
    pub fn parameter_count(&self) -> usize {
        self.heads
            .values()
            .map(|h| h.weight().elem_count() + h.bias().map_or(0, Tensor::elem_count))
            .sum()
    }

    /// Writes every head to a safetensors file.
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut tensors = HashMap::new();
        for (name, head) in &self.heads {
            tensors.insert(format!("{name}.weight"), head.weight().clone());
            if let Some(bias) = head.bias() {
                tensors.insert(format!("{name}.bias"), bias.clone());
            }
        }
        candle_core::safetensors::save(&tensors, path)?;
        Ok(())
    }
}

/// Applies a head and normalises: features (batch, in) -> unit rows (batch, out).
pub fn project(head: &Linear, features: &Tensor) -> Result<Tensor> {
    Ok(l2_normalize(&head.forward(features)?)?)
}

/// How a head is trained.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    /// Full-batch AdamW steps.
    pub steps: usize,
    /// Learning rate.
    pub learning_rate: f64,
    /// Decoupled weight decay.
    pub weight_decay: f64,
}

impl Default for TrainOptions {
    fn default() -> Self {
        Self {
            steps: 400,
            learning_rate: 1e-2,
            weight_decay: 1e-2,
        }
    }
}

/// Quality of a head on held-out rows: how close the student comes to the teacher.
#[derive(Debug, Clone, Copy)]
pub struct HeadQuality {
    /// Mean cosine between the head's output and the last exit's embedding.
    pub mean_cosine: f32,
    /// Share of held-out rows whose nearest teacher embedding is their own.
    pub top1_agreement: f32,
    /// Rows trained on and held out.
    pub train_rows: usize,
    pub held_out_rows: usize,
}

/// Trains a linear head mapping `inputs` (n, in) onto the unit rows `targets` (n, out) by
/// minimising 1 - cosine with AdamW. `groups[i]` is the item row i came from (augmented views
/// of one image share it): every fifth group is held out to measure the result. A square head
/// starts as the identity (the exit already lies near the joint space), others at random.
pub fn train_head(
    inputs: &Tensor,
    targets: &Tensor,
    groups: &[usize],
    options: &TrainOptions,
) -> Result<(Linear, HeadQuality)> {
    let (n, dim_in) = inputs.dims2()?;
    let dim_out = targets.dim(1)?;
    if n < 2 {
        return Err(Error::Bundle {
            path: "exit heads".into(),
            reason: format!("{n} training rows; need at least 2"),
        });
    }
    let device = inputs.device();
    let held_out = |i: u32| groups.get(i as usize).is_some_and(|g| g % 5 == 4);
    let held: Vec<u32> = (0..n as u32).filter(|&i| held_out(i)).collect();
    let train: Vec<u32> = (0..n as u32).filter(|&i| !held_out(i)).collect();
    let pick = |t: &Tensor, rows: &[u32]| -> Result<Tensor> {
        Ok(t.index_select(&Tensor::new(rows, device)?, 0)?)
    };
    let (x, y) = (pick(inputs, &train)?, pick(targets, &train)?);
    let weight = if dim_in == dim_out {
        Var::from_tensor(&Tensor::eye(dim_in, DType::F32, device)?)?
    } else {
        let bound = (1.0 / dim_in as f32).sqrt();
        Var::rand(-bound, bound, (dim_out, dim_in), device)?
    };
    let bias = Var::zeros(dim_out, DType::F32, device)?;
    let mut optimizer = candle_nn::AdamW::new(
        vec![weight.clone(), bias.clone()],
        candle_nn::ParamsAdamW {
            lr: options.learning_rate,
            weight_decay: options.weight_decay,
            ..Default::default()
        },
    )?;
    for _ in 0..options.steps {
        let head = Linear::new(weight.as_tensor().clone(), Some(bias.as_tensor().clone()));
        let cosine = (project(&head, &x)? * &y)?.sum(1)?;
        let loss = (1.0 - cosine.mean_all()?)?;
        optimizer.backward_step(&loss)?;
    }
    let head = Linear::new(weight.as_tensor().detach(), Some(bias.as_tensor().detach()));
    let rows = if held.is_empty() { &train } else { &held };
    let quality = measure(&head, &pick(inputs, rows)?, &pick(targets, rows)?)?;
    Ok((
        head,
        HeadQuality {
            train_rows: train.len(),
            held_out_rows: held.len(),
            ..quality
        },
    ))
}

/// Mean cosine and top-1 agreement of a head's output with the targets.
pub fn measure(head: &Linear, inputs: &Tensor, targets: &Tensor) -> Result<HeadQuality> {
    let student = project(head, inputs)?;
    let mean_cosine = (&student * targets)?
        .sum(1)?
        .mean_all()?
        .to_scalar::<f32>()?;
    let similarity = student.matmul(&targets.t()?)?.argmax(1)?.to_vec1::<u32>()?;
    let hits = similarity
        .iter()
        .enumerate()
        .filter(|(i, j)| *i == **j as usize)
        .count();
    Ok(HeadQuality {
        mean_cosine,
        top1_agreement: hits as f32 / similarity.len().max(1) as f32,
        train_rows: 0,
        held_out_rows: similarity.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_head_learns_a_linear_map_and_round_trips_through_safetensors() {
        let device = Device::Cpu;
        let inputs = Tensor::randn(0f32, 1., (200, 8), &device).expect("inputs");
        let map = Tensor::randn(0f32, 1., (8, 6), &device).expect("map");
        let targets = l2_normalize(&inputs.matmul(&map).expect("mul")).expect("norm");
        let groups: Vec<usize> = (0..200).collect();
        let (head, quality) =
            train_head(&inputs, &targets, &groups, &TrainOptions::default()).expect("train");
        assert!(quality.mean_cosine > 0.98, "{quality:?}");
        assert!(quality.top1_agreement > 0.9, "{quality:?}");
        assert_eq!(quality.held_out_rows, 40);

        let mut heads = ExitHeads::default();
        heads.insert(Tower::Image, 4, head);
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("heads.safetensors");
        heads.save(&path).expect("save");
        let loaded = ExitHeads::load(&path, &device).expect("load");
        assert_eq!(loaded.names(), vec!["image.e4".to_string()]);
        assert_eq!(loaded.parameter_count(), 8 * 6 + 6);
        let again = measure(
            loaded.get(Tower::Image, 4).expect("head"),
            &inputs,
            &targets,
        )
        .expect("m");
        assert!(again.mean_cosine > 0.98);
    }
}
