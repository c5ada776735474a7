//! `vemo corpus sample|synth`: the embedded sample corpus and seeded synthetic corpora.

use std::io::Cursor;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use vemo_models::assemble::{MAX_MEMBER_BYTES, extract_members, find_or_download_wheel};
use vemo_operators::store;

use crate::cli::{CorpusArgs, CorpusCommand};
use vemo_models::bundle::vemo_home;

/// The sample manifest: scikit-image file names with the project's captions.
const SAMPLE_MANIFEST: &str = include_str!("../corpus/sample.jsonl");
const SKIMAGE: (&str, &str) = ("scikit-image", "0.24.0");
/// Only the images are used, which are the same in every wheel: pin one that exists, whatever
/// the local Python and platform.
const SKIMAGE_WHEEL: &[&str] = &[
    "--python-version",
    "3.11",
    "--abi",
    "cp311",
    "--platform",
    "manylinux2014_x86_64",
];

/// Runs `vemo corpus ...`.
pub fn run(args: CorpusArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        CorpusCommand::Sample { output, wheel } => {
            let output = output.unwrap_or_else(|| vemo_home().join("corpus/sample"));
            sample(&output, wheel.as_deref())?;
        }
        CorpusCommand::Synth {
            items,
            output,
            seed,
            size,
        } => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            runtime.block_on(synth(items, &output, seed, size))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn sample(output: &Path, wheel: Option<&Path>) -> anyhow::Result<()> {
    let wheel = match wheel {
        Some(wheel) => wheel.to_path_buf(),
        None => find_or_download_wheel(
            &vemo_home().join("cache/wheels"),
            SKIMAGE.0,
            SKIMAGE.1,
            SKIMAGE_WHEEL,
        )?,
    };
    let files: Vec<String> = SAMPLE_MANIFEST
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l)?;
            Ok(v["image"].as_str().unwrap_or_default().to_string())
        })
        .collect::<anyhow::Result<_>>()
        .context("the embedded sample manifest")?;
    let members: Vec<String> = files.iter().map(|f| format!("skimage/data/{f}")).collect();
    let unpacked = vemo_home().join("cache/unpacked/scikit-image");
    extract_members(
        &wheel,
        &members.iter().map(String::as_str).collect::<Vec<_>>(),
        &unpacked,
        MAX_MEMBER_BYTES,
    )?;
    std::fs::create_dir_all(output)?;
    for (file, member) in files.iter().zip(&members) {
        std::fs::copy(unpacked.join(member), output.join(file))?;
    }
    std::fs::write(output.join("manifest.jsonl"), SAMPLE_MANIFEST)?;
    println!(
        "Sample corpus ({} images) written to {}",
        files.len(),
        output.display()
    );
    Ok(())
}

const COLORS: &[(&str, [u8; 3])] = &[
    ("red", [220, 30, 30]),
    ("green", [30, 170, 60]),
    ("blue", [30, 60, 220]),
    ("yellow", [240, 220, 40]),
    ("black", [15, 15, 15]),
    ("white", [245, 245, 245]),
    ("orange", [250, 140, 20]),
    ("purple", [130, 40, 170]),
];
const SHAPES: &[&str] = &["circle", "square", "horizontal stripe", "vertical stripe"];
const SIZES: &[(&str, f32)] = &[("small", 0.15), ("large", 0.35)];

/// Writes `items` synthetic items (JPEG + caption) and `manifest.jsonl` under `output`.
pub async fn synth(items: usize, output: &str, seed: u64, size: u32) -> anyhow::Result<()> {
    let root = store::resolve(output)?;
    let mut rng = StdRng::seed_from_u64(seed);
    let mut manifest = String::new();
    for i in 0..items {
        let (shape, fg, bg, scale) = (
            SHAPES[rng.random_range(0..SHAPES.len())],
            COLORS[rng.random_range(0..COLORS.len())],
            COLORS[rng.random_range(0..COLORS.len())],
            SIZES[rng.random_range(0..SIZES.len())],
        );
        let center = (
            rng.random_range(0.25..0.75f32),
            rng.random_range(0.25..0.75f32),
        );
        let image = draw(size, shape, fg.1, bg.1, scale.1, center);
        let mut jpeg = Cursor::new(Vec::new());
        image.write_to(&mut jpeg, image::ImageFormat::Jpeg)?;
        let name = format!("images/{i:07}.jpg");
        root.child(&name)?.write(jpeg.into_inner()).await?;
        let caption = format!("A {} {} {shape} on a {} background.", scale.0, fg.0, bg.0);
        let line =
            serde_json::json!({"id": format!("synth-{i:07}"), "image": name, "caption": caption});
        manifest.push_str(&line.to_string());
        manifest.push('\n');
    }
    root.child("manifest.jsonl")?
        .write(manifest.into_bytes())
        .await?;
    println!(
        "Synthetic corpus ({items} items, seed {seed}) written to {}",
        root.uri
    );
    Ok(())
}

fn draw(
    size: u32,
    shape: &str,
    fg: [u8; 3],
    bg: [u8; 3],
    scale: f32,
    center: (f32, f32),
) -> image::RgbImage {
    let s = size as f32;
    let (cx, cy, r) = (center.0 * s, center.1 * s, scale * s);
    image::RgbImage::from_fn(size, size, |x, y| {
        let (dx, dy) = (x as f32 - cx, y as f32 - cy);
        let inside = match shape {
            "circle" => dx * dx + dy * dy <= r * r,
            "square" => dx.abs() <= r && dy.abs() <= r,
            "horizontal stripe" => dy.abs() <= r / 3.0,
            _ => dx.abs() <= r / 3.0,
        };
        image::Rgb(if inside { fg } else { bg })
    })
}
