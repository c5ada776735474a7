//! Parquet part files of the long tables, written whole to an object store.

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

/// Reads every row of the Parquet file at `location` (for tests and `vemo inspect`).
pub async fn read_parquet(location: &Location) -> Result<Vec<RecordBatch>> {
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let bytes = location.read().await?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)?.build()?;
    Ok(reader.collect::<Result<Vec<_>, _>>()?)
}
