//! `vemo train exits`: trains the lower exits' heads by distilling the last exit on unlabeled
//! corpus items, saves them into the bundle and prints each exit's quality.
//!
//! Teacher: the bundle's last exit of each tower (text exit 6; image exit 7 through its aligned
//! head, or ConSE where the bundle has none). Student input: a lower exit's pooled features.
//! Images give ten views each (five crops, mirrored); captions come from the corpus plus
//! ImageNet class prompts. Every fifth item is held out.

use std::process::ExitCode;

use candle_core::{Device, Tensor};
use vemo_models::bundle::{Bundle, ImageArchitecture};
use vemo_models::models::bert::default_device;
use vemo_models::models::efficientnet::STAGES;
use vemo_models::models::exit_heads::{ExitHeads, HeadQuality, TrainOptions, train_head};
use vemo_models::models::image_encoder::ImageEncoder;
use vemo_models::models::text_encoder::TextEncoder;
use vemo_models::pixels::training_views;
use vemo_operators::images::{ImageReader, decode_image};
use vemo_operators::manifest::read_manifest;
use vemo_schemas::{ManifestEntry, Tower};

use crate::cli::TrainExitsArgs;
use crate::home::{bundle_dir, expand};

/// What training the heads needs besides the bundle.
struct Training<'a> {
    entries: &'a [ManifestEntry],
    options: TrainOptions,
    device: Device,
    runtime: &'a tokio::runtime::Runtime,
}

/// Runs `vemo train exits`.
pub fn run(args: TrainExitsArgs) -> anyhow::Result<ExitCode> {
    let mut bundle = Bundle::open(&bundle_dir(&expand(&args.bundle)))?;
    let runtime = tokio::runtime::Runtime::new()?;
    let manifest = runtime.block_on(read_manifest(&expand(&args.corpus)))?;
    let entries: Vec<_> = manifest.entries.into_iter().take(args.max_items).collect();
    println!(
        "Training exit heads of {} on {} corpus items ({} steps).",
        bundle.id(),
        entries.len(),
        args.steps
    );
    let training = Training {
        entries: &entries,
        options: TrainOptions {
            steps: args.steps,
            ..Default::default()
        },
        device: default_device(),
        runtime: &runtime,
    };
    let mut heads = bundle.exit_heads(&training.device)?;
    let mut report = train_text_heads(&bundle, &training, &mut heads)?;
    report.extend(train_image_heads(&bundle, &training, &mut heads)?);
    let saved = bundle.save_exit_heads(&heads)?;
    println!(
        "{:<14} {:>8} {:>9} {:>12} {:>14}",
        "head", "train", "held out", "mean cos", "top-1 agree"
    );
    for (name, q) in &report {
        println!(
            "{name:<14} {:>8} {:>9} {:>12.3} {:>14.3}",
            q.train_rows, q.held_out_rows, q.mean_cosine, q.top1_agreement
        );
    }
    println!(
        "Saved {} heads ({} parameters) to {}.",
        heads.names().len(),
        heads.parameter_count(),
        saved.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// The text tower's lower-exit heads, distilled from its last exit on corpus captions and
/// ImageNet class prompts.
fn train_text_heads(
    bundle: &Bundle,
    training: &Training<'_>,
    heads: &mut ExitHeads,
) -> anyhow::Result<Vec<(String, HeadQuality)>> {
    let text = bundle.text()?.clone();
    let lower: Vec<usize> = text
        .exits
        .iter()
        .copied()
        .filter(|&e| e != text.default_exit)
        .collect();
    if lower.is_empty() {
        return Ok(Vec::new());
    }
    let mut captions: Vec<String> = training
        .entries
        .iter()
        .filter_map(|e| e.caption.clone())
        .collect();
    captions.extend(class_prompts(bundle)?);
    let refs: Vec<&str> = captions.iter().map(String::as_str).collect();
    let mut exits = lower.clone();
    exits.push(text.default_exit);
    let encoder = TextEncoder::load_without_heads(bundle, &exits, &training.device)?;
    let per_exit = encoder.encode_all(&refs, 64)?;
    let target = rows_tensor(per_exit.last().map(Vec::as_slice).unwrap_or_default())?;
    let groups: Vec<usize> = (0..captions.len()).collect();
    let mut report = Vec::new();
    for (i, &exit) in lower.iter().enumerate() {
        let (head, quality) = train_head(
            &rows_tensor(&per_exit[i])?,
            &target,
            &groups,
            &training.options,
        )?;
        heads.insert(Tower::Text, exit, head);
        report.push((format!("text exit {exit}"), quality));
    }
    Ok(report)
}

/// The image tower's lower-exit heads, distilled from its last exit (aligned head or ConSE) on
/// ten views of each corpus image. A CLIP image tower projects every exit with the checkpoint's
/// own projection; its exits get no heads here.
fn train_image_heads(
    bundle: &Bundle,
    training: &Training<'_>,
    heads: &mut ExitHeads,
) -> anyhow::Result<Vec<(String, HeadQuality)>> {
    let Some(image) = bundle.manifest.image.clone() else {
        return Ok(Vec::new());
    };
    match image.architecture {
        ImageArchitecture::Clip => {
            println!(
                "  image exits: a CLIP tower needs no heads (each exit uses CLIP's projection)"
            );
            return Ok(Vec::new());
        }
        ImageArchitecture::EfficientNetLite0 => {}
    }
    let lower: Vec<usize> = image
        .exits
        .iter()
        .copied()
        .filter(|&e| e != STAGES)
        .collect();
    if lower.is_empty() {
        return Ok(Vec::new());
    }
    let (inputs, target, groups) = image_training_set(bundle, training, &lower)?;
    let mut report = Vec::new();
    for (exit, parts) in lower.iter().zip(inputs) {
        let (head, quality) = train_head(
            &Tensor::cat(&parts, 0)?,
            &target,
            &groups,
            &training.options,
        )?;
        heads.insert(Tower::Image, *exit, head);
        report.push((format!("image exit {exit}"), quality));
    }
    Ok(report)
}

/// The pooled features of each `lower` exit (one tensor per image), the last exit's embeddings
/// (the targets) and the image each view came from; unreadable images are skipped (and counted).
#[allow(clippy::type_complexity)]
fn image_training_set(
    bundle: &Bundle,
    training: &Training<'_>,
    lower: &[usize],
) -> anyhow::Result<(Vec<Vec<Tensor>>, Tensor, Vec<usize>)> {
    // Loaded with the bundle's last-exit head, if any: the teacher is that exit as the bundle
    // embeds it (the aligned head, else ConSE).
    let encoder = ImageEncoder::load(bundle, &[STAGES], &training.device)?;
    let (resize, crop) = encoder.input_geometry();
    let reader = ImageReader::default();
    let mut stages = lower.to_vec();
    stages.push(STAGES);
    let mut inputs: Vec<Vec<Tensor>> = vec![Vec::new(); lower.len()];
    let mut targets = Vec::new();
    let mut groups = Vec::new();
    let mut skipped = 0usize;
    for (item, entry) in training.entries.iter().enumerate() {
        let views = match training
            .runtime
            .block_on(reader.fetch(&entry.image))
            .and_then(|bytes| decode_image(&bytes))
        {
            Ok((_, decoded)) => training_views(&decoded, resize, crop),
            Err(reason) => {
                tracing::warn!(id = %entry.id, %reason, "Skipping an unreadable image.");
                skipped += 1;
                continue;
            }
        };
        let refs: Vec<&image::RgbImage> = views.iter().collect();
        let (pooled, full) = encoder.backbone(&refs, &stages)?;
        let full = full.ok_or_else(|| anyhow::anyhow!("the classifier did not run"))?;
        targets.push(encoder.last_exit_embedding(&full)?);
        for (slot, t) in inputs.iter_mut().zip(pooled) {
            slot.push(t);
        }
        groups.extend(std::iter::repeat_n(item, views.len()));
    }
    if skipped > 0 {
        println!("  {skipped} unreadable image(s) skipped");
    }
    if targets.is_empty() {
        return Err(crate::usage("no readable image in the corpus to train on"));
    }
    Ok((inputs, Tensor::cat(&targets, 0)?, groups))
}

/// "a photo of a {name}." for every ImageNet class name the bundle ships, if it ships them.
fn class_prompts(bundle: &Bundle) -> anyhow::Result<Vec<String>> {
    let (synsets, lemmas) = (
        bundle.file("image/imagenet_synsets.txt"),
        bundle.file("image/imagenet_synset_to_lemma.txt"),
    );
    if !synsets.is_file() || !lemmas.is_file() {
        return Ok(Vec::new());
    }
    let classes = vemo_models::models::conse::imagenet_class_names(
        &std::fs::read_to_string(synsets)?,
        &std::fs::read_to_string(lemmas)?,
    )?;
    Ok(classes
        .iter()
        .filter_map(|names| names.first())
        .map(|name| format!("a photo of a {name}."))
        .collect())
}

fn rows_tensor(rows: &[Vec<f32>]) -> anyhow::Result<Tensor> {
    let dim = rows.first().map_or(0, Vec::len);
    let flat: Vec<f32> = rows.iter().flatten().copied().collect();
    Ok(Tensor::from_vec(
        flat,
        (rows.len(), dim),
        &default_device(),
    )?)
}
