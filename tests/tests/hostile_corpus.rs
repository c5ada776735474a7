//! Issue 16: a corpus of every bad row a nightly corpus can hold, made here, indexed with all
//! three tasks on 2 workers. The job exits 0, every id ends in `items` or `errors` exactly once,
//! each valid image (greyscale, CMYK, progressive, palette, RGBA, 16-bit, 1 x 1, EXIF-rotated,
//! WebP, no caption) in `items`, each damaged or refused one in `errors` with its stage and a
//! reason naming the rule, no panic in the log, peak memory under the runbook's bound; a rerun
//! adds nothing. A job restricted to the corpus folder refuses the absolute path.

use std::collections::BTreeMap;
use std::io::Cursor;
use std::path::{Path, PathBuf};

use arrow_array::cast::AsArray;
use arrow_array::{Array, RecordBatch};
use image::{DynamicImage, ImageFormat, RgbImage};
use vemo_tests::{read_lance, tiny_bundle, vemo_bin};

/// Where a row must end: in `items`, or in `errors` at a stage with a reason containing a
/// phrase.
#[derive(Debug, Clone, Copy)]
enum Expect {
    Item,
    Error(&'static str, &'static str),
}

fn photo(width: u32, height: u32) -> RgbImage {
    RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([
            (x * 13 % 256) as u8,
            (y * 7 % 256) as u8,
            ((x * y) % 256) as u8,
        ])
    })
}

fn encode(image: &DynamicImage, format: ImageFormat) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    image.write_to(&mut out, format).expect("encode image");
    out.into_inner()
}

fn jpeg_with(width: u16, height: u16, pixels: &[u8], color: jpeg_encoder::ColorType) -> Vec<u8> {
    jpeg_with_mode(width, height, pixels, color, false)
}

fn jpeg_with_mode(
    width: u16,
    height: u16,
    pixels: &[u8],
    color: jpeg_encoder::ColorType,
    progressive: bool,
) -> Vec<u8> {
    let mut out = Vec::new();
    let mut encoder = jpeg_encoder::Encoder::new(&mut out, 85);
    encoder.set_progressive(progressive);
    encoder
        .encode(pixels, width, height, color)
        .expect("encode JPEG");
    out
}

/// A PNG chunk: length, type, data, CRC.
fn png_chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut out = (data.len() as u32).to_be_bytes().to_vec();
    out.extend(kind);
    out.extend(data);
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(kind);
    hasher.update(data);
    out.extend(hasher.finalize().to_be_bytes());
    out
}

/// A well-formed PNG header that declares `width` x `height` (8-bit RGB) and a tiny IDAT: the
/// file is valid up to its pixels, which could never fill such an image.
fn png_declaring(width: u32, height: u32) -> Vec<u8> {
    let mut ihdr = width.to_be_bytes().to_vec();
    ihdr.extend(height.to_be_bytes());
    ihdr.extend([8, 2, 0, 0, 0]);
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    out.extend(png_chunk(b"IHDR", &ihdr));
    out.extend(png_chunk(
        b"IDAT",
        &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01],
    ));
    out.extend(png_chunk(b"IEND", &[]));
    out
}

/// An 8x8 palette PNG (4 colours), written with the png crate.
fn palette_png() -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut out, 8, 8);
        encoder.set_color(png::ColorType::Indexed);
        encoder.set_depth(png::BitDepth::Eight);
        encoder.set_palette(vec![255, 0, 0, 0, 255, 0, 0, 0, 255, 250, 250, 250]);
        let mut writer = encoder.write_header().expect("png header");
        let data: Vec<u8> = (0..64).map(|i| (i % 4) as u8).collect();
        writer.write_image_data(&data).expect("png data");
    }
    out
}

/// `jpeg` with an EXIF segment right after SOI that sets orientation 6 (rotate 90 degrees).
fn exif_rotated(jpeg: &[u8]) -> Vec<u8> {
    let mut app1 = b"Exif\0\0MM\0*\0\0\0\x08\0\x01".to_vec();
    app1.extend([0x01, 0x12, 0x00, 0x03, 0, 0, 0, 1, 0, 6, 0, 0, 0, 0, 0, 0]);
    let mut out = jpeg[..2].to_vec();
    out.extend([0xFF, 0xE1]);
    out.extend(((app1.len() + 2) as u16).to_be_bytes());
    out.extend(app1);
    out.extend(&jpeg[2..]);
    out
}

struct Row {
    id: &'static str,
    image: String,
    caption: Option<String>,
    expect: Expect,
}

/// Writes the hostile corpus under `dir`; returns the corpus folder and its rows.
fn hostile_corpus(dir: &Path) -> (PathBuf, Vec<Row>) {
    let corpus = dir.join("corpus");
    let images = corpus.join("images");
    let outside = dir.join("outside");
    for d in [&images, &outside] {
        std::fs::create_dir_all(d).expect("mkdir");
    }
    let write = |name: &str, bytes: &[u8]| std::fs::write(images.join(name), bytes).expect("write");
    let rgb = photo(96, 64);
    let jpeg = encode(&DynamicImage::ImageRgb8(rgb.clone()), ImageFormat::Jpeg);
    let noisy = RgbImage::from_fn(128, 128, |x, y| {
        let v = (x.wrapping_mul(2_654_435_761) ^ y.wrapping_mul(40_503)) as u8;
        image::Rgb([v, v.rotate_left(3), v.rotate_left(5)])
    });
    let noisy = encode(&DynamicImage::ImageRgb8(noisy), ImageFormat::Jpeg);
    let sos = noisy
        .windows(2)
        .position(|w| w == [0xFF, 0xDA])
        .expect("a JPEG has a scan");
    write("ok.jpg", &jpeg);
    let wide = DynamicImage::ImageRgb8(RgbImage::from_pixel(1_048_576, 1, image::Rgb([9, 9, 9])));
    write("wide.png", &encode(&wide, ImageFormat::Png));
    write("huge.png", &png_declaring(40_000, 40_000));
    write("truncated.jpg", &noisy[..600]);
    write(
        "truncated-scan.jpg",
        &noisy[..sos + (noisy.len() - sos) / 2],
    );
    write("header-only.jpg", &noisy[..sos]);
    write("zero.jpg", b"");
    write("text.jpg", b"this is a text file, not a photo\n");
    std::fs::create_dir_all(images.join("dir.jpg")).expect("mkdir");
    let grey: Vec<u8> = (0..48 * 32).map(|i| (i % 251) as u8).collect();
    write(
        "grey.jpg",
        &jpeg_with(48, 32, &grey, jpeg_encoder::ColorType::Luma),
    );
    let cmyk: Vec<u8> = (0..48 * 32 * 4).map(|i| (i * 7 % 256) as u8).collect();
    write(
        "cmyk.jpg",
        &jpeg_with(48, 32, &cmyk, jpeg_encoder::ColorType::Cmyk),
    );
    write(
        "progressive.jpg",
        &jpeg_with_mode(96, 64, rgb.as_raw(), jpeg_encoder::ColorType::Rgb, true),
    );
    write("palette.png", &palette_png());
    let rgba = DynamicImage::ImageRgba8(image::RgbaImage::from_fn(40, 30, |x, y| {
        image::Rgba([x as u8 * 5, y as u8 * 7, 90, (x * 6) as u8])
    }));
    write("rgba.png", &encode(&rgba, ImageFormat::Png));
    let deep = DynamicImage::ImageRgb16(image::ImageBuffer::from_fn(40, 30, |x, y| {
        image::Rgb([x as u16 * 1500, y as u16 * 2000, 30_000])
    }));
    write("rgb16.png", &encode(&deep, ImageFormat::Png));
    let dot = DynamicImage::ImageRgb8(photo(1, 1));
    write("dot.jpg", &encode(&dot, ImageFormat::Jpeg));
    write("dot.png", &encode(&dot, ImageFormat::Png));
    write("rotated.jpg", &exif_rotated(&jpeg));
    write(
        "photo.webp",
        &encode(
            &DynamicImage::ImageRgba8(rgba.to_rgba8()),
            ImageFormat::WebP,
        ),
    );
    let absolute = outside.join("abs.png");
    std::fs::write(&absolute, encode(&dot, ImageFormat::Png)).expect("write");
    std::os::unix::fs::symlink(&absolute, images.join("link.png")).expect("symlink");

    let caption = |s: &str| Some(s.to_string());
    let row = |id, image: &str, expect| Row {
        id,
        image: image.to_string(),
        caption: caption("A street with a red bus and a sign that says OPEN."),
        expect,
    };
    use Expect::{Error, Item};
    let mut rows = vec![
        row("ok", "images/ok.jpg", Item),
        row(
            "wide-png",
            "images/wide.png",
            Error("decode", "max_image_aspect"),
        ),
        row(
            "huge-declared-png",
            "images/huge.png",
            Error("decode", "max_image_pixels"),
        ),
        row(
            "truncated-jpeg",
            "images/truncated.jpg",
            Error("decode", "JPEG"),
        ),
        row(
            "header-only-jpeg",
            "images/header-only.jpg",
            Error("decode", "JPEG"),
        ),
        row(
            "truncated-scan-jpeg",
            "images/truncated-scan.jpg",
            Error("decode", "damaged or truncated"),
        ),
        row("zero-bytes", "images/zero.jpg", Error("decode", "empty")),
        row(
            "text-as-jpg",
            "images/text.jpg",
            Error("decode", "not an image"),
        ),
        row("directory", "images/dir.jpg", Error("read", "")),
        row("missing", "images/nowhere.jpg", Error("read", "not found")),
        row("escape", "../../../../etc/passwd", Error("read", "`..`")),
        row("symlink-out", "images/link.png", Error("read", "symlink")),
        row("absolute", &absolute.display().to_string(), Item),
        row("grey-jpeg", "images/grey.jpg", Item),
        row("cmyk-jpeg", "images/cmyk.jpg", Item),
        row("progressive-jpeg", "images/progressive.jpg", Item),
        row("palette-png", "images/palette.png", Item),
        row("rgba-png", "images/rgba.png", Item),
        row("rgb16-png", "images/rgb16.png", Item),
        row("one-pixel-jpeg", "images/dot.jpg", Item),
        row("one-pixel-png", "images/dot.png", Item),
        row("exif-rotated", "images/rotated.jpg", Item),
        row("webp", "images/photo.webp", Item),
    ];
    for (id, text, expect) in [
        ("empty-caption", caption(""), Item),
        ("null-caption", None, Item),
        (
            "megabyte-caption",
            Some("word ".repeat(1 << 18)),
            Error("caption", "max_caption_bytes"),
        ),
        (
            "control-caption",
            caption("\u{1}\u{7}bell\ttab\u{0}nul\u{1b}[31m"),
            Item,
        ),
    ] {
        rows.push(Row {
            id,
            image: "images/ok.jpg".into(),
            caption: text,
            expect,
        });
    }
    // A byte-order mark first, as some Windows tools write one.
    let mut manifest = String::from('\u{feff}');
    for r in &rows {
        let mut line = serde_json::json!({ "id": r.id, "image": r.image });
        if let Some(c) = &r.caption {
            line["caption"] = c.clone().into();
        }
        manifest.push_str(&format!("{line}\n"));
    }
    std::fs::write(corpus.join("manifest.jsonl"), manifest).expect("manifest");
    (corpus, rows)
}

/// Job settings of the hostile run, and the peak memory the runbook's formula allows them.
const SHARD_SIZE: u64 = 5;
const READ_CONCURRENCY: u64 = 4;
const DECODE_CONCURRENCY: u64 = 2;
const MAX_IMAGE_BYTES: u64 = 8 << 20;
const MAX_IMAGE_PIXELS: u64 = 4 << 20;
const SPOTTING_MAX_SIDE: u64 = 1024;
const WORKERS: u64 = 2;

/// The README runbook's bound: models + per worker (reads in flight, decodes in flight, two
/// shards of kept images, one spotting pass).
fn documented_bound() -> u64 {
    let models = 1_536 << 20;
    let per_worker = READ_CONCURRENCY * MAX_IMAGE_BYTES
        + DECODE_CONCURRENCY * MAX_IMAGE_PIXELS * 11
        + 2 * SHARD_SIZE * (224 * 224 * 3 + SPOTTING_MAX_SIDE * SPOTTING_MAX_SIDE * 3)
        + SPOTTING_MAX_SIDE * SPOTTING_MAX_SIDE * 1000;
    models + WORKERS * per_worker
}

fn write_job(dir: &Path, corpus: &Path, output: &Path, bundle: &Path, extra: &str) -> PathBuf {
    let job = format!(
        "[input]\nuri = \"{}\"\n{extra}[output]\nuri = \"{}\"\n[model]\nbundle = \"{}\"\n\
         tasks = [\"semantic\", \"entities\", \"spotting\"]\n[model.exits]\ntext = [6]\n\
         image = [7]\n[run]\nbatch_size = 8\nshard_size = {SHARD_SIZE}\n\
         read_concurrency = {READ_CONCURRENCY}\ndecode_concurrency = {DECODE_CONCURRENCY}\n\
         max_image_bytes = {MAX_IMAGE_BYTES}\nmax_image_pixels = {MAX_IMAGE_PIXELS}\n\
         spotting_max_side = {SPOTTING_MAX_SIDE}\n",
        corpus.display(),
        output.display(),
        bundle.display()
    );
    let path = dir.join(format!(
        "job-{}.toml",
        output.file_name().and_then(|n| n.to_str()).unwrap_or("out")
    ));
    std::fs::write(&path, job).expect("write job");
    path
}

/// Runs `vemo index` on 2 workers under `/usr/bin/time -v`: (exit code, stderr, peak RSS bytes).
fn index(job: &Path) -> (i32, String, u64) {
    let out = std::process::Command::new("/usr/bin/time")
        .arg("-v")
        .arg(vemo_bin())
        .args(["index", "--job", &job.display().to_string(), "-w", "2"])
        .env("VEMO_LOG", "warn")
        .output()
        .expect("start /usr/bin/time vemo");
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let peak_kib: u64 = stderr
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("Maximum resident set size (kbytes): ")
        })
        .and_then(|v| v.trim().parse().ok())
        .expect("/usr/bin/time -v prints the peak RSS");
    (out.status.code().unwrap_or(-1), stderr, peak_kib * 1024)
}

/// id -> (stage, reason) of `errors`, and the `items` batches; asserts no id is in both or
/// twice.
fn read_rows(output: &Path) -> (BTreeMap<String, (String, String)>, Vec<RecordBatch>) {
    let items = read_lance(&output.join("items.lance").display().to_string());
    let mut seen = BTreeMap::new();
    for batch in &items {
        let ids = batch.column_by_name("id").expect("id").as_string::<i32>();
        for id in ids.iter().flatten() {
            assert!(
                seen.insert(id.to_string(), ()).is_none(),
                "{id} twice in items"
            );
        }
    }
    let mut errors = BTreeMap::new();
    for batch in read_lance(&output.join("errors.lance").display().to_string()) {
        let col = |name: &str| {
            batch
                .column_by_name(name)
                .expect(name)
                .as_string::<i32>()
                .clone()
        };
        let (ids, stages, reasons) = (col("id"), col("stage"), col("reason"));
        for i in 0..batch.num_rows() {
            let id = ids.value(i).to_string();
            assert!(!seen.contains_key(&id), "{id} in items and errors");
            let row = (stages.value(i).to_string(), reasons.value(i).to_string());
            assert!(
                errors.insert(id.clone(), row).is_none(),
                "{id} twice in errors"
            );
        }
    }
    (errors, items)
}

/// The value of `column` in the `items` row `id`: (is null, width, height).
fn item_row(items: &[RecordBatch], id: &str, column: &str) -> Option<(bool, u32, u32)> {
    items.iter().find_map(|batch| {
        let ids = batch.column_by_name("id")?.as_string::<i32>();
        let i = (0..batch.num_rows()).find(|&i| ids.value(i) == id)?;
        let size = |name: &str| {
            batch.column_by_name(name).map_or(0, |c| {
                c.as_primitive::<arrow_array::types::UInt32Type>().value(i)
            })
        };
        let null = batch.column_by_name(column)?.is_null(i);
        Some((null, size("width"), size("height")))
    })
}

#[test]
fn a_hostile_corpus_is_data_not_a_crash() {
    let bundle = tiny_bundle();
    let dir = tempfile::tempdir().expect("tempdir");
    let (corpus, rows) = hostile_corpus(dir.path());
    let output = dir.path().join("out");
    let job = write_job(dir.path(), &corpus, &output, &bundle, "");
    let (code, stderr, peak) = index(&job);
    assert_eq!(code, 0, "vemo index failed:\n{stderr}");
    assert!(
        !stderr.contains("panicked"),
        "a panic in the log:\n{stderr}"
    );
    let bound = documented_bound();
    println!(
        "hostile corpus: {} rows, peak RSS {} MiB (documented bound {} MiB)",
        rows.len(),
        peak >> 20,
        bound >> 20
    );
    assert!(
        peak < bound,
        "peak RSS {peak} over the documented bound {bound}"
    );

    let (errors, items) = read_rows(&output);
    let item_count: usize = items.iter().map(RecordBatch::num_rows).sum();
    println!("{item_count} items, {} errors:", errors.len());
    for (id, (stage, reason)) in &errors {
        println!("  {id}: {stage}: {reason}");
    }
    assert_eq!(
        item_count + errors.len(),
        rows.len(),
        "every id once: {errors:?}"
    );
    for row in &rows {
        let in_items = item_row(&items, row.id, "text_emb_e6");
        match row.expect {
            Expect::Item => assert!(
                in_items.is_some(),
                "{} should be indexed, got {:?}",
                row.id,
                errors.get(row.id)
            ),
            Expect::Error(stage, phrase) => {
                let (got_stage, reason) = errors
                    .get(row.id)
                    .unwrap_or_else(|| panic!("{} should be an errors row", row.id));
                assert_eq!(got_stage, stage, "{}: {reason}", row.id);
                assert!(reason.contains(phrase), "{}: {reason}", row.id);
                assert!(!reason.is_empty(), "{} has no reason", row.id);
            }
        }
    }
    // No caption: null caption embedding, image still indexed.
    for id in ["empty-caption", "null-caption"] {
        let (null, _, _) = item_row(&items, id, "text_emb_e6").expect("indexed");
        assert!(null, "{id}: text_emb_e6 should be null");
        let (null, _, _) = item_row(&items, id, "image_emb_e7").expect("indexed");
        assert!(!null, "{id}: image_emb_e7 should be set");
    }
    let (null, _, _) = item_row(&items, "ok", "text_emb_e6").expect("indexed");
    assert!(!null, "a captioned item has its text embedding");
    // EXIF orientation 6: the 96 x 64 photo is indexed upright, 64 x 96.
    let (_, w, h) = item_row(&items, "exif-rotated", "id").expect("indexed");
    assert_eq!((w, h), (64, 96));

    // A rerun adds nothing: the same rows, exit 0.
    let (code, stderr, _) = index(&job);
    assert_eq!(code, 0, "rerun failed:\n{stderr}");
    assert!(
        !stderr.contains("panicked"),
        "a panic in the log:\n{stderr}"
    );
    let (errors_again, items_again) = read_rows(&output);
    assert_eq!(errors_again, errors);
    let again: usize = items_again.iter().map(RecordBatch::num_rows).sum();
    assert_eq!(again, item_count);

    // Restricted to the corpus folder, the absolute path outside it is refused.
    let restricted_out = dir.path().join("restricted");
    let prefix = format!("file://{}/", corpus.display());
    let extra = format!("allowed_prefixes = [\"{prefix}\"]\n");
    let job = write_job(dir.path(), &corpus, &restricted_out, &bundle, &extra);
    let (code, stderr, _) = index(&job);
    assert_eq!(code, 0, "restricted run failed:\n{stderr}");
    let (errors, _) = read_rows(&restricted_out);
    let (stage, reason) = errors.get("absolute").expect("absolute path refused");
    assert_eq!(stage, "read");
    assert!(reason.contains("allowed_prefixes"), "{reason}");
    assert!(item_row(&read_rows(&restricted_out).1, "ok", "id").is_some());
}
