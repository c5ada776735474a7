//! [`InputLimits`]: everything one item may cost a job, and where its image may be read from.
//! Each limit has a default that suits real photo corpora and a job-file key to change it; an
//! item past a limit is an `errors` row naming the key.

use vemo_models::pixels::ImageLimits;

/// The bounds a job puts on each item (`[run]` keys) and on image URIs (`[input]`).
#[derive(Debug, Clone, PartialEq)]
pub struct InputLimits {
    /// Bytes, pixels and aspect ratio of one image, and whether damaged JPEGs are accepted.
    pub image: ImageLimits,
    /// Longest caption in bytes (`[run] max_caption_bytes`, default 64 KiB): a longer one is
    /// an `errors` row (stage `caption`); the text towers read 256 tokens at most anyway.
    pub max_caption_bytes: usize,
    /// Images decoded at once per worker (`[run] decode_concurrency`, default one per core).
    pub decode_concurrency: usize,
    /// Long side of the image kept for text spotting (`[run] spotting_max_side`, default 1280):
    /// a larger image is scaled down once decoded. The detector's memory grows with its
    /// square (~1000 bytes a canvas pixel); easyocr's own canvas limit is 2560.
    pub spotting_max_side: u32,
    /// Text regions one image may have (`[run] max_spotted_regions`, default 1000): an image
    /// with more is an `errors` row (stage `encode`) instead of thousands of recognizer crops.
    pub max_spotted_regions: usize,
    /// `[input] allowed_prefixes`: when not empty, every image URI must start with one.
    pub allowed_prefixes: Vec<String>,
    /// Seconds one HTTP request for an `http(s)://` image may take (`[run] http_timeout_s`,
    /// default 30): a slower answer is an `errors` row (stage `read`).
    pub http_timeout_s: u64,
}

impl InputLimits {
    /// Default `max_caption_bytes`.
    pub const DEFAULT_MAX_CAPTION_BYTES: usize = 64 << 10;
    /// Default `spotting_max_side`.
    pub const DEFAULT_SPOTTING_MAX_SIDE: u32 = 1280;
    /// Default `max_spotted_regions`.
    pub const DEFAULT_MAX_SPOTTED_REGIONS: usize = 1000;
    /// Default `http_timeout_s`.
    pub const DEFAULT_HTTP_TIMEOUT_S: u64 = 30;

    /// The reason a caption of `bytes` bytes is refused, if it is.
    pub fn check_caption(&self, bytes: usize) -> Result<(), String> {
        if bytes > self.max_caption_bytes {
            return Err(format!(
                "caption is {bytes} bytes, over the limit max_caption_bytes = {}",
                self.max_caption_bytes
            ));
        }
        Ok(())
    }
}

impl Default for InputLimits {
    fn default() -> Self {
        Self {
            image: ImageLimits::default(),
            max_caption_bytes: Self::DEFAULT_MAX_CAPTION_BYTES,
            decode_concurrency: crate::images::default_decode_concurrency(),
            spotting_max_side: Self::DEFAULT_SPOTTING_MAX_SIDE,
            max_spotted_regions: Self::DEFAULT_MAX_SPOTTED_REGIONS,
            allowed_prefixes: Vec::new(),
            http_timeout_s: Self::DEFAULT_HTTP_TIMEOUT_S,
        }
    }
}
