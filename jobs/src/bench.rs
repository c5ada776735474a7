//! `vemo bench`: throughput of each tower alone (caption encoder, image tower per exit, the
//! spotting modules' detectors and recognizers), and of `vemo index` end to end on a
//! synthetic corpus, and the preprocessing (see [`crate::bench_reference`], which also puts
//! each figure beside PyTorch's). Prints figures; asserts nothing.

use std::process::ExitCode;
use std::time::Instant;

use vemo_models::bundle::Bundle;
use vemo_models::models::bert::default_device;
use vemo_models::models::text_encoder::TextEncoder;
use vemo_pipeline::{ClusterConfig, IndexConfig, run_index};

use crate::bench_reference;
use crate::cli::BenchArgs;
use crate::home::bundle_dir;

/// Runs `vemo bench`.
pub fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    let bundle = Bundle::open(&bundle_dir(&args.bundle))?;
    println!(
        "bundle {}  threads available {}",
        bundle.id(),
        std::thread::available_parallelism()?.get()
    );
    let scratch = tempfile::tempdir()?;
    let (photo_dir, photos) = bench_reference::photos(args.photos.as_deref(), scratch.path())?;
    let mut figures = bench_reference::Figures {
        captions: bench_text_tower(&bundle, &args)?,
        ..Default::default()
    };
    if let Some(image) = &bundle.manifest.image {
        figures.images = bench_image_tower(&bundle, image)?;
        figures.last_image_exit = image.exits.iter().copied().max().unwrap_or_default();
        let (resize, crop) = (image.resize as u32, image.input_size as u32);
        println!(
            "\npreprocessing ({} JPEGs from {}, in memory): hash -> decode -> short side {resize} -> crop {crop} -> normalise",
            photos.len(),
            photo_dir.display()
        );
        println!(
            "{:>8} {:>12} {:>18}",
            "threads", "photos/s", "photos/s/thread"
        );
        let cores = std::thread::available_parallelism()?.get();
        for threads in [1, cores] {
            let rate = bench_reference::preprocessing_rate(&photos, resize, crop, threads);
            println!("{threads:>8} {rate:>12.1} {:>18.1}", rate / threads as f64);
            if threads == 1 {
                figures.photos_per_thread = rate;
            }
        }
    }
    if bundle.manifest.spotting.is_some() {
        bench_ppocr(&bundle)?;
        bench_spotting(&bundle)?;
    }
    bench_end_to_end(&bundle, &args)?;
    if let Some(script) = &args.torch_reference {
        let captions = args.captions;
        bench_reference::compare(script, &bundle.root, &photo_dir, captions, &figures)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Captions per second of the caption encoder at each exit and batch size: (exit, batch, rate).
fn bench_text_tower(bundle: &Bundle, args: &BenchArgs) -> anyhow::Result<Vec<(usize, usize, f64)>> {
    let captions: Vec<String> = (0..args.captions)
        .map(|i| {
            format!(
                "A photo number {i} of a {} {} on a wooden table in the morning light.",
                ["red", "small", "old", "shiny"][i % 4],
                ["cup", "bicycle", "dog", "book", "lamp"][i % 5]
            )
        })
        .collect();
    let refs: Vec<&str> = captions.iter().map(String::as_str).collect();
    println!("\ncaption encoder ({} captions)", refs.len());
    println!("{:>8} {:>8} {:>14}", "exits", "batch", "captions/s");
    let text_exits = bundle.text()?.exits.clone();
    let mut rates = Vec::new();
    for exits in text_exits.iter().rev().map(|&e| vec![e]) {
        let encoder = TextEncoder::load(bundle, &exits, &default_device())?;
        for &batch in &args.batch_sizes {
            encoder.encode_all(&refs[..batch.min(refs.len())], batch)?; // warm-up
            let start = Instant::now();
            encoder.encode_all(&refs, batch)?;
            let rate = refs.len() as f64 / start.elapsed().as_secs_f64();
            println!("{:>8} {:>8} {:>14.1}", format!("{exits:?}"), batch, rate);
            rates.push((exits[0], batch, rate));
        }
    }
    Ok(rates)
}

/// Items per second of `vemo index` on a synthetic corpus, for each worker count.
fn bench_end_to_end(bundle: &Bundle, args: &BenchArgs) -> anyhow::Result<()> {
    println!(
        "\nend to end: vemo index on a synthetic corpus of {} items (256x256 JPEGs, the default exits, batch 32, shards of 64)",
        args.items
    );
    let dir = tempfile::tempdir()?;
    let corpus = dir.path().join("corpus").display().to_string();
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(crate::corpus::synth(args.items, &corpus, 7, 256))?;
    println!("{:>8} {:>12} {:>10}", "workers", "items/s", "seconds");
    for &workers in &args.workers {
        let output = dir
            .path()
            .join(format!("out-{workers}"))
            .display()
            .to_string();
        let config = IndexConfig {
            input: corpus.clone(),
            input_format: Default::default(),
            metrics: None,
            output,
            bundle: bundle.root.clone(),
            text_exits: Vec::new(),
            image_exits: Vec::new(),
            vector_index_min_rows: usize::MAX,
            entities: false,
            spotting: false,
            batch_size: 32,
            image_batch_size: 4,
            shard_size: 64,
            read_concurrency: 16,
            limits: Default::default(),
            job_id: format!("bench-w{workers}"),
            incremental: true,
            device: Default::default(),
            precision: Default::default(),
            progress_bar: false,
        };
        let cluster = ClusterConfig {
            workers,
            ..Default::default()
        };
        let summary = run_index(config, &cluster)?.ok_or_else(|| anyhow::anyhow!("no summary"))?;
        println!(
            "{:>8} {:>12.1} {:>10.1}",
            workers, summary.items_per_s, summary.elapsed_s
        );
    }
    Ok(())
}

/// A striped "text" image the detectors find lines in.
fn striped(w: u32, h: u32) -> image::RgbImage {
    image::RgbImage::from_fn(w, h, |x, y| {
        let stripe = ((y / 24) % 2 == 0 && (x / 6) % 3 != 0) as u8;
        image::Rgb([200 - 150 * stripe, 190 - 150 * stripe, 180 - 150 * stripe])
    })
}

/// PP-OCR (the default module): detection images/s on 640x480 and 1280x720 images, and
/// recognition crops/s (32 crops, six a batch as RapidOCR batches them).
fn bench_ppocr(bundle: &Bundle) -> anyhow::Result<()> {
    use vemo_models::models::ppocr::PpocrSpotter;
    let Some(spec) = &bundle.spotting()?.ppocr else {
        println!("\nscene text: the bundle has no ppocr module");
        return Ok(());
    };
    let spotter = PpocrSpotter::load(
        &bundle.file(&spec.detector),
        &bundle.file(&spec.recognizer),
        &default_device(),
    )?;
    println!("\nscene text: PP-OCRv6 small detection");
    println!("{:>12} {:>10}", "image", "images/s");
    for (w, h) in [(640u32, 480u32), (1280, 720)] {
        let image = striped(w, h);
        spotter.detector.detect(&image)?; // warm-up
        let rounds = 4;
        let start = Instant::now();
        for _ in 0..rounds {
            spotter.detector.detect(&image)?;
        }
        let rate = rounds as f64 / start.elapsed().as_secs_f64();
        println!("{:>12} {rate:>10.2}", format!("{w}x{h}"));
    }
    let crops: Vec<image::RgbImage> = (0..32u32).map(|i| striped(160 + 8 * i, 48)).collect();
    spotter.recognizer.recognize(&crops)?; // warm-up
    let start = Instant::now();
    spotter.recognizer.recognize(&crops)?;
    let rate = crops.len() as f64 / start.elapsed().as_secs_f64();
    println!(
        "scene text: PP-OCRv6 small recognition, {} crops: {rate:.1} crops/s",
        crops.len()
    );
    Ok(())
}

/// Detection images/s (CRAFT on 640x480 and 1280x720 images, ICDAR 2015's size) and
/// recognition crops/s (batches of 32 word crops, 64 px high once prepared).
fn bench_spotting(bundle: &Bundle) -> anyhow::Result<()> {
    use vemo_models::models::craft::Craft;
    use vemo_models::models::recognizer::{Recognizer, read_characters};
    let Some(spec) = &bundle.spotting()?.easyocr else {
        println!("\nscene text: the bundle has no easyocr module");
        return Ok(());
    };
    let device = default_device();
    let detector = Craft::load(&bundle.file(&spec.detector), &device)?;
    println!(
        "
scene text: CRAFT detection"
    );
    println!("{:>12} {:>10}", "image", "images/s");
    for (w, h) in [(640u32, 480u32), (1280, 720)] {
        let image = striped(w, h);
        detector.detect(&image)?; // warm-up
        let rounds = 2;
        let start = Instant::now();
        for _ in 0..rounds {
            detector.detect(&image)?;
        }
        let rate = rounds as f64 / start.elapsed().as_secs_f64();
        println!("{:>12} {rate:>10.2}", format!("{w}x{h}"));
    }
    let characters = read_characters(&bundle.file(&spec.characters))?;
    let recognizer = Recognizer::load(&bundle.file(&spec.recognizer), &characters, &device)?;
    let crops: Vec<image::GrayImage> = (0..32u32)
        .map(|i| {
            image::GrayImage::from_fn(120 + i, 32, |x, y| {
                image::Luma([((x * 13 + y * 7 + i) % 255) as u8])
            })
        })
        .collect();
    recognizer.recognize(&crops)?; // warm-up
    let start = Instant::now();
    recognizer.recognize(&crops)?;
    let rate = crops.len() as f64 / start.elapsed().as_secs_f64();
    println!(
        "
scene text: english_g2 recognition, {} crops: {rate:.1} crops/s",
        crops.len()
    );
    Ok(())
}

/// Image embeddings/s of the image tower per exit (224x224 crops, batches of 1, 4, 16): the
/// speed side of the exit trade-off. An exit without a trained head is reported, not timed.
/// Returns (exit, batch, rate).
fn bench_image_tower(
    bundle: &Bundle,
    image: &vemo_models::bundle::ImageTowerSpec,
) -> anyhow::Result<Vec<(usize, usize, f64)>> {
    use image::RgbImage;
    use vemo_models::models::image_encoder::ImageEncoder;
    let device = default_device();
    let side = image.input_size as u32;
    let crops: Vec<RgbImage> = (0..16u32)
        .map(|i| {
            RgbImage::from_fn(side, side, |x, y| {
                image::Rgb([(x * 7 + i) as u8, (y * 3) as u8, (x ^ y) as u8])
            })
        })
        .collect();
    let crops: Vec<&RgbImage> = crops.iter().collect();
    println!(
        "\nimage tower ({}, {}px): image embeddings/s per exit",
        image.architecture, image.input_size
    );
    println!("{:>8} {:>8} {:>12}", "exit", "batch", "images/s");
    let mut rates = Vec::new();
    for &exit in &image.exits {
        let encoder = match ImageEncoder::load(bundle, &[exit], &device) {
            Ok(encoder) => encoder,
            Err(e) => {
                println!("{exit:>8} skipped: {e}");
                continue;
            }
        };
        for batch in [1usize, 4, 16] {
            encoder.encode(&crops[..batch])?; // warm-up
            let rounds = 3;
            let start = Instant::now();
            for _ in 0..rounds {
                encoder.encode(&crops[..batch])?;
            }
            let rate = (batch * rounds) as f64 / start.elapsed().as_secs_f64();
            println!("{exit:>8} {batch:>8} {rate:>12.1}");
            rates.push((exit, batch, rate));
        }
    }
    Ok(rates)
}
