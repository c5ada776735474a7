//! Model-only throughput of each tower and head at several batch sizes, and the parity of a
//! tower on the chosen device and precision against the CPU in f32.

use std::time::Instant;

use anyhow::Result;
use candle_core::{DType, Device};

use crate::synthetic::{Arch, Side, Weights, inputs};

/// What a throughput measurement gives: items per second.
#[derive(Debug, Clone)]
pub struct Rate {
    pub tower: String,
    pub batch: usize,
    pub items_per_s: f64,
}

/// The towers measured, with the PyTorch 2.11 bf16 model-only anchors measured on the lent
/// H200 (the team's GPU notes), where there is one.
pub const TOWERS: &[(Arch, Side, Option<f64>)] = &[
    (Arch::ClipB32, Side::Image, Some(29_700.0)),
    (Arch::ClipB16, Side::Image, Some(9_300.0)),
    (Arch::ClipB32, Side::Text, Some(96_600.0)),
    (Arch::BertBase, Side::Text, Some(67_800.0)),
    (Arch::MiniLm, Side::Text, None),
];

/// A tower's label in tables.
pub fn label(arch: Arch, side: Side) -> String {
    match side {
        Side::Image => format!("{} image", arch.name()),
        Side::Text => format!("{} text", arch.name()),
    }
}

/// Items/s of `arch`'s `side` at each batch size: warm-up, then whole batches until `seconds`
/// have passed (at least 3), the device synchronised before the clock stops.
pub fn throughput(
    weights: &Weights,
    arch: Arch,
    side: Side,
    device: &Device,
    dtype: DType,
    batches: &[usize],
    seconds: f64,
) -> Result<Vec<Rate>> {
    let tower = weights.tower(side, device, dtype)?;
    let mut rates = Vec::new();
    for &batch in batches {
        let input = inputs(arch, side, batch, device, 7)?;
        for _ in 0..2 {
            tower.forward(&input)?;
        }
        device.synchronize()?;
        let (start, mut runs) = (Instant::now(), 0usize);
        while runs < 3 || start.elapsed().as_secs_f64() < seconds {
            tower.forward(&input)?;
            runs += 1;
            if runs % 8 == 0 {
                device.synchronize()?;
            }
        }
        device.synchronize()?;
        let items_per_s = (runs * batch) as f64 / start.elapsed().as_secs_f64();
        rates.push(Rate {
            tower: label(arch, side),
            batch,
            items_per_s,
        });
    }
    Ok(rates)
}

/// The agreement of a tower on `device` in `dtype` with the same tower on the CPU in f32.
#[derive(Debug, Clone)]
pub struct Parity {
    pub tower: String,
    pub max_abs_diff: f32,
    pub min_cosine: f32,
}

/// Runs `side` of `arch` on one batch of `batch` on the CPU in f32 and on `device` in
/// `dtype`, and compares the outputs (unit embeddings, or tag log-probabilities).
pub fn parity(
    weights: &Weights,
    arch: Arch,
    side: Side,
    device: &Device,
    dtype: DType,
    batch: usize,
) -> Result<Parity> {
    let reference = weights.tower(side, &Device::Cpu, DType::F32)?;
    let want = reference.forward(&inputs(arch, side, batch, &Device::Cpu, 11)?)?;
    let tested = weights.tower(side, device, dtype)?;
    let got = tested
        .forward(&inputs(arch, side, batch, device, 11)?)?
        .to_device(&Device::Cpu)?;
    let width = *want.dims().last().unwrap_or(&1);
    let rows = want.elem_count() / width.max(1);
    let (want, got) = (want.reshape((rows, width))?, got.reshape((rows, width))?);
    let max_abs_diff = (&want - &got)?.abs()?.max_all()?.to_scalar::<f32>()?;
    let dot = (&want * &got)?.sum(1)?;
    let norms = (want.sqr()?.sum(1)?.sqrt()? * got.sqr()?.sum(1)?.sqrt()?)?;
    let min_cosine = dot.div(&norms)?.min_all()?.to_scalar::<f32>()?;
    Ok(Parity {
        tower: label(arch, side),
        max_abs_diff,
        min_cosine,
    })
}
