//! Regression tests of vemo-output: one test per bug fixed so far, named after what broke,
//! each with the commit that fixed it (as ripgrep's `tests/regression.rs`). Bugs whose test
//! already exists elsewhere are indexed here instead of repeated:
//!
//! - An unparseable stored record was read as an empty default (45b6e1e), for each record:
//!   - ledger entry -> `src/ledger.rs` `tests::an_unparseable_ledger_entry_is_corrupt_not_skipped`;
//!   - ledger snapshot ->
//!     `src/ledger.rs` `tests::an_unparseable_ledger_snapshot_is_corrupt_not_an_empty_ledger`;
//!   - job record -> `src/jobs.rs` `tests::an_unreadable_job_record_is_an_error_not_skipped`;
//!   - pending-column record ->
//!     `src/pending.rs` `tests::an_unreadable_pending_record_is_an_error_not_nothing_to_do`.
//! - A corrupt record or lost conditional commits were an I/O or manifest (user) error, exit 2
//!   (45b6e1e) ->
//!   `src/error.rs` `tests::corrupt_records_and_contention_are_job_failures_not_usage_errors`.
//! - A record that failed to serialise was stored empty (45b6e1e): the writes now go through
//!   [`vemo_output::record_json`]; no record type can fail to serialise, so it has no test.

use vemo_operators::store;
use vemo_output::OutputLayout;
use vemo_output::ledger::publish_parts;
use vemo_schemas::PARQUET_EMBEDDINGS_DIR;

// Fixed in c4b2870.
#[tokio::test]
async fn a_staged_parquet_part_deleted_by_hand_failed_every_later_run() {
    // Neither staged nor published (deleted by hand): retrying cannot bring it back, so it is
    // logged, and the other parts of the commit are still published.
    let output = store::resolve("memory://regression-lost-part/out").expect("output");
    let part = |name: &str| {
        (
            OutputLayout::staged_part("job", PARQUET_EMBEDDINGS_DIR, name),
            format!("{PARQUET_EMBEDDINGS_DIR}/{name}"),
        )
    };
    let (lost, kept) = (part("part-lost.parquet"), part("part-kept.parquet"));
    let staged = output.child(&kept.0).expect("child");
    staged.write(b"part".to_vec()).await.expect("write");

    let moved = publish_parts(&output, &[lost.clone(), kept.clone()])
        .await
        .expect("a lost part is no error");
    assert_eq!(moved, 1);
    assert!(
        output
            .child(&kept.1)
            .expect("child")
            .exists()
            .await
            .expect("exists")
    );
    // And the next run, rolling the same commit forward, is not stopped by it either.
    assert_eq!(
        publish_parts(&output, &[lost, kept]).await.expect("again"),
        0
    );
}
