//! ReadImages: fetch each item's image bytes, hash them and decode them.
//!
//! A missing object or an undecodable image is not a job failure: it comes back as an
//! [`ErrorRecord`] with the stage (`read` or `decode`) and the reason.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures::{StreamExt, stream};
use sha2::{Digest, Sha256};
use vemo_schemas::{ErrorRecord, ManifestEntry, Stage};

pub use image::RgbImage;
pub use vemo_models::pixels::*;

use crate::store::{self, Location};
use crate::{Error, Result};

/// What the pipeline keeps of a decoded image for now.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedImage {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// SHA-256 of the image bytes, hex.
    pub content_hash: String,
    /// The image tower's input (see [`classifier_crop`]) when the job runs the image tower.
    pub crop: Option<Arc<image::RgbImage>>,
    /// The whole image, when the job spots text in it.
    pub full: Option<Arc<image::RgbImage>>,
}

/// One image's read, in flight.
type ImageRead<'a> =
    std::pin::Pin<Box<dyn Future<Output = Result<DecodedImage, ErrorRecord>> + Send + 'a>>;

/// Reads images through a cache of object stores (one client per scheme and bucket).
#[derive(Default)]
pub struct ImageReader {
    stores: Mutex<HashMap<String, Location>>,
    /// (resize, crop) of the image tower's input, when it runs.
    crop: Option<(u32, u32)>,
    /// Keep the whole decoded image (for text spotting).
    keep_full: bool,
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

    /// The same reader, also keeping each whole decoded image (for text spotting).
    pub fn keeping_full(mut self) -> Self {
        self.keep_full = true;
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
    /// order; an image that cannot be fetched hashes to `unreadable`, which matches no row.
    /// A manifest `sha256` column (hex of the image bytes) is taken as given, without a fetch.
    pub async fn hash_all(&self, entries: &[ManifestEntry], concurrency: usize) -> Vec<String> {
        stream::iter(entries)
            .map(|entry| async move {
                if let Some(given) = given_sha256(entry) {
                    return given;
                }
                match self.fetch(&entry.image).await {
                    Ok(bytes) => hex::encode(Sha256::digest(&bytes)),
                    Err(_) => "unreadable".to_string(),
                }
            })
            .buffered(concurrency.max(1))
            .collect()
            .await
    }

    /// Fetches the bytes of the image at `uri`; the error reason is ready for an `errors` row.
    pub async fn fetch(&self, uri: &str) -> Result<bytes::Bytes, String> {
        let location = self.locate(uri).map_err(|e| e.to_string())?;
        location.read().await.map_err(|e| match e {
            Error::Store {
                cause: object_store::Error::NotFound { .. },
                ..
            } => format!("object not found: {uri}"),
            other => other.to_string(),
        })
    }

    async fn read_one(&self, entry: &ManifestEntry) -> Result<DecodedImage, ErrorRecord> {
        let failed = |stage: Stage, reason: String| ErrorRecord {
            id: entry.id.clone(),
            image: entry.image.clone(),
            stage,
            reason,
        };
        let bytes = self
            .fetch(&entry.image)
            .await
            .map_err(|r| failed(Stage::Read, r))?;
        // Decoding is CPU work: it runs on the runtime's blocking pool, so the images of a
        // shard decode in parallel (as many at once as reads are in flight), and a decoder
        // that panics costs one `errors` row.
        let (crop, keep_full) = (self.crop, self.keep_full);
        let decoded = tokio::task::spawn_blocking(move || {
            let (mut decoded, image) = decode_image(&bytes)?;
            if let Some((resize, side)) = crop {
                decoded.crop = Some(Arc::new(classifier_crop(&image, resize, side)));
            }
            if keep_full {
                decoded.full = Some(Arc::new(image.to_rgb8()));
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

/// Hashes and fully decodes `bytes` (a truncated or corrupt body fails here, not later).
pub fn decode(bytes: &[u8]) -> Result<DecodedImage, String> {
    decode_image(bytes).map(|(decoded, _)| decoded)
}

/// [`decode`], also returning the pixels.
pub fn decode_image(bytes: &[u8]) -> Result<(DecodedImage, image::DynamicImage), String> {
    let content_hash = hex::encode(Sha256::digest(bytes));
    let image = decode_pixels(bytes)?;
    let decoded = DecodedImage {
        width: image.width(),
        height: image.height(),
        content_hash,
        crop: None,
        full: None,
    };
    Ok((decoded, image))
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
}
