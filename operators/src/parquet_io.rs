//! Parquet part files of the long tables, written whole to an object store.

use std::collections::HashSet;

use arrow_array::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use crate::Result;
use crate::store::Location;

/// Writes `batch` as one Parquet file (zstd) at `location`.
pub async fn write_parquet(location: &Location, batch: &RecordBatch) -> Result<()> {
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .build();
    let mut buffer = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut buffer, batch.schema(), Some(props))?;
    writer.write(batch)?;
    writer.close()?;
    location.write(buffer).await
}

/// Rewrites the Parquet part at `location` without the rows whose `id` is in `ids` (deletes
/// it when none are left). Returns the rows dropped; a part with none is left untouched.
pub async fn drop_ids(location: &Location, ids: &HashSet<String>) -> Result<usize> {
    use arrow::compute::{concat_batches, filter_record_batch};
    use arrow_array::{BooleanArray, cast::AsArray};
    let batches = read_parquet(location).await?;
    let Some(first) = batches.first() else {
        return Ok(0);
    };
    let schema = first.schema();
    let all = concat_batches(&schema, &batches)?;
    let Some(column) = all.column_by_name(vemo_schemas::COL_ID) else {
        return Ok(0);
    };
    let keep: BooleanArray = column
        .as_string::<i32>()
        .iter()
        .map(|id| Some(!id.is_some_and(|id| ids.contains(id))))
        .collect();
    let dropped = keep.len() - keep.true_count();
    match dropped {
        0 => {}
        _ if dropped == keep.len() => location.delete().await?,
        _ => write_parquet(location, &filter_record_batch(&all, &keep)?).await?,
    }
    Ok(dropped)
}

/// Reads every row of the Parquet file at `location` (for tests and `vemo inspect`).
pub async fn read_parquet(location: &Location) -> Result<Vec<RecordBatch>> {
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let bytes = location.read().await?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)?.build()?;
    Ok(reader.collect::<Result<Vec<_>, _>>()?)
}
