//! The ONNX operators vemo evaluates, with their attributes parsed once ([`Op::parse`]) and
//! their semantics as the ONNX operator specification (opset 11) gives them, for the forms
//! the checks in `parse` let through.

use candle_core::{Result, Tensor, bail};

use vemo_kernels::{Activation, Binary};

use super::fuse::activate_candle;
use super::graph::Value;
use super::proto::{AttributeProto, NodeProto};

/// Convolution geometry: per-axis strides and the padding before and after each axis.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Window {
    pub kernel: Option<[usize; 2]>,
    pub strides: [usize; 2],
    /// `[top, left, bottom, right]`, or `None` for `auto_pad = SAME_UPPER`.
    pub pads: Option<[usize; 4]>,
}

impl Window {
    /// The padding for an input of `h x w` and a `kh x kw` kernel.
    fn pads(&self, h: usize, w: usize, kh: usize, kw: usize) -> [usize; 4] {
        match self.pads {
            Some(p) => p,
            None => {
                let total = |size: usize, s: usize, k: usize| {
                    ((size.div_ceil(s) - 1) * s + k).saturating_sub(size)
                };
                let (th, tw) = (total(h, self.strides[0], kh), total(w, self.strides[1], kw));
                [th / 2, tw / 2, th - th / 2, tw - tw / 2]
            }
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) enum Op {
    Identity,
    Add,
    Sub,
    Mul,
    Div,
    Pow,
    Sqrt,
    Erf,
    /// `x * Φ(x)`: not an ONNX operator of opset 11, made by [`super::fuse`] from the
    /// exported `Div → Erf → Add → Mul → Mul` chain.
    Gelu,
    Relu,
    Sigmoid,
    HardSigmoid {
        alpha: f32,
        beta: f32,
    },
    /// `activation` is what [`super::fuse`] moved into the convolution (else `Identity`).
    Conv {
        group: usize,
        window: Window,
        activation: Activation,
    },
    ConvTranspose {
        strides: [usize; 2],
        activation: Activation,
    },
    GlobalAveragePool,
    ReduceMean {
        axes: Vec<i64>,
        keepdims: bool,
    },
    /// Nearest-neighbour upsampling by whole factors (`asymmetric`, `floor`).
    Resize,
    Concat {
        axis: i64,
    },
    MaxPool {
        window: Window,
    },
    AveragePool {
        window: Window,
    },
    MatMul,
    Transpose {
        perm: Vec<usize>,
    },
    Slice,
    Squeeze {
        axes: Vec<i64>,
    },
    Unsqueeze {
        axes: Vec<i64>,
    },
    Reshape,
    Shape,
    BatchNormalization {
        epsilon: f32,
    },
    Softmax {
        axis: i64,
    },
}

fn attribute<'a>(node: &'a NodeProto, name: &str) -> Option<&'a AttributeProto> {
    node.attribute.iter().find(|a| a.name == name)
}

fn ints(node: &NodeProto, name: &str) -> Option<Vec<i64>> {
    attribute(node, name).map(|a| a.ints.clone())
}

fn int(node: &NodeProto, name: &str, default: i64) -> i64 {
    attribute(node, name).map_or(default, |a| a.i)
}

fn float(node: &NodeProto, name: &str, default: f32) -> f32 {
    attribute(node, name).map_or(default, |a| a.f)
}

fn string(node: &NodeProto, name: &str) -> String {
    attribute(node, name).map_or(String::new(), |a| {
        String::from_utf8_lossy(&a.s).into_owned()
    })
}

fn pair(values: Option<Vec<i64>>, default: usize) -> std::result::Result<[usize; 2], String> {
    match values.as_deref() {
        None => Ok([default; 2]),
        Some([a, b]) if *a > 0 && *b > 0 => Ok([*a as usize, *b as usize]),
        Some(other) => Err(format!("two positive values expected, got {other:?}")),
    }
}

fn window(node: &NodeProto) -> std::result::Result<Window, String> {
    if let Some(d) = ints(node, "dilations")
        && d.iter().any(|&v| v != 1)
    {
        return Err(format!("dilations {d:?} (only 1 is supported)"));
    }
    let kernel = match ints(node, "kernel_shape") {
        Some(k) => Some(pair(Some(k), 1)?),
        None => None,
    };
    let strides = pair(ints(node, "strides"), 1)?;
    let pads = match string(node, "auto_pad").as_str() {
        "SAME_UPPER" => None,
        "" | "NOTSET" => match ints(node, "pads").as_deref() {
            None => Some([0; 4]),
            Some([t, l, b, r]) if [t, l, b, r].iter().all(|&&p| p >= 0) => {
                Some([*t as usize, *l as usize, *b as usize, *r as usize])
            }
            Some(other) => return Err(format!("pads {other:?}")),
        },
        other => {
            return Err(format!(
                "auto_pad {other} (only SAME_UPPER and explicit pads)"
            ));
        }
    };
    Ok(Window {
        kernel,
        strides,
        pads,
    })
}

impl Op {
    /// The operator of `node`, or why vemo cannot run it.
    pub fn parse(node: &NodeProto) -> std::result::Result<Op, String> {
        Ok(match node.op_type.as_str() {
            "Identity" => Op::Identity,
            "Add" => Op::Add,
            "Sub" => Op::Sub,
            "Mul" => Op::Mul,
            "Div" => Op::Div,
            "Pow" => Op::Pow,
            "Sqrt" => Op::Sqrt,
            "Erf" => Op::Erf,
            "Relu" => Op::Relu,
            "Sigmoid" => Op::Sigmoid,
            "HardSigmoid" => Op::HardSigmoid {
                alpha: float(node, "alpha", 0.2),
                beta: float(node, "beta", 0.5),
            },
            "Conv" => Op::Conv {
                group: usize::try_from(int(node, "group", 1)).map_err(|e| e.to_string())?,
                window: window(node)?,
                activation: Activation::Identity,
            },
            "ConvTranspose" => {
                let w = window(node)?;
                let padded = w.pads.is_none_or(|p| p != [0; 4]);
                if padded || int(node, "group", 1) != 1 || ints(node, "output_padding").is_some() {
                    return Err("only unpadded, ungrouped transposed convolutions".into());
                }
                Op::ConvTranspose {
                    strides: w.strides,
                    activation: Activation::Identity,
                }
            }
            "GlobalAveragePool" => Op::GlobalAveragePool,
            "ReduceMean" => Op::ReduceMean {
                axes: ints(node, "axes").ok_or("axes are required")?,
                keepdims: int(node, "keepdims", 1) == 1,
            },
            "Resize" => {
                let modes = (
                    string(node, "mode"),
                    string(node, "coordinate_transformation_mode"),
                    string(node, "nearest_mode"),
                );
                if modes != ("nearest".into(), "asymmetric".into(), "floor".into()) {
                    return Err(format!("mode {modes:?} (only nearest, asymmetric, floor)"));
                }
                Op::Resize
            }
            "Concat" => Op::Concat {
                axis: int(node, "axis", 0),
            },
            "MaxPool" | "AveragePool" => {
                let w = window(node)?;
                let k = w.kernel.ok_or("kernel_shape is required")?;
                if let Some(p) = w.pads
                    && p.iter().any(|&p| p >= k[0].min(k[1]))
                {
                    return Err(format!("pads {p:?} not smaller than the kernel"));
                }
                if int(node, "ceil_mode", 0) != 0 {
                    return Err("ceil_mode 1".into());
                }
                match node.op_type.as_str() {
                    "MaxPool" => Op::MaxPool { window: w },
                    _ if w.pads.is_some_and(|p| p == [0; 4]) => Op::AveragePool { window: w },
                    _ => return Err("only unpadded average pooling".into()),
                }
            }
            "MatMul" => Op::MatMul,
            "Transpose" => Op::Transpose {
                perm: ints(node, "perm")
                    .ok_or("perm is required")?
                    .into_iter()
                    .map(|p| p as usize)
                    .collect(),
            },
            "Slice" => Op::Slice,
            "Squeeze" => Op::Squeeze {
                axes: ints(node, "axes").ok_or("axes are required")?,
            },
            "Unsqueeze" => Op::Unsqueeze {
                axes: ints(node, "axes").ok_or("axes are required")?,
            },
            "Reshape" => Op::Reshape,
            "Shape" => Op::Shape,
            "BatchNormalization" => Op::BatchNormalization {
                epsilon: float(node, "epsilon", 1e-5),
            },
            "Softmax" => Op::Softmax {
                axis: int(node, "axis", -1),
            },
            other => return Err(format!("operator {other} is not supported")),
        })
    }

    /// Evaluates the operator on its inputs (`None` for an omitted optional input).
    pub fn eval(&self, args: &[Option<&Value>]) -> Result<Value> {
        let arg = |i: usize| -> Result<&Value> {
            args.get(i)
                .copied()
                .flatten()
                .ok_or_else(|| candle_core::Error::Msg(format!("input {i} is missing")))
        };
        let x = |i: usize| -> Result<&Tensor> { arg(i)?.float("input") };
        let float = |t: Tensor| Ok(Value::Float(t));
        match self {
            Op::Identity => Ok(arg(0)?.clone()),
            Op::Add | Op::Sub | Op::Mul | Op::Div => binary(self, arg(0)?, arg(1)?),
            Op::Pow => {
                let exponent = scalar(x(1)?)?;
                match exponent {
                    2.0 => float(x(0)?.sqr()?),
                    e => float(x(0)?.powf(e as f64)?),
                }
            }
            Op::Sqrt => float(x(0)?.sqrt()?),
            Op::Erf => {
                let t = x(0)?;
                float(
                    match t.device().is_cpu() && t.dtype() == candle_core::DType::F32 {
                        true => vemo_kernels::erf(t)?,
                        false => t.erf()?,
                    },
                )
            }
            Op::Gelu => activate(x(0)?, Activation::Gelu),
            Op::Relu => activate(x(0)?, Activation::Relu),
            Op::Sigmoid => activate(x(0)?, Activation::Sigmoid),
            Op::HardSigmoid { alpha, beta } => activate(
                x(0)?,
                Activation::HardSigmoid {
                    alpha: *alpha,
                    beta: *beta,
                },
            ),
            Op::Conv {
                group,
                window,
                activation,
            } => conv(
                x(0)?,
                x(1)?,
                args.get(2).copied().flatten(),
                *group,
                window,
                *activation,
            ),
            Op::ConvTranspose {
                strides,
                activation,
            } => {
                let bias = args.get(2).copied().flatten().map(|b| b.float("bias"));
                conv_transpose(x(0)?, x(1)?, bias.transpose()?, *strides, *activation)
            }
            Op::GlobalAveragePool => float(x(0)?.mean_keepdim(3)?.mean_keepdim(2)?),
            Op::ReduceMean { axes, keepdims } => {
                let t = x(0)?;
                let mut y = t.clone();
                for &a in sorted_axes(axes, t.rank())?.iter().rev() {
                    y = if *keepdims {
                        y.mean_keepdim(a)?
                    } else {
                        y.mean(a)?
                    };
                }
                float(y)
            }
            Op::Resize => {
                let t = x(0)?;
                let scales = x(2)?.to_vec1::<f32>()?;
                let (_, _, h, w) = t.dims4()?;
                let [1.0, 1.0, sh, sw] = scales[..] else {
                    bail!("scales {scales:?}");
                };
                if sh.fract() != 0.0 || sw.fract() != 0.0 || sh < 1.0 || sw < 1.0 {
                    bail!("scales {scales:?} (whole factors only)");
                }
                float(match on_cpu_f32(t) {
                    true => vemo_kernels::upsample_nearest(t, (sh as usize, sw as usize))?,
                    false => t.upsample_nearest2d(h * sh as usize, w * sw as usize)?,
                })
            }
            Op::Concat { axis: a } => {
                let values: Vec<&Value> = (0..args.len()).map(arg).collect::<Result<_>>()?;
                if values.iter().all(|v| matches!(v, Value::Ints(_))) {
                    let mut out = Vec::new();
                    for v in values {
                        out.extend_from_slice(v.ints("concat")?);
                    }
                    return Ok(Value::Ints(out));
                }
                let tensors: Vec<&Tensor> = values
                    .iter()
                    .map(|v| v.float("concat"))
                    .collect::<Result<_>>()?;
                let rank = tensors.first().map_or(0, |t| t.rank());
                float(Tensor::cat(&tensors, axis(*a, rank)?)?)
            }
            Op::MaxPool { window } => max_pool(x(0)?, window),
            Op::AveragePool { window } => {
                let k = window.kernel.unwrap_or([1, 1]);
                float(
                    x(0)?.avg_pool2d_with_stride(
                        (k[0], k[1]),
                        (window.strides[0], window.strides[1]),
                    )?,
                )
            }
            Op::MatMul => {
                let (a, b) = (x(0)?.contiguous()?, x(1)?.contiguous()?);
                if b.rank() == 2 && a.rank() >= 2 && on_cpu_f32(&a) {
                    return matmul_by_pointwise(&a, &b);
                }
                float(if b.rank() == 2 && a.rank() > 2 {
                    a.broadcast_matmul(&b)?
                } else {
                    a.matmul(&b)?
                })
            }
            Op::Transpose { perm } => float(x(0)?.permute(perm.as_slice())?),
            Op::Slice => slice(args),
            Op::Squeeze { axes } => match arg(0)? {
                Value::Ints(v) => Ok(Value::Ints(v.clone())),
                Value::Float(t) => {
                    let mut y = t.clone();
                    for &a in sorted_axes(axes, t.rank())?.iter().rev() {
                        y = y.squeeze(a)?;
                    }
                    float(y)
                }
            },
            Op::Unsqueeze { axes } => match arg(0)? {
                Value::Ints(v) => Ok(Value::Ints(v.clone())),
                Value::Float(t) => {
                    let mut y = t.clone();
                    for &a in &sorted_axes(axes, t.rank() + axes.len())? {
                        y = y.unsqueeze(a)?;
                    }
                    float(y)
                }
            },
            Op::Reshape => {
                if let Value::Ints(v) = arg(0)? {
                    return Ok(Value::Ints(v.clone()));
                }
                let t = x(0)?;
                let spec = arg(1)?.ints("shape")?;
                float(t.reshape(reshape_dims(t.dims(), spec)?)?)
            }
            Op::Shape => Ok(Value::Ints(
                x(0)?.dims().iter().map(|&d| d as i64).collect(),
            )),
            Op::BatchNormalization { epsilon } => {
                let t = x(0)?;
                let (scale, bias, mean, var) = (x(1)?, x(2)?, x(3)?, x(4)?);
                let inv = (var + *epsilon as f64)?.sqrt()?.recip()?;
                let gain = (scale * &inv)?;
                let shift = (bias - (mean * &gain)?)?;
                let mut shape = vec![1; t.rank()];
                shape[1] = gain.elem_count();
                float(
                    t.broadcast_mul(&gain.reshape(shape.as_slice())?)?
                        .broadcast_add(&shift.reshape(shape.as_slice())?)?,
                )
            }
            Op::Softmax { axis: a } => {
                let t = x(0)?;
                let a = axis(*a, t.rank())?;
                float(if a + 1 == t.rank() {
                    candle_nn::ops::softmax_last_dim(&t.contiguous()?)?
                } else {
                    candle_nn::ops::softmax(t, a)?
                })
            }
        }
    }
}

/// ONNX axes (negative ones counted from the end) in increasing order.
fn sorted_axes(axes: &[i64], rank: usize) -> Result<Vec<usize>> {
    let mut out: Vec<usize> = axes.iter().map(|&a| axis(a, rank)).collect::<Result<_>>()?;
    out.sort_unstable();
    Ok(out)
}

/// A negative ONNX axis counted from the end.
fn axis(a: i64, rank: usize) -> Result<usize> {
    let r = rank as i64;
    if a < -r || a >= r {
        bail!("axis {a} for rank {rank}");
    }
    Ok(if a < 0 { (a + r) as usize } else { a as usize })
}

fn scalar(t: &Tensor) -> Result<f32> {
    if t.elem_count() != 1 {
        bail!("a scalar expected, shape {:?}", t.dims());
    }
    t.flatten_all()?.to_vec1::<f32>().map(|v| v[0])
}

/// `Add`, `Sub`, `Mul`, `Div` with numpy broadcasting; on integer lists (shape arithmetic)
/// element by element, a one-element list broadcast.
fn binary(op: &Op, a: &Value, b: &Value) -> Result<Value> {
    if let (Value::Ints(a), Value::Ints(b)) = (a, b) {
        let n = a.len().max(b.len());
        let at = |v: &[i64], i: usize| if v.len() == 1 { v[0] } else { v[i] };
        if !(a.len() == b.len() || a.len() == 1 || b.len() == 1) {
            bail!("integer lists of lengths {} and {}", a.len(), b.len());
        }
        let f = |x: i64, y: i64| match op {
            Op::Add => x + y,
            Op::Sub => x - y,
            Op::Mul => x * y,
            _ => x.checked_div(y).unwrap_or(0),
        };
        return Ok(Value::Ints((0..n).map(|i| f(at(a, i), at(b, i))).collect()));
    }
    let (a, b) = (a.float("lhs")?, b.float("rhs")?);
    if b.elem_count() == 1 && b.rank() <= 1 {
        let s = scalar(b)? as f64;
        return Ok(Value::Float(match op {
            Op::Add => a.affine(1.0, s)?,
            Op::Sub => a.affine(1.0, -s)?,
            Op::Mul => a.affine(s, 0.0)?,
            _ => a.affine(1.0 / s, 0.0)?,
        }));
    }
    if on_cpu_f32(a) && a.dims() == b.dims() && matches!(op, Op::Add | Op::Mul) {
        let kind = match op {
            Op::Add => Binary::Add,
            _ => Binary::Mul,
        };
        return Ok(Value::Float(vemo_kernels::binary_same_shape(a, b, kind)?));
    }
    if let (Op::Add, Some(bias)) = (op, channel_bias(a, b)?) {
        let (n, c, h, w) = a.dims4()?;
        let y = vemo_kernels::bias_clamp(&a.reshape((n, c, h * w))?, &bias, None)?;
        return Ok(Value::Float(y.reshape((n, c, h, w))?));
    }
    Ok(Value::Float(match op {
        Op::Add => a.broadcast_add(b)?,
        Op::Sub => a.broadcast_sub(b)?,
        Op::Mul => a.broadcast_mul(b)?,
        _ => a.broadcast_div(b)?,
    }))
}

fn on_cpu_f32(t: &Tensor) -> bool {
    t.device().is_cpu() && t.dtype() == candle_core::DType::F32
}

/// `activation` of every element: vemo's parallel kernel on the CPU, candle's ops elsewhere.
fn activate(t: &Tensor, activation: Activation) -> Result<Value> {
    Ok(Value::Float(match on_cpu_f32(t) {
        true => vemo_kernels::activate(t, activation)?,
        false => activate_candle(t.clone(), activation)?,
    }))
}

/// `b` as a (C) vector when it is a (1, C, 1, 1) bias for the CPU tensor `a` (B, C, H, W).
fn channel_bias(a: &Tensor, b: &Tensor) -> Result<Option<Tensor>> {
    let (Ok((_, c, _, _)), Ok((1, bc, 1, 1))) = (a.dims4(), b.dims4()) else {
        return Ok(None);
    };
    if bc != c || !a.device().is_cpu() || a.dtype() != candle_core::DType::F32 {
        return Ok(None);
    }
    Ok(Some(b.reshape(c)?))
}

/// `y` (B, C, H, W) plus the optional per-channel `bias` (C) of a convolution.
fn add_bias(y: Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
    match bias {
        None => Ok(y),
        Some(b) => y.broadcast_add(&b.reshape((1, b.elem_count(), 1, 1))?),
    }
}

/// `a` (..., M, K) times `b` (K, N) as the 1x1 convolution of `b`, seen as a (1, K, N, 1)
/// image, with the rows of `a` as its (M, K) filters: vemo's convolution kernel, on AVX-512
/// where the CPU has it.
fn matmul_by_pointwise(a: &Tensor, b: &Tensor) -> Result<Value> {
    let (k, n) = b.dims2()?;
    let dims = a.dims();
    let rows: usize = dims[..dims.len() - 1].iter().product();
    if dims[dims.len() - 1] != k {
        bail!("matmul: {:?} x {:?}", dims, b.dims());
    }
    let y = vemo_kernels::conv2d(
        &b.reshape((1, k, n, 1))?,
        &a.reshape((rows, k, 1, 1))?,
        None,
        (1, 1),
        [0; 4],
        Activation::Identity,
    )?;
    let mut out = dims.to_vec();
    *out.last_mut().expect("rank >= 2") = n;
    Ok(Value::Float(y.reshape(out)?))
}

/// `Conv` then the fused `activation`: on the CPU, depthwise (one group a channel) and
/// single-group convolutions run on vemo's kernels with the bias and activation fused in;
/// elsewhere candle's (asymmetric padding applied to the input first).
fn conv(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Value>,
    group: usize,
    window: &Window,
    activation: Activation,
) -> Result<Value> {
    let (_, c, h, wd) = x.dims4()?;
    let (out, per_group, kh, kw) = w.dims4()?;
    let pads = window.pads(h, wd, kh, kw);
    let strides = (window.strides[0], window.strides[1]);
    let bias = bias.map(|b| b.float("bias")).transpose()?;
    let depthwise = group == c && per_group == 1 && out == c && group > 1;
    if on_cpu_f32(x) && depthwise {
        let y = vemo_kernels::depthwise_conv2d_padded(x, w, bias, strides, pads, activation)?;
        return Ok(Value::Float(y));
    }
    if on_cpu_f32(x) && group == 1 {
        let y = vemo_kernels::conv2d(x, w, bias, strides, pads, activation)?;
        return Ok(Value::Float(y));
    }
    if strides.0 != strides.1 {
        bail!("strides {strides:?} off the CPU: candle's convolution has one stride");
    }
    let [t, l, b, r] = pads;
    let y = if t == b && l == r && t == l {
        x.conv2d(w, t, strides.0, 1, group)?
    } else {
        let padded = x.pad_with_zeros(2, t, b)?.pad_with_zeros(3, l, r)?;
        padded.conv2d(w, 0, strides.0, 1, group)?
    };
    Ok(Value::Float(activate_candle(
        add_bias(y, bias)?,
        activation,
    )?))
}

/// `ConvTranspose` without padding, then the fused `activation`: on vemo's kernel when the
/// kernel equals the stride (no two taps overlap) on the CPU, else candle's.
fn conv_transpose(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    strides: [usize; 2],
    activation: Activation,
) -> Result<Value> {
    let (_, _, kh, kw) = w.dims4()?;
    if [kh, kw] == strides && on_cpu_f32(x) {
        let y = vemo_kernels::conv_transpose_blocks(x, w, bias, activation)?;
        return Ok(Value::Float(y));
    }
    if strides[0] != strides[1] {
        bail!("unequal strides {strides:?}");
    }
    let y = x.conv_transpose2d(w, 0, 0, strides[0], 1)?;
    Ok(Value::Float(activate_candle(
        add_bias(y, bias)?,
        activation,
    )?))
}

/// `MaxPool`: padded positions never win (edge padding equals the ONNX rule of ignoring
/// them while a window always holds a real pixel, which the pad check ensures).
fn max_pool(x: &Tensor, window: &Window) -> Result<Value> {
    let (_, _, h, w) = x.dims4()?;
    let k = window.kernel.unwrap_or([1, 1]);
    let [t, l, b, r] = window.pads(h, w, k[0], k[1]);
    if on_cpu_f32(x) {
        let (kernel, strides) = ((k[0], k[1]), (window.strides[0], window.strides[1]));
        return Ok(Value::Float(vemo_kernels::max_pool2d(
            x,
            kernel,
            strides,
            [t, l, b, r],
        )?));
    }
    let padded = x.pad_with_same(2, t, b)?.pad_with_same(3, l, r)?;
    Ok(Value::Float(padded.max_pool2d_with_stride(
        (k[0], k[1]),
        (window.strides[0], window.strides[1]),
    )?))
}

/// `Slice` (opset 10+: starts, ends, axes, steps as inputs; step 1 only), on a tensor or on
/// an integer list.
fn slice(args: &[Option<&Value>]) -> Result<Value> {
    let list = |i: usize| -> Result<Option<&[i64]>> {
        args.get(i)
            .copied()
            .flatten()
            .map(|v| v.ints("slice"))
            .transpose()
    };
    let (starts, ends) = (list(1)?.unwrap_or(&[]), list(2)?.unwrap_or(&[]));
    if list(4)?.is_some_and(|s| s.iter().any(|&s| s != 1)) {
        bail!("steps other than 1");
    }
    let data = args
        .first()
        .copied()
        .flatten()
        .ok_or_else(|| candle_core::Error::Msg("no data".into()))?;
    let dims: Vec<usize> = match data {
        Value::Ints(v) => vec![v.len()],
        Value::Float(t) => t.dims().to_vec(),
    };
    let axes: Vec<i64> = match list(3)? {
        Some(a) => a.to_vec(),
        None => (0..starts.len() as i64).collect(),
    };
    let clamp = |v: i64, n: usize| -> usize {
        let n = n as i64;
        (if v < 0 { v + n } else { v }).clamp(0, n) as usize
    };
    let mut result = data.clone();
    for ((&a, &s), &e) in axes.iter().zip(starts).zip(ends) {
        let a = axis(a, dims.len())?;
        let (s, e) = (clamp(s, dims[a]), clamp(e, dims[a]));
        let len = e.saturating_sub(s);
        result = match result {
            Value::Ints(v) => Value::Ints(v[s..s + len].to_vec()),
            Value::Float(t) => Value::Float(t.narrow(a, s, len)?),
        };
    }
    Ok(result)
}

/// ONNX `Reshape` dimensions: 0 copies the input's dimension, -1 is inferred.
fn reshape_dims(input: &[usize], spec: &[i64]) -> Result<Vec<usize>> {
    let total: usize = input.iter().product();
    let mut dims = Vec::with_capacity(spec.len());
    let mut infer = None;
    for (i, &d) in spec.iter().enumerate() {
        dims.push(match d {
            0 => *input
                .get(i)
                .ok_or_else(|| candle_core::Error::Msg(format!("reshape {spec:?} of {input:?}")))?,
            -1 if infer.is_none() => {
                infer = Some(i);
                1
            }
            d if d > 0 => d as usize,
            _ => bail!("reshape {spec:?}"),
        });
    }
    let known: usize = dims.iter().product();
    if let Some(i) = infer {
        if known == 0 || !total.is_multiple_of(known) {
            bail!("reshape {spec:?} of {input:?}");
        }
        dims[i] = total / known;
    }
    if dims.iter().product::<usize>() != total {
        bail!("reshape {spec:?} of {input:?}");
    }
    Ok(dims)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reshape_copies_zero_and_infers_minus_one() {
        assert_eq!(
            reshape_dims(&[2, 3, 40], &[0, -1, 120]).expect("reshape"),
            vec![2, 1, 120]
        );
        assert!(reshape_dims(&[2, 3, 4], &[5, -1]).is_err());
    }

    #[test]
    fn same_upper_pads_the_end() {
        let w = Window {
            kernel: Some([2, 2]),
            strides: [1, 1],
            pads: None,
        };
        assert_eq!(w.pads(5, 7, 2, 2), [0, 0, 1, 1]);
        let w = Window {
            kernel: None,
            strides: [2, 2],
            pads: None,
        };
        assert_eq!(w.pads(8, 8, 3, 3), [0, 0, 1, 1]);
    }
}
