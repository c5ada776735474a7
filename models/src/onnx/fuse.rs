//! Rewrites a loaded graph into fewer, fused nodes before it runs, as onnxruntime's graph
//! optimiser does for the same files: `Identity` nodes are bypassed, the exported GELU chain
//! (`Div(x, √2) → Erf → Add 1 → Mul x → Mul 0.5`) becomes one [`Op::Gelu`], and a
//! convolution takes the per-channel `Add` and the activation after it into itself, so its
//! output is written once instead of three times. Each rewrite needs the intermediate values
//! to have no other reader, so the graph computes the same function.

use std::collections::HashMap;

use candle_core::Tensor;
use vemo_kernels::Activation;

use super::graph::{Node, Value};
use super::ops::Op;

/// The fused form of `nodes`; new constants (reshaped biases) are added to `constants`.
pub(crate) fn fuse(
    nodes: Vec<Node>,
    constants: &mut HashMap<String, Value>,
    output: &str,
) -> Vec<Node> {
    let mut nodes: Vec<Option<Node>> = bypass_identities(nodes, output)
        .into_iter()
        .map(Some)
        .collect();
    while let Some(rewrite) = find_rewrite(&nodes, constants, output) {
        apply(&mut nodes, constants, rewrite);
    }
    nodes.into_iter().flatten().collect()
}

/// `Identity` nodes removed, their readers reading the identity's input (one whose output
/// is the graph's output stays).
fn bypass_identities(nodes: Vec<Node>, output: &str) -> Vec<Node> {
    let mut alias: HashMap<String, String> = HashMap::new();
    let resolve = |alias: &HashMap<String, String>, name: &str| -> String {
        let mut name = name.to_string();
        while let Some(next) = alias.get(&name) {
            name = next.clone();
        }
        name
    };
    let mut kept = Vec::with_capacity(nodes.len());
    for mut node in nodes {
        node.inputs = node.inputs.iter().map(|i| resolve(&alias, i)).collect();
        if matches!(node.op, Op::Identity) && node.output != output && node.inputs.len() == 1 {
            alias.insert(node.output.clone(), node.inputs[0].clone());
        } else {
            kept.push(node);
        }
    }
    kept
}

enum Rewrite {
    /// The node at `div` becomes a GELU of `x` writing `output`; `drop` are removed.
    Gelu {
        div: usize,
        x: String,
        output: String,
        drop: [usize; 4],
    },
    /// The bias `Add` at `add` (its constant `bias`, `channels` long) moves into `conv`.
    Bias {
        conv: usize,
        add: usize,
        bias: String,
        channels: usize,
    },
    /// The activation node `node` moves into `conv`.
    Activation {
        conv: usize,
        node: usize,
        activation: Activation,
    },
}

struct Readers<'a> {
    nodes: &'a [Option<Node>],
    readers: HashMap<&'a str, Vec<usize>>,
    output: &'a str,
}

impl<'a> Readers<'a> {
    fn new(nodes: &'a [Option<Node>], output: &'a str) -> Self {
        let mut readers: HashMap<&str, Vec<usize>> = HashMap::new();
        for (index, node) in nodes.iter().enumerate() {
            for input in node.iter().flat_map(|n| &n.inputs) {
                readers.entry(input.as_str()).or_default().push(index);
            }
        }
        Self {
            nodes,
            readers,
            output,
        }
    }

    /// The one node reading `value`, when exactly one does and it is not the graph output.
    fn only(&self, value: &str) -> Option<(usize, &'a Node)> {
        match self.readers.get(value).map(Vec::as_slice) {
            Some([index]) if value != self.output => {
                self.nodes[*index].as_ref().map(|n| (*index, n))
            }
            _ => None,
        }
    }
}

/// The input of `node` other than `value`, when `node` has two inputs and one is `value`.
fn other_input<'n>(node: &'n Node, value: &str) -> Option<&'n str> {
    match node.inputs.as_slice() {
        [a, b] if a == value => Some(b),
        [a, b] if b == value => Some(a),
        _ => None,
    }
}

fn scalar_constant(constants: &HashMap<String, Value>, name: &str) -> Option<f32> {
    match constants.get(name)? {
        Value::Float(t) if t.elem_count() == 1 => {
            t.flatten_all().ok()?.to_vec1::<f32>().ok().map(|v| v[0])
        }
        _ => None,
    }
}

fn near(value: Option<f32>, expected: f32) -> bool {
    value.is_some_and(|v| (v - expected).abs() < 1e-4)
}

fn find_rewrite(
    nodes: &[Option<Node>],
    constants: &HashMap<String, Value>,
    output: &str,
) -> Option<Rewrite> {
    let readers = Readers::new(nodes, output);
    for (index, node) in nodes.iter().enumerate() {
        let Some(node) = node else { continue };
        if let Some(rewrite) = gelu_at(index, node, &readers, constants)
            .or_else(|| conv_epilogue_at(index, node, &readers, constants))
        {
            return Some(rewrite);
        }
    }
    None
}

fn gelu_at(
    index: usize,
    div: &Node,
    readers: &Readers,
    constants: &HashMap<String, Value>,
) -> Option<Rewrite> {
    let Op::Div = div.op else { return None };
    let [x, root2] = div.inputs.as_slice() else {
        return None;
    };
    if !near(scalar_constant(constants, root2), std::f32::consts::SQRT_2) {
        return None;
    }
    let (erf_at, erf) = readers.only(&div.output)?;
    let Op::Erf = erf.op else { return None };
    let (add_at, add) = readers.only(&erf.output)?;
    if !matches!(add.op, Op::Add)
        || !near(
            scalar_constant(constants, other_input(add, &erf.output)?),
            1.0,
        )
    {
        return None;
    }
    let (mul_at, mul) = readers.only(&add.output)?;
    if !matches!(mul.op, Op::Mul) || other_input(mul, &add.output)? != x {
        return None;
    }
    let (half_at, half) = readers.only(&mul.output)?;
    if !matches!(half.op, Op::Mul)
        || !near(
            scalar_constant(constants, other_input(half, &mul.output)?),
            0.5,
        )
    {
        return None;
    }
    Some(Rewrite::Gelu {
        div: index,
        x: x.clone(),
        output: half.output.clone(),
        drop: [erf_at, add_at, mul_at, half_at],
    })
}

/// The output channels of a convolution node with constant weights, and whether it already
/// has a bias and an activation.
fn conv_shape(
    node: &Node,
    constants: &HashMap<String, Value>,
) -> Option<(usize, bool, Activation)> {
    let weight = match constants.get(node.inputs.get(1)?)? {
        Value::Float(t) => t,
        Value::Ints(_) => return None,
    };
    let (channels, activation) = match &node.op {
        Op::Conv { activation, .. } => (weight.dim(0).ok()?, *activation),
        Op::ConvTranspose { activation, .. } => (weight.dim(1).ok()?, *activation),
        _ => return None,
    };
    let has_bias = node.inputs.get(2).is_some_and(|b| !b.is_empty());
    Some((channels, has_bias, activation))
}

fn conv_epilogue_at(
    index: usize,
    conv: &Node,
    readers: &Readers,
    constants: &HashMap<String, Value>,
) -> Option<Rewrite> {
    let (channels, has_bias, activation) = conv_shape(conv, constants)?;
    if activation != Activation::Identity {
        return None;
    }
    let (next_at, next) = readers.only(&conv.output)?;
    let fused = match &next.op {
        Op::Relu => Activation::Relu,
        Op::Gelu => Activation::Gelu,
        Op::Sigmoid => Activation::Sigmoid,
        Op::HardSigmoid { alpha, beta } => Activation::HardSigmoid {
            alpha: *alpha,
            beta: *beta,
        },
        Op::Add if !has_bias => {
            let bias = other_input(next, &conv.output)?;
            let Value::Float(t) = constants.get(bias)? else {
                return None;
            };
            // (C, 1, 1) or (1, C, 1, 1): broadcast over a (B, C, H, W) output per channel.
            let per_channel = t.elem_count() == channels
                && t.rank() >= 3
                && t.dim(t.rank() - 3).ok()? == channels;
            if !per_channel {
                return None;
            }
            return Some(Rewrite::Bias {
                conv: index,
                add: next_at,
                bias: bias.to_string(),
                channels,
            });
        }
        _ => return None,
    };
    Some(Rewrite::Activation {
        conv: index,
        node: next_at,
        activation: fused,
    })
}

fn apply(nodes: &mut [Option<Node>], constants: &mut HashMap<String, Value>, rewrite: Rewrite) {
    match rewrite {
        Rewrite::Gelu {
            div,
            x,
            output,
            drop,
        } => {
            let node = nodes[div].as_mut().expect("matched node");
            node.op = Op::Gelu;
            node.inputs = vec![x];
            node.output = output;
            drop.iter().for_each(|&i| nodes[i] = None);
        }
        Rewrite::Bias {
            conv,
            add,
            bias,
            channels,
        } => {
            let output = nodes[add].take().expect("matched node").output;
            let name = format!("{bias}#per-channel");
            if let Some(Value::Float(t)) = constants.get(&bias)
                && let Ok(flat) = t.reshape(channels)
            {
                constants.insert(name.clone(), Value::Float(flat));
            }
            let node = nodes[conv].as_mut().expect("matched node");
            node.inputs.truncate(2);
            node.inputs.push(name);
            node.output = output;
        }
        Rewrite::Activation {
            conv,
            node,
            activation,
        } => {
            let output = nodes[node].take().expect("matched node").output;
            let conv = nodes[conv].as_mut().expect("matched node");
            match &mut conv.op {
                Op::Conv { activation: a, .. } | Op::ConvTranspose { activation: a, .. } => {
                    *a = activation
                }
                _ => unreachable!("only convolutions take activations"),
            }
            conv.output = output;
        }
    }
}

/// Applies `activation` with candle's ops (off the CPU, where vemo's kernels do not run).
pub(crate) fn activate_candle(t: Tensor, activation: Activation) -> candle_core::Result<Tensor> {
    match activation {
        Activation::Identity => Ok(t),
        Activation::Relu => t.relu(),
        Activation::Gelu => t.gelu_erf(),
        Activation::Sigmoid => candle_nn::ops::sigmoid(&t),
        Activation::HardSigmoid { alpha, beta } => {
            t.affine(alpha as f64, beta as f64)?.clamp(0f32, 1f32)
        }
        Activation::Clamp { lo, hi } => t.clamp(lo, hi),
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor};
    use prost::Message;

    use crate::onnx::OnnxGraph;
    use crate::onnx::proto::{
        AttributeProto, FLOAT, GraphProto, ModelProto, NodeProto, TensorProto, ValueInfoProto,
    };

    fn node(op: &str, inputs: &[&str], output: &str) -> NodeProto {
        NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![output.to_string()],
            name: output.to_string(),
            op_type: op.to_string(),
            attribute: Vec::new(),
        }
    }

    fn constant(name: &str, t: &Tensor) -> TensorProto {
        TensorProto {
            dims: t.dims().iter().map(|&d| d as i64).collect(),
            data_type: FLOAT,
            float_data: t.flatten_all().and_then(|t| t.to_vec1()).expect("values"),
            name: name.to_string(),
            ..Default::default()
        }
    }

    fn load(nodes: Vec<NodeProto>, initializer: Vec<TensorProto>) -> OnnxGraph {
        let value = |name: &str| ValueInfoProto { name: name.into() };
        let model = ModelProto {
            graph: Some(GraphProto {
                node: nodes,
                initializer,
                input: vec![value("x")],
                output: vec![value("y")],
            }),
            metadata_props: Vec::new(),
        };
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("model.onnx");
        std::fs::write(&path, model.encode_to_vec()).expect("write");
        OnnxGraph::load(&path, &Device::Cpu).expect("load")
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b)
            .and_then(|d| d.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>())
            .expect("diff")
    }

    /// Conv → bias Add → Identity → the exported GELU chain → 1x1 Conv → bias Add → Relu
    /// becomes two convolutions, and computes what candle's ops compute.
    #[test]
    fn convolution_bias_and_activations_fuse_and_keep_the_function() {
        let device = Device::Cpu;
        let scalar = |v: f32| Tensor::new(&[v], &device).expect("scalar");
        let (w1, b1) = (
            Tensor::randn(0f32, 0.5, (4, 3, 3, 3), &device).expect("w1"),
            Tensor::randn(0f32, 0.5, (1, 4, 1, 1), &device).expect("b1"),
        );
        let (w2, b2) = (
            Tensor::randn(0f32, 0.5, (5, 4, 1, 1), &device).expect("w2"),
            Tensor::randn(0f32, 0.5, (1, 5, 1, 1), &device).expect("b2"),
        );
        let mut conv = node("Conv", &["x", "w1"], "c1");
        conv.attribute.push(AttributeProto {
            name: "pads".into(),
            ints: vec![1, 1, 1, 1],
            ..Default::default()
        });
        let nodes = vec![
            conv,
            node("Add", &["c1", "b1"], "a1"),
            node("Identity", &["a1"], "i1"),
            node("Div", &["i1", "root2"], "d"),
            node("Erf", &["d"], "e"),
            node("Add", &["e", "one"], "e1"),
            node("Mul", &["i1", "e1"], "m"),
            node("Mul", &["m", "half"], "g"),
            node("Conv", &["g", "w2"], "c2"),
            node("Add", &["c2", "b2"], "a2"),
            node("Relu", &["a2"], "y"),
        ];
        let constants = vec![
            constant("w1", &w1),
            constant("b1", &b1),
            constant("w2", &w2),
            constant("b2", &b2),
            constant("root2", &scalar(std::f32::consts::SQRT_2)),
            constant("one", &scalar(1.0)),
            constant("half", &scalar(0.5)),
        ];
        let graph = load(nodes, constants);
        assert_eq!(graph.node_count(), 2);
        let x = Tensor::randn(0f32, 1.0, (2, 3, 6, 7), &device).expect("x");
        let ours = graph.run(x.clone()).expect("run");
        let theirs = x
            .conv2d(&w1, 1, 1, 1, 1)
            .and_then(|t| t.broadcast_add(&b1)?.gelu_erf()?.conv2d(&w2, 0, 1, 1, 1))
            .and_then(|t| t.broadcast_add(&b2)?.relu())
            .expect("reference");
        assert!(max_diff(&ours, &theirs) < 1e-5);
    }

    /// A convolution whose output is also read by a residual `Add` keeps its own node for
    /// the activation: fusing would change what the residual reads.
    #[test]
    fn a_value_with_two_readers_is_not_fused_away() {
        let device = Device::Cpu;
        let w = Tensor::randn(0f32, 0.5, (3, 3, 1, 1), &device).expect("w");
        let nodes = vec![
            node("Conv", &["x", "w"], "c"),
            node("Relu", &["c"], "r"),
            node("Add", &["c", "r"], "y"),
        ];
        let graph = load(nodes, vec![constant("w", &w)]);
        assert_eq!(graph.node_count(), 3);
        let x = Tensor::randn(0f32, 1.0, (1, 3, 4, 4), &device).expect("x");
        let c = x.conv2d(&w, 0, 1, 1, 1).expect("conv");
        let theirs = (&c + c.relu().expect("relu")).expect("add");
        assert!(max_diff(&graph.run(x).expect("run"), &theirs) < 1e-5);
    }
}
