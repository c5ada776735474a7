//! Reader of PyTorch's legacy (non-zip) `torch.save` format, for importing checkpoints such as
//! EfficientNet-Lite0 and CRAFT that candle's `.pth` reader does not handle.
//!
//! The file is five pickles in a row: a magic number, the protocol version, system info, the
//! object (a state dict whose tensors refer to storages by persistent id), the list of storage
//! keys; then each storage's raw bytes, in that order, after an 8-byte element count. The
//! pickle machine here only builds values: the one callable it applies is a fixed allow-list of
//! rebuild functions (`OrderedDict`, `_rebuild_tensor_v2`, `_rebuild_parameter`); any other
//! global is refused, so nothing in a file can run code.

use std::collections::HashMap;

use crate::{Error, Result};

/// Magic number at the start of a legacy file.
const MAGIC: i128 = 0x1950a86a20f9469cfc6c;

/// Element type of a stored tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TorchDtype {
    F32,
    F64,
    F16,
    BF16,
    I64,
    I32,
    U8,
}

impl TorchDtype {
    fn from_storage(name: &str) -> Option<Self> {
        Some(match name {
            "FloatStorage" => Self::F32,
            "DoubleStorage" => Self::F64,
            "HalfStorage" => Self::F16,
            "BFloat16Storage" => Self::BF16,
            "LongStorage" => Self::I64,
            "IntStorage" => Self::I32,
            "ByteStorage" => Self::U8,
            _ => return None,
        })
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            Self::F64 | Self::I64 => 8,
            Self::F32 | Self::I32 => 4,
            Self::F16 | Self::BF16 => 2,
            Self::U8 => 1,
        }
    }
}

/// One tensor of the state dict, its elements contiguous in row-major order (little endian).
#[derive(Debug, Clone, PartialEq)]
pub struct TorchTensor {
    pub name: String,
    pub dtype: TorchDtype,
    pub shape: Vec<usize>,
    pub data: Vec<u8>,
}

impl TorchTensor {
    /// The elements as f32 (integers and halves converted), for tests and conversions.
    pub fn to_f32(&self) -> Vec<f32> {
        let n = self.dtype.size();
        self.data
            .chunks_exact(n)
            .map(|b| match self.dtype {
                TorchDtype::F32 => f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
                TorchDtype::F64 => f64::from_le_bytes(eight(b)) as f32,
                TorchDtype::F16 => half_to_f32(u16::from_le_bytes([b[0], b[1]])),
                TorchDtype::BF16 => {
                    f32::from_bits(u32::from(u16::from_le_bytes([b[0], b[1]])) << 16)
                }
                TorchDtype::I64 => i64::from_le_bytes(eight(b)) as f32,
                TorchDtype::I32 => i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f32,
                TorchDtype::U8 => f32::from(b[0]),
            })
            .collect()
    }
}

fn eight(b: &[u8]) -> [u8; 8] {
    let mut out = [0; 8];
    out.copy_from_slice(&b[..8]);
    out
}

/// IEEE half -> f32 (handles subnormals, infinities, NaN).
fn half_to_f32(h: u16) -> f32 {
    let sign = if h & 0x8000 != 0 { -1.0 } else { 1.0 };
    let exp = i32::from((h >> 10) & 0x1f);
    let frac = f32::from(h & 0x3ff);
    match exp {
        0 => sign * frac * 2f32.powi(-24),
        31 if frac == 0.0 => sign * f32::INFINITY,
        31 => f32::NAN,
        _ => sign * (1.0 + frac / 1024.0) * 2f32.powi(exp - 15),
    }
}

/// A value on the pickle machine's stack.
#[derive(Debug, Clone)]
enum Value {
    Mark,
    None,
    /// A bool or float: nothing in a state dict's structure depends on their values.
    Other,
    Int(i128),
    Str(String),
    Tuple(Vec<Value>),
    List(Vec<Value>),
    Dict(Vec<(Value, Value)>),
    Global(String, String),
    Storage {
        key: String,
        dtype: TorchDtype,
    },
    Tensor(TensorRef),
}

#[derive(Debug, Clone)]
struct TensorRef {
    key: String,
    dtype: TorchDtype,
    offset: usize,
    size: Vec<usize>,
    stride: Vec<usize>,
}

fn bad(reason: impl Into<String>) -> Error {
    Error::Bundle {
        path: "legacy .pth".into(),
        reason: reason.into(),
    }
}

/// Deepest nesting of containers a pickle may build. A state dict needs fewer than ten levels;
/// the bound keeps the recursive clone, drop and `Debug` of a value on a small stack (a hostile
/// file nests lists a million deep in two bytes a level).
const MAX_DEPTH: usize = 64;

/// Weight (values and string bytes) a file may copy out of and into the pickle memo, per byte
/// of the file. A memo reference is two bytes, so without a bound a few hundred bytes that
/// double a list through the memo again and again allocate gigabytes ("billion laughs").
const COPY_PER_FILE_BYTE: usize = 16;

/// Tensor bytes [`read_state_dict`] may return per byte of the file. Each tensor is copied out
/// of its storage, so views sharing a storage (tied weights) cost more than the file; this
/// bound stops a file that points a million memoized views at one large storage.
const OUTPUT_PER_FILE_BYTE: usize = 4;

/// A value on the pickle machine's stack or in its memo, with its nesting depth and weight
/// (1 per value plus the bytes of its strings), both kept so that neither is ever recomputed.
#[derive(Debug, Clone)]
struct Slot {
    value: Value,
    depth: usize,
    weight: usize,
}

impl Slot {
    fn leaf(value: Value) -> Self {
        let bytes = match &value {
            Value::Str(s) => s.len(),
            Value::Global(module, name) => module.len() + name.len(),
            Value::Storage { key, .. } => key.len(),
            Value::Tensor(t) => t.key.len() + t.size.len() + t.stride.len(),
            _ => 0,
        };
        Slot {
            value,
            depth: 1,
            weight: 1 + bytes,
        }
    }

    /// A container of `items`, built by `make` from their values.
    fn container(items: Vec<Slot>, make: impl FnOnce(Vec<Value>) -> Result<Value>) -> Result<Self> {
        let depth = 1 + items.iter().map(|s| s.depth).max().unwrap_or(0);
        if depth > MAX_DEPTH {
            return Err(bad(format!("values nested deeper than {MAX_DEPTH} levels")));
        }
        let weight = items
            .iter()
            .fold(1usize, |acc, s| acc.saturating_add(s.weight));
        Ok(Slot {
            value: make(items.into_iter().map(|s| s.value).collect())?,
            depth,
            weight,
        })
    }
}

/// A cursor over the file's bytes.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
    /// Weight copied through the memo so far, at most `copy_budget`.
    copied: usize,
    copy_budget: usize,
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Reader {
            bytes,
            pos: 0,
            copied: 0,
            copy_budget: bytes.len().saturating_mul(COPY_PER_FILE_BYTE),
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.bytes.len());
        let end = end.ok_or_else(|| bad(format!("truncated at byte {}", self.pos)))?;
        let out = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn line(&mut self) -> Result<String> {
        let rest = &self.bytes[self.pos..];
        let end = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or_else(|| bad("unterminated line"))?;
        let text = String::from_utf8_lossy(&rest[..end]).into_owned();
        self.pos += end + 1;
        Ok(text)
    }

    fn string(&mut self, n: usize) -> Result<String> {
        Ok(String::from_utf8_lossy(self.take(n)?).into_owned())
    }

    /// A copy of `slot` (into or out of the memo), charged to the copy budget.
    fn copy(&mut self, slot: &Slot) -> Result<Slot> {
        self.copied = self.copied.saturating_add(slot.weight);
        if self.copied > self.copy_budget {
            return Err(bad(format!(
                "the pickle memo copies more than {COPY_PER_FILE_BYTE}x the file's size"
            )));
        }
        Ok(slot.clone())
    }

    /// Runs one pickle to its STOP and returns the value it built.
    fn pickle(&mut self) -> Result<Value> {
        let mut stack: Vec<Slot> = Vec::new();
        let mut memo: HashMap<u32, Slot> = HashMap::new();
        loop {
            let op = self.u8()?;
            match op {
                0x80 => {
                    self.u8()?; // PROTO
                }
                0x95 => {
                    self.take(8)?; // FRAME
                }
                b'.' => {
                    return Ok(pop(&mut stack)
                        .map_err(|_| bad("empty stack at STOP"))?
                        .value);
                }
                b'(' => stack.push(Slot::leaf(Value::Mark)),
                b'N' => stack.push(Slot::leaf(Value::None)),
                0x88 | 0x89 => stack.push(Slot::leaf(Value::Other)),
                b'J' => stack.push(Slot::leaf(Value::Int(i128::from(self.u32()? as i32)))),
                b'K' => stack.push(Slot::leaf(Value::Int(i128::from(self.u8()?)))),
                b'M' => {
                    let b = self.take(2)?;
                    let v = i128::from(u16::from_le_bytes([b[0], b[1]]));
                    stack.push(Slot::leaf(Value::Int(v)));
                }
                0x8a => {
                    let n = usize::from(self.u8()?); // LONG1
                    if n > 15 {
                        return Err(bad(format!("integer of {n} bytes")));
                    }
                    let b = self.take(n)?;
                    let mut v: i128 = 0;
                    for (i, byte) in b.iter().enumerate() {
                        v |= i128::from(*byte) << (8 * i);
                    }
                    if n > 0 && b[n - 1] & 0x80 != 0 {
                        v -= 1i128 << (8 * n);
                    }
                    stack.push(Slot::leaf(Value::Int(v)));
                }
                b'G' => {
                    self.take(8)?;
                    stack.push(Slot::leaf(Value::Other));
                }
                b'X' | b'T' => {
                    let n = self.u32()? as usize;
                    stack.push(Slot::leaf(Value::Str(self.string(n)?)));
                }
                0x8c | b'U' => {
                    let n = usize::from(self.u8()?);
                    stack.push(Slot::leaf(Value::Str(self.string(n)?)));
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    stack.push(Slot::leaf(Value::Global(module, name)));
                }
                b')' => stack.push(Slot::leaf(Value::Tuple(Vec::new()))),
                b']' => stack.push(Slot::leaf(Value::List(Vec::new()))),
                b'}' => stack.push(Slot::leaf(Value::Dict(Vec::new()))),
                b't' => {
                    let items = pop_mark(&mut stack)?;
                    stack.push(Slot::container(items, |v| Ok(Value::Tuple(v)))?);
                }
                0x85..=0x87 => {
                    let n = usize::from(op - 0x84);
                    let at = stack
                        .len()
                        .checked_sub(n)
                        .ok_or_else(|| bad("stack underflow"))?;
                    let items = stack.split_off(at);
                    stack.push(Slot::container(items, |v| Ok(Value::Tuple(v)))?);
                }
                b'l' => {
                    let items = pop_mark(&mut stack)?;
                    stack.push(Slot::container(items, |v| Ok(Value::List(v)))?);
                }
                b'd' => {
                    let items = pop_mark(&mut stack)?;
                    stack.push(Slot::container(items, |v| Ok(Value::Dict(pairs(v)?)))?);
                }
                b'q' | b'r' | 0x94 => {
                    let key = match op {
                        b'q' => u32::from(self.u8()?),
                        b'r' => self.u32()?,
                        _ => memo.len() as u32, // MEMOIZE
                    };
                    let value = self.copy(top(&stack)?)?;
                    memo.insert(key, value);
                }
                b'h' | b'j' => {
                    let key = if op == b'h' {
                        u32::from(self.u8()?)
                    } else {
                        self.u32()?
                    };
                    let value = memo
                        .get(&key)
                        .ok_or_else(|| bad(format!("memo {key} unset")))?;
                    stack.push(self.copy(value)?);
                }
                b'a' => {
                    let item = pop(&mut stack)?;
                    extend(&mut stack, vec![item], false)?;
                }
                b'e' | b'u' => {
                    let items = pop_mark(&mut stack)?;
                    extend(&mut stack, items, op == b'u')?;
                }
                b's' => {
                    let value = pop(&mut stack)?;
                    let key = pop(&mut stack)?;
                    extend(&mut stack, vec![key, value], true)?;
                }
                b'Q' => {
                    let pid = pop(&mut stack)?;
                    stack.push(Slot::leaf(storage(pid.value)?));
                }
                b'R' => {
                    let args = pop(&mut stack)?;
                    let callable = pop(&mut stack)?;
                    stack.push(Slot::leaf(reduce(callable.value, args.value)?));
                }
                b'b' => {
                    pop(&mut stack)?; // BUILD: the state of an OrderedDict or Parameter; unused
                }
                other => return Err(bad(format!("unsupported pickle opcode 0x{other:02x}"))),
            }
        }
    }
}

fn pop(stack: &mut Vec<Slot>) -> Result<Slot> {
    stack.pop().ok_or_else(|| bad("stack underflow"))
}

fn top(stack: &[Slot]) -> Result<&Slot> {
    stack.last().ok_or_else(|| bad("empty stack"))
}

fn pop_mark(stack: &mut Vec<Slot>) -> Result<Vec<Slot>> {
    let mark = stack
        .iter()
        .rposition(|s| matches!(s.value, Value::Mark))
        .ok_or_else(|| bad("no MARK"))?;
    let items = stack.split_off(mark + 1);
    stack.pop();
    Ok(items)
}

fn pairs(items: Vec<Value>) -> Result<Vec<(Value, Value)>> {
    if !items.len().is_multiple_of(2) {
        return Err(bad("odd number of dict items"));
    }
    let mut out = Vec::with_capacity(items.len() / 2);
    let mut it = items.into_iter();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        out.push((k, v));
    }
    Ok(out)
}

/// APPEND(S) onto the list or (`dict`) SETITEM(S) onto the dict at the top of the stack
/// (`items` then being key, value, key, value...).
fn extend(stack: &mut [Slot], items: Vec<Slot>, dict: bool) -> Result<()> {
    let slot = stack.last_mut().ok_or_else(|| bad("empty stack"))?;
    let depth = 1 + items.iter().map(|s| s.depth).max().unwrap_or(0);
    if depth > MAX_DEPTH {
        return Err(bad(format!("values nested deeper than {MAX_DEPTH} levels")));
    }
    slot.depth = slot.depth.max(depth);
    slot.weight = items
        .iter()
        .fold(slot.weight, |acc, s| acc.saturating_add(s.weight));
    let values = items.into_iter().map(|s| s.value);
    match (&mut slot.value, dict) {
        (Value::List(list), false) => {
            list.extend(values);
            Ok(())
        }
        (Value::Dict(entries), true) => {
            entries.extend(pairs(values.collect())?);
            Ok(())
        }
        (_, false) => Err(bad("APPEND onto a non-list")),
        (_, true) => Err(bad("SETITEM onto a non-dict")),
    }
}

/// A value for an error message, cut short.
fn brief(value: &impl std::fmt::Debug) -> String {
    let mut text = format!("{value:?}");
    if text.len() > 200 {
        let mut end = 200;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push_str("...");
    }
    text
}

fn as_usize(value: &Value) -> Result<usize> {
    match value {
        Value::Int(i) => usize::try_from(*i).map_err(|_| bad(format!("negative size {i}"))),
        other => Err(bad(format!("expected an integer, got {}", brief(other)))),
    }
}

fn usizes(value: &Value) -> Result<Vec<usize>> {
    match value {
        Value::Tuple(items) | Value::List(items) => items.iter().map(as_usize).collect(),
        other => Err(bad(format!(
            "expected a tuple of integers, got {}",
            brief(other)
        ))),
    }
}

/// BINPERSID: `('storage', torch.XStorage, key, location, numel, view_metadata)`.
fn storage(pid: Value) -> Result<Value> {
    let Value::Tuple(items) = pid else {
        return Err(bad("persistent id is not a tuple"));
    };
    match items.as_slice() {
        [
            Value::Str(kind),
            Value::Global(module, name),
            Value::Str(key),
            ..,
        ] if kind == "storage" && module == "torch" => {
            let dtype = TorchDtype::from_storage(name)
                .ok_or_else(|| bad(format!("unsupported storage type torch.{name}")))?;
            Ok(Value::Storage {
                key: key.clone(),
                dtype,
            })
        }
        _ => Err(bad(format!("unsupported persistent id {}", brief(&items)))),
    }
}

/// REDUCE, for the allow-listed callables only.
fn reduce(callable: Value, args: Value) -> Result<Value> {
    let Value::Global(module, name) = callable else {
        return Err(bad("REDUCE of a non-global"));
    };
    let Value::Tuple(args) = args else {
        return Err(bad("REDUCE arguments are not a tuple"));
    };
    match (module.as_str(), name.as_str(), args.as_slice()) {
        ("collections", "OrderedDict", []) => Ok(Value::Dict(Vec::new())),
        (
            "torch._utils",
            "_rebuild_tensor_v2",
            [Value::Storage { key, dtype }, offset, size, stride, ..],
        ) => Ok(Value::Tensor(TensorRef {
            key: key.clone(),
            dtype: *dtype,
            offset: as_usize(offset)?,
            size: usizes(size)?,
            stride: usizes(stride)?,
        })),
        ("torch._utils", "_rebuild_parameter", [tensor @ Value::Tensor(_), ..]) => {
            Ok(tensor.clone())
        }
        _ => Err(bad(format!(
            "refusing to call {module}.{name}: not a tensor-rebuild function"
        ))),
    }
}

/// Reads a legacy `torch.save` file holding a state dict (or a dict with a `state_dict` entry)
/// and returns its tensors in file order, each made contiguous.
pub fn read_state_dict(bytes: &[u8]) -> Result<Vec<TorchTensor>> {
    let mut reader = Reader::new(bytes);
    match reader.pickle()? {
        Value::Int(MAGIC) => {}
        _ => {
            return Err(bad(
                "not a legacy torch.save file (bad magic; zip files are not this format)",
            ));
        }
    }
    reader.pickle()?; // protocol version
    reader.pickle()?; // system info
    let object = reader.pickle()?;
    let Value::List(keys) = reader.pickle()? else {
        return Err(bad("storage key list missing"));
    };
    let mut storages: HashMap<String, &[u8]> = HashMap::new();
    let dtypes = tensor_dtypes(&object);
    for key in keys {
        let Value::Str(key) = key else {
            return Err(bad("storage key is not a string"));
        };
        let numel = usize::try_from(u64::from_le_bytes(eight(reader.take(8)?)))
            .map_err(|_| bad("storage too large"))?;
        let size = dtypes
            .get(&key)
            .copied()
            .ok_or_else(|| bad(format!("storage {key} unused")))?
            .size();
        let data = reader.take(
            numel
                .checked_mul(size)
                .ok_or_else(|| bad("storage too large"))?,
        )?;
        storages.insert(key, data);
    }
    let entries = match object {
        Value::Dict(entries) => entries,
        _ => return Err(bad("the saved object is not a dict")),
    };
    let entries = match entries
        .iter()
        .find(|(k, _)| matches!(k, Value::Str(s) if s == "state_dict"))
    {
        Some((_, Value::Dict(inner))) => inner.clone(),
        _ => entries,
    };
    let mut budget = bytes.len().saturating_mul(OUTPUT_PER_FILE_BYTE);
    entries
        .into_iter()
        .filter_map(|(k, v)| match (k, v) {
            (Value::Str(name), Value::Tensor(t)) => Some((name, t)),
            _ => None,
        })
        .map(|(name, t)| {
            let storage = storages
                .get(&t.key)
                .ok_or_else(|| bad(format!("no storage {}", t.key)))?;
            Ok(TorchTensor {
                data: gather(storage, &t, &mut budget)?,
                name,
                dtype: t.dtype,
                shape: t.size,
            })
        })
        .collect()
}

fn tensor_dtypes(object: &Value) -> HashMap<String, TorchDtype> {
    let mut out = HashMap::new();
    let mut visit = vec![object];
    while let Some(value) = visit.pop() {
        match value {
            Value::Tensor(t) => {
                out.insert(t.key.clone(), t.dtype);
            }
            Value::Dict(entries) => visit.extend(entries.iter().flat_map(|(k, v)| [k, v])),
            Value::List(items) | Value::Tuple(items) => visit.extend(items),
            _ => {}
        }
    }
    out
}

/// Copies a (possibly strided) view out of its storage into row-major order. The view must lie
/// inside its storage and its bytes fit in `budget` (what is left of the file's allowance),
/// both checked before anything is allocated.
fn gather(storage: &[u8], t: &TensorRef, budget: &mut usize) -> Result<Vec<u8>> {
    let elem = t.dtype.size();
    if t.size.len() != t.stride.len() {
        return Err(bad(format!(
            "tensor over storage {}: {} sizes but {} strides",
            t.key,
            t.size.len(),
            t.stride.len()
        )));
    }
    let count = t
        .size
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| bad(format!("tensor over storage {} is too large", t.key)))?;
    if count == 0 {
        return Ok(Vec::new());
    }
    // The element the view reads last (every index at its largest); no index is beyond it.
    let past = || bad(format!("tensor reads past its storage {}", t.key));
    let last = t
        .size
        .iter()
        .zip(&t.stride)
        .try_fold(t.offset, |acc, (&d, &s)| {
            (d - 1).checked_mul(s).and_then(|x| acc.checked_add(x))
        })
        .ok_or_else(past)?;
    let end = last.checked_add(1).and_then(|n| n.checked_mul(elem));
    if end.is_none_or(|end| end > storage.len()) {
        return Err(past());
    }
    let bytes = count
        .checked_mul(elem)
        .filter(|&b| b <= *budget)
        .ok_or_else(|| {
            bad(format!(
                "tensor over storage {} copies {count} elements, more than the file's size \
                 allows ({OUTPUT_PER_FILE_BYTE} bytes of tensors per byte of file)",
                t.key
            ))
        })?;
    *budget -= bytes;
    let mut out = Vec::with_capacity(bytes);
    let mut index = vec![0usize; t.size.len()];
    for _ in 0..count {
        // At most `last`: no overflow.
        let at = t.offset
            + index
                .iter()
                .zip(&t.stride)
                .map(|(i, s)| i * s)
                .sum::<usize>();
        let bytes = storage.get(at * elem..(at + 1) * elem).ok_or_else(past)?;
        out.extend_from_slice(bytes);
        for dim in (0..index.len()).rev() {
            index[dim] += 1;
            if index[dim] < t.size[dim] {
                break;
            }
            index[dim] = 0;
        }
    }
    Ok(out)
}

/// What [`import_to_safetensors`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportSummary {
    /// Tensors written.
    pub tensors: usize,
    /// Elements of floating-point tensors (the parameter and buffer count).
    pub elements: usize,
}

/// Converts the PyTorch checkpoint at `pth` into a safetensors file at `out`, names, shapes
/// and dtypes kept. Legacy files go through [`read_state_dict`]; zip-format files (`PK`
/// magic) through candle's own reader.
pub fn import_to_safetensors(
    pth: &std::path::Path,
    out: &std::path::Path,
) -> Result<ImportSummary> {
    use candle_core::{DType, Tensor};
    let io = |e: std::io::Error| Error::Io {
        path: pth.display().to_string(),
        cause: e,
    };
    let bytes = std::fs::read(pth).map_err(io)?;
    let tensors: Vec<(String, Tensor)> = if bytes.starts_with(b"PK\x03\x04") {
        candle_core::pickle::read_all(pth)?
    } else {
        read_state_dict(&bytes)?
            .into_iter()
            .map(|t| {
                let dtype = match t.dtype {
                    TorchDtype::F32 => DType::F32,
                    TorchDtype::F64 => DType::F64,
                    TorchDtype::F16 => DType::F16,
                    TorchDtype::BF16 => DType::BF16,
                    TorchDtype::I64 => DType::I64,
                    TorchDtype::I32 => DType::I32,
                    TorchDtype::U8 => DType::U8,
                };
                let device = candle_core::Device::Cpu;
                Ok((
                    t.name,
                    Tensor::from_raw_buffer(&t.data, dtype, &t.shape, &device)?,
                ))
            })
            .collect::<Result<_>>()?
    };
    let elements = tensors
        .iter()
        .filter(|(_, t)| t.dtype().is_float())
        .map(|(_, t)| t.elem_count())
        .sum();
    let count = tensors.len();
    // Checkpoints saved from `nn.DataParallel` (CRAFT) prefix every name with `module.`.
    let map: HashMap<String, Tensor> = tensors
        .into_iter()
        .map(|(name, t)| match name.strip_prefix("module.") {
            Some(rest) => (rest.to_string(), t),
            None => (name, t),
        })
        .collect();
    candle_core::safetensors::save(&map, out)?;
    Ok(ImportSummary {
        tensors: count,
        elements,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_conversion_covers_normals_and_subnormals() {
        assert_eq!(half_to_f32(0x3c00), 1.0);
        assert_eq!(half_to_f32(0xc000), -2.0);
        assert_eq!(half_to_f32(0x0001), 2f32.powi(-24));
        assert!(half_to_f32(0x7c00).is_infinite());
    }

    #[test]
    fn arbitrary_globals_are_refused() {
        let call = reduce(
            Value::Global("os".into(), "system".into()),
            Value::Tuple(vec![]),
        );
        assert!(
            call.expect_err("must refuse")
                .to_string()
                .contains("refusing to call os.system")
        );
    }

    #[test]
    fn zip_files_and_garbage_are_rejected_with_a_message() {
        let err = read_state_dict(b"PK\x03\x04 not legacy").expect_err("zip");
        assert!(
            err.to_string().contains("unsupported pickle opcode"),
            "{err}"
        );
        assert!(read_state_dict(b"").is_err());
    }
}
