//! Regression tests of vemo-models: one test per bug fixed so far, named after what broke,
//! each with the commit that fixed it (as ripgrep's `tests/regression.rs`). Bugs whose test
//! already exists elsewhere are indexed here instead of repeated:
//!
//! The legacy `.pth` reader, bugs found by fuzzing (31f11ec), in `tests/fuzz_torch_legacy.rs`:
//! - a shape whose product overflows panicked ->
//!   `regression_shape_product_overflow_is_an_error_not_a_panic`;
//! - a stride-0 view of 2^40 elements allocated its whole output ->
//!   `regression_huge_broadcast_view_is_an_error_not_a_huge_allocation`;
//! - a view past its storage, or whose stride or offset overflows, panicked ->
//!   `regression_stride_or_offset_overflow_is_an_error_not_a_panic`;
//! - fewer strides than sizes was read silently ->
//!   `regression_fewer_strides_than_sizes_is_an_error`;
//! - a storage declaring more elements than the file holds ->
//!   `regression_storage_count_larger_than_the_file_is_an_error`;
//! - memo references doubling a list ("billion laughs") allocated gigabytes ->
//!   `regression_memo_billion_laughs_is_an_error_not_gigabytes`;
//! - a million nested lists overflowed the stack when dropped ->
//!   `regression_deep_nesting_is_an_error_not_a_stack_overflow`.
//!
//! Images (96bacf9 unless said):
//! - a truncated or corrupt JPEG was decoded leniently instead of failing ->
//!   `src/decode.rs` `tests::a_truncated_jpeg_is_an_error_unless_partial_images_are_accepted`;
//! - a small PNG declaring huge dimensions allocated them ->
//!   `src/decode.rs` `tests::a_png_declaring_huge_dimensions_is_refused_from_its_header`;
//! - `decode_reduced` handed a JPEG declaring 65535 x 65535 to jpeg-decoder unchecked (~26 GB)
//!   -> `tests/fuzz_images.rs` `decode_reduced_of_a_huge_declared_jpeg_is_bounded`;
//! - `classifier_crop` of a 65536 x 1 image resized it to 16 million x 256 ->
//!   `src/pixels.rs` `tests::resizing_an_extreme_aspect_ratio_cannot_blow_up`.
//!
//! Models:
//! - CLIP parity on random weights failed one run in a few at 1e-5 (unseeded weights; the GEMM
//!   patch embedding sums in another order), a flaky test (a793e1a) ->
//!   `src/models/clip.rs` `tests::agrees_with_candle_transformers_clip_on_random_weights`;
//! - NER training never moved the branch's layers (candle-nn's fused softmax and layer norm
//!   have no backward pass) (a88a3b4) ->
//!   `src/models/bert.rs` `tests::train_pass_matches_and_reaches_every_weight`;
//! - CRAFT resized an empty (0 x 0) image instead of giving a blank canvas (d1ba2d0) ->
//!   `src/models/craft.rs` `tests::an_empty_image_gives_a_blank_canvas`;
//! - recognizer inputs differed from easyocr's (OpenCV's unclamped y weights in the bilinear
//!   resize) (61a4d52) ->
//!   `tests/recognizer_parity.rs` `logits_strings_and_confidences_match_easyocr` (needs the
//!   pulled bundle's spotting weights; skips without them);
//! - the perspective warp of crops differed from OpenCV's by a grey level (its row-first sums)
//!   (db2ba9c) -> `tests/spotting_glue_parity.rs` `crops_match_get_image_list`.
//!
//! Bundles: a wheel member was unpacked whole whatever its declared size (7ca5957) ->
//! `src/assemble.rs` `tests::extracts_only_the_named_members_within_the_limit`.

use image::GrayImage;
use vemo_models::models::recognizer::prepare::{MAX_CROP_ASPECT, prepare};

// Fixed in 96bacf9.
#[test]
fn a_recognizer_crop_of_any_aspect_was_resized_to_64_times_its_ratio() {
    // A 1-pixel-high region 200 wide (an image of noise has such "regions") became a
    // 12,800-column input; 128:1 is the longest line of text read, longer ones read as nothing.
    let ratio = MAX_CROP_ASPECT as u32;
    assert!(
        prepare(&GrayImage::new(ratio, 1)).is_some(),
        "128:1 is read"
    );
    assert!(prepare(&GrayImage::new(200, 1)).is_none(), "wide");
    assert!(prepare(&GrayImage::new(1, 200)).is_none(), "tall");
}
