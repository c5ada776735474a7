//! An ONNX graph loaded as typed nodes over candle tensors, evaluated node by node in the
//! file's (topological) order; a value is dropped after the last node that reads it, so
//! memory holds only live activations.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};
use prost::Message;

use super::ops::Op;
use super::proto::{self, ModelProto, TensorProto};
use crate::{Error, Result};

/// A value between nodes: a float tensor, or a small list of integers (shapes, axes, the
/// `INT64` initializers and what `Shape` gives), kept on the host.
#[derive(Debug, Clone)]
pub enum Value {
    Float(Tensor),
    Ints(Vec<i64>),
}

impl Value {
    pub(crate) fn float(&self, what: &str) -> candle_core::Result<&Tensor> {
        match self {
            Value::Float(t) => Ok(t),
            Value::Ints(_) => candle_core::bail!("{what}: a float tensor expected, integers found"),
        }
    }

    pub(crate) fn ints(&self, what: &str) -> candle_core::Result<&[i64]> {
        match self {
            Value::Ints(v) => Ok(v),
            Value::Float(_) => {
                candle_core::bail!("{what}: integers expected, a float tensor found")
            }
        }
    }
}

/// One node: its operator (attributes parsed) and the names of its inputs and outputs
/// (an empty input name is an omitted optional input).
#[derive(Debug)]
pub(crate) struct Node {
    pub name: String,
    pub op: Op,
    pub inputs: Vec<String>,
    pub output: String,
}

/// A loaded graph with one input and one output.
#[derive(Debug)]
pub struct OnnxGraph {
    nodes: Vec<Node>,
    constants: HashMap<String, Value>,
    /// For each value a node makes, the index of the last node that reads it.
    last_use: HashMap<String, usize>,
    input: String,
    output: String,
    metadata: HashMap<String, String>,
}

impl OnnxGraph {
    /// Reads an ONNX file; its initializers go to `device`. Fails with a bundle error naming
    /// the node when an operator or attribute is outside what [`Op`] covers.
    pub fn load(path: &Path, device: &Device) -> Result<Self> {
        let bad = |reason: String| Error::Bundle {
            path: path.display().to_string(),
            reason,
        };
        let bytes = std::fs::read(path).map_err(|cause| Error::Io {
            path: path.display().to_string(),
            cause,
        })?;
        let model = ModelProto::decode(bytes.as_slice())
            .map_err(|e| bad(format!("not an ONNX model: {e}")))?;
        let graph = model.graph.ok_or_else(|| bad("no graph".into()))?;
        let mut constants = HashMap::new();
        for init in &graph.initializer {
            let value = constant(init, device)
                .map_err(|reason| bad(format!("initializer `{}`: {reason}", init.name)))?;
            constants.insert(init.name.clone(), value);
        }
        let mut nodes = Vec::with_capacity(graph.node.len());
        for node in &graph.node {
            let op = Op::parse(node).map_err(|reason| {
                bad(format!("node `{}` ({}): {reason}", node.name, node.op_type))
            })?;
            let [output] = node.output.as_slice() else {
                return Err(bad(format!("node `{}`: one output expected", node.name)));
            };
            nodes.push(Node {
                name: node.name.clone(),
                op,
                inputs: node.input.clone(),
                output: output.clone(),
            });
        }
        let inputs: Vec<_> = graph
            .input
            .iter()
            .filter(|i| !constants.contains_key(&i.name))
            .collect();
        let ([input], [output]) = (inputs.as_slice(), graph.output.as_slice()) else {
            return Err(bad("one graph input and one output expected".into()));
        };
        let nodes = super::fuse::fuse(nodes, &mut constants, &output.name);
        let mut last_use = HashMap::new();
        for (index, node) in nodes.iter().enumerate() {
            for name in &node.inputs {
                last_use.insert(name.clone(), index);
            }
        }
        Ok(Self {
            nodes,
            constants,
            last_use,
            input: input.name.clone(),
            output: output.name.clone(),
            metadata: model
                .metadata_props
                .into_iter()
                .map(|p| (p.key, p.value))
                .collect(),
        })
    }

    /// The model's metadata entry `key` (PP-OCR recognizers carry their characters there).
    pub fn metadata(&self, key: &str) -> Option<&str> {
        self.metadata.get(key).map(String::as_str)
    }

    /// The number of nodes left after fusion.
    #[cfg(test)]
    pub(crate) fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// The number of parameters (elements of the float initializers).
    pub fn parameter_count(&self) -> usize {
        self.constants
            .values()
            .map(|v| match v {
                Value::Float(t) => t.elem_count(),
                Value::Ints(_) => 0,
            })
            .sum()
    }

    /// Runs the graph on `input` and returns its output.
    pub fn run(&self, input: Tensor) -> Result<Tensor> {
        let mut live: HashMap<&str, Value> = HashMap::new();
        live.insert(&self.input, Value::Float(input));
        for (index, node) in self.nodes.iter().enumerate() {
            let args = node
                .inputs
                .iter()
                .map(|name| match name.as_str() {
                    "" => Ok(None),
                    name => self
                        .constants
                        .get(name)
                        .or_else(|| live.get(name))
                        .map(Some)
                        .ok_or_else(|| {
                            candle_core::Error::Msg(format!(
                                "node `{}`: input `{name}` is not computed",
                                node.name
                            ))
                        }),
                })
                .collect::<candle_core::Result<Vec<_>>>()?;
            let value = node.op.eval(&args).map_err(|e| {
                candle_core::Error::Msg(format!("node `{}` ({:?}): {e}", node.name, node.op))
            })?;
            for name in &node.inputs {
                if self.last_use.get(name) == Some(&index) && *name != self.output {
                    live.remove(name.as_str());
                }
            }
            live.insert(&node.output, value);
        }
        match live.remove(self.output.as_str()) {
            Some(Value::Float(t)) => Ok(t),
            _ => {
                Err(candle_core::Error::Msg("the graph output is not a float tensor".into()).into())
            }
        }
    }
}

/// An initializer as a [`Value`]: `FLOAT` as a tensor, `INT64` as integers.
fn constant(init: &TensorProto, device: &Device) -> Result<Value, String> {
    let dims: Vec<usize> = init
        .dims
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| format!("negative dimension {d}")))
        .collect::<Result<_, _>>()?;
    let count: usize = dims.iter().product();
    match init.data_type {
        proto::FLOAT => {
            let values: Vec<f32> = if init.raw_data.is_empty() {
                init.float_data.clone()
            } else {
                init.raw_data
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect()
            };
            if values.len() != count {
                return Err(format!("{} values for shape {dims:?}", values.len()));
            }
            Tensor::from_vec(values, dims, device)
                .map(Value::Float)
                .map_err(|e| e.to_string())
        }
        proto::INT64 => {
            let values: Vec<i64> = if init.raw_data.is_empty() {
                init.int64_data.clone()
            } else {
                init.raw_data
                    .chunks_exact(8)
                    .map(|b| i64::from_le_bytes(b.try_into().expect("8 bytes")))
                    .collect()
            };
            if values.len() != count {
                return Err(format!("{} values for shape {dims:?}", values.len()));
            }
            Ok(Value::Ints(values))
        }
        other => Err(format!("data type {other} (only FLOAT and INT64 are read)")),
    }
}
