//! Items on their way through a job's stages: their columns so far as one Arrow batch, what the
//! later stages still need of their images, and the items that failed on the way.
//!
//! An item that fails leaves the batch for the errors when it fails ([`ItemRows::fail`]); a
//! stage adds its columns for the rows that are left ([`ItemRows::add_column`]). The rows
//! become an `items` batch by column name ([`crate::batches::items_batch`]).

use arrow_array::cast::AsArray;
use arrow_array::{ArrayRef, BooleanArray, RecordBatch, StringArray};
use arrow_schema::{ArrowError, SchemaRef};
use vemo_schemas::{COL_ID, COL_IMAGE, ErrorRecord, ManifestEntry, Stage};

use crate::Result;
use crate::batches::{item_rows, with_column};
use crate::images::DecodedImage;

/// The items of one shard between two stages.
#[derive(Debug, Clone)]
pub struct ItemRows {
    /// The `items` schema the rows are written in: the fields of the columns stages add.
    schema: SchemaRef,
    /// A row per item still in the shard, with the columns computed so far.
    rows: RecordBatch,
    /// Each row's image: what the stages after reading still need of it (the crop, the whole
    /// image, which they drop once used).
    images: Vec<DecodedImage>,
    /// Items that failed, in the order they failed.
    errors: Vec<ErrorRecord>,
}

impl ItemRows {
    /// The items of `entries` as read (`reads`, one per entry): those with an image become
    /// rows (their manifest and image columns), the others are errors. `schema` is the `items`
    /// schema the rows will be written in.
    pub fn read(
        schema: SchemaRef,
        entries: Vec<ManifestEntry>,
        reads: Vec<Result<DecodedImage, ErrorRecord>>,
    ) -> Result<Self> {
        let (mut read, mut images, mut errors) = (Vec::new(), Vec::new(), Vec::new());
        for (entry, result) in entries.into_iter().zip(reads) {
            match result {
                Ok(image) => {
                    read.push(entry);
                    images.push(image);
                }
                Err(error) => errors.push(error),
            }
        }
        Ok(Self {
            rows: item_rows(&read, &images)?,
            schema,
            images,
            errors,
        })
    }

    /// Rows (items still in the shard).
    pub fn len(&self) -> usize {
        self.rows.num_rows()
    }

    /// True when no item is left.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The rows, with the columns computed so far.
    pub fn rows(&self) -> &RecordBatch {
        &self.rows
    }

    /// The items that failed so far.
    pub fn errors(&self) -> &[ErrorRecord] {
        &self.errors
    }

    /// The rows and the errors.
    pub fn into_parts(self) -> (RecordBatch, Vec<ErrorRecord>) {
        (self.rows, self.errors)
    }

    /// The string column `name` (`caption`, `spotted_text`).
    pub fn strings(&self, name: &str) -> Result<&StringArray> {
        let column = self
            .rows
            .column_by_name(name)
            .ok_or_else(|| ArrowError::SchemaError(format!("no column `{name}` among the rows")))?;
        Ok(column.as_string::<i32>())
    }

    /// Each row's image.
    pub fn images(&self) -> &[DecodedImage] {
        &self.images
    }

    /// Each row's image, for a stage that takes what it needs of it.
    pub fn images_mut(&mut self) -> &mut [DecodedImage] {
        &mut self.images
    }

    /// Moves the rows of `failed` (row, stage, reason; rows in increasing order) from the
    /// batch to the errors.
    pub fn fail(&mut self, failed: Vec<(usize, Stage, String)>) -> Result<()> {
        if failed.is_empty() {
            return Ok(());
        }
        let mut keep = vec![true; self.len()];
        let (ids, images) = (self.strings(COL_ID)?, self.strings(COL_IMAGE)?);
        let mut errors = Vec::with_capacity(failed.len());
        for (row, stage, reason) in failed {
            keep[row] = false;
            errors.push(ErrorRecord {
                id: ids.value(row).to_string(),
                image: images.value(row).to_string(),
                stage,
                reason,
            });
        }
        self.errors.extend(errors);
        self.rows =
            arrow::compute::filter_record_batch(&self.rows, &BooleanArray::from(keep.clone()))?;
        let mut kept = keep.into_iter();
        self.images.retain(|_| kept.next().unwrap_or(false));
        Ok(())
    }

    /// Adds the column `name` of the `items` schema: `array`, a value per row.
    pub fn add_column(&mut self, name: &str, array: ArrayRef) -> Result<()> {
        let field = self.schema.field_with_name(name)?.clone();
        self.rows = with_column(&self.rows, field, array)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::test_items::{entry, image};
    use vemo_schemas::{COL_CAPTION, EmbeddingColumn, items_schema};

    #[test]
    fn failed_items_leave_the_rows_for_the_errors() {
        let schema = items_schema(&[EmbeddingColumn::joint(vemo_schemas::Tower::Text, 6, 2)]);
        let unreadable = ErrorRecord {
            id: "b".into(),
            image: "file:///x/b.png".into(),
            stage: Stage::Decode,
            reason: "bad".into(),
        };
        let entries = vec![entry("a"), entry("b"), entry("c"), entry("d")];
        let reads = vec![Ok(image()), Err(unreadable), Ok(image()), Ok(image())];
        let mut rows = ItemRows::read(schema, entries, reads).expect("rows");
        assert_eq!((rows.len(), rows.errors().len()), (3, 1));
        rows.fail(vec![(1, Stage::Encode, "too long".into())])
            .expect("fail");
        let ids: Vec<&str> = rows
            .strings(COL_ID)
            .expect("ids")
            .iter()
            .flatten()
            .collect();
        assert_eq!(ids, ["a", "d"]);
        assert_eq!(rows.images().len(), 2);
        assert_eq!(rows.errors()[1].id, "c");
        assert_eq!(rows.errors()[1].stage, Stage::Encode);
        let embeddings = vemo_models::models::columns::embedding_array(2, vec![0.6, 0.8, 1.0, 0.0])
            .expect("column");
        rows.add_column("text_emb_e6", Arc::new(embeddings))
            .expect("add");
        assert!(
            rows.add_column(
                "no_such_column",
                Arc::new(StringArray::from(vec!["x", "y"]))
            )
            .is_err()
        );
        assert_eq!(
            rows.strings(COL_CAPTION).expect("captions").value(1),
            "caption d"
        );
    }
}
