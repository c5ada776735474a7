//! The frozen towers' features `vemo train align` trains on, computed once per corpus and
//! cached as safetensors: per photo view the pooled outputs of image stages 4 and 6 and the
//! last exit's input (unit 1280-d pooled feature + ConSE embedding); per caption the plain
//! pooled text exits 3 and 6 (unit rows).

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{Device, Tensor};
use vemo_models::bundle::Bundle;
use vemo_models::models::efficientnet::STAGES;
use vemo_models::models::image_encoder::ImageEncoder;
use vemo_models::models::text_encoder::TextEncoder;
use vemo_models::pixels::training_views;
use vemo_operators::images::decode_image;

use crate::eval::CaptionSet;

/// Image stages whose pooled outputs feed the lower exits' heads.
pub const LOWER_STAGES: [usize; 2] = [4, 6];
/// Text exits cached: the lower one (a head's input) and the last (the caption space).
pub const TEXT_EXITS: [usize; 2] = [3, 6];

/// Cached features of one caption set.
pub struct Features {
    /// `image.e4`, `image.e6`, `image.e7`: (views, dim) each.
    pub image: Vec<(usize, Tensor)>,
    /// The photo each view row belongs to.
    pub view_item: Vec<usize>,
    /// `text.e3`, `text.e6`: (captions, 384) unit rows.
    pub text: Vec<(usize, Tensor)>,
    /// The photo each caption belongs to.
    pub caption_item: Vec<usize>,
}

impl Features {
    pub fn image_at(&self, exit: usize) -> anyhow::Result<&Tensor> {
        find(&self.image, exit, "image")
    }

    pub fn text_at(&self, exit: usize) -> anyhow::Result<&Tensor> {
        find(&self.text, exit, "text")
    }
}

fn find<'a>(list: &'a [(usize, Tensor)], exit: usize, tower: &str) -> anyhow::Result<&'a Tensor> {
    list.iter()
        .find(|(e, _)| *e == exit)
        .map(|(_, t)| t)
        .ok_or_else(|| anyhow::anyhow!("no cached {tower} features at exit {exit}"))
}

/// The features of `set` with `views` views per photo, from `cache` if computed before.
pub fn features(
    bundle: &Bundle,
    set: &CaptionSet,
    views: usize,
    cache: &Path,
    device: &Device,
) -> anyhow::Result<Features> {
    let path = cache_path(bundle, set, views, cache);
    if path.is_file() {
        println!("  features from {}", path.display());
        return load(&path, device);
    }
    let features = compute(bundle, set, views, device)?;
    std::fs::create_dir_all(cache)?;
    save(&features, &path)?;
    println!("  features cached in {}", path.display());
    Ok(features)
}

/// A file name that changes with the bundle, the set's images and captions, and the views.
fn cache_path(bundle: &Bundle, set: &CaptionSet, views: usize, cache: &Path) -> PathBuf {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    (&bundle.manifest.id, &bundle.manifest.version, views).hash(&mut hasher);
    (&set.images, &set.captions, &set.owner).hash(&mut hasher);
    cache.join(format!(
        "{}-{}photos-{views}views-{:016x}.safetensors",
        bundle.manifest.id,
        set.images.len(),
        hasher.finish()
    ))
}

fn compute(
    bundle: &Bundle,
    set: &CaptionSet,
    views: usize,
    device: &Device,
) -> anyhow::Result<Features> {
    let encoder = ImageEncoder::load(bundle, &[STAGES], device)?;
    let (resize, crop) = encoder.input_geometry();
    let stages = [LOWER_STAGES[0], LOWER_STAGES[1], STAGES];
    let mut parts: [Vec<Tensor>; 3] = Default::default();
    let mut view_item = Vec::new();
    let mut pending: Vec<(usize, image::RgbImage)> = Vec::new();
    let start = Instant::now();
    let mut flush = |pending: &mut Vec<(usize, image::RgbImage)>| -> anyhow::Result<()> {
        if pending.is_empty() {
            return Ok(());
        }
        let refs: Vec<&image::RgbImage> = pending.iter().map(|(_, v)| v).collect();
        let (pooled, full) = encoder.backbone(&refs, &stages)?;
        let full = full.ok_or_else(|| anyhow::anyhow!("the classifier did not run"))?;
        let last = encoder.last_exit_input(&full)?;
        for (slot, t) in parts.iter_mut().zip(pooled.into_iter().chain([last])) {
            slot.push(t);
        }
        view_item.extend(pending.iter().map(|(i, _)| *i));
        pending.clear();
        Ok(())
    };
    for (item, path) in set.images.iter().enumerate() {
        let (_, image) = decode_image(&std::fs::read(path)?)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let all = training_views(&image, resize, crop);
        pending.extend(all.into_iter().take(views).map(|v| (item, v)));
        if pending.len() >= 32 {
            flush(&mut pending)?;
        }
        if (item + 1) % 500 == 0 {
            println!(
                "  {} of {} photos ({:.1}/s)",
                item + 1,
                set.images.len(),
                (item + 1) as f64 / start.elapsed().as_secs_f64()
            );
        }
    }
    flush(&mut pending)?;
    let image = stages
        .iter()
        .zip(parts)
        .map(|(&s, p)| Ok((s, Tensor::cat(&p, 0)?)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let text_encoder = TextEncoder::load_without_heads(bundle, &TEXT_EXITS, device)?;
    let refs: Vec<&str> = set.captions.iter().map(String::as_str).collect();
    let start = Instant::now();
    let per_exit = text_encoder.encode_all(&refs, 64)?;
    println!(
        "  {} captions ({:.0}/s)",
        refs.len(),
        refs.len() as f64 / start.elapsed().as_secs_f64()
    );
    let text = TEXT_EXITS
        .iter()
        .zip(per_exit)
        .map(|(&e, rows)| {
            let dim = rows.first().map_or(0, Vec::len);
            let flat: Vec<f32> = rows.into_iter().flatten().collect();
            let n = flat.len() / dim.max(1);
            Ok((e, Tensor::from_vec(flat, (n, dim), device)?))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(Features {
        image,
        view_item,
        text,
        caption_item: set.owner.clone(),
    })
}

fn index_tensor(items: &[usize]) -> anyhow::Result<Tensor> {
    let v: Vec<u32> = items.iter().map(|&i| i as u32).collect();
    Ok(Tensor::new(v, &Device::Cpu)?)
}

fn save(f: &Features, path: &Path) -> anyhow::Result<()> {
    let mut tensors = std::collections::HashMap::new();
    for (e, t) in &f.image {
        tensors.insert(format!("image.e{e}"), t.clone());
    }
    for (e, t) in &f.text {
        tensors.insert(format!("text.e{e}"), t.clone());
    }
    tensors.insert("image.item".into(), index_tensor(&f.view_item)?);
    tensors.insert("text.item".into(), index_tensor(&f.caption_item)?);
    let partial = path.with_extension("partial");
    candle_core::safetensors::save(&tensors, &partial)?;
    std::fs::rename(&partial, path)?;
    Ok(())
}

fn load(path: &Path, device: &Device) -> anyhow::Result<Features> {
    let mut tensors = candle_core::safetensors::load(path, device)?;
    let mut take = |name: &str| {
        tensors
            .remove(name)
            .ok_or_else(|| anyhow::anyhow!("{}: no tensor {name}", path.display()))
    };
    let items = |t: Tensor| -> anyhow::Result<Vec<usize>> {
        Ok(t.to_vec1::<u32>()?
            .into_iter()
            .map(|i| i as usize)
            .collect())
    };
    let stages = [LOWER_STAGES[0], LOWER_STAGES[1], STAGES];
    let image = stages
        .iter()
        .map(|&s| Ok((s, take(&format!("image.e{s}"))?)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let text = TEXT_EXITS
        .iter()
        .map(|&e| Ok((e, take(&format!("text.e{e}"))?)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(Features {
        image,
        view_item: items(take("image.item")?)?,
        text,
        caption_item: items(take("text.item")?)?,
    })
}
