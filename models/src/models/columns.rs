//! Embedding columns straight from the towers: each `(batch, dim)` output tensor is copied out
//! once, into the buffer of its column, and the buffers become Arrow arrays without a copy.

use std::sync::Arc;

use arrow_array::{FixedSizeListArray, Float32Array};
use arrow_schema::{ArrowError, DataType};
use candle_core::Tensor;

use crate::{Error, Result};

/// An embedding column whose rows are `values`, `dim` floats each, one after another (a
/// flattened `(rows, dim)` tensor); `values` becomes the column's buffer as it is.
pub fn embedding_array(dim: usize, values: Vec<f32>) -> Result<FixedSizeListArray> {
    let DataType::FixedSizeList(item, size) = vemo_schemas::embedding_type(dim) else {
        return Err(ArrowError::SchemaError("an embedding is a fixed-size list".into()).into());
    };
    let values = Arc::new(Float32Array::from(values));
    Ok(FixedSizeListArray::try_new(item, size, values, None)?)
}

/// The buffers of a tower's embedding columns while its batches run: one per column, with room
/// for every input, each batch's rows written at their inputs' positions.
#[derive(Debug)]
pub(crate) struct ColumnBuffers {
    dims: Vec<usize>,
    values: Vec<Vec<f32>>,
}

impl ColumnBuffers {
    /// Buffers for columns `dims` wide, of `rows` rows each.
    pub(crate) fn new(dims: Vec<usize>, rows: usize) -> Self {
        let values = dims.iter().map(|dim| vec![0.0; dim * rows]).collect();
        Self { dims, values }
    }

    /// Writes one batch: `outputs` holds a `(batch, dim)` f32 tensor per column, whose row `j`
    /// is the input at position `at[j]`.
    pub(crate) fn put(&mut self, outputs: &[Tensor], at: &[usize]) -> Result<()> {
        if outputs.len() != self.dims.len() {
            return Err(shape_error(format!(
                "{} outputs for {} columns",
                outputs.len(),
                self.dims.len()
            )));
        }
        for ((output, &dim), column) in outputs.iter().zip(&self.dims).zip(&mut self.values) {
            let (rows, width) = output.dims2()?;
            if (rows, width) != (at.len(), dim) {
                return Err(shape_error(format!(
                    "an output of {rows}x{width} for {} inputs of {dim}",
                    at.len()
                )));
            }
            let flat = output.flatten_all()?.to_vec1::<f32>()?;
            for (row, &i) in flat.chunks_exact(dim.max(1)).zip(at) {
                let slot = column
                    .get_mut(i * dim..(i + 1) * dim)
                    .ok_or_else(|| shape_error(format!("no row {i} in the column")))?;
                slot.copy_from_slice(row);
            }
        }
        Ok(())
    }

    /// The columns as Arrow arrays (the buffers move into them).
    pub(crate) fn into_arrays(self) -> Result<Vec<FixedSizeListArray>> {
        self.dims
            .into_iter()
            .zip(self.values)
            .map(|(dim, values)| embedding_array(dim, values))
            .collect()
    }

    /// The columns as `[column][row]` vectors (for callers that want plain vectors).
    pub(crate) fn into_rows(self) -> Vec<Vec<Vec<f32>>> {
        self.dims
            .iter()
            .zip(&self.values)
            .map(|(&dim, values)| {
                values
                    .chunks_exact(dim.max(1))
                    .map(<[f32]>::to_vec)
                    .collect()
            })
            .collect()
    }
}

fn shape_error(reason: String) -> Error {
    Error::Bundle {
        path: "tower".into(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::Array;
    use candle_core::Device;

    #[test]
    fn batches_land_at_their_inputs_rows() {
        let mut buffers = ColumnBuffers::new(vec![2], 3);
        let first = Tensor::new(&[[1f32, 2.], [5., 6.]], &Device::Cpu).expect("tensor");
        let second = Tensor::new(&[[3f32, 4.]], &Device::Cpu).expect("tensor");
        buffers.put(&[first], &[0, 2]).expect("put");
        buffers.put(&[second], &[1]).expect("put");
        let rows = ColumnBuffers {
            dims: buffers.dims.clone(),
            values: buffers.values.clone(),
        }
        .into_rows();
        assert_eq!(rows[0], vec![vec![1., 2.], vec![3., 4.], vec![5., 6.]]);
        let arrays = buffers.into_arrays().expect("arrays");
        assert_eq!((arrays[0].len(), arrays[0].value_length()), (3, 2));
        assert_eq!(
            arrays[0].data_type(),
            &vemo_schemas::embedding_type(2),
            "the items column's type"
        );
        let wrong = Tensor::new(&[[1f32, 2., 3.]], &Device::Cpu).expect("tensor");
        let mut buffers = ColumnBuffers::new(vec![2], 1);
        assert!(
            buffers.put(&[wrong], &[0]).is_err(),
            "a 3-wide row in a 2-wide column"
        );
    }
}
