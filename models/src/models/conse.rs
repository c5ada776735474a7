//! ConSE: image embeddings in the caption space from an ImageNet classifier (Norouzi et al.,
//! "Zero-Shot Learning by Convex Combination of Semantic Embeddings", ICLR 2014).
//!
//! At bundle assembly every ImageNet class is embedded with the text tower: each of its names
//! in six prompt templates, averaged per name, then per class; the mean over all classes is
//! subtracted (centring) and each class renormalised. At index time an image's embedding is the
//! L2-normalised sum of its top-T class embeddings weighted by the classifier's probabilities
//! at softmax temperature tau. A sweep on coco-mini-train (README, evaluation) chose T = all
//! classes and tau = 2: without centring, the shared "mean class" direction swamps every image.

use candle_core::{D, Device, Tensor};

use super::l2_normalize;
use super::text_encoder::TextEncoder;
use crate::{Error, Result};

/// Prompt templates a class name is embedded with; a name's embedding is their normalised mean.
pub const PROMPTS: &[&str] = &[
    "a photo of a {}.",
    "a picture of a {}.",
    "an image of a {}.",
    "a close-up photo of a {}.",
    "a photo of the {}.",
    "{}",
];

/// Name of the class-embedding tensor in the bundle's ConSE file.
pub const CLASSES_TENSOR: &str = "class_embeddings";

/// Parses timm's `imagenet_synsets.txt` (one WordNet id a line, in class-index order) and
/// `imagenet_synset_to_lemma.txt` (`wnid<TAB>name, synonym, ...`) into each class's names.
pub fn imagenet_class_names(synsets: &str, lemmas: &str) -> Result<Vec<Vec<String>>> {
    let by_id: std::collections::HashMap<&str, &str> = lemmas
        .lines()
        .filter_map(|line| line.split_once('\t'))
        .collect();
    synsets
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|wnid| {
            let names = by_id.get(wnid).ok_or_else(|| Error::Bundle {
                path: "imagenet_synset_to_lemma.txt".into(),
                reason: format!("no names for class {wnid}"),
            })?;
            Ok(names
                .split(',')
                .map(|n| n.trim().to_string())
                .filter(|n| !n.is_empty())
                .collect())
        })
        .collect()
}

/// Embeds each class with the text tower (see the module header). Returns (classes, dim) unit
/// rows, centred.
pub fn embed_classes(encoder: &TextEncoder, classes: &[Vec<String>]) -> Result<Vec<Vec<f32>>> {
    let mut names: Vec<(usize, &str)> = Vec::new();
    for (c, class_names) in classes.iter().enumerate() {
        let mut seen = std::collections::HashSet::new();
        names.extend(
            class_names
                .iter()
                .filter(|n| seen.insert(n.as_str()))
                .map(|n| (c, n.as_str())),
        );
    }
    let texts: Vec<String> = names
        .iter()
        .flat_map(|(_, name)| PROMPTS.iter().map(move |p| p.replace("{}", name)))
        .collect();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let per_exit = encoder.encode_all(&refs, 64)?;
    let prompts = per_exit.last().ok_or_else(|| Error::Bundle {
        path: "text tower".into(),
        reason: "the text encoder has no exit".into(),
    })?;
    let dim = encoder.dim();
    let mut sums = vec![vec![0f32; dim]; classes.len()];
    for ((class, _), per_name) in names.iter().zip(prompts.chunks(PROMPTS.len())) {
        let name = unit(&mean(per_name.iter(), dim));
        add(&mut sums[*class], &name);
    }
    let class_rows: Vec<Vec<f32>> = sums.iter().map(|s| unit(s)).collect();
    let centre = mean(class_rows.iter(), dim);
    Ok(class_rows
        .iter()
        .map(|row| {
            unit(
                &row.iter()
                    .zip(&centre)
                    .map(|(v, m)| v - m)
                    .collect::<Vec<_>>(),
            )
        })
        .collect())
}

fn add(sum: &mut [f32], row: &[f32]) {
    sum.iter_mut().zip(row).for_each(|(s, v)| *s += v);
}

fn mean<'a>(rows: impl Iterator<Item = &'a Vec<f32>>, dim: usize) -> Vec<f32> {
    let mut sum = vec![0f32; dim];
    let mut n = 0usize;
    for row in rows {
        add(&mut sum, row);
        n += 1;
    }
    sum.iter().map(|v| v / n.max(1) as f32).collect()
}

fn unit(row: &[f32]) -> Vec<f32> {
    let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
    row.iter().map(|v| v / norm).collect()
}

/// The ConSE combiner: class embeddings and T.
#[derive(Debug)]
pub struct Conse {
    classes: Tensor,
    top_k: usize,
    temperature: f64,
}

impl Conse {
    /// `classes`: (num_classes, dim) unit rows; `top_k`: how many classes each image mixes;
    /// `temperature`: the logits are divided by it before the softmax.
    pub fn new(classes: Tensor, top_k: usize, temperature: f64) -> Self {
        Self {
            classes,
            top_k: top_k.max(1),
            temperature: if temperature > 0.0 { temperature } else { 1.0 },
        }
    }

    /// Loads the class embeddings from a safetensors file written by `vemo models pull`.
    pub fn load(
        path: &std::path::Path,
        top_k: usize,
        temperature: f64,
        device: &Device,
    ) -> Result<Self> {
        let mut tensors = candle_core::safetensors::load(path, device)?;
        let classes = tensors
            .remove(CLASSES_TENSOR)
            .ok_or_else(|| Error::Bundle {
                path: path.display().to_string(),
                reason: format!("no tensor `{CLASSES_TENSOR}`"),
            })?;
        Ok(Self::new(classes, top_k, temperature))
    }

    /// Embedding width.
    pub fn dim(&self) -> Result<usize> {
        Ok(self.classes.dim(1)?)
    }

    /// `logits`: (batch, num_classes). Returns (batch, dim) L2-normalised embeddings: the
    /// probability-weighted sum of each image's top-T class embeddings.
    pub fn embed(&self, logits: &Tensor) -> Result<Tensor> {
        let num_classes = self.classes.dim(0)?;
        let probs = candle_nn::ops::softmax(&(logits / self.temperature)?, D::Minus1)?;
        if self.top_k >= num_classes {
            return Ok(l2_normalize(&probs.matmul(&self.classes)?)?);
        }
        let probs = probs.to_vec2::<f32>()?;
        // A sparse weight matrix (batch, classes) with T non-zeros a row, times the classes.
        let mut weights = vec![0f32; probs.len() * num_classes];
        for (row, p) in probs.iter().enumerate() {
            let mut order: Vec<usize> = (0..p.len()).collect();
            order.sort_unstable_by(|&a, &b| p[b].total_cmp(&p[a]));
            for &c in order.iter().take(self.top_k) {
                weights[row * num_classes + c] = p[c];
            }
        }
        let weights = Tensor::from_vec(weights, (probs.len(), num_classes), logits.device())?;
        Ok(l2_normalize(&weights.matmul(&self.classes)?)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_names_follow_the_synset_order() {
        let synsets = "n2\nn1\n";
        let lemmas = "n1\ttench, Tinca tinca\nn2\tgoldfish\nn3\tother\n";
        let names = imagenet_class_names(synsets, lemmas).expect("names");
        assert_eq!(names[0], vec!["goldfish"]);
        assert_eq!(names[1], vec!["tench", "Tinca tinca"]);
        assert!(imagenet_class_names("n9\n", lemmas).is_err());
    }

    #[test]
    fn the_embedding_mixes_the_top_classes_by_probability() {
        let device = Device::Cpu;
        let classes =
            Tensor::new(&[[1f32, 0., 0.], [0., 1., 0.], [0., 0., 1.]], &device).expect("classes");
        // Class 0 most likely, class 1 next, class 2 dropped by T = 2.
        let logits = Tensor::new(&[[2f32, 1., -5.]], &device).expect("logits");
        let got = Conse::new(classes, 2, 1.0)
            .embed(&logits)
            .expect("embed")
            .to_vec2::<f32>()
            .expect("vec");
        let (p0, p1) = (1f32.exp(), 1f32);
        let norm = (p0 * p0 + p1 * p1).sqrt();
        assert!((got[0][0] - p0 / norm).abs() < 1e-5, "{got:?}");
        assert!((got[0][1] - p1 / norm).abs() < 1e-5, "{got:?}");
        assert_eq!(got[0][2], 0.0);
    }

    #[test]
    fn class_embeddings_are_centred_unit_rows() {
        let rows = [vec![1f32, 1.0], vec![1.0, -1.0]];
        let centre = mean(rows.iter(), 2);
        assert_eq!(centre, vec![1.0, 0.0]);
        let centred = unit(&[rows[0][0] - centre[0], rows[0][1] - centre[1]]);
        assert_eq!(centred, vec![0.0, 1.0]);
    }
}
