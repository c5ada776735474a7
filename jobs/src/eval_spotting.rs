//! `vemo eval spotting`: the bundle's scene-text spotter on ICDAR 2015 style data: detection
//! and end-to-end figures and image-level word recall and precision (the search-centric
//! figure, boxes ignored) on scenes, recognition accuracy on word crops. With
//! `--predictions`, another system's output is scored by the same code instead.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use serde::Serialize;
use vemo_models::bundle::Bundle;
use vemo_models::models::bert::default_device;
use vemo_models::spotting::Spotter;
use vemo_models::spotting::geometry::Point;
use vemo_models::spotting::icdar::{read_crops_gt, read_scene_gt};
use vemo_models::spotting::metrics::{Prf, SceneCounts, Spotted, WordCounts, recognition_accuracy};

use crate::cli::EvalSpottingArgs;
use crate::home::{bundle_dir, expand};
use crate::usage;

#[derive(Debug, Serialize)]
struct Recognition {
    accuracy: f64,
    crops: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    crops_per_s: Option<f64>,
}

/// Image-level word recall and precision, with the counts they come from.
#[derive(Debug, Serialize)]
struct Words {
    recall: f64,
    precision: f64,
    #[serde(flatten)]
    counts: WordCounts,
}

impl From<WordCounts> for Words {
    fn from(counts: WordCounts) -> Self {
        Self {
            recall: counts.recall(),
            precision: counts.precision(),
            counts,
        }
    }
}

#[derive(Debug, Serialize)]
struct Report {
    #[serde(skip_serializing_if = "Option::is_none")]
    detection: Option<Prf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    end_to_end: Option<Prf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    words: Option<Words>,
    #[serde(skip_serializing_if = "Option::is_none")]
    recognition: Option<Recognition>,
    #[serde(skip_serializing_if = "Option::is_none")]
    images_per_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    scenes: Option<usize>,
}

/// The scenes of `dir`: (image, its ground-truth file), `img_N` in numeric order.
fn scenes(dir: &Path) -> anyhow::Result<Vec<(PathBuf, PathBuf)>> {
    let images = dir.join("images");
    let entries = std::fs::read_dir(&images)
        .map_err(|e| usage(format!("--scenes {}: no images/ ({e})", dir.display())))?;
    let mut out = Vec::new();
    for entry in entries {
        let path = entry?.path();
        let Some(stem) = path.file_stem().and_then(|s| s.to_str()) else {
            continue;
        };
        let gt = dir.join("gt").join(format!("gt_{stem}.txt"));
        if gt.is_file() {
            out.push((path, gt));
        }
    }
    let number = |p: &Path| {
        let stem = p.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
        let digits: String = stem.chars().filter(char::is_ascii_digit).collect();
        (digits.parse::<u64>().unwrap_or(u64::MAX), stem.to_string())
    };
    out.sort_by_key(|(image, _)| number(image));
    if out.is_empty() {
        return Err(usage(format!(
            "--scenes {}: no image in images/ has a gt/gt_<name>.txt",
            dir.display()
        )));
    }
    Ok(out)
}

fn polygon(values: &[f32]) -> Vec<Point> {
    values.chunks_exact(2).map(|p| [p[0], p[1]]).collect()
}

/// Another system's output (see `--predictions`).
#[derive(Debug, Default, serde::Deserialize)]
struct Predictions {
    #[serde(default)]
    scenes: HashMap<String, Vec<PredictedWord>>,
    #[serde(default)]
    crops: HashMap<String, String>,
}

#[derive(Debug, serde::Deserialize)]
struct PredictedWord {
    polygon: Vec<f32>,
    text: String,
}

/// Where the words of a scene or a crop come from: the bundle or a predictions file.
enum Source {
    Bundle(Box<Spotter>),
    File(Predictions),
}

impl Source {
    fn scene(&self, path: &Path) -> anyhow::Result<Vec<Spotted>> {
        match self {
            Source::Bundle(spotter) => {
                let image = image::open(path)
                    .map_err(|e| usage(format!("{}: {e}", path.display())))?
                    .to_rgb8();
                Ok(spotter
                    .spot(&image)?
                    .into_iter()
                    .map(|w| Spotted {
                        polygon: polygon(&w.polygon),
                        text: w.text,
                    })
                    .collect())
            }
            Source::File(p) => {
                let stem = path
                    .file_stem()
                    .and_then(|s| s.to_str())
                    .unwrap_or_default();
                Ok(p.scenes
                    .get(stem)
                    .map(|words| {
                        words
                            .iter()
                            .map(|w| Spotted {
                                polygon: polygon(&w.polygon),
                                text: w.text.clone(),
                            })
                            .collect()
                    })
                    .unwrap_or_default())
            }
        }
    }

    fn crops(&self, paths: &[PathBuf]) -> anyhow::Result<Vec<String>> {
        match self {
            Source::Bundle(spotter) => {
                let mut images = Vec::with_capacity(paths.len());
                for path in paths {
                    let image = image::open(path)
                        .map_err(|e| usage(format!("{}: {e}", path.display())))?
                        .to_rgb8();
                    images.push(image);
                }
                Ok(spotter.read_crops(&images)?)
            }
            Source::File(p) => Ok(paths
                .iter()
                .map(|path| {
                    let name = path
                        .file_name()
                        .and_then(|s| s.to_str())
                        .unwrap_or_default();
                    p.crops.get(name).cloned().unwrap_or_default()
                })
                .collect()),
        }
    }
}

/// Runs `vemo eval spotting`.
pub fn run(args: EvalSpottingArgs) -> anyhow::Result<ExitCode> {
    let (source, system) = match &args.predictions {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| usage(format!("--predictions {}: {e}", path.display())))?;
            let predictions: Predictions = serde_json::from_str(&text)
                .map_err(|e| usage(format!("--predictions {}: {e}", path.display())))?;
            (Source::File(predictions), path.display().to_string())
        }
        None => {
            let bundle = Bundle::open(&bundle_dir(&expand(&args.bundle)))?;
            let module = match args.module {
                Some(module) => module,
                None => bundle.spotting()?.module,
            };
            let spotter = Spotter::load_module(&bundle, module, &default_device())?;
            let system = format!("{} ({module})", bundle.id());
            (Source::Bundle(Box::new(spotter)), system)
        }
    };
    let limit = args.limit.unwrap_or(usize::MAX);
    let mut report = Report {
        detection: None,
        end_to_end: None,
        words: None,
        recognition: None,
        images_per_s: None,
        scenes: None,
    };
    if let Some(dir) = &args.scenes {
        score_scenes(&source, dir, limit, args.concurrent, &mut report)?;
    }
    if let Some(dir) = &args.crops {
        report.recognition = Some(score_crops(&source, dir, limit)?);
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(ExitCode::SUCCESS);
    }
    print_report(&system, &report);
    Ok(ExitCode::SUCCESS)
}

/// Detection, end-to-end and word figures on the first `limit` scenes of `dir`, spotting
/// `concurrent` scenes at a time.
fn score_scenes(
    source: &Source,
    dir: &std::path::Path,
    limit: usize,
    concurrent: usize,
    report: &mut Report,
) -> anyhow::Result<()> {
    let list: Vec<_> = scenes(dir)?.into_iter().take(limit).collect();
    let mut counts = SceneCounts::default();
    let mut words = WordCounts::default();
    let start = Instant::now();
    let concurrent = concurrent.max(1);
    let pools = scene_pools(concurrent)?;
    for group in list.chunks(concurrent) {
        let found = std::thread::scope(|scope| {
            let running: Vec<_> = group
                .iter()
                .zip(&pools)
                .map(|((image_path, _), pool)| {
                    scope.spawn(|| pool.install(|| source.scene(image_path)))
                })
                .collect();
            running
                .into_iter()
                .map(|r| {
                    r.join()
                        .unwrap_or_else(|_| Err(anyhow::anyhow!("spotting panicked")))
                })
                .collect::<anyhow::Result<Vec<_>>>()
        })?;
        for ((_, gt_path), found) in group.iter().zip(found) {
            let gt = read_scene_gt(gt_path).map_err(|e| usage(e.to_string()))?;
            counts.add(&gt, &found);
            words.add(&gt, &found);
        }
    }
    report.detection = Some(counts.detection());
    report.end_to_end = Some(counts.end_to_end());
    report.words = Some(words.into());
    if matches!(source, Source::Bundle(_)) {
        report.images_per_s = Some(list.len() as f64 / start.elapsed().as_secs_f64().max(1e-9));
    }
    report.scenes = Some(list.len());
    Ok(())
}

/// One thread pool per concurrent scene, the cores split between them, so that each scene's
/// operators run on its own threads instead of all scenes' operators queueing on every core.
fn scene_pools(concurrent: usize) -> anyhow::Result<Vec<rayon::ThreadPool>> {
    let threads = (rayon::current_num_threads() / concurrent).max(1);
    (0..concurrent)
        .map(|_| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .map_err(anyhow::Error::from)
        })
        .collect()
}

/// Recognition accuracy on the first `limit` word crops of `dir`.
fn score_crops(
    source: &Source,
    dir: &std::path::Path,
    limit: usize,
) -> anyhow::Result<Recognition> {
    let crops = read_crops_gt(dir).map_err(|e| usage(e.to_string()))?;
    let crops: Vec<_> = crops.into_iter().take(limit).collect();
    let paths: Vec<PathBuf> = crops.iter().map(|(p, _)| p.clone()).collect();
    let start = Instant::now();
    let read = source.crops(&paths)?;
    let seconds = start.elapsed().as_secs_f64().max(1e-9);
    let pairs: Vec<(String, String)> = crops
        .iter()
        .zip(read)
        .map(|((_, gold), text)| (gold.clone(), text))
        .collect();
    Ok(Recognition {
        accuracy: recognition_accuracy(&pairs),
        crops: pairs.len(),
        crops_per_s: matches!(source, Source::Bundle(_)).then(|| pairs.len() as f64 / seconds),
    })
}

/// The report as text.
fn print_report(system: &str, report: &Report) {
    println!("Spotting by {system}");
    let row = |name: &str, p: &Prf| {
        println!(
            "{name:<12} precision {:.4}  recall {:.4}  H-mean {:.4}",
            p.precision, p.recall, p.hmean
        );
    };
    if let (Some(d), Some(e)) = (&report.detection, &report.end_to_end) {
        row("detection", d);
        row("end-to-end", e);
        if let Some(w) = &report.words {
            print_words(w);
        }
        println!(
            "{} scenes{}",
            report.scenes.unwrap_or(0),
            report
                .images_per_s
                .map(|s| format!(", {s:.2} images/s"))
                .unwrap_or_default()
        );
    }
    if let Some(r) = &report.recognition {
        println!(
            "recognition  accuracy {:.4} on {} crops (case ignored){}",
            r.accuracy,
            r.crops,
            r.crops_per_s
                .map(|s| format!(", {s:.1} crops/s"))
                .unwrap_or_default()
        );
    }
}

/// The word figures' line: recall and precision with their counts.
fn print_words(w: &Words) {
    let c = &w.counts;
    println!(
        "{:<12} recall {}/{} = {:.4}  precision {}/{} = {:.4} (image level, boxes ignored)",
        "words",
        c.gt_words_found,
        c.gt_words,
        w.recall,
        c.spotted_words_right,
        c.spotted_words,
        w.precision
    );
}
