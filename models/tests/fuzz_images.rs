//! Image decoding against hostile bytes: random bytes (bare, and behind a PNG or JPEG magic),
//! mutations of small valid PNGs and JPEGs, and those files with their declared size patched
//! to huge values (40000 x 40000, 1048576 x 1, ...) while the data stays 8 x 8. Every decode
//! must be `Ok` or an `Err` within the default [`ImageLimits`] allocation, never a panic.

#[path = "support/fuzz.rs"]
mod fuzz;
#[path = "support/peak_alloc.rs"]
mod peak_alloc;

use std::io::Cursor;

use fuzz::{edits, fuzz, mutate};
use proptest::prelude::*;
use vemo_models::pixels::{ImageLimits, decode_pixels, decode_reduced, decode_within};

#[global_allocator]
static ALLOC: peak_alloc::PeakAlloc = peak_alloc::PeakAlloc;

/// Every decode entry point on `bytes`; returns what they may allocate (the default limits').
fn decode_all(bytes: &[u8]) -> usize {
    let _ = decode_pixels(bytes);
    let _ = decode_reduced(bytes, 224);
    let partial = ImageLimits {
        accept_partial: true,
        ..ImageLimits::default()
    };
    let _ = decode_within(bytes, &partial);
    ImageLimits::default().max_alloc() as usize
}

fn encoded(format: image::ImageFormat, width: u32, height: u32) -> Vec<u8> {
    let pixels = image::RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([(x * 31) as u8, (y * 17) as u8, ((x + y) * 7) as u8])
    });
    let mut out = Cursor::new(Vec::new());
    pixels.write_to(&mut out, format).expect("encode");
    out.into_inner()
}

/// CRC-32 (ISO-HDLC) of PNG chunks.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A PNG whose IHDR declares `width` x `height` (CRC fixed, so the decoder believes it).
fn png_declaring(png: &[u8], width: u32, height: u32) -> Vec<u8> {
    let mut out = png.to_vec();
    out[16..20].copy_from_slice(&width.to_be_bytes());
    out[20..24].copy_from_slice(&height.to_be_bytes());
    let crc = crc32(&out[12..29]);
    out[29..33].copy_from_slice(&crc.to_be_bytes());
    out
}

/// A JPEG whose SOF declares `width` x `height`.
fn jpeg_declaring(jpeg: &[u8], width: u16, height: u16) -> Vec<u8> {
    let mut out = jpeg.to_vec();
    let sof = out
        .windows(2)
        .position(|w| w[0] == 0xFF && (0xC0..=0xC2).contains(&w[1]))
        .expect("SOF marker");
    out[sof + 5..sof + 7].copy_from_slice(&height.to_be_bytes());
    out[sof + 7..sof + 9].copy_from_slice(&width.to_be_bytes());
    out
}

fn side() -> impl Strategy<Value = u32> {
    prop_oneof![
        Just(0u32),
        Just(1),
        Just(8),
        Just(8192),
        Just(40_000),
        Just(65_535),
        Just(1 << 20),
        Just(u32::MAX),
        any::<u32>(),
    ]
}

#[test]
fn fuzz_image_random_bytes() {
    let prefixes: [&[u8]; 4] = [
        b"",
        b"\x89PNG\r\n\x1a\n",
        b"\xff\xd8\xff",
        b"\xff\xd8\xff\xc0",
    ];
    fuzz(
        "image decode (random bytes, bare or behind a PNG/JPEG magic)",
        800,
        (
            0..prefixes.len(),
            prop::collection::vec(any::<u8>(), 0..600),
        ),
        |(prefix, body)| {
            let mut bytes = prefixes[prefix].to_vec();
            bytes.extend(body);
            decode_all(&bytes)
        },
    );
}

#[test]
fn fuzz_image_mutated_png_and_jpeg() {
    let files = [
        encoded(image::ImageFormat::Png, 8, 8),
        encoded(image::ImageFormat::Jpeg, 8, 8),
        encoded(image::ImageFormat::Jpeg, 17, 9),
    ];
    fuzz(
        "image decode (mutated 8x8 PNG and JPEGs)",
        600,
        (0..files.len(), edits(8)),
        |(file, edits)| decode_all(&mutate(&files[file], &edits)),
    );
}

#[test]
fn fuzz_image_huge_declared_sizes() {
    let png = encoded(image::ImageFormat::Png, 8, 8);
    let jpeg = encoded(image::ImageFormat::Jpeg, 8, 8);
    fuzz(
        "image decode (8x8 data behind huge declared sizes)",
        300,
        (any::<bool>(), side(), side(), any::<Option<u16>>()),
        |(is_png, width, height, cut)| {
            let mut bytes = if is_png {
                png_declaring(&png, width, height)
            } else {
                let clamp = |v: u32| u16::try_from(v).unwrap_or(u16::MAX);
                jpeg_declaring(&jpeg, clamp(width), clamp(height))
            };
            if let Some(cut) = cut {
                bytes.truncate(usize::from(cut) % bytes.len().max(1));
            }
            decode_all(&bytes)
        },
    );
}

#[test]
fn huge_declared_sizes_are_errors_not_allocations() {
    let png = encoded(image::ImageFormat::Png, 8, 8);
    let jpeg = encoded(image::ImageFormat::Jpeg, 8, 8);
    for (width, height) in [
        (40_000, 40_000),
        (1 << 20, 1),
        (1, 1 << 20),
        (65_535, 65_535),
    ] {
        let png = png_declaring(&png, width, height);
        let (result, peak) = peak_alloc::peak_of(|| decode_pixels(&png));
        assert!(result.is_err(), "PNG {width}x{height}");
        println!("PNG declaring {width}x{height}: {peak} bytes allocated");
        let jpeg = jpeg_declaring(&jpeg, width.min(65_535) as u16, height.min(65_535) as u16);
        let (result, peak) = peak_alloc::peak_of(|| decode_pixels(&jpeg));
        assert!(result.is_err(), "JPEG {width}x{height}");
        println!("JPEG declaring {width}x{height}: {peak} bytes allocated");
    }
}

/// Regression, found by `fuzz_image_huge_declared_sizes`: `decode_reduced` handed a JPEG to
/// jpeg-decoder without checking its declared size, and 8 x 8 data behind a 65535 x 65535
/// header allocated ~26 GB (40000 x 40000: ~10 GB).
#[test]
fn decode_reduced_of_a_huge_declared_jpeg_is_bounded() {
    let jpeg = encoded(image::ImageFormat::Jpeg, 8, 8);
    for (width, height) in [(40_000, 40_000), (65_535, 65_535), (8192, 40_000)] {
        let jpeg = jpeg_declaring(&jpeg, width, height);
        let (result, peak) = peak_alloc::peak_of(|| decode_reduced(&jpeg, 224));
        assert!(result.is_err(), "JPEG {width}x{height}");
        let allowed = ImageLimits::default().max_alloc() as usize;
        assert!(peak <= allowed, "{width}x{height}: {peak} bytes allocated");
    }
}
