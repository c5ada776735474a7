//! ReadImages: fetch each item's image bytes, hash them and decode them, within the job's
//! [`ImageLimits`](vemo_models::pixels::ImageLimits) and [`ReadPolicy`].
//!
//! A missing object, a refused URI, an image past a limit or an undecodable image is not a job
//! failure: it comes back as an [`ErrorRecord`] with the stage (`read` or `decode`) and the
//! reason. Memory is bounded by the settings: an object larger than `max_image_bytes` is
//! refused from its size before its body is read, at most `decode_concurrency` images decode at
//! once, and the whole image kept for text spotting is scaled down to `spotting_max_side`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures::{StreamExt, stream};
use object_store::ObjectStoreExt;
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;
use vemo_schemas::{ErrorRecord, ManifestEntry, Stage};

use image::RgbImage;
use vemo_models::decode::{MinSize, decode_reduced_within};
use vemo_models::pixels::{ImageLimits, classifier_crop};

use crate::http_fetch::HttpFetcher;
use crate::limits::InputLimits;
use crate::store::{self, Location};
use crate::webdataset;
use crate::{Error, Result};

/// What the pipeline keeps of a decoded image for now.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedImage {
    /// Width in pixels (after the EXIF orientation).
    pub width: u32,
    /// Height in pixels (after the EXIF orientation).
    pub height: u32,
    /// SHA-256 of the image bytes, hex.
    pub content_hash: String,
    /// The image tower's input (see [`classifier_crop`](vemo_models::pixels::classifier_crop)) when the job runs the image tower.
    pub crop: Option<Arc<image::RgbImage>>,
    /// The whole image, when the job spots text in it, its long side at most the reader's
    /// `spotting_max_side`.
    pub full: Option<Arc<image::RgbImage>>,
    /// Image pixels per pixel of `full` along x and y (1 unless it was scaled down): spotted
    /// polygons are multiplied by them to give image coordinates.
    pub full_scale: [f32; 2],
}

/// Where image reads may go. A relative image path is resolved against the manifest's folder
/// and may not leave it (no `..`, no symlink out of it); a job may restrict every image URI to
/// a list of prefixes.
#[derive(Debug, Clone, Default)]
pub struct ReadPolicy {
    /// The manifest's folder URI: images below it may not leave it through a symlink.
    pub root: Option<String>,
    /// `[input] allowed_prefixes`: when not empty, every image URI (and, for local files, the
    /// file its symlinks lead to) must start with one of them.
    pub allowed_prefixes: Vec<String>,
}

impl ReadPolicy {
    /// Checks `uri` before it is read; the reason names the rule it broke.
    pub fn check(&self, uri: &str) -> Result<(), String> {
        let path = uri.split_once("://").map_or(uri, |(_, rest)| rest);
        let path = path.split(['?', '#']).next().unwrap_or_default();
        // Segments as the URL parser reads them: it drops tabs and newlines, takes `\` for
        // `/` and `%2e` for `.`, so `.%2e` and `.\t.` are `..` too.
        let climbs = path
            .replace(['\t', '\n', '\r'], "")
            .split(['/', '\\'])
            .any(|segment| segment.to_ascii_lowercase().replace("%2e", ".") == "..");
        if climbs {
            return Err(format!(
                "refused: the image path climbs out of its folder with `..` ({uri}); image \
                 paths must stay in the manifest's folder"
            ));
        }
        // The URI as it will be read (normalised), against prefixes normalised the same way.
        let normalized = url::Url::parse(uri).map_or_else(|_| uri.to_string(), String::from);
        if !self.allowed(&normalized) {
            return Err(format!(
                "refused: {uri} is not under any of [input] allowed_prefixes"
            ));
        }
        let Some(file) = store::local_path(uri) else {
            return Ok(());
        };
        // A file that cannot be resolved is left to the read, which names what is missing.
        let Ok(real) = std::fs::canonicalize(&file) else {
            return Ok(());
        };
        if let Some(root) = self.root.as_deref()
            && uri.starts_with(&format!("{}/", root.trim_end_matches('/')))
            && let Some(root) = store::local_path(root).and_then(|r| std::fs::canonicalize(r).ok())
            && !real.starts_with(&root)
        {
            return Err(format!(
                "refused: {uri} leaves the manifest's folder through a symlink"
            ));
        }
        let real_uri = url::Url::from_file_path(&real).map(String::from);
        if !self.allowed_prefixes.is_empty() && !real_uri.as_deref().is_ok_and(|u| self.allowed(u))
        {
            return Err(format!(
                "refused: {uri} leads through a symlink outside [input] allowed_prefixes"
            ));
        }
        Ok(())
    }

    fn allowed(&self, uri: &str) -> bool {
        self.allowed_prefixes.is_empty()
            || self.allowed_prefixes.iter().any(|prefix| {
                let prefix = url::Url::parse(prefix).map_or_else(|_| prefix.clone(), String::from);
                uri.starts_with(&prefix)
            })
    }
}

/// One image's read, in flight.
type ImageRead<'a> =
    std::pin::Pin<Box<dyn Future<Output = Result<DecodedImage, ErrorRecord>> + Send + 'a>>;

/// Reads images through a cache of object stores (one client per scheme and bucket).
pub struct ImageReader {
    stores: Mutex<HashMap<String, Location>>,
    /// (resize, crop) of the image tower's input, when it runs.
    crop: Option<(u32, u32)>,
    /// Keep the whole decoded image (for text spotting), its long side at most this.
    keep_full: Option<u32>,
    limits: ImageLimits,
    policy: ReadPolicy,
    /// Decodes at once: each may hold a whole decoded image (up to `max_image_pixels`).
    decodes: Arc<Semaphore>,
    /// Timeout of one HTTP request for an `http(s)://` image.
    http_timeout: std::time::Duration,
    /// The HTTP client, made at the first `http(s)://` image.
    http: std::sync::OnceLock<Result<HttpFetcher, String>>,
}

impl Default for ImageReader {
    fn default() -> Self {
        Self {
            stores: Mutex::default(),
            crop: None,
            keep_full: None,
            limits: ImageLimits::default(),
            policy: ReadPolicy::default(),
            decodes: Arc::new(Semaphore::new(default_decode_concurrency())),
            http_timeout: std::time::Duration::from_secs(InputLimits::DEFAULT_HTTP_TIMEOUT_S),
            http: std::sync::OnceLock::new(),
        }
    }
}

/// Decodes at once by default: one per core.
pub fn default_decode_concurrency() -> usize {
    std::thread::available_parallelism().map_or(2, usize::from)
}

impl std::fmt::Debug for ImageReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ImageReader")
    }
}

impl ImageReader {
    /// A reader that also prepares the image tower's input: short side to `resize`, centre
    /// crop `crop` x `crop`.
    pub fn with_crop(resize: u32, crop: u32) -> Self {
        Self {
            crop: Some((resize, crop)),
            ..Default::default()
        }
    }

    /// The same reader, also keeping each whole decoded image (for text spotting), scaled
    /// down so that its long side is at most `max_side`.
    pub fn keeping_full(mut self, max_side: u32) -> Self {
        self.keep_full = Some(max_side.max(1));
        self
    }

    /// The same reader within `limits`, `decode_concurrency` decodes at once.
    pub fn within(mut self, limits: ImageLimits, decode_concurrency: usize) -> Self {
        self.limits = limits;
        self.decodes = Arc::new(Semaphore::new(decode_concurrency.max(1)));
        self
    }

    /// The same reader, giving up on an HTTP request after `timeout`.
    pub fn with_http_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.http_timeout = timeout;
        self
    }

    /// The same reader, checking every URI against `policy` before reading it.
    pub fn with_policy(mut self, policy: ReadPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Fetches and decodes the images of `entries`, `concurrency` requests at a time; the
    /// result has one element per entry, in order.
    pub async fn read_all(
        &self,
        entries: &[ManifestEntry],
        concurrency: usize,
    ) -> Vec<Result<DecodedImage, ErrorRecord>> {
        // Boxed, so that the whole read is provably `Send` and can be spawned (a prefetch).
        let reads: Vec<ImageRead<'_>> = entries
            .iter()
            .map(|entry| Box::pin(self.read_one(entry)) as ImageRead<'_>)
            .collect();
        stream::iter(reads)
            .buffered(concurrency.max(1))
            .collect()
            .await
    }

    /// The SHA-256 (hex) of each entry's image bytes, `concurrency` fetches at a time, in
    /// order; an image that cannot be fetched (or is refused) hashes to `unreadable`, which
    /// matches no row. A manifest `sha256` column (hex of the image bytes) is taken as given,
    /// without a fetch.
    pub async fn hash_all(&self, entries: &[ManifestEntry], concurrency: usize) -> Vec<String> {
        stream::iter(entries)
            .map(|entry| async move {
                if let Some(given) = given_sha256(entry) {
                    return given;
                }
                match self.fetch_checked(&entry.image).await {
                    Ok(bytes) => hex::encode(Sha256::digest(&bytes)),
                    Err((_, _)) => "unreadable".to_string(),
                }
            })
            .buffered(concurrency.max(1))
            .collect()
            .await
    }

    /// Fetches the bytes of the image at `uri`; the error reason is ready for an `errors` row.
    /// No limit or policy applies (for `vemo search --image` and training tools).
    pub async fn fetch(&self, uri: &str) -> Result<bytes::Bytes, String> {
        self.fetch_limited(uri, u64::MAX).await.map_err(|(_, r)| r)
    }

    /// Fetches `uri` after the policy allows it, refusing an object over `max_image_bytes`
    /// from its size, before its body is read.
    async fn fetch_checked(&self, uri: &str) -> Result<bytes::Bytes, (Stage, String)> {
        self.policy.check(uri).map_err(|r| (Stage::Read, r))?;
        self.fetch_limited(uri, self.limits.max_bytes).await
    }

    async fn fetch_limited(
        &self,
        uri: &str,
        max_bytes: u64,
    ) -> Result<bytes::Bytes, (Stage, String)> {
        let limits = ImageLimits {
            max_bytes,
            ..self.limits
        };
        if uri.starts_with("http://") || uri.starts_with("https://") {
            let http = self
                .http
                .get_or_init(|| HttpFetcher::new(self.http_timeout))
                .as_ref()
                .map_err(|e| (Stage::Read, e.clone()))?;
            return http
                .fetch(uri, max_bytes)
                .await
                .map_err(|r| (Stage::Read, format!("{uri}: {r}")));
        }
        // A WebDataset sample's image: a byte range of its tar (see `webdataset`).
        if let Some((tar, start, len)) =
            webdataset::member_range(uri).map_err(|r| (Stage::Read, r))?
        {
            limits.check_bytes(len).map_err(|r| (Stage::Read, r))?;
            let location = self.locate(tar).map_err(|e| (Stage::Read, e.to_string()))?;
            return webdataset::read_member(&location, start, len)
                .await
                .map_err(|e| (Stage::Read, e.to_string()));
        }
        let location = self.locate(uri).map_err(|e| (Stage::Read, e.to_string()))?;
        let not_found = |e: object_store::Error| match e {
            object_store::Error::NotFound { .. } => {
                (Stage::Read, format!("object not found: {uri}"))
            }
            other => (Stage::Read, Error::store(uri, other).to_string()),
        };
        let got = location
            .store
            .get(&location.path)
            .await
            .map_err(not_found)?;
        limits
            .check_bytes(got.meta.size)
            .map_err(|r| (Stage::Read, r))?;
        got.bytes().await.map_err(not_found)
    }

    async fn read_one(&self, entry: &ManifestEntry) -> Result<DecodedImage, ErrorRecord> {
        let failed = |stage: Stage, reason: String| ErrorRecord {
            id: entry.id.clone(),
            image: entry.image.clone(),
            stage,
            reason,
        };
        let bytes = self
            .fetch_checked(&entry.image)
            .await
            .map_err(|(stage, r)| failed(stage, r))?;
        // Decoding is CPU work: it runs on the runtime's blocking pool, at most
        // `decode_concurrency` at once (each may hold a whole decoded image), and a decoder
        // that panics costs one `errors` row.
        let (crop, keep_full, limits) = (self.crop, self.keep_full, self.limits);
        let Ok(permit) = self.decodes.clone().acquire_owned().await else {
            return Err(failed(Stage::Decode, "the decode pool was closed".into()));
        };
        let decoded = tokio::task::spawn_blocking(move || {
            // Held by the decode itself, so that a cancelled read does not free its slot early.
            let _permit = permit;
            // What the stages need of the image: a large JPEG decodes at a DCT scale that
            // still gives the crop its short side and spotting its long side.
            let min = MinSize {
                short: crop.map_or(0, |(resize, side)| resize.max(side)),
                long: keep_full.unwrap_or(0),
            };
            let (mut decoded, image) = decode_image_within(&bytes, &limits, min)?;
            drop(bytes);
            if let Some((resize, side)) = crop {
                decoded.crop = Some(Arc::new(classifier_crop(&image, resize, side)));
            }
            if let Some(max_side) = keep_full {
                let (full, _) = spotting_image(image, max_side);
                // Image pixels (of the whole image, not the decoded one) per pixel of `full`.
                decoded.full_scale = [
                    decoded.width as f32 / full.width().max(1) as f32,
                    decoded.height as f32 / full.height().max(1) as f32,
                ];
                decoded.full = Some(Arc::new(full));
            }
            Ok(decoded)
        })
        .await;
        match decoded {
            Ok(result) => result.map_err(|r| failed(Stage::Decode, r)),
            Err(e) => Err(failed(Stage::Decode, format!("the decoder failed: {e}"))),
        }
    }

    fn locate(&self, uri: &str) -> Result<Location> {
        let url = url::Url::parse(uri).map_err(|e| Error::InvalidUri {
            uri: uri.to_string(),
            reason: e.to_string(),
        })?;
        let key = format!("{}://{}", url.scheme(), url.host_str().unwrap_or_default());
        let mut stores = self.stores.lock().unwrap_or_else(|p| p.into_inner());
        let root = match stores.get(&key) {
            Some(root) => root.clone(),
            None => {
                let root = store::resolve(&format!("{key}/"))?;
                stores.insert(key.clone(), root.clone());
                root
            }
        };
        let path =
            object_store::path::Path::from_url_path(url.path()).map_err(|e| Error::InvalidUri {
                uri: uri.to_string(),
                reason: e.to_string(),
            })?;
        Ok(Location {
            store: root.store,
            path,
            uri: uri.to_string(),
        })
    }
}

/// The `sha256` a manifest row gives for its image, lower-case hex, if any.
fn given_sha256(entry: &ManifestEntry) -> Option<String> {
    let metadata: serde_json::Value = serde_json::from_str(entry.metadata.as_deref()?).ok()?;
    let hash = metadata.get("sha256")?.as_str()?.to_ascii_lowercase();
    (hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit())).then_some(hash)
}

/// Hashes and fully decodes `bytes` within the default limits (a truncated or corrupt body
/// fails here, not later).
pub fn decode(bytes: &[u8]) -> Result<DecodedImage, String> {
    decode_image(bytes).map(|(decoded, _)| decoded)
}

/// [`decode`], also returning the pixels.
pub fn decode_image(bytes: &[u8]) -> Result<(DecodedImage, image::DynamicImage), String> {
    decode_image_within(bytes, &ImageLimits::default(), MinSize::WHOLE)
}

/// [`decode_image`] within `limits`, a large JPEG reduced as far as `min` allows (see
/// [`decode_reduced_within`]); the [`DecodedImage`]'s size is the whole image's.
pub fn decode_image_within(
    bytes: &[u8],
    limits: &ImageLimits,
    min: MinSize,
) -> Result<(DecodedImage, image::DynamicImage), String> {
    let content_hash = hex::encode(Sha256::digest(bytes));
    let (image, (width, height)) = decode_reduced_within(bytes, limits, min)?;
    let decoded = DecodedImage {
        width,
        height,
        content_hash,
        crop: None,
        full: None,
        full_scale: [1.0, 1.0],
    };
    Ok((decoded, image))
}

/// The image text spotting reads: RGB, its long side scaled down to `max_side` when longer
/// (the detector scales to its canvas anyway), and the image pixels per pixel of it along x
/// and y.
pub fn spotting_image(image: image::DynamicImage, max_side: u32) -> (RgbImage, [f32; 2]) {
    let (w, h) = (image.width(), image.height());
    let long = w.max(h);
    if long <= max_side {
        return (image.into_rgb8(), [1.0, 1.0]);
    }
    let scale = f64::from(max_side) / f64::from(long);
    let (nw, nh) = (
        ((f64::from(w) * scale).round() as u32).max(1),
        ((f64::from(h) * scale).round() as u32).max(1),
    );
    let small = image.resize_exact(nw, nh, image::imageops::FilterType::Triangle);
    let scale = [w as f32 / nw as f32, h as f32 / nh as f32];
    (small.into_rgb8(), scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(width: u32, height: u32) -> Vec<u8> {
        let img = image::RgbImage::from_pixel(width, height, image::Rgb([10, 200, 30]));
        let mut out = std::io::Cursor::new(Vec::new());
        img.write_to(&mut out, image::ImageFormat::Png)
            .expect("encode png");
        out.into_inner()
    }

    #[test]
    fn decode_reports_size_and_rejects_truncated_bytes() {
        let bytes = png(7, 5);
        let decoded = decode(&bytes).expect("valid png");
        assert_eq!((decoded.width, decoded.height), (7, 5));
        assert_eq!(decoded.content_hash.len(), 64);
        assert!(decode(&bytes[..bytes.len() / 2]).is_err());
        assert!(decode(b"not an image").is_err());
    }

    #[tokio::test]
    async fn missing_and_corrupt_objects_become_error_records() {
        let root = store::resolve("memory://images-test").expect("uri");
        root.child("ok.png")
            .expect("child")
            .write(png(3, 3))
            .await
            .expect("write");
        root.child("bad.png")
            .expect("child")
            .write(b"garbage".to_vec())
            .await
            .expect("write");
        let entry = |id: &str| ManifestEntry {
            id: id.into(),
            image: format!("memory://images-test/{id}.png"),
            caption: None,
            metadata: None,
        };
        let got = ImageReader::default()
            .read_all(&[entry("ok"), entry("bad"), entry("gone")], 4)
            .await;
        assert!(got[0].is_ok());
        assert_eq!(got[1].as_ref().expect_err("corrupt").stage, Stage::Decode);
        let missing = got[2].as_ref().expect_err("missing");
        assert_eq!(missing.stage, Stage::Read);
        assert!(missing.reason.contains("not found"), "{}", missing.reason);
    }

    #[test]
    fn the_read_policy_keeps_reads_where_the_manifest_means_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let corpus = dir.path().join("corpus");
        std::fs::create_dir(&corpus).expect("mkdir");
        std::fs::write(dir.path().join("secret.png"), b"x").expect("write");
        std::fs::write(corpus.join("a.png"), b"x").expect("write");
        #[cfg(unix)]
        std::os::unix::fs::symlink(dir.path().join("secret.png"), corpus.join("link.png"))
            .expect("symlink");
        let root = store::normalize_uri(corpus.to_str().expect("utf-8")).expect("uri");
        let policy = ReadPolicy {
            root: Some(root.clone()),
            allowed_prefixes: Vec::new(),
        };
        assert!(policy.check(&format!("{root}/a.png")).is_ok());
        let err = policy
            .check(&format!("{root}/../../../../etc/passwd"))
            .expect_err("climbs out");
        assert!(err.contains("`..`"), "{err}");
        for sneaky in ["x/.%2e/.%2E/secret.png", "x/%2e./y", "x/.\t./y", "x\\..\\y"] {
            let err = policy.check(&format!("{root}/{sneaky}")).expect_err(sneaky);
            assert!(err.contains("`..`"), "{sneaky}: {err}");
        }
        assert!(
            policy
                .check("s3://bucket/images/.%2e/secret/x.jpg")
                .is_err()
        );
        #[cfg(unix)]
        {
            let err = policy
                .check(&format!("{root}/link.png"))
                .expect_err("symlink out");
            assert!(err.contains("symlink"), "{err}");
        }
        // Absolute paths and full URIs stay allowed unless the job names prefixes.
        assert!(policy.check("file:///etc/hostname").is_ok());
        assert!(policy.check("s3://bucket/x.jpg").is_ok());
        let restricted = ReadPolicy {
            root: Some(root.clone()),
            allowed_prefixes: vec![format!("{root}/"), "s3://bucket/images/".into()],
        };
        assert!(restricted.check("s3://bucket/images/x.jpg").is_ok());
        let err = restricted
            .check("s3://bucket/other/x.jpg")
            .expect_err("prefix");
        assert!(err.contains("allowed_prefixes"), "{err}");
        assert!(restricted.check("file:///etc/hostname").is_err());
    }

    #[tokio::test]
    async fn an_object_over_the_byte_limit_is_refused_before_its_body_is_read() {
        let root = store::resolve("memory://images-limit-test").expect("uri");
        root.child("big.png")
            .expect("child")
            .write(png(64, 64))
            .await
            .expect("write");
        let limits = ImageLimits {
            max_bytes: 50,
            ..Default::default()
        };
        let entry = ManifestEntry {
            id: "big".into(),
            image: "memory://images-limit-test/big.png".into(),
            caption: None,
            metadata: None,
        };
        let got = ImageReader::default()
            .within(limits, 1)
            .read_all(&[entry], 1)
            .await;
        let err = got[0].as_ref().expect_err("too big");
        assert_eq!(err.stage, Stage::Read);
        assert!(
            err.reason.contains("max_image_bytes = 50"),
            "{}",
            err.reason
        );
    }

    #[test]
    fn a_large_image_is_kept_for_spotting_at_the_spotting_side() {
        let image = image::DynamicImage::ImageRgb8(image::RgbImage::new(3000, 1500));
        let (small, scale) = spotting_image(image, 1000);
        assert_eq!(small.dimensions(), (1000, 500));
        assert!(scale.iter().all(|s| (s - 3.0).abs() < 1e-6), "{scale:?}");
        let image = image::DynamicImage::ImageRgb8(image::RgbImage::new(30, 15));
        assert_eq!(spotting_image(image, 1000).1, [1.0, 1.0]);
    }
}
