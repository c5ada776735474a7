//! Contrastive alignment of exit heads (`vemo train align`): a linear head maps one tower's
//! frozen features into the joint caption space, trained with symmetric InfoNCE and a learned
//! temperature on image-caption pairs, as in LiT (frozen towers, trained projections).
//!
//! The trainable side is a [`Side`] with a head; the other side's rows are taken as they are
//! (unit vectors). A batch holds distinct items (photos): for each, one of its rows on each
//! side (an augmented view, one of its captions), drawn at random every epoch. Each epoch ends
//! with Recall@K on held-out pairs; the epoch with the best sum of recalls is kept.

use candle_core::{DType, Device, IndexOp, Tensor, Var};
use candle_nn::{Linear, Module, Optimizer};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use super::l2_normalize;
use crate::Result;

/// One side of the pairs: a row per view or caption, and the item (photo) each belongs to.
#[derive(Debug, Clone)]
pub struct Side {
    /// (rows, dim) features.
    pub rows: Tensor,
    /// `item[r]`: the photo row r belongs to, in `0..items`.
    pub item: Vec<usize>,
}

impl Side {
    /// The rows of each item.
    fn rows_of(&self, items: usize) -> Vec<Vec<u32>> {
        let mut of = vec![Vec::new(); items];
        for (r, &i) in self.item.iter().enumerate() {
            of[i].push(r as u32);
        }
        of
    }

    fn items(&self) -> usize {
        self.item.iter().copied().max().map_or(0, |m| m + 1)
    }
}

/// Which side a head is trained on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trained {
    /// The head maps image features; captions are fixed.
    Image,
    /// The head maps caption features; images are fixed.
    Caption,
}

/// How a head is trained.
#[derive(Debug, Clone)]
pub struct AlignOptions {
    pub epochs: usize,
    /// Items per batch (the negatives of each pair are the batch's other items).
    pub batch_size: usize,
    pub learning_rate: f64,
    pub weight_decay: f64,
    /// Epochs without a better held-out score before stopping.
    pub patience: usize,
    pub seed: u64,
}

impl Default for AlignOptions {
    fn default() -> Self {
        Self {
            epochs: 30,
            batch_size: 256,
            learning_rate: 1e-3,
            weight_decay: 1e-4,
            patience: 4,
            seed: 7,
        }
    }
}

/// Recall at 1, 5 and 10 in both directions.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Recalls {
    pub text_to_image: [f64; 3],
    pub image_to_text: [f64; 3],
}

impl Recalls {
    /// The sum of all six recalls: what early stopping maximises.
    pub fn sum(&self) -> f64 {
        self.text_to_image.iter().chain(&self.image_to_text).sum()
    }
}

/// One epoch of training.
#[derive(Debug, Clone)]
pub struct EpochReport {
    pub epoch: usize,
    pub loss: f64,
    /// The learned temperature's inverse (logit scale).
    pub scale: f64,
    pub held_out: Option<Recalls>,
}

/// What [`train_alignment`] gives: the kept epoch's head and a report per epoch run.
#[derive(Debug)]
pub struct Aligned {
    pub head: Linear,
    pub epochs: Vec<EpochReport>,
    /// Index in `epochs` of the epoch whose head was kept (`None` when no epoch ran).
    pub kept: Option<usize>,
}

/// Trains a head from `start` (weight (out, in), bias (out)) on `images` x `captions` pairs, the
/// head on the `trained` side. `held_out` pairs (same layout) pick the epoch kept; without them
/// the last epoch is kept.
pub fn train_alignment(
    images: &Side,
    captions: &Side,
    trained: Trained,
    start: Linear,
    held_out: Option<(&Side, &Side)>,
    options: &AlignOptions,
) -> Result<Aligned> {
    let device = images.rows.device().clone();
    let items = images.items().min(captions.items());
    let (image_rows, caption_rows) = (images.rows_of(items), captions.rows_of(items));
    let usable: Vec<usize> = (0..items)
        .filter(|&i| !image_rows[i].is_empty() && !caption_rows[i].is_empty())
        .collect();
    let weight = Var::from_tensor(start.weight())?;
    let bias = match start.bias() {
        Some(b) => Var::from_tensor(b)?,
        None => Var::zeros(start.weight().dim(0)?, DType::F32, &device)?,
    };
    // log(1 / 0.07), CLIP's starting temperature.
    let log_scale = Var::from_tensor(&Tensor::new(&[(1.0f32 / 0.07).ln()], &device)?)?;
    let mut optimizer = candle_nn::AdamW::new(
        vec![weight.clone(), bias.clone(), log_scale.clone()],
        candle_nn::ParamsAdamW {
            lr: options.learning_rate,
            weight_decay: options.weight_decay,
            ..Default::default()
        },
    )?;
    let mut rng = StdRng::seed_from_u64(options.seed);
    let mut reports = Vec::new();
    let mut best: Option<(f64, Linear, usize)> = None;
    let mut since_best = 0;
    let batch = options.batch_size.max(2);
    for epoch in 1..=options.epochs {
        let mut order = usable.clone();
        order.shuffle(&mut rng);
        let (mut loss_sum, mut batches) = (0.0, 0usize);
        for chunk in order.chunks(batch).filter(|c| c.len() >= 2) {
            let pick = |rows: &[Vec<u32>], rng: &mut StdRng| -> Vec<u32> {
                chunk
                    .iter()
                    .map(|&i| rows[i][rng.random_range(0..rows[i].len())])
                    .collect()
            };
            let (iv, cv) = (pick(&image_rows, &mut rng), pick(&caption_rows, &mut rng));
            let x = images.rows.index_select(&Tensor::new(iv, &device)?, 0)?;
            let y = captions.rows.index_select(&Tensor::new(cv, &device)?, 0)?;
            let head = Linear::new(weight.as_tensor().clone(), Some(bias.as_tensor().clone()));
            let (a, b) = embed_pair(&head, trained, &x, &y)?;
            let scale = log_scale.as_tensor().clamp(0.0, 100f32.ln())?.exp()?;
            let logits = a.matmul(&b.t()?)?.broadcast_mul(&scale)?;
            let labels = Tensor::arange(0u32, chunk.len() as u32, &device)?;
            let loss = ((candle_nn::loss::cross_entropy(&logits, &labels)?
                + candle_nn::loss::cross_entropy(&logits.t()?, &labels)?)?
                / 2.0)?;
            optimizer.backward_step(&loss)?;
            loss_sum += f64::from(loss.to_scalar::<f32>()?);
            batches += 1;
        }
        // A copy: the optimiser updates the variables' storage in place, which a detached
        // tensor would share, and the kept epoch's head must not follow later steps.
        let head = Linear::new(weight.as_tensor().copy()?, Some(bias.as_tensor().copy()?));
        let held = held_out
            .map(|(hi, hc)| recalls(&head, trained, hi, hc))
            .transpose()?;
        let score = held.map_or(epoch as f64, |r| r.sum());
        reports.push(EpochReport {
            epoch,
            loss: loss_sum / batches.max(1) as f64,
            scale: f64::from(log_scale.as_tensor().exp()?.i(0)?.to_scalar::<f32>()?),
            held_out: held,
        });
        if best.as_ref().is_none_or(|(s, _, _)| score > *s) {
            best = Some((score, head, reports.len() - 1));
            since_best = 0;
        } else {
            since_best += 1;
            if since_best >= options.patience {
                break;
            }
        }
    }
    Ok(match best {
        Some((_, head, kept)) => Aligned {
            head,
            epochs: reports,
            kept: Some(kept),
        },
        None => Aligned {
            head: Linear::new(weight.as_tensor().copy()?, Some(bias.as_tensor().copy()?)),
            epochs: reports,
            kept: None,
        },
    })
}

/// Unit image and caption embeddings of a batch, the head applied on its side.
fn embed_pair(head: &Linear, trained: Trained, x: &Tensor, y: &Tensor) -> Result<(Tensor, Tensor)> {
    Ok(match trained {
        Trained::Image => (l2_normalize(&head.forward(x)?)?, l2_normalize(y)?),
        Trained::Caption => (l2_normalize(x)?, l2_normalize(&head.forward(y)?)?),
    })
}

/// Recall@1/5/10 of `head` on pairs: text->image (a caption finds its photo), image->text (a
/// photo finds any of its captions). Each item's first image row stands for it.
pub fn recalls(head: &Linear, trained: Trained, images: &Side, captions: &Side) -> Result<Recalls> {
    let device = images.rows.device();
    let items = images.items();
    let mut first = vec![None; items];
    for (r, &i) in images.item.iter().enumerate() {
        first[i].get_or_insert(r as u32);
    }
    let photo_rows: Vec<u32> = first.iter().flatten().copied().collect();
    let photo_item: Vec<usize> = first
        .iter()
        .enumerate()
        .filter_map(|(i, r)| r.map(|_| i))
        .collect();
    let x = images
        .rows
        .index_select(&Tensor::new(photo_rows, device)?, 0)?;
    let (a, b) = embed_pair(head, trained, &x, &captions.rows)?;
    // (captions, photos) similarities.
    let sim = b.matmul(&a.t()?)?.to_vec2::<f32>()?;
    Ok(recall_at(&sim, &captions.item, &photo_item))
}

/// Recall@1/5/10 both ways from a (captions, photos) similarity matrix.
pub fn recall_at(sim: &[Vec<f32>], caption_item: &[usize], photo_item: &[usize]) -> Recalls {
    let ks = [1usize, 5, 10];
    let rank_of = |scores: &[f32], hit: &dyn Fn(usize) -> bool| -> usize {
        let best = (0..scores.len())
            .filter(|&j| hit(j))
            .map(|j| scores[j])
            .fold(f32::NEG_INFINITY, f32::max);
        scores.iter().filter(|&&s| s > best).count()
    };
    let mut t2i = [0usize; 3];
    for (c, scores) in sim.iter().enumerate() {
        let rank = rank_of(scores, &|j| photo_item[j] == caption_item[c]);
        for (slot, k) in t2i.iter_mut().zip(ks) {
            *slot += usize::from(rank < k);
        }
    }
    let mut i2t = [0usize; 3];
    for (p, &item) in photo_item.iter().enumerate() {
        let column: Vec<f32> = sim.iter().map(|row| row[p]).collect();
        let rank = rank_of(&column, &|c| caption_item[c] == item);
        for (slot, k) in i2t.iter_mut().zip(ks) {
            *slot += usize::from(rank < k);
        }
    }
    let frac = |n: [usize; 3], of: usize| n.map(|v| v as f64 / of.max(1) as f64);
    Recalls {
        text_to_image: frac(t2i, sim.len()),
        image_to_text: frac(i2t, photo_item.len()),
    }
}

/// A head that starts as ConSE: (out, feature + out) weights reading only the trailing `out`
/// inputs (the ConSE embedding) through the identity, and nothing of the `feature` inputs.
pub fn conse_start(feature: usize, out: usize, device: &Device) -> Result<Linear> {
    let weight = Tensor::cat(
        &[
            Tensor::zeros((out, feature), DType::F32, device)?,
            Tensor::eye(out, DType::F32, device)?,
        ],
        1,
    )?;
    Ok(Linear::new(
        weight,
        Some(Tensor::zeros(out, DType::F32, device)?),
    ))
}

/// A head that starts at random (uniform in +-1/sqrt(in)), or as the identity when square.
pub fn plain_start(dim_in: usize, out: usize, device: &Device) -> Result<Linear> {
    let weight = if dim_in == out {
        Tensor::eye(out, DType::F32, device)?
    } else {
        let bound = (1.0 / dim_in as f64).sqrt();
        Tensor::rand(-bound as f32, bound as f32, (out, dim_in), device)?
    };
    Ok(Linear::new(
        weight,
        Some(Tensor::zeros(out, DType::F32, device)?),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pairs where the caption is a fixed random map of the photo's feature plus noise: a
    /// linear head can learn it, so held-out recall must climb far above chance.
    #[test]
    fn a_head_learns_to_pair_photos_with_their_captions() {
        let device = Device::Cpu;
        let (items, dim_in, dim_out) = (300usize, 24, 16);
        let features = Tensor::randn(0f32, 1., (items, dim_in), &device).expect("features");
        let map = Tensor::randn(0f32, 1., (dim_in, dim_out), &device).expect("map");
        let views = (&features
            + Tensor::randn(0f32, 0.1, (items, dim_in), &device).expect("noise"))
        .expect("views");
        let image_rows = Tensor::cat(&[&features, &views], 0).expect("rows");
        let caption_rows = features.matmul(&map).expect("captions");
        let item: Vec<usize> = (0..items).collect();
        let split = |t: &Tensor, at: &[usize]| -> Side {
            let idx: Vec<u32> = at.iter().map(|&i| i as u32).collect();
            Side {
                rows: t
                    .index_select(&Tensor::new(idx, &device).expect("i"), 0)
                    .expect("s"),
                item: (0..at.len()).collect(),
            }
        };
        let train_items: Vec<usize> = item.iter().copied().filter(|i| i % 5 != 0).collect();
        let dev_items: Vec<usize> = item.iter().copied().filter(|i| i % 5 == 0).collect();
        let train_images = {
            let both: Vec<usize> = train_items
                .iter()
                .copied()
                .chain(train_items.iter().map(|i| i + items))
                .collect();
            let mut side = split(&image_rows, &both);
            side.item = (0..train_items.len()).chain(0..train_items.len()).collect();
            side
        };
        let train_captions = split(&caption_rows, &train_items);
        let (dev_images, dev_captions) = (
            split(&features, &dev_items),
            split(&caption_rows, &dev_items),
        );
        let start = plain_start(dim_in, dim_out, &device).expect("start");
        let before = recalls(&start, Trained::Image, &dev_images, &dev_captions).expect("r");
        let options = AlignOptions {
            epochs: 40,
            batch_size: 64,
            learning_rate: 1e-2,
            ..Default::default()
        };
        let Aligned {
            head,
            epochs: reports,
            kept: kept_at,
        } = train_alignment(
            &train_images,
            &train_captions,
            Trained::Image,
            start,
            Some((&dev_images, &dev_captions)),
            &options,
        )
        .expect("train");
        let after = recalls(&head, Trained::Image, &dev_images, &dev_captions).expect("r");
        assert!(reports.first().expect("r").loss > reports.last().expect("r").loss);
        // The head returned is the kept (best) epoch's, not the last one's.
        let kept = reports
            .iter()
            .filter_map(|r| r.held_out)
            .max_by(|a, b| a.sum().total_cmp(&b.sum()))
            .expect("held-out recall");
        assert_eq!(after, kept);
        let kept_at = kept_at.expect("an epoch was kept");
        assert_eq!(reports[kept_at].held_out, Some(kept));
        // 60 held-out photos: chance R@1 is 1/60.
        assert!(
            after.text_to_image[0] > 0.8,
            "{after:?} (before {before:?})"
        );
        assert!(after.sum() > before.sum() + 1.0, "{after:?} vs {before:?}");
    }

    #[test]
    fn recall_counts_the_rank_of_the_best_matching_row() {
        // Two photos; captions 0,1 of photo 0, caption 2 of photo 1.
        let sim = vec![vec![0.9, 0.1], vec![0.2, 0.8], vec![0.3, 0.7]];
        let r = recall_at(&sim, &[0, 0, 1], &[0, 1]);
        assert_eq!(r.text_to_image, [2.0 / 3.0, 1.0, 1.0]);
        // Photo 0's own caption 0 (0.9) ranks first; photo 1's own caption 2 (0.7) ranks
        // second, behind caption 1 of photo 0 (0.8).
        assert_eq!(r.image_to_text, [0.5, 1.0, 1.0]);
    }

    #[test]
    fn a_conse_start_head_returns_the_conse_part() {
        let device = Device::Cpu;
        let head = conse_start(3, 2, &device).expect("head");
        let x = Tensor::new(&[[5f32, 6., 7., 0.25, 0.5]], &device).expect("x");
        let y = head.forward(&x).expect("y").to_vec2::<f32>().expect("v");
        assert_eq!(y, vec![vec![0.25, 0.5]]);
    }
}
