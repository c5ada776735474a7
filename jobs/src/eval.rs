//! `vemo eval retrieval`: Recall@1/5/10 text->image and image->text on a COCO-format caption
//! set, for every exit of the bundle, with each exit's encoding speed.
//!
//! Rows: `image_eN` pairs image exit N with captions at the text tower's last exit; `text_eN`
//! pairs a lower text exit N with images at the image tower's last exit; `conse_e7` is the last
//! image exit through ConSE alone, printed beside its aligned head for comparison. A caption
//! query is correct at K when its own image is in the top K; an image query when any of its
//! captions is. The report names the candidates and what a random ranking would score.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use image::RgbImage;
use serde::Serialize;
use vemo_models::bundle::{Bundle, ImageArchitecture};
use vemo_models::models::bert::default_device;
use vemo_models::models::efficientnet::STAGES;
use vemo_models::models::image_encoder::ImageEncoder;
use vemo_models::models::text_encoder::TextEncoder;
use vemo_models::pixels::classifier_crop;
use vemo_operators::images::decode_image;
use vemo_schemas::Tower;

use crate::cli::EvalRetrievalArgs;
use crate::home::{bundle_dir, expand};
use crate::usage;

/// Recall at 1, 5 and 10, as fractions.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Recall {
    pub r1: f64,
    pub r5: f64,
    pub r10: f64,
}

/// One exit's figures.
#[derive(Debug, Clone, Serialize)]
pub struct ExitFigures {
    pub text_to_image: Recall,
    pub image_to_text: Recall,
    /// Items (images for an image exit, captions for a text exit) encoded per second.
    pub items_per_s: f64,
}

/// The whole report.
#[derive(Debug, Serialize)]
pub struct Report {
    pub bundle: String,
    pub corpus: String,
    pub images: usize,
    pub captions: usize,
    /// Recall a random ranking would get (the candidates are all images, all captions).
    pub chance: Chance,
    pub exits: BTreeMap<String, ExitFigures>,
}

/// Expected Recall@1/5/10 of a random ranking, each direction.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Chance {
    pub text_to_image: Recall,
    pub image_to_text: Recall,
}

/// A COCO caption set: images and, for each caption, the index of its image.
pub(crate) struct CaptionSet {
    pub images: Vec<PathBuf>,
    pub captions: Vec<String>,
    /// The image each caption belongs to.
    pub owner: Vec<usize>,
}

/// Runs `vemo eval retrieval`.
pub fn run(args: EvalRetrievalArgs) -> anyhow::Result<ExitCode> {
    let bundle = Bundle::open(&bundle_dir(&expand(&args.bundle)))?;
    let set = read_coco(&args.corpus)?;
    let crops = load_crops(&bundle, &set)?;
    let report = evaluate(&bundle, &set, &crops, &args.corpus)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "{}: {} images, {} captions, bundle {}",
            report.corpus, report.images, report.captions, report.bundle
        );
        let fmt = |r: &Recall| format!("{:.3}/{:.3}/{:.3}", r.r1, r.r5, r.r10);
        println!(
            "candidates: {} images for each caption, {} captions for each image",
            report.images, report.captions
        );
        println!(
            "{:<10} {:>21} {:>21} {:>10}",
            "exit", "text->image R@1/5/10", "image->text R@1/5/10", "items/s"
        );
        println!(
            "{:<10} {:>21} {:>21} {:>10}",
            "(chance)",
            fmt(&report.chance.text_to_image),
            fmt(&report.chance.image_to_text),
            "-"
        );
        for (name, f) in &report.exits {
            println!(
                "{name:<10} {:>21} {:>21} {:>10.1}",
                fmt(&f.text_to_image),
                fmt(&f.image_to_text),
                f.items_per_s
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn read_coco(dir: &Path) -> anyhow::Result<CaptionSet> {
    let file = std::fs::read_dir(dir)
        .map_err(|e| usage(format!("cannot read {}: {e}", dir.display())))?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            name.starts_with("captions_") && name.ends_with(".json")
        })
        .ok_or_else(|| usage(format!("no captions_*.json in {}", dir.display())))?;
    #[derive(serde::Deserialize)]
    struct Coco {
        images: Vec<CocoImage>,
        annotations: Vec<CocoCaption>,
    }
    #[derive(serde::Deserialize)]
    struct CocoImage {
        id: u64,
        file_name: String,
    }
    #[derive(serde::Deserialize)]
    struct CocoCaption {
        image_id: u64,
        caption: String,
    }
    let coco: Coco = serde_json::from_slice(&std::fs::read(&file)?)
        .map_err(|e| usage(format!("{} is not COCO captions JSON: {e}", file.display())))?;
    let mut index = HashMap::new();
    let mut images = Vec::new();
    for image in &coco.images {
        let path = [
            dir.join(&image.file_name),
            dir.join("images").join(&image.file_name),
        ]
        .into_iter()
        .find(|p| p.is_file())
        .ok_or_else(|| {
            usage(format!(
                "image {} not found in {}",
                image.file_name,
                dir.display()
            ))
        })?;
        index.insert(image.id, images.len());
        images.push(path);
    }
    let (mut captions, mut owner) = (Vec::new(), Vec::new());
    for a in &coco.annotations {
        let image = index
            .get(&a.image_id)
            .ok_or_else(|| usage(format!("caption of unknown image {}", a.image_id)))?;
        captions.push(a.caption.trim().to_string());
        owner.push(*image);
    }
    Ok(CaptionSet {
        images,
        captions,
        owner,
    })
}

fn load_crops(bundle: &Bundle, set: &CaptionSet) -> anyhow::Result<Vec<RgbImage>> {
    let spec = bundle.image()?;
    set.images
        .iter()
        .map(|path| {
            let (_, image) = decode_image(&std::fs::read(path)?)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            Ok(classifier_crop(
                &image,
                spec.resize as u32,
                spec.input_size as u32,
            ))
        })
        .collect()
}

fn evaluate(
    bundle: &Bundle,
    set: &CaptionSet,
    crops: &[RgbImage],
    corpus: &Path,
) -> anyhow::Result<Report> {
    let device = default_device();
    let (text, image) = (bundle.text()?, bundle.image()?);
    let refs: Vec<&str> = set.captions.iter().map(String::as_str).collect();
    let crop_refs: Vec<&RgbImage> = crops.iter().collect();

    let mut captions_at = BTreeMap::new();
    for &exit in &text.exits {
        let encoder = TextEncoder::load(bundle, &[exit], &device)?;
        let start = Instant::now();
        let rows = encoder.encode_all(&refs, 32)?.remove(0);
        captions_at.insert(
            exit,
            (rows, refs.len() as f64 / start.elapsed().as_secs_f64()),
        );
    }
    let mut images_at = BTreeMap::new();
    for &exit in &image.exits {
        let encoder = match ImageEncoder::load(bundle, &[exit], &device) {
            Ok(encoder) => encoder,
            Err(e) => {
                eprintln!("image exit {exit} skipped: {e}");
                continue;
            }
        };
        let start = Instant::now();
        let rows = encoder.encode_all(&crop_refs, 8)?.joint.remove(0);
        images_at.insert(
            exit,
            (rows, crops.len() as f64 / start.elapsed().as_secs_f64()),
        );
    }
    // The last exit through ConSE alone, beside its aligned head, for comparison.
    let conse_at = match bundle.exit_heads(&device)?.get(Tower::Image, STAGES) {
        Some(_) if image.architecture == ImageArchitecture::EfficientNetLite0 => {
            let encoder = ImageEncoder::load(bundle, &[STAGES], &device)?.with_conse_last_exit();
            let start = Instant::now();
            let rows = encoder.encode_all(&crop_refs, 8)?.joint.remove(0);
            Some((rows, crops.len() as f64 / start.elapsed().as_secs_f64()))
        }
        _ => None,
    };

    let mut exits = BTreeMap::new();
    if let Some((captions, _)) = captions_at.get(&text.default_exit) {
        for (exit, (images, speed)) in &images_at {
            exits.insert(
                format!("image_e{exit}"),
                figures(set, captions, images, *speed),
            );
        }
        if let Some((images, speed)) = &conse_at {
            exits.insert(
                format!("conse_e{STAGES}"),
                figures(set, captions, images, *speed),
            );
        }
    }
    if let Some((images, _)) = images_at.get(&image.default_exit) {
        for (exit, (captions, speed)) in
            captions_at.iter().filter(|(e, _)| **e != text.default_exit)
        {
            exits.insert(
                format!("text_e{exit}"),
                figures(set, captions, images, *speed),
            );
        }
    }
    Ok(Report {
        bundle: bundle.id(),
        corpus: corpus.display().to_string(),
        images: set.images.len(),
        captions: set.captions.len(),
        chance: chance(set),
        exits,
    })
}

/// Recall at K of a random ranking: K of N images for a caption; for an image with m of the C
/// captions, the chance that one of its m is among K drawn, 1 - C(C-m, K) / C(C, K).
fn chance(set: &CaptionSet) -> Chance {
    let n = set.images.len().max(1) as f64;
    let at = |k: f64| (k / n).min(1.0);
    let c = set.captions.len();
    let mut own = vec![0usize; set.images.len()];
    for &o in &set.owner {
        own[o] += 1;
    }
    let image_at = |k: usize| {
        let miss = |m: usize| -> f64 {
            (0..k.min(c))
                .map(|j| (c.saturating_sub(m + j)) as f64 / (c - j) as f64)
                .product()
        };
        own.iter().map(|&m| 1.0 - miss(m)).sum::<f64>() / own.len().max(1) as f64
    };
    Chance {
        text_to_image: Recall {
            r1: at(1.0),
            r5: at(5.0),
            r10: at(10.0),
        },
        image_to_text: Recall {
            r1: image_at(1),
            r5: image_at(5),
            r10: image_at(10),
        },
    }
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Ranks of the best correct result (0-based) for each query, then Recall@1/5/10.
fn recall(ranks: &[usize]) -> Recall {
    let at = |k: usize| ranks.iter().filter(|&&r| r < k).count() as f64 / ranks.len().max(1) as f64;
    Recall {
        r1: at(1),
        r5: at(5),
        r10: at(10),
    }
}

fn figures(
    set: &CaptionSet,
    captions: &[Vec<f32>],
    images: &[Vec<f32>],
    speed: f64,
) -> ExitFigures {
    // Text -> image: how many images score above the caption's own image.
    let t2i: Vec<usize> = captions
        .iter()
        .zip(&set.owner)
        .map(|(c, &own)| {
            let target = dot(c, &images[own]);
            images.iter().filter(|i| dot(c, i) > target).count()
        })
        .collect();
    // Image -> text: how many captions score above the image's best own caption.
    let i2t: Vec<usize> = images
        .iter()
        .enumerate()
        .map(|(i, image)| {
            let scores: Vec<f32> = captions.iter().map(|c| dot(c, image)).collect();
            let best_own = scores
                .iter()
                .zip(&set.owner)
                .filter(|(_, o)| **o == i)
                .map(|(s, _)| *s)
                .fold(f32::NEG_INFINITY, f32::max);
            scores.iter().filter(|&&s| s > best_own).count()
        })
        .collect();
    ExitFigures {
        text_to_image: recall(&t2i),
        image_to_text: recall(&i2t),
        items_per_s: speed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recall_counts_queries_whose_answer_ranks_within_k() {
        let r = recall(&[0, 3, 7, 20]);
        assert_eq!((r.r1, r.r5, r.r10), (0.25, 0.5, 0.75));
        let set = CaptionSet {
            images: vec![PathBuf::new(), PathBuf::new()],
            captions: vec!["a".into(), "b".into(), "c".into()],
            owner: vec![0, 1, 1],
        };
        let images = vec![vec![1.0, 0.0], vec![0.0, 1.0]];
        // Caption 2 points at image 0 although it belongs to image 1.
        let captions = vec![vec![1.0, 0.0], vec![0.0, 1.0], vec![1.0, 0.1]];
        let f = figures(&set, &captions, &images, 1.0);
        assert!((f.text_to_image.r1 - 2.0 / 3.0).abs() < 1e-9);
        assert_eq!(f.image_to_text.r1, 1.0);
        // Chance: a caption draws 1 of 2 images; image 0 owns 1 of 3 captions, image 1 owns 2.
        let c = chance(&set);
        assert_eq!(c.text_to_image.r1, 0.5);
        assert_eq!(c.text_to_image.r10, 1.0);
        assert!((c.image_to_text.r1 - (1.0 / 3.0 + 2.0 / 3.0) / 2.0).abs() < 1e-12);
        assert_eq!(c.image_to_text.r5, 1.0);
    }
}
