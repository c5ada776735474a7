//! `run_index` in-process on a corpus in a `memory://` object store, with 2 workers: every id
//! ends in `items` or `errors`, and a rerun skips them all. Runs on the tiny bundle
//! (`vemo_models::tiny_bundle`), written by the test itself.

use std::io::Cursor;

use vemo_operators::store;
use vemo_pipeline::{ClusterConfig, IndexConfig, run_index};

fn png(shade: u8) -> Vec<u8> {
    let img = image::RgbImage::from_pixel(16, 12, image::Rgb([shade, 100, 200]));
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png)
        .expect("encode png");
    out.into_inner()
}

#[test]
fn memory_corpus_indexes_on_two_workers_and_reruns_skip() {
    let bundle = vemo_models::tiny_bundle::tiny_bundle().expect("tiny bundle");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let mut manifest = String::new();
    runtime.block_on(async {
        let root = store::resolve("memory://pipeline-test/corpus").expect("uri");
        for i in 0..6u8 {
            root.child(&format!("img/{i}.png")).expect("child").write(png(i * 40)).await.expect("put");
            manifest.push_str(&format!(
                "{{\"id\":\"m{i}\",\"image\":\"img/{i}.png\",\"caption\":\"Picture number {i}.\"}}\n"
            ));
        }
        manifest.push_str("{\"id\":\"gone\",\"image\":\"img/missing.png\",\"caption\":\"x\"}\n");
        root.child("manifest.jsonl").expect("child").write(manifest.into_bytes()).await.expect("put");
    });
    let out = tempfile::tempdir().expect("tempdir");
    let config = IndexConfig {
        input: "memory://pipeline-test/corpus".into(),
        input_format: Default::default(),
        metrics: None,
        output: out.path().display().to_string(),
        bundle,
        text_exits: vec![3],
        image_exits: vec![7],
        vector_index_min_rows: usize::MAX,
        entities: false,
        spotting: false,
        batch_size: 4,
        image_batch_size: 4,
        shard_size: 2,
        read_concurrency: 4,
        limits: Default::default(),
        job_id: "memory-test".into(),
        incremental: true,
        device: Default::default(),
        precision: Default::default(),
        progress_bar: false,
    };
    let cluster = ClusterConfig {
        workers: 2,
        ..Default::default()
    };
    let summary = run_index(config.clone(), &cluster)
        .expect("run")
        .expect("worker 0 summary");
    assert_eq!((summary.items_written, summary.errors_written), (6, 1));
    assert_eq!(summary.shards, 4);
    assert!(summary.failures.is_empty(), "{:?}", summary.failures);

    let again = run_index(config, &cluster)
        .expect("rerun")
        .expect("summary");
    // Incremental: the good items are unchanged, the failed one is retried (and fails again).
    assert_eq!(
        (again.skipped, again.items_written, again.errors_written),
        (6, 0, 1)
    );
    assert_eq!(again.encoded, 0);
}
