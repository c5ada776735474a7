//! The manifest readers against hostile input, through [`read_manifest`] on a `memory://`
//! store: JSONL as random bytes and as random JSON values (any keys, nulls, numbers, nesting),
//! Parquet as random bytes, as mutations of a valid file, and as valid files with random
//! schemas (types the reader does not expect, duplicate and empty names, nulls, extreme
//! values). Every read must be `Ok` or a clean `Err`, never a panic.

#[path = "../../models/tests/support/fuzz.rs"]
mod fuzz;
#[path = "../../models/tests/support/peak_alloc.rs"]
mod peak_alloc;

use std::sync::Arc;

use arrow_array::builder::{BooleanBuilder, Int32Builder, ListBuilder, StringDictionaryBuilder};
use arrow_array::types::Int32Type;
use arrow_array::{
    ArrayRef, BinaryArray, Date32Array, Decimal128Array, Float64Array, Int64Array,
    LargeStringArray, NullArray, RecordBatch, StringArray, StringViewArray, StructArray,
    TimestampMicrosecondArray,
};
use arrow_schema::{DataType, Field, Schema};
use fuzz::{edits, fuzz, mutate};
use proptest::prelude::*;
use vemo_operators::manifest::read_manifest;
use vemo_operators::store;

#[global_allocator]
static ALLOC: peak_alloc::PeakAlloc = peak_alloc::PeakAlloc;

/// What reading a manifest of `len` bytes may allocate: a few copies of it decoded, plus the
/// Parquet reader's own buffers.
fn allowed(len: usize) -> usize {
    256 * len + (16 << 20)
}

/// Writes `bytes` as `uri` and reads it back as a manifest (any outcome but a panic).
fn read(runtime: &tokio::runtime::Runtime, uri: &str, bytes: Vec<u8>) -> usize {
    let len = bytes.len();
    runtime.block_on(async {
        let location = store::resolve(uri).expect("memory URI");
        location.write(bytes).await.expect("memory write");
        let _ = read_manifest(uri).await;
    });
    allowed(len)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::Value;
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        "[ -~\u{e9}\u{feff}/]{0,8}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((key(), inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("id".to_string()),
        Just("image".to_string()),
        Just("caption".to_string()),
        Just(String::new()),
        "[a-z]{1,4}",
    ]
}

/// A JSONL line: an object with (maybe) id, image, caption of any JSON type, and extras; or
/// any JSON value; or a blank line.
fn jsonl_line() -> impl Strategy<Value = String> {
    let object = prop::collection::vec((key(), json_value()), 0..6).prop_map(|kv| {
        serde_json::Value::Object(kv.into_iter().collect::<serde_json::Map<_, _>>()).to_string()
    });
    let entry = (
        "[a-z0-9]{0,3}",
        prop_oneof![
            Just("a.jpg".to_string()),
            Just("/abs/b.png".to_string()),
            Just("../../../etc/passwd".to_string()),
            Just("s3://bucket/c.jpg".to_string()),
            Just("memory://other/d.jpg".to_string()),
            Just(String::new()),
            "[ -~]{0,8}",
        ],
        prop::option::of("[ -~]{0,8}"),
    )
        .prop_map(|(id, image, caption)| {
            serde_json::json!({"id": id, "image": image, "caption": caption}).to_string()
        });
    prop_oneof![
        3 => entry,
        2 => object,
        1 => json_value().prop_map(|v| v.to_string()),
        1 => Just(String::new()),
        1 => Just("  \t".to_string()),
        1 => Just("{\"id\": \"x\", \"image\": \"y\"".to_string()),
    ]
}

#[test]
fn fuzz_jsonl_manifest() {
    let runtime = runtime();
    fuzz(
        "JSONL manifest (random JSON lines, random bytes)",
        1500,
        prop_oneof![
            3 => (prop::collection::vec(jsonl_line(), 0..8), any::<bool>()).prop_map(
                |(lines, crlf)| lines.join(if crlf { "\r\n" } else { "\n" }).into_bytes()
            ),
            1 => prop::collection::vec(any::<u8>(), 0..300),
            1 => (prop::collection::vec(any::<u8>(), 0..8), jsonl_line())
                .prop_map(|(junk, line)| [junk, line.into_bytes()].concat()),
        ],
        |bytes| {
            read(
                &runtime,
                "memory://fuzz-manifest/jsonl/manifest.jsonl",
                bytes,
            )
        },
    );
}

/// A small deterministic generator for column values.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 11
    }

    fn null(&mut self) -> bool {
        self.next().is_multiple_of(4)
    }

    fn extreme_i64(&mut self) -> i64 {
        match self.next() % 5 {
            0 => i64::MIN,
            1 => i64::MAX,
            2 => 0,
            _ => self.next() as i64 - (1 << 52),
        }
    }

    fn text(&mut self) -> Option<String> {
        let pick = [
            "a.jpg", "", "é", "\u{feff}", "s3://b/k", "/abs", "../x", "id", "a\nb", "\"q\"",
        ];
        (!self.null()).then(|| pick[(self.next() % pick.len() as u64) as usize].to_string())
    }
}

/// A column of `rows` values of type number `kind`, built from `seed`.
fn column(kind: u8, rows: usize, seed: u64) -> ArrayRef {
    let mut g = Lcg(seed);
    let texts: Vec<Option<String>> = (0..rows).map(|_| g.text()).collect();
    match kind % 14 {
        0 => Arc::new(StringArray::from(texts)),
        1 => Arc::new(LargeStringArray::from(texts)),
        2 => Arc::new(StringViewArray::from(texts)),
        3 => Arc::new(Int64Array::from_iter(
            (0..rows).map(|_| (!g.null()).then(|| g.extreme_i64())),
        )),
        4 => Arc::new(Float64Array::from_iter((0..rows).map(|_| {
            let v = [f64::NAN, f64::INFINITY, -0.0, 1e308, 5e-324][(g.next() % 5) as usize];
            (!g.null()).then_some(v)
        }))),
        5 => {
            let mut b = BooleanBuilder::new();
            for _ in 0..rows {
                b.append_option((!g.null()).then(|| g.next().is_multiple_of(2)));
            }
            Arc::new(b.finish())
        }
        6 => Arc::new(BinaryArray::from_iter(
            texts
                .iter()
                .map(|t| t.as_ref().map(|s| s.as_bytes().to_vec())),
        )),
        7 => {
            let mut b = ListBuilder::new(Int32Builder::new());
            for _ in 0..rows {
                for _ in 0..g.next() % 3 {
                    b.values().append_value(g.next() as i32);
                }
                b.append(!g.null());
            }
            Arc::new(b.finish())
        }
        8 => {
            let a: ArrayRef = Arc::new(Int64Array::from_iter(
                (0..rows).map(|_| (!g.null()).then(|| g.extreme_i64())),
            ));
            let b: ArrayRef = Arc::new(StringArray::from(texts));
            Arc::new(StructArray::from(vec![
                (Arc::new(Field::new("a", DataType::Int64, true)), a),
                (Arc::new(Field::new("b", DataType::Utf8, true)), b),
            ]))
        }
        9 => {
            let mut b = StringDictionaryBuilder::<Int32Type>::new();
            for t in &texts {
                b.append_option(t.as_deref());
            }
            Arc::new(b.finish())
        }
        10 => Arc::new(
            TimestampMicrosecondArray::from_iter(
                (0..rows).map(|_| (!g.null()).then(|| g.extreme_i64())),
            )
            .with_timezone("UTC"),
        ),
        11 => Arc::new(Date32Array::from_iter((0..rows).map(|_| {
            let v = [i32::MIN, i32::MAX, 0, -719_528][(g.next() % 4) as usize];
            (!g.null()).then_some(v)
        }))),
        12 => Arc::new(
            Decimal128Array::from_iter((0..rows).map(|_| {
                (!g.null()).then(|| i128::from(g.extreme_i64()) * 1_000_000_000_000_000_000)
            }))
            .with_precision_and_scale(38, 10)
            .expect("decimal"),
        ),
        _ => Arc::new(NullArray::new(rows)),
    }
}

fn parquet_bytes(batch: &RecordBatch) -> Vec<u8> {
    let mut out = Vec::new();
    let mut writer = parquet::arrow::ArrowWriter::try_new(&mut out, batch.schema(), None)
        .expect("parquet writer");
    writer.write(batch).expect("parquet write");
    writer.close().expect("parquet close");
    out
}

/// A Parquet file of random columns: names from the manifest's and others, possibly repeated.
fn random_parquet() -> impl Strategy<Value = Vec<u8>> {
    let names = ["id", "image", "caption", "year", "", "id"];
    (
        prop::collection::vec((0..names.len(), any::<u8>(), any::<u64>()), 0..6),
        0..6usize,
    )
        .prop_map(move |(columns, rows)| {
            let arrays: Vec<ArrayRef> = columns
                .iter()
                .map(|&(_, kind, seed)| column(kind, rows, seed))
                .collect();
            let fields: Vec<Field> = columns
                .iter()
                .zip(&arrays)
                .map(|(&(name, _, _), a)| Field::new(names[name], a.data_type().clone(), true))
                .collect();
            let schema = Arc::new(Schema::new(fields));
            let batch = if arrays.is_empty() {
                RecordBatch::new_empty(schema)
            } else {
                RecordBatch::try_new(schema, arrays).expect("batch")
            };
            parquet_bytes(&batch)
        })
}

fn manifest_parquet() -> Vec<u8> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Utf8, false),
        Field::new("image", DataType::Utf8, false),
        Field::new("caption", DataType::Utf8, true),
        Field::new("year", DataType::Int64, true),
    ]));
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(vec!["a", "b", "c"])),
        Arc::new(StringArray::from(vec![
            "a.jpg",
            "sub/b.jpg",
            "s3://x/c.jpg",
        ])),
        Arc::new(StringArray::from(vec![Some("A cat."), None, Some("é")])),
        Arc::new(Int64Array::from(vec![Some(2024), None, Some(-1)])),
    ];
    parquet_bytes(&RecordBatch::try_new(schema, columns).expect("batch"))
}

#[test]
fn fuzz_parquet_manifest_random_schemas() {
    let runtime = runtime();
    fuzz(
        "Parquet manifest (valid files, random schemas and values)",
        400,
        random_parquet(),
        |bytes| {
            read(
                &runtime,
                "memory://fuzz-manifest/pq/manifest.parquet",
                bytes,
            )
        },
    );
}

#[test]
fn fuzz_parquet_manifest_random_bytes() {
    let runtime = runtime();
    fuzz(
        "Parquet manifest (random bytes, bare or between PAR1 magics)",
        800,
        prop_oneof![
            prop::collection::vec(any::<u8>(), 0..400),
            prop::collection::vec(any::<u8>(), 0..200).prop_map(|mut b| {
                b.extend_from_slice(b"PAR1");
                let mut file = b"PAR1".to_vec();
                file.append(&mut b);
                file
            }),
        ],
        |bytes| {
            read(
                &runtime,
                "memory://fuzz-manifest/random/manifest.parquet",
                bytes,
            )
        },
    );
}

/// Regression, found here: a mutated Parquet file whose `ARROW:schema` metadata is corrupt
/// made arrow-ipc panic (`convert.rs`: "expect a large list to have one child", and others)
/// while `read_manifest` opened it; `parse_parquet` now turns that panic into a manifest error.
#[test]
fn fuzz_parquet_manifest_mutated_file() {
    let runtime = runtime();
    let valid = manifest_parquet();
    fuzz(
        "Parquet manifest (mutated valid file)",
        800,
        edits(4).prop_map(move |e| mutate(&valid, &e)),
        |bytes| {
            // The parquet crate sizes some buffers from the (mutated) page headers: seen up to
            // 57 MB for a 1 KB file. A manifest is read once per job, not per item; allow it
            // 256 MiB, which also catches a reader that would allocate what a header claims.
            read(
                &runtime,
                "memory://fuzz-manifest/mutated/manifest.parquet",
                bytes,
            )
            .max(256 << 20)
        },
    );
}
