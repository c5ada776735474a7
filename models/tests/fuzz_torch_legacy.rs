//! The legacy `.pth` reader against hostile checkpoints: random bytes, mutations of the torch
//! fixture, and well-formed files that declare huge shapes, strides, offsets and storages. Every
//! one must be `Ok` or an `Err`: never a panic, never an allocation the file's size does not
//! justify. The regression tests are named after what broke before the reader was bounded.

#[path = "support/fuzz.rs"]
mod fuzz;
#[path = "support/peak_alloc.rs"]
mod peak_alloc;

use fuzz::{edits, fuzz, mutate};
use proptest::prelude::*;
use vemo_models::torch_legacy::read_state_dict;

#[global_allocator]
static ALLOC: peak_alloc::PeakAlloc = peak_alloc::PeakAlloc;

/// What a parse of `len` bytes may allocate: the reader's bounds are linear in the file (a
/// value on its stack is ~100 bytes, the memo may copy 16x), plus room for error messages.
fn allowed(len: usize) -> usize {
    4096 * len + (1 << 20)
}

/// The fixture torch itself wrote (see `models/tests/torch_legacy.rs`).
const FIXTURE: &[u8] = include_bytes!("fixtures/legacy.pth");

/// One tensor of a hand-built legacy file: a view of storage `key` (float32, `numel` elements).
#[derive(Debug, Clone)]
struct View {
    key: String,
    numel: u64,
    offset: u64,
    size: Vec<u64>,
    stride: Vec<u64>,
}

fn int(out: &mut Vec<u8>, v: u64) {
    out.push(0x8a); // LONG1, 9 bytes: never negative
    out.push(9);
    out.extend_from_slice(&v.to_le_bytes());
    out.push(0);
}

fn string(out: &mut Vec<u8>, s: &str) {
    out.push(b'X');
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn ints(out: &mut Vec<u8>, values: &[u64]) {
    out.push(b'(');
    for &v in values {
        int(out, v);
    }
    out.push(b't');
}

/// A legacy `torch.save` file of `views`; each storage holds `min(numel, data_cap)` elements
/// of data after its (possibly larger) declared count.
fn legacy_file(views: &[View], data_cap: u64) -> Vec<u8> {
    let mut out = vec![0x80, 0x02, 0x8a, 10];
    out.extend_from_slice(&0x1950a86a20f9469cfc6c_u128.to_le_bytes()[..10]);
    out.extend_from_slice(b".\x80\x02M\xe9\x03.\x80\x02}.");
    out.extend_from_slice(b"\x80\x02}");
    for (i, v) in views.iter().enumerate() {
        string(&mut out, &format!("t{i}"));
        out.extend_from_slice(b"ctorch._utils\n_rebuild_tensor_v2\n(");
        out.push(b'(');
        string(&mut out, "storage");
        out.extend_from_slice(b"ctorch\nFloatStorage\n");
        string(&mut out, &v.key);
        string(&mut out, "cpu");
        int(&mut out, v.numel);
        out.extend_from_slice(b"NtQ");
        int(&mut out, v.offset);
        ints(&mut out, &v.size);
        ints(&mut out, &v.stride);
        out.extend_from_slice(b"\x89}tRs");
    }
    out.push(b'.');
    out.extend_from_slice(b"\x80\x02(");
    let mut keys: Vec<&View> = Vec::new();
    for v in views {
        if !keys.iter().any(|k| k.key == v.key) {
            keys.push(v);
        }
    }
    for v in &keys {
        string(&mut out, &v.key);
    }
    out.extend_from_slice(b"l.");
    for v in &keys {
        out.extend_from_slice(&v.numel.to_le_bytes());
        let n = v.numel.min(data_cap) as usize;
        out.extend((0..n * 4).map(|b| b as u8));
    }
    out
}

fn view(numel: u64, offset: u64, size: &[u64], stride: &[u64]) -> View {
    View {
        key: "0".into(),
        numel,
        offset,
        size: size.to_vec(),
        stride: stride.to_vec(),
    }
}

#[test]
fn hand_built_files_read_like_torch_writes_them() {
    // A 2x3 storage read through its transposed (3x2) view.
    let file = legacy_file(&[view(6, 0, &[3, 2], &[1, 3])], u64::MAX);
    let tensors = read_state_dict(&file).expect("valid file");
    assert_eq!(tensors[0].shape, [3, 2]);
    let first: Vec<u8> = tensors[0].data.chunks(4).map(|c| c[0]).collect();
    assert_eq!(first, [0, 12, 4, 16, 8, 20], "row-major copy of the view");
    assert!(!read_state_dict(FIXTURE).expect("fixture").is_empty());
}

#[test]
fn regression_shape_product_overflow_is_an_error_not_a_panic() {
    let file = legacy_file(&[view(1, 0, &[1 << 31, 1 << 31, 1 << 31], &[0, 0, 0])], 1);
    let err = read_state_dict(&file).expect_err("overflowing shape");
    assert!(err.to_string().contains("too large"), "{err}");
}

#[test]
fn regression_huge_broadcast_view_is_an_error_not_a_huge_allocation() {
    // One element viewed 2^40 times with stride 0: 4 TiB of output from a few hundred bytes.
    let file = legacy_file(&[view(1, 0, &[1 << 40], &[0])], 1);
    let (result, peak) = peak_alloc::peak_of(|| read_state_dict(&file));
    let err = result.expect_err("huge view");
    assert!(peak <= allowed(file.len()), "{peak} bytes");
    assert!(
        err.to_string().contains("more than the file's size"),
        "{err}"
    );
}

#[test]
fn regression_stride_or_offset_overflow_is_an_error_not_a_panic() {
    for v in [
        view(4, u64::MAX / 2, &[2], &[1]),
        view(4, 0, &[3], &[u64::MAX / 2]),
        view(4, 3, &[2], &[1]),
    ] {
        let err = read_state_dict(&legacy_file(&[v], u64::MAX)).expect_err("outside storage");
        assert!(err.to_string().contains("past its storage"), "{err}");
    }
}

#[test]
fn regression_fewer_strides_than_sizes_is_an_error() {
    let file = legacy_file(&[view(8, 0, &[2, 4], &[4])], u64::MAX);
    let err = read_state_dict(&file).expect_err("rank mismatch");
    assert!(err.to_string().contains("2 sizes but 1 strides"), "{err}");
}

#[test]
fn regression_storage_count_larger_than_the_file_is_an_error() {
    let file = legacy_file(&[view(u64::MAX / 4, 0, &[1], &[1])], 4);
    assert!(read_state_dict(&file).is_err());
}

#[test]
fn regression_memo_billion_laughs_is_an_error_not_gigabytes() {
    // Each round: a list of two copies of the memo's last list, memoized again. 40 rounds in
    // 280 bytes would be 2^40 values.
    let mut bomb = b"]q\x00".to_vec();
    for _ in 0..40 {
        bomb.extend_from_slice(b"(h\x00h\x00lq\x00");
    }
    bomb.push(b'.');
    let (result, peak) = peak_alloc::peak_of(|| read_state_dict(&bomb));
    let err = result.expect_err("bomb");
    assert!(peak <= allowed(bomb.len()), "{peak} bytes");
    assert!(err.to_string().contains("memo copies more than"), "{err}");
}

#[test]
fn regression_deep_nesting_is_an_error_not_a_stack_overflow() {
    // A million nested lists in two megabytes: their recursive drop overflowed the stack.
    let depth = 1_000_000;
    let mut deep = vec![b']'; depth];
    deep.extend(std::iter::repeat_n(b'a', depth - 1));
    deep.push(b'.');
    let err = read_state_dict(&deep).expect_err("deep");
    assert!(err.to_string().contains("nested deeper"), "{err}");
}

#[test]
fn fuzz_legacy_pth_random_bytes() {
    fuzz(
        "legacy .pth (random bytes)",
        2000,
        prop::collection::vec(any::<u8>(), 0..512),
        |bytes| {
            let _ = read_state_dict(&bytes);
            allowed(bytes.len())
        },
    );
}

#[test]
fn fuzz_legacy_pth_opcode_soup() {
    // Random sequences of the opcodes the reader knows, with small operands: reaches far
    // deeper into the pickle machine than random bytes.
    let ops: Vec<&[u8]> = vec![
        b"(",
        b"N",
        b"\x88",
        b"K\x05",
        b"M\x00\x01",
        b"J\xff\xff\xff\xff",
        b"\x8a\x02\xff\x7f",
        b"X\x01\x00\x00\x00a",
        b"\x8c\x01k",
        b")",
        b"]",
        b"}",
        b"t",
        b"\x85",
        b"\x86",
        b"\x87",
        b"l",
        b"d",
        b"q\x00",
        b"q\x01",
        b"r\x00\x00\x00\x00",
        b"\x94",
        b"h\x00",
        b"h\x01",
        b"j\x00\x00\x00\x00",
        b"a",
        b"e",
        b"s",
        b"u",
        b"Q",
        b"R",
        b"b",
        b".",
        b"ctorch._utils\n_rebuild_tensor_v2\n",
        b"ccollections\nOrderedDict\n",
        b"ctorch\nFloatStorage\n",
        b"X\x07\x00\x00\x00storage",
    ];
    let magic = &FIXTURE[..15];
    fuzz(
        "legacy .pth (opcode soup)",
        2000,
        (prop::collection::vec(0..ops.len(), 0..200), any::<bool>()),
        |(picks, with_magic)| {
            let mut bytes = if with_magic {
                magic.to_vec()
            } else {
                Vec::new()
            };
            for p in picks {
                bytes.extend_from_slice(ops[p]);
            }
            let _ = read_state_dict(&bytes);
            allowed(bytes.len())
        },
    );
}

#[test]
fn fuzz_legacy_pth_mutated_fixture() {
    fuzz(
        "legacy .pth (mutated torch fixture)",
        1500,
        edits(6),
        |edits| {
            let bytes = mutate(FIXTURE, &edits);
            let _ = read_state_dict(&bytes);
            allowed(bytes.len())
        },
    );
}

fn dimension() -> impl Strategy<Value = u64> {
    prop_oneof![
        0..5u64,
        Just(1 << 31),
        Just(1 << 40),
        Just(u64::MAX / 2),
        Just(i64::MAX as u64),
        any::<u64>(),
    ]
}

#[test]
fn fuzz_legacy_pth_huge_declared_sizes() {
    // Well-formed files whose shapes, strides, offsets and storage counts are random, often
    // huge; the data behind each storage is at most 64 elements.
    let views = prop::collection::vec(
        (
            0..3u8,
            dimension(),
            dimension(),
            prop::collection::vec(dimension(), 0..4),
            prop::collection::vec(dimension(), 0..4),
        )
            .prop_map(|(key, numel, offset, size, stride)| View {
                key: key.to_string(),
                numel,
                offset,
                size,
                stride,
            }),
        1..4,
    );
    fuzz(
        "legacy .pth (huge declared sizes)",
        1500,
        (views, 0..64u64),
        |(views, cap)| {
            let file = legacy_file(&views, cap);
            if let Ok(tensors) = read_state_dict(&file) {
                let out: usize = tensors.iter().map(|t| t.data.len()).sum();
                assert!(out <= 4 * file.len(), "{out} bytes out of {}", file.len());
            }
            allowed(file.len())
        },
    );
}
