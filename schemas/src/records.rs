//! Record types that cross crate boundaries: manifest entries, failure stages, error rows.

use serde::{Deserialize, Serialize};

/// One input item as read from the manifest, with its image location resolved.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ManifestEntry {
    /// Unique id of the item.
    pub id: String,
    /// Full URI of the image (`file:///...`, `s3://...`, `memory://...`).
    pub image: String,
    /// Caption, if any.
    pub caption: Option<String>,
    /// Extra manifest columns as a JSON object, if there were any.
    pub metadata: Option<String>,
}

/// The pipeline stage at which an item failed; written to `errors.stage`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Stage {
    /// Fetching the image bytes from the object store.
    Read,
    /// Decoding the image bytes.
    Decode,
    /// Checking and tokenizing the caption.
    Caption,
    /// Running a model tower or head.
    Encode,
}

impl Stage {
    /// The name stored in the `stage` column.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Read => "read",
            Stage::Decode => "decode",
            Stage::Caption => "caption",
            Stage::Encode => "encode",
        }
    }
}

/// One failed item: which, where and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorRecord {
    /// Id of the item that failed.
    pub id: String,
    /// Image URI of the item.
    pub image: String,
    /// Stage that failed.
    pub stage: Stage,
    /// Why it failed, for a human.
    pub reason: String,
}

/// A named entity found in a caption.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entity {
    /// The entity as written in the caption (original case).
    pub text: String,
    /// Type: `PER`, `ORG`, `LOC` or `MISC`.
    pub label: String,
    /// Character offsets of the entity in the caption, end exclusive.
    pub start: u32,
    pub end: u32,
    /// Mean probability of the entity's word tags.
    pub score: f32,
}

impl Entity {
    /// The normalised key an exact entity search matches: `PER:eileen collins`.
    pub fn key(&self) -> String {
        entity_key(&self.label, &self.text)
    }
}

/// A word spotted in an image by the text detector and recognizer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpottedWord {
    /// The word as read.
    pub text: String,
    /// The recognizer's confidence.
    pub score: f32,
    /// x1, y1, ..., x4, y4 in the original image's pixels, clockwise from the top left.
    pub polygon: [f32; 8],
}

/// `LABEL:lowercased text with single spaces`.
pub fn entity_key(label: &str, text: &str) -> String {
    let words: Vec<String> = text.split_whitespace().map(str::to_lowercase).collect();
    format!("{label}:{}", words.join(" "))
}
