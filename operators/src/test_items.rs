//! Unit-test fixtures shared by the row and batch modules: a manifest entry and the decoded
//! image the readers make of it (no pixels kept).

use vemo_schemas::ManifestEntry;

use crate::images::DecodedImage;

/// The manifest entry `id`, captioned `caption {id}`.
pub fn entry(id: &str) -> ManifestEntry {
    ManifestEntry {
        id: id.into(),
        image: format!("file:///x/{id}.png"),
        caption: Some(format!("caption {id}")),
        metadata: None,
    }
}

/// A 4 x 3 image's record, without its pixels.
pub fn image() -> DecodedImage {
    DecodedImage {
        width: 4,
        height: 3,
        content_hash: "ab".into(),
        crop: None,
        full: None,
        full_scale: [1.0, 1.0],
    }
}
