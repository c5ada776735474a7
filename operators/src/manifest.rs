//! Reading the input manifest (`.jsonl` or `.parquet`) into [`ManifestEntry`]s.
//!
//! The input URI names a manifest file or a folder holding `manifest.parquet` or
//! `manifest.jsonl`. Image paths are resolved against the manifest's folder unless they are full
//! URIs. A malformed manifest is a user error with a message that says what to fix.

use std::collections::{BTreeMap, HashSet};

use arrow_array::{Array, RecordBatch, StringArray, cast::AsArray};
use arrow_schema::DataType;
use vemo_schemas::{COL_CAPTION, COL_ID, COL_IMAGE, ManifestEntry};

use crate::store::{self, Location};
use crate::webdataset::{WebDatasetOptions, read_webdataset};
use crate::{Error, Result};

/// A manifest read into memory.
#[derive(Debug, Clone)]
pub struct Manifest {
    /// URI of the manifest file.
    pub uri: String,
    /// Entries in manifest order, ids unique.
    pub entries: Vec<ManifestEntry>,
}

/// How a corpus is laid out (`[input] format`).
#[derive(Debug, Clone, Default, PartialEq)]
pub enum CorpusFormat {
    /// A manifest file or a folder holding one (the default).
    #[default]
    Manifest,
    /// WebDataset `.tar` shards (see [`crate::webdataset`]).
    WebDataset(WebDatasetOptions),
}

/// Reads the corpus named by `input` in `format` into entries.
pub async fn read_corpus(input: &str, format: &CorpusFormat) -> Result<Manifest> {
    match format {
        CorpusFormat::Manifest => read_manifest(input).await,
        CorpusFormat::WebDataset(options) => read_webdataset(input, options).await,
    }
}

/// Finds and reads the manifest named by `input` (a file or a folder).
pub async fn read_manifest(input: &str) -> Result<Manifest> {
    let location = find_manifest(input).await?;
    let bytes = location.read().await?;
    let folder = store::parent(&location.uri);
    let entries = if location.uri.ends_with(".parquet") {
        parse_parquet(&location.uri, bytes, &folder)?
    } else {
        parse_jsonl(&location.uri, &bytes, &folder)?
    };
    check_unique(&location.uri, &entries)?;
    Ok(Manifest {
        uri: location.uri,
        entries,
    })
}

async fn find_manifest(input: &str) -> Result<Location> {
    let location = store::resolve(input)?;
    if location.uri.ends_with(".jsonl") || location.uri.ends_with(".parquet") {
        if location.exists().await? {
            return Ok(location);
        }
        return Err(manifest_error(&location.uri, "no such file".into()));
    }
    for name in ["manifest.parquet", "manifest.jsonl"] {
        let candidate = location.child(name)?;
        if candidate.exists().await? {
            return Ok(candidate);
        }
    }
    Err(manifest_error(
        &location.uri,
        "neither a .jsonl/.parquet file nor a folder holding manifest.parquet or manifest.jsonl"
            .into(),
    ))
}

/// A full URI stays; an absolute local path becomes a `file://` URI when the manifest is local;
/// anything else is relative to the manifest's folder.
fn resolve_image(folder: &str, image: &str) -> String {
    if image.contains("://") {
        image.to_string()
    } else if let Some(url) = image
        .starts_with('/')
        .then(|| url::Url::from_file_path(image).ok())
        .flatten()
        .filter(|_| folder.starts_with("file://"))
    {
        url.to_string()
    } else {
        store::join(folder, image)
    }
}

fn parse_jsonl(uri: &str, bytes: &[u8], folder: &str) -> Result<Vec<ManifestEntry>> {
    let text = std::str::from_utf8(bytes).map_err(|e| manifest_error(uri, e.to_string()))?;
    // A byte-order mark, as some Windows tools write one.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut entries = Vec::new();
    for (n, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let line_no = n + 1;
        let at = |reason: String| manifest_error(uri, format!("line {line_no}: {reason}"));
        let value: serde_json::Value =
            serde_json::from_str(line).map_err(|e| at(format!("not JSON: {e}")))?;
        let serde_json::Value::Object(mut object) = value else {
            return Err(at("expected a JSON object per line".into()));
        };
        let mut take_str = |key: &str, required: bool| match object.remove(key) {
            Some(serde_json::Value::String(s)) => Ok(Some(s)),
            None | Some(serde_json::Value::Null) if !required => Ok(None),
            None | Some(serde_json::Value::Null) => Err(at(format!("missing field `{key}`"))),
            Some(other) => Err(at(format!("field `{key}` must be a string, got {other}"))),
        };
        let id = take_str(COL_ID, true)?.unwrap_or_default();
        let image = take_str(COL_IMAGE, true)?.unwrap_or_default();
        let caption = take_str(COL_CAPTION, false)?;
        let metadata = (!object.is_empty()).then(|| serde_json::Value::Object(object).to_string());
        entries.push(ManifestEntry {
            image: resolve_image(folder, &image),
            id,
            caption,
            metadata,
        });
    }
    Ok(entries)
}

/// Parses a Parquet manifest. A corrupt embedded Arrow schema can make arrow-ipc panic (found
/// by `operators/tests/fuzz_manifest.rs`): the panic is caught and reported like any other
/// malformed manifest.
fn parse_parquet(uri: &str, bytes: bytes::Bytes, folder: &str) -> Result<Vec<ManifestEntry>> {
    let parse = std::panic::AssertUnwindSafe(|| parse_parquet_unguarded(uri, bytes, folder));
    std::panic::catch_unwind(parse).unwrap_or_else(|panic| {
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        Err(manifest_error(
            uri,
            format!("not a readable Parquet file (its reader failed: {what})"),
        ))
    })
}

fn parse_parquet_unguarded(
    uri: &str,
    bytes: bytes::Bytes,
    folder: &str,
) -> Result<Vec<ManifestEntry>> {
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
        .and_then(|b| b.build())
        .map_err(|e| manifest_error(uri, e.to_string()))?;
    let mut entries = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| manifest_error(uri, e.to_string()))?;
        entries.extend(entries_from_batch(uri, &batch, folder)?);
    }
    Ok(entries)
}

fn string_column<'a>(
    uri: &str,
    batch: &'a RecordBatch,
    name: &str,
) -> Result<Option<&'a StringArray>> {
    let Some(column) = batch.column_by_name(name) else {
        return Ok(None);
    };
    match column.data_type() {
        DataType::Utf8 => Ok(Some(column.as_string::<i32>())),
        other => Err(manifest_error(
            uri,
            format!("column `{name}` must be Utf8, got {other}"),
        )),
    }
}

fn entries_from_batch(uri: &str, batch: &RecordBatch, folder: &str) -> Result<Vec<ManifestEntry>> {
    let missing = |name: &str| manifest_error(uri, format!("missing column `{name}`"));
    let ids = string_column(uri, batch, COL_ID)?.ok_or_else(|| missing(COL_ID))?;
    let images = string_column(uri, batch, COL_IMAGE)?.ok_or_else(|| missing(COL_IMAGE))?;
    let captions = string_column(uri, batch, COL_CAPTION)?;
    let extra: Vec<(String, &dyn Array)> = batch
        .schema()
        .fields()
        .iter()
        .zip(batch.columns())
        .filter(|(f, _)| ![COL_ID, COL_IMAGE, COL_CAPTION].contains(&f.name().as_str()))
        .map(|(f, c)| (f.name().clone(), c.as_ref()))
        .collect();
    let mut entries = Vec::with_capacity(batch.num_rows());
    for row in 0..batch.num_rows() {
        if ids.is_null(row) || images.is_null(row) {
            return Err(manifest_error(
                uri,
                format!("row {row}: `id` and `image` must not be null"),
            ));
        }
        let caption = captions
            .filter(|c| !c.is_null(row))
            .map(|c| c.value(row).to_string());
        let metadata = (!extra.is_empty()).then(|| extra_json(&extra, row));
        entries.push(ManifestEntry {
            id: ids.value(row).to_string(),
            image: resolve_image(folder, images.value(row)),
            caption,
            metadata,
        });
    }
    Ok(entries)
}

fn extra_json(extra: &[(String, &dyn Array)], row: usize) -> String {
    let object: BTreeMap<&str, String> = extra
        .iter()
        .filter(|(_, c)| !c.is_null(row))
        .map(|(name, c)| {
            let value = arrow::util::display::array_value_to_string(*c, row).unwrap_or_default();
            (name.as_str(), value)
        })
        .collect();
    serde_json::to_string(&object).unwrap_or_default()
}

pub(crate) fn check_unique(uri: &str, entries: &[ManifestEntry]) -> Result<()> {
    let mut seen = HashSet::with_capacity(entries.len());
    for entry in entries {
        if entry.id.is_empty() {
            return Err(manifest_error(uri, "an `id` is empty".into()));
        }
        if !seen.insert(entry.id.as_str()) {
            return Err(manifest_error(
                uri,
                format!("id `{}` appears more than once", entry.id),
            ));
        }
    }
    Ok(())
}

pub(crate) fn manifest_error(uri: &str, reason: String) -> Error {
    Error::Manifest {
        uri: uri.to_string(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn jsonl_manifest_in_a_folder_resolves_images_and_keeps_extras() {
        let m = store::resolve("memory://manifest-test/corpus/manifest.jsonl").expect("uri");
        let lines = concat!(
            r#"{"id":"a","image":"img/a.jpg","caption":"A cat.","source":"web"}"#,
            "\n",
            r#"{"id":"b","image":"s3://bucket/b.jpg","caption":null}"#,
            "\n"
        );
        m.write(lines.as_bytes().to_vec()).await.expect("write");
        let manifest = read_manifest("memory://manifest-test/corpus")
            .await
            .expect("manifest");
        assert_eq!(manifest.entries.len(), 2);
        assert_eq!(
            manifest.entries[0].image,
            "memory://manifest-test/corpus/img/a.jpg"
        );
        assert_eq!(
            manifest.entries[0].metadata.as_deref(),
            Some(r#"{"source":"web"}"#)
        );
        assert_eq!(manifest.entries[1].image, "s3://bucket/b.jpg");
        assert_eq!(manifest.entries[1].caption, None);
    }

    #[tokio::test]
    async fn parquet_manifest_reads_like_jsonl() {
        use std::sync::Arc;

        use arrow_array::{ArrayRef, Int64Array};
        use arrow_schema::{Field, Schema};
        let schema = Arc::new(Schema::new(vec![
            Field::new(COL_ID, DataType::Utf8, false),
            Field::new(COL_IMAGE, DataType::Utf8, false),
            Field::new(COL_CAPTION, DataType::Utf8, true),
            Field::new("year", DataType::Int64, true),
        ]));
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(vec!["a", "b"])),
            Arc::new(StringArray::from(vec!["a.jpg", "sub/b.jpg"])),
            Arc::new(StringArray::from(vec![Some("A cat."), None])),
            Arc::new(Int64Array::from(vec![Some(2024), None])),
        ];
        let batch = RecordBatch::try_new(schema, columns).expect("batch");
        let location = store::resolve("memory://manifest-test/pq/manifest.parquet").expect("uri");
        crate::parquet_io::write_parquet(&location, &batch)
            .await
            .expect("write");
        let manifest = read_manifest("memory://manifest-test/pq")
            .await
            .expect("manifest");
        assert_eq!(
            manifest.entries[1].image,
            "memory://manifest-test/pq/sub/b.jpg"
        );
        assert_eq!(
            manifest.entries[0].metadata.as_deref(),
            Some(r#"{"year":"2024"}"#)
        );
        assert_eq!(manifest.entries[1].metadata.as_deref(), Some("{}"));
        assert_eq!(manifest.entries[1].caption, None);
    }

    #[tokio::test]
    async fn duplicate_ids_and_missing_fields_say_what_to_fix() {
        let m = store::resolve("memory://manifest-test/dup.jsonl").expect("uri");
        m.write(b"{\"id\":\"a\",\"image\":\"x\"}\n{\"id\":\"a\",\"image\":\"y\"}\n".to_vec())
            .await
            .expect("write");
        let err = read_manifest("memory://manifest-test/dup.jsonl")
            .await
            .expect_err("dup");
        assert!(err.is_user_error());
        assert!(
            err.to_string().contains("id `a` appears more than once"),
            "{err}"
        );

        m.write(b"{\"id\":\"a\"}\n".to_vec()).await.expect("write");
        let err = read_manifest("memory://manifest-test/dup.jsonl")
            .await
            .expect_err("missing");
        assert!(
            err.to_string().contains("line 1: missing field `image`"),
            "{err}"
        );
    }
}
