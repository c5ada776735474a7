//! Column names of every table vemo reads or writes.

use crate::Tower;

/// Input id: unique within a manifest, the key of every output row.
pub const COL_ID: &str = "id";
/// Image location: in a manifest a path relative to the manifest's folder or a full URI;
/// in `items` always the resolved full URI.
pub const COL_IMAGE: &str = "image";
/// Caption text, as given in the manifest.
pub const COL_CAPTION: &str = "caption";
/// Extra manifest columns, passed through as one JSON object.
pub const COL_METADATA: &str = "metadata";
/// Decoded image width in pixels.
pub const COL_WIDTH: &str = "width";
/// Decoded image height in pixels.
pub const COL_HEIGHT: &str = "height";
/// SHA-256 of the image bytes, hex.
pub const COL_CONTENT_HASH: &str = "content_hash";
/// Id of the model bundle that produced the row (`vemo-mini@0.1.0`).
pub const COL_BUNDLE: &str = "bundle";
/// Id of the job run that wrote the row.
pub const COL_JOB_ID: &str = "job_id";
/// When the row was written, UTC microseconds.
pub const COL_INDEXED_AT: &str = "indexed_at";
/// Pipeline stage at which an input failed (see [`crate::Stage`]).
pub const COL_STAGE: &str = "stage";
/// Human-readable reason of a failure.
pub const COL_REASON: &str = "reason";
/// Long table: the `items` column the embedding belongs to.
pub const COL_COLUMN: &str = "column";
/// Long table: tower name (`text`, `image`).
pub const COL_TOWER: &str = "tower";
/// Long table: encoder exit (number of layers run).
pub const COL_EXIT: &str = "exit";
/// Long table: the embedding vector.
pub const COL_EMBEDDING: &str = "embedding";

/// Entities found in the caption (List<Struct>).
pub const COL_ENTITIES: &str = "entities";
/// Normalised entity keys, `LABEL:lowercased text` (List<Utf8>).
pub const COL_ENTITY_KEYS: &str = "entity_keys";
/// Entity struct and long table: the entity as written.
pub const COL_TEXT: &str = "text";
/// Entity type (`PER`, `ORG`, `LOC`, `MISC`).
pub const COL_LABEL: &str = "label";
/// Character offset where the entity starts.
pub const COL_START: &str = "start";
/// Character offset where the entity ends (exclusive).
pub const COL_END: &str = "end";
/// Mean tag probability of the entity.
pub const COL_SCORE: &str = "score";
/// Entity long table: the normalised key.
pub const COL_KEY: &str = "key";

/// Words spotted in the image (List<Struct>: `text`, `score`, `polygon`).
pub const COL_SPOTTED: &str = "spotted";
/// The spotted words joined by spaces, in reading order (full-text indexed).
pub const COL_SPOTTED_TEXT: &str = "spotted_text";
/// Entities found in the spotted text (List<Struct>, offsets into `spotted_text`).
pub const COL_SPOTTED_ENTITIES: &str = "spotted_entities";
/// Entity long table: where the entity was found (`caption` or `spotted_text`).
pub const COL_SOURCE: &str = "source";
/// A spotted word's 4-point polygon in image pixels: x1, y1, ..., x4, y4, clockwise from the
/// top left (List<Float32>).
pub const COL_POLYGON: &str = "polygon";

/// Name of the embedding column of `tower` at `exit`: `text_emb_e6` is the caption embedding
/// taken after text layer 6.
pub fn embedding_column(tower: Tower, exit: usize) -> String {
    format!("{tower}_emb_e{exit}")
}

/// Name of a tower's own feature column at `exit`: `image_feat_e7`, the pooled image feature.
pub fn feature_column(tower: Tower, exit: usize) -> String {
    format!("{tower}_feat_e{exit}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedding_column_names_tower_and_exit() {
        assert_eq!(embedding_column(Tower::Text, 6), "text_emb_e6");
        assert_eq!(embedding_column(Tower::Image, 3), "image_emb_e3");
        assert_eq!(feature_column(Tower::Image, 7), "image_feat_e7");
    }
}
