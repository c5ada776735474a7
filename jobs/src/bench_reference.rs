//! `vemo bench`'s preprocessing figure (photos/s per thread of the pipeline's own read path:
//! hash, decode, short-side resize, centre crop, normalise) and the side-by-side table against
//! PyTorch: `--torch-reference SCRIPT` runs the pinned Python script on the same photos and
//! captions in the same run and prints each figure beside vemo's.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use vemo_models::decode::MinSize;
use vemo_models::pixels::{classifier_crop, normalize_crop};
use vemo_operators::images::decode_image_within;

/// vemo's figures that have a PyTorch counterpart.
#[derive(Debug, Default)]
pub struct Figures {
    /// (exit, batch, captions/s) of the caption encoder.
    pub captions: Vec<(usize, usize, f64)>,
    /// (exit, batch, images/s) of the image tower.
    pub images: Vec<(usize, usize, f64)>,
    /// The image tower's last exit (the whole tower, which the script times).
    pub last_image_exit: usize,
    /// Photos/s of preprocessing on one thread.
    pub photos_per_thread: f64,
}

/// The JPEGs of `dir`, or (without one) 32 synthetic 640x480 photos written to `scratch`:
/// the folder the photos are in and their bytes.
pub fn photos(dir: Option<&Path>, scratch: &Path) -> anyhow::Result<(PathBuf, Vec<Vec<u8>>)> {
    let dir = match dir {
        Some(dir) => dir.to_path_buf(),
        None => {
            let dir = scratch.join("photos");
            std::fs::create_dir_all(&dir)?;
            for i in 0..32u32 {
                synthetic_photo(i).save(dir.join(format!("{i:03}.jpg")))?;
            }
            dir
        }
    };
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| e.eq_ignore_ascii_case("jpg") || e.eq_ignore_ascii_case("jpeg"))
        })
        .collect();
    paths.sort();
    anyhow::ensure!(!paths.is_empty(), "no JPEGs in {}", dir.display());
    let bytes = paths
        .iter()
        .map(std::fs::read)
        .collect::<Result<Vec<_>, _>>()?;
    Ok((dir, bytes))
}

/// A photo-like 640x480 image: smooth gradients, edges and noise.
fn synthetic_photo(seed: u32) -> image::RgbImage {
    image::RgbImage::from_fn(640, 480, |x, y| {
        let noise = (x.wrapping_mul(2_654_435_761) ^ y.wrapping_mul(40_503) ^ seed) % 23;
        let edge = if (x / 80 + y / 60 + seed).is_multiple_of(3) {
            60
        } else {
            0
        };
        image::Rgb([
            ((x / 3 + noise + edge) % 256) as u8,
            ((y / 2 + noise) % 256) as u8,
            (((x + y) / 5 + edge + seed * 8) % 256) as u8,
        ])
    })
}

/// Photos/s through the pipeline's preprocessing for an image tower of (`resize`, `crop`),
/// on `threads` threads (each photo once per thread per round, for at least two seconds).
pub fn preprocessing_rate(photos: &[Vec<u8>], resize: u32, crop: u32, threads: usize) -> f64 {
    let one = |bytes: &[u8]| {
        let min = MinSize {
            short: resize.max(crop),
            long: 0,
        };
        if let Ok((_, image)) = decode_image_within(bytes, &Default::default(), min) {
            std::hint::black_box(normalize_crop(&classifier_crop(&image, resize, crop)));
        }
    };
    photos.iter().take(4).for_each(|p| one(p)); // warm-up
    let start = Instant::now();
    let mut done = 0;
    while done == 0 || start.elapsed().as_secs_f64() < 2.0 {
        std::thread::scope(|scope| {
            for _ in 0..threads {
                scope.spawn(|| photos.iter().for_each(|p| one(p)));
            }
        });
        done += threads * photos.len();
    }
    done as f64 / start.elapsed().as_secs_f64()
}

/// Runs `script` (infra/bench/towers_reference.py) on the same bundle, photos and captions,
/// and prints each of vemo's `figures` beside PyTorch's.
pub fn compare(
    script: &Path,
    bundle: &Path,
    photos: &Path,
    captions: usize,
    figures: &Figures,
) -> anyhow::Result<()> {
    let batches: Vec<String> = figures.captions.iter().map(|c| c.1.to_string()).collect();
    let image_batches: Vec<String> = figures.images.iter().map(|c| c.1.to_string()).collect();
    println!("\nPyTorch on the same inputs ({}) ...", script.display());
    let out = std::process::Command::new("python3")
        .arg(script)
        .args(["--bundle", &bundle.display().to_string()])
        .args(["--photos", &photos.display().to_string()])
        .args(["--captions", &captions.to_string()])
        .args(["--batch-sizes", &batches.join(",")])
        .args(["--image-batch-sizes", &image_batches.join(",")])
        .output()
        .with_context(|| format!("running python3 {}", script.display()))?;
    anyhow::ensure!(
        out.status.success(),
        "{} failed: {}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let torch: serde_json::Value = serde_json::from_slice(&out.stdout)
        .with_context(|| format!("{} printed no JSON", script.display()))?;
    println!(
        "| stage | vemo | PyTorch {} ({} threads) | vemo / PyTorch |",
        torch["torch"].as_str().unwrap_or("?"),
        torch["threads"]
    );
    println!("| --- | ---: | ---: | ---: |");
    let row = |name: String, unit: &str, vemo: f64, theirs: Option<f64>| {
        let (theirs, ratio) = match theirs {
            Some(t) => (format!("{t:.1}"), format!("{:.2}x", vemo / t)),
            None => ("-".into(), "-".into()),
        };
        println!("| {name} | {vemo:.1} {unit} | {theirs} | {ratio} |");
    };
    for &(exit, batch, rate) in &figures.captions {
        let theirs = torch["captions_per_s"][exit.to_string()][batch.to_string()].as_f64();
        let name = format!("caption encoder, exit {exit}, batch {batch}");
        row(name, "captions/s", rate, theirs);
    }
    for &(exit, batch, rate) in &figures.images {
        let theirs = (exit == figures.last_image_exit)
            .then(|| torch["images_per_s"][batch.to_string()].as_f64())
            .flatten();
        let name = format!("image tower, exit {exit}, batch {batch}");
        row(name, "images/s", rate, theirs);
    }
    let theirs = torch["photos_per_s_per_thread"].as_f64();
    let name = "preprocessing, one thread".to_string();
    row(name, "photos/s", figures.photos_per_thread, theirs);
    Ok(())
}
