//! Decoding image bytes into pixels within [`ImageLimits`]: the size in bytes, the pixel count
//! and the aspect ratio are checked from the header, before the decoder allocates anything;
//! a JPEG whose data ends early or is corrupt fails unless the limits accept partial images.
//! JPEG pixels come from libjpeg-turbo with its warnings (data ending early, stray bytes
//! before a marker) taken as errors, as zune-jpeg's strict mode did before it; it rejected
//! none of 1,260 COCO, Flickr8k and ICDAR photos, and `accept_partial_images` restores the
//! lenient decode (zune-jpeg's). The EXIF orientation is applied, as every photo viewer does.
//! Every failure is a reason ready for an `errors` row, naming the limit it broke.

use std::io::Cursor;

use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, ImageFormat, RgbImage};
use zune_core::bytestream::ZCursor;
use zune_core::colorspace::ColorSpace;
use zune_core::options::DecoderOptions;

/// What one image may cost; past a limit the item is an `errors` row, never an allocation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ImageLimits {
    /// Largest encoded image in bytes (`[run] max_image_bytes`).
    pub max_bytes: u64,
    /// Largest decoded image, width x height (`[run] max_image_pixels`).
    pub max_pixels: u64,
    /// Largest ratio of the long side to the short side (`[run] max_image_aspect`).
    pub max_aspect: u32,
    /// Keep what a decoder could read of a truncated or corrupt JPEG, grey where data is
    /// missing (`[run] accept_partial_images`); otherwise such a file is an error.
    pub accept_partial: bool,
}

impl ImageLimits {
    /// Default `max_image_bytes`: 64 MiB (a 50 MP JPEG at high quality is ~25 MB).
    pub const DEFAULT_MAX_BYTES: u64 = 64 << 20;
    /// Default `max_image_pixels`: 2^26, an 8192 x 8192 image (192 MiB as 8-bit RGB).
    pub const DEFAULT_MAX_PIXELS: u64 = 1 << 26;
    /// Default `max_image_aspect`: 32 (a wide panorama is ~10:1).
    pub const DEFAULT_MAX_ASPECT: u32 = 32;

    /// Bytes the decoder may allocate for one image: the largest decoded buffer (16-bit RGBA,
    /// 8 bytes a pixel) plus room for the decoder's own tables.
    pub fn max_alloc(&self) -> u64 {
        self.max_pixels.saturating_mul(8).saturating_add(64 << 20)
    }

    /// Checks a declared size against the pixel and aspect limits.
    pub fn check_size(&self, width: u32, height: u32) -> Result<(), String> {
        if width == 0 || height == 0 {
            return Err(format!("image is {width} x {height}: it has no pixels"));
        }
        let pixels = u64::from(width) * u64::from(height);
        if pixels > self.max_pixels {
            return Err(format!(
                "image is {width} x {height} = {pixels} pixels, over the limit \
                 max_image_pixels = {}",
                self.max_pixels
            ));
        }
        let (long, short) = (width.max(height), width.min(height));
        if u64::from(long) > u64::from(short) * u64::from(self.max_aspect) {
            return Err(format!(
                "image is {width} x {height}, an aspect ratio over the limit \
                 max_image_aspect = {}",
                self.max_aspect
            ));
        }
        Ok(())
    }

    /// Checks the encoded size against `max_image_bytes`.
    pub fn check_bytes(&self, bytes: u64) -> Result<(), String> {
        if bytes > self.max_bytes {
            return Err(format!(
                "image is {bytes} bytes, over the limit max_image_bytes = {}",
                self.max_bytes
            ));
        }
        Ok(())
    }
}

impl Default for ImageLimits {
    fn default() -> Self {
        Self {
            max_bytes: Self::DEFAULT_MAX_BYTES,
            max_pixels: Self::DEFAULT_MAX_PIXELS,
            max_aspect: Self::DEFAULT_MAX_ASPECT,
            accept_partial: false,
        }
    }
}

/// Decodes image bytes (JPEG, PNG or WebP, told by their header) within the default limits.
pub fn decode_pixels(bytes: &[u8]) -> Result<DynamicImage, String> {
    decode_within(bytes, &ImageLimits::default())
}

/// Decodes image bytes within `limits`, EXIF orientation applied; the reason of a failure is
/// ready for an `errors` row.
pub fn decode_within(bytes: &[u8], limits: &ImageLimits) -> Result<DynamicImage, String> {
    limits.check_bytes(bytes.len() as u64)?;
    if bytes.is_empty() {
        return Err("the object is empty (0 bytes)".into());
    }
    let format = image::guess_format(bytes)
        .map_err(|_| "not an image: the first bytes are no JPEG, PNG or WebP header".to_string())?;
    match format {
        ImageFormat::Jpeg => decode_jpeg(bytes, limits),
        ImageFormat::Png | ImageFormat::WebP => decode_with_image(bytes, format, limits),
        other => Err(format!(
            "unsupported image format {other:?}: vemo reads JPEG, PNG and WebP"
        )),
    }
}

/// The smallest size a reduced decode must keep, each side capped at the image's own.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct MinSize {
    /// The short side at least this.
    pub short: u32,
    /// The long side at least this.
    pub long: u32,
}

impl MinSize {
    /// The whole image: no reduction.
    pub const WHOLE: MinSize = MinSize {
        short: u32::MAX,
        long: u32::MAX,
    };
}

/// Decodes like [`decode_within`], but a large JPEG at the smallest DCT scale (1/8, 1/4 or
/// 1/2) that keeps `min` (the IDCT yields the reduced image directly, most of the decode time
/// saved: a 4032 x 3024 phone photo for a 256 short side decodes at 504 x 378); libjpeg-turbo's
/// scaled IDCT filters like a downscale, so crops of such a photo differ from the full
/// decode's by a grey level or two. Anything else decodes whole, as does everything when
/// `limits` accept partial images. Returns the image and the upright size of the whole image.
pub fn decode_reduced_within(
    bytes: &[u8],
    limits: &ImageLimits,
    min: MinSize,
) -> Result<(DynamicImage, (u32, u32)), String> {
    let with_size = |image: DynamicImage| {
        let size = (image.width(), image.height());
        (image, size)
    };
    if limits.accept_partial || !bytes.starts_with(&[0xFF, 0xD8]) {
        return decode_within(bytes, limits).map(with_size);
    }
    limits.check_bytes(bytes.len() as u64)?;
    let (decoder, width, height, orientation) = jpeg_header(bytes, limits)?;
    let eighths = dct_scale(width.min(height), width.max(height), min);
    let image = jpeg_pixels(decoder, bytes, (width, height), orientation, eighths)?;
    let turned = matches!(
        orientation,
        Orientation::Rotate90
            | Orientation::Rotate270
            | Orientation::Rotate90FlipH
            | Orientation::Rotate270FlipH
    );
    Ok((
        image,
        if turned {
            (height, width)
        } else {
            (width, height)
        },
    ))
}

/// The start of the reason a JPEG's data failed to decode, whichever decoder read it.
const DAMAGED_JPEG: &str = "cannot decode JPEG (damaged or truncated data)";

/// Progressive scans libjpeg-turbo reads before giving up on a JPEG (its own fuzzers' bound:
/// a crafted file of thousands of tiny scans costs a full pass over the image each).
const MAX_SCANS: u32 = 500;

/// libjpeg-turbo's decode of a JPEG whose header zune-jpeg read as `size` and the limits
/// accepted, at `eighths` / 8 of that size (8: whole), as RGB. `None` for the colour spaces
/// left to zune-jpeg (CMYK, YCCK). A warning (data ending early, corrupt entropy data) is an
/// error, as in zune-jpeg's strict mode.
fn turbo_decode(bytes: &[u8], size: (u32, u32), eighths: u32) -> Result<Option<RgbImage>, String> {
    use turbojpeg::{Colorspace, Decompressor, Image, PixelFormat, ScalingFactor};
    let failed = |e: turbojpeg::Error| format!("{DAMAGED_JPEG}: {e}");
    let mut decompressor = Decompressor::new().map_err(failed)?;
    let header = decompressor.read_header(bytes).map_err(failed)?;
    if matches!(header.colorspace, Colorspace::CMYK | Colorspace::YCCK) {
        return Ok(None);
    }
    if (header.width, header.height) != (size.0 as usize, size.1 as usize) {
        return Err(format!(
            "cannot decode JPEG: its frame is {} x {}, but its header read as {} x {}",
            header.width, header.height, size.0, size.1
        ));
    }
    let scale = ScalingFactor::new(eighths as usize, 8);
    decompressor.set_scaling_factor(scale).map_err(failed)?;
    decompressor.set_scan_limit(MAX_SCANS).map_err(failed)?;
    let scaled = header.scaled(scale);
    // At most the whole image's RGB, which `limits` bounded.
    let mut pixels = vec![0u8; scaled.width * scaled.height * 3];
    let image = Image {
        pixels: pixels.as_mut_slice(),
        width: scaled.width,
        pitch: scaled.width * 3,
        height: scaled.height,
        format: PixelFormat::RGB,
    };
    decompressor.decompress(bytes, image).map_err(failed)?;
    Ok(RgbImage::from_raw(
        scaled.width as u32,
        scaled.height as u32,
        pixels,
    ))
}

/// `rgb` turned upright as its EXIF `orientation` says.
fn upright(rgb: RgbImage, orientation: Orientation) -> DynamicImage {
    let mut image = DynamicImage::ImageRgb8(rgb);
    image.apply_orientation(orientation);
    image
}

/// Eighths of the full size (1, 2, 4 or 8) of the smallest DCT scale that keeps `min`.
fn dct_scale(short: u32, long: u32, min: MinSize) -> u32 {
    let scaled = |n: u32, eighths: u32| (n * eighths).div_ceil(8);
    [1, 2, 4]
        .into_iter()
        .find(|&e| {
            scaled(short, e) >= min.short.min(short) && scaled(long, e) >= min.long.min(long)
        })
        .unwrap_or(8)
}

/// JPEG: the header through zune-jpeg (size limits, EXIF orientation), the pixels through
/// libjpeg-turbo, or through zune-jpeg for CMYK and when partial images are accepted (the
/// `image` crate runs it leniently, which turns a truncated file into a grey image).
fn decode_jpeg(bytes: &[u8], limits: &ImageLimits) -> Result<DynamicImage, String> {
    let (decoder, width, height, orientation) = jpeg_header(bytes, limits)?;
    if limits.accept_partial {
        return finish_jpeg(decoder, width, height, orientation);
    }
    jpeg_pixels(decoder, bytes, (width, height), orientation, 8)
}

/// The pixels of a JPEG past its header, at `eighths` / 8 of `size`, upright: libjpeg-turbo's,
/// or zune-jpeg's whole decode for the colour spaces libjpeg-turbo leaves to it.
fn jpeg_pixels(
    decoder: ZuneDecoder<'_>,
    bytes: &[u8],
    (width, height): (u32, u32),
    orientation: Orientation,
    eighths: u32,
) -> Result<DynamicImage, String> {
    match turbo_decode(bytes, (width, height), eighths)? {
        Some(rgb) => Ok(upright(rgb, orientation)),
        None => finish_jpeg(decoder, width, height, orientation),
    }
}

/// zune-jpeg's decoder over a byte slice.
type ZuneDecoder<'a> = zune_jpeg::JpegDecoder<ZCursor<&'a [u8]>>;

/// The decoder past the header, with the size (checked against `limits`) and EXIF orientation.
fn jpeg_header<'a>(
    bytes: &'a [u8],
    limits: &ImageLimits,
) -> Result<(ZuneDecoder<'a>, u32, u32, Orientation), String> {
    let options = DecoderOptions::default()
        .set_strict_mode(!limits.accept_partial)
        .set_max_width(usize::from(u16::MAX))
        .set_max_height(usize::from(u16::MAX))
        .jpeg_set_out_colorspace(ColorSpace::RGB);
    let mut decoder = zune_jpeg::JpegDecoder::new_with_options(ZCursor::new(bytes), options);
    decoder
        .decode_headers()
        .map_err(|e| format!("cannot read JPEG header: {e}"))?;
    let (width, height) = decoder
        .dimensions()
        .ok_or("cannot read JPEG header: no frame size")?;
    let (width, height) = (width as u32, height as u32);
    limits.check_size(width, height)?;
    let orientation = decoder
        .exif()
        .and_then(|exif| Orientation::from_exif_chunk(exif))
        .unwrap_or(Orientation::NoTransforms);
    Ok((decoder, width, height, orientation))
}

fn finish_jpeg(
    mut decoder: ZuneDecoder<'_>,
    width: u32,
    height: u32,
    orientation: Orientation,
) -> Result<DynamicImage, String> {
    let pixels = decoder
        .decode()
        .map_err(|e| format!("{DAMAGED_JPEG}: {e}"))?;
    let rgb = RgbImage::from_raw(width, height, pixels)
        .ok_or("cannot decode JPEG: the decoder returned fewer pixels than its header declares")?;
    Ok(upright(rgb, orientation))
}

fn decode_with_image(
    bytes: &[u8],
    format: ImageFormat,
    limits: &ImageLimits,
) -> Result<DynamicImage, String> {
    let name = format!("{format:?}").to_uppercase();
    let mut reader = image::ImageReader::with_format(Cursor::new(bytes), format);
    let mut decoder_limits = image::Limits::default();
    decoder_limits.max_alloc = Some(limits.max_alloc());
    reader.limits(decoder_limits);
    let mut decoder = reader
        .into_decoder()
        .map_err(|e| format!("cannot read {name} header: {e}"))?;
    let (width, height) = decoder.dimensions();
    limits.check_size(width, height)?;
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    let mut image = DynamicImage::from_decoder(decoder)
        .map_err(|e| format!("cannot decode {name} (damaged or truncated data): {e}"))?;
    image.apply_orientation(orientation);
    Ok(image)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(image: &DynamicImage, format: ImageFormat) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        image.write_to(&mut out, format).expect("encode");
        out.into_inner()
    }

    fn photo(width: u32, height: u32) -> DynamicImage {
        DynamicImage::ImageRgb8(RgbImage::from_fn(width, height, |x, y| {
            image::Rgb([
                (x * 7 % 256) as u8,
                (y * 5 % 256) as u8,
                ((x ^ y) % 256) as u8,
            ])
        }))
    }

    #[test]
    fn a_truncated_jpeg_is_an_error_unless_partial_images_are_accepted() {
        let jpeg = encode(&photo(320, 240), ImageFormat::Jpeg);
        let whole = decode_pixels(&jpeg).expect("whole JPEG");
        assert_eq!((whole.width(), whole.height()), (320, 240));
        let cut = &jpeg[..jpeg.len() * 2 / 3];
        let err = decode_pixels(cut).expect_err("truncated JPEG");
        assert!(err.contains("cannot decode JPEG"), "{err}");
        let partial = ImageLimits {
            accept_partial: true,
            ..Default::default()
        };
        assert!(decode_within(cut, &partial).is_ok());
    }

    #[test]
    fn sizes_past_the_limits_fail_before_decoding() {
        let limits = ImageLimits::default();
        let err = limits.check_size(1_048_576, 1).expect_err("aspect");
        assert!(err.contains("max_image_aspect = 32"), "{err}");
        let err = limits.check_size(40_000, 40_000).expect_err("pixels");
        assert!(err.contains("max_image_pixels"), "{err}");
        assert!(limits.check_size(8000, 6000).is_ok());
        assert!(limits.check_size(1, 1).is_ok());
        let small = ImageLimits {
            max_bytes: 10,
            ..Default::default()
        };
        let err = decode_within(&[0xFF; 11], &small).expect_err("bytes");
        assert!(err.contains("max_image_bytes = 10"), "{err}");
        assert!(decode_pixels(b"").expect_err("empty").contains("empty"));
        assert!(
            decode_pixels(b"hello world")
                .expect_err("text")
                .contains("not an image")
        );
    }

    #[test]
    fn a_png_declaring_huge_dimensions_is_refused_from_its_header() {
        let mut png = encode(&photo(4, 4), ImageFormat::Png);
        // IHDR width and height are the big-endian u32s at bytes 16..24.
        png[16..20].copy_from_slice(&40_000u32.to_be_bytes());
        png[20..24].copy_from_slice(&40_000u32.to_be_bytes());
        let err = decode_pixels(&png).expect_err("huge PNG");
        assert!(
            err.contains("max_image_pixels") || err.contains("PNG"),
            "{err}"
        );
    }

    /// `jpeg` with an EXIF segment (APP1) right after SOI that sets orientation `value`.
    pub(crate) fn with_exif_orientation(jpeg: &[u8], value: u16) -> Vec<u8> {
        let mut tiff = b"MM\0*\0\0\0\x08\0\x01".to_vec();
        tiff.extend([0x01, 0x12, 0x00, 0x03, 0, 0, 0, 1]);
        tiff.extend(value.to_be_bytes());
        tiff.extend([0, 0, 0, 0, 0, 0]);
        let mut app1 = b"Exif\0\0".to_vec();
        app1.extend(tiff);
        let mut out = jpeg[..2].to_vec();
        out.extend([0xFF, 0xE1]);
        out.extend(((app1.len() + 2) as u16).to_be_bytes());
        out.extend(app1);
        out.extend(&jpeg[2..]);
        out
    }

    #[test]
    fn exif_orientation_is_applied() {
        let jpeg = encode(&photo(40, 20), ImageFormat::Jpeg);
        let rotated = decode_pixels(&with_exif_orientation(&jpeg, 6)).expect("rotated JPEG");
        assert_eq!((rotated.width(), rotated.height()), (20, 40));
        let upright = decode_pixels(&with_exif_orientation(&jpeg, 1)).expect("upright JPEG");
        assert_eq!((upright.width(), upright.height()), (40, 20));
    }

    #[test]
    fn a_large_jpeg_decodes_reduced_as_far_as_its_use_allows() {
        let limits = ImageLimits::default();
        let jpeg = encode(&photo(2000, 1500), ImageFormat::Jpeg);
        let decode = |bytes: &[u8], short, long| {
            let (image, size) = decode_reduced_within(bytes, &limits, MinSize { short, long })
                .expect("reduced decode");
            ((image.width(), image.height()), size)
        };
        assert_eq!(decode(&jpeg, 256, 0), ((500, 375), (2000, 1500)));
        assert_eq!(decode(&jpeg, 256, 1000), ((1000, 750), (2000, 1500)));
        assert_eq!(decode(&jpeg, 1000, 0), ((2000, 1500), (2000, 1500)));
        let turned = with_exif_orientation(&jpeg, 6);
        assert_eq!(decode(&turned, 256, 0), ((375, 500), (1500, 2000)));
        let small = encode(&photo(640, 480), ImageFormat::Jpeg);
        assert_eq!(decode(&small, 256, 0), ((640, 480), (640, 480)));
        let cut = &jpeg[..jpeg.len() / 2];
        let err = decode_reduced_within(
            cut,
            &limits,
            MinSize {
                short: 256,
                long: 0,
            },
        )
        .expect_err("truncated");
        assert!(err.contains("cannot decode JPEG"), "{err}");
        let grey =
            DynamicImage::ImageLuma8(image::GrayImage::from_pixel(1200, 900, image::Luma([90])));
        let grey = encode(&grey, ImageFormat::Jpeg);
        let (image, _) = decode_reduced_within(
            &grey,
            &limits,
            MinSize {
                short: 200,
                long: 0,
            },
        )
        .expect("grey");
        assert_eq!((image.width(), image.height()), (300, 225));
        let grey_level = image.as_rgb8().map(|i| i.get_pixel(5, 5)[1]);
        assert!(
            grey_level.is_some_and(|g| g.abs_diff(90) <= 2),
            "{grey_level:?}"
        );
    }

    #[test]
    fn unusual_valid_images_decode() {
        let grey = DynamicImage::ImageLuma8(image::GrayImage::from_pixel(9, 7, image::Luma([90])));
        let rgba16 = DynamicImage::ImageRgba16(image::ImageBuffer::from_pixel(
            5,
            3,
            image::Rgba([1000u16, 2000, 3000, 65535]),
        ));
        for (image, format) in [
            (&grey, ImageFormat::Jpeg),
            (&grey, ImageFormat::Png),
            (&rgba16, ImageFormat::Png),
            (&photo(1, 1), ImageFormat::Jpeg),
            (&photo(1, 1), ImageFormat::Png),
        ] {
            let decoded = decode_pixels(&encode(image, format)).expect("valid image");
            assert_eq!(
                (decoded.width(), decoded.height()),
                (image.width(), image.height())
            );
        }
    }
}
