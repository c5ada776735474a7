//! `vemo train align`: aligns every exit of the bundle's towers for search with contrastive
//! heads (see `vemo_models::models::alignment`), trained on a COCO-format image-caption set,
//! and saves them into the bundle's heads file.
//!
//! Order: the image tower's last exit first (its head reads the pooled feature and the ConSE
//! embedding and starts as ConSE), against captions at the text tower's last exit, which stay
//! as they are (caption-to-caption search is unchanged); then image exits 4 and 6 the same
//! way; then text exit 3, against the images' aligned last exit.

use std::process::ExitCode;

use candle_nn::Linear;
use vemo_models::bundle::{Bundle, ImageArchitecture};
use vemo_models::models::alignment::{
    AlignOptions, Aligned, EpochReport, Side, Trained, conse_start, plain_start, train_alignment,
};
use vemo_models::models::bert::default_device;
use vemo_models::models::efficientnet::STAGES;
use vemo_models::models::exit_heads::project;
use vemo_schemas::Tower;

use crate::align_features::{Features, LOWER_STAGES, TEXT_EXITS, features};
use crate::cli::TrainAlignArgs;
use crate::eval::read_coco;
use crate::home::{bundle_dir, expand};

/// Runs `vemo train align`.
pub fn run(args: TrainAlignArgs) -> anyhow::Result<ExitCode> {
    let mut bundle = Bundle::open(&bundle_dir(&expand(&args.bundle)))?;
    let image = bundle.image()?.clone();
    if image.architecture != ImageArchitecture::EfficientNetLite0 {
        return Err(crate::usage(
            "vemo train align needs an EfficientNet-Lite0 image tower (a CLIP bundle is aligned already)",
        ));
    }
    let device = default_device();
    let cache = args
        .cache
        .clone()
        .unwrap_or_else(|| vemo_models::bundle::vemo_home().join("cache/align"));
    let train_set = read_coco(&args.corpus)?;
    println!(
        "Aligning {} on {} photos, {} captions ({} views each).",
        bundle.id(),
        train_set.images.len(),
        train_set.captions.len(),
        args.views
    );
    let train = features(&bundle, &train_set, args.views as usize, &cache, &device)?;
    let dev = match &args.dev {
        Some(dir) => {
            let set = read_coco(dir)?;
            println!(
                "Dev: {} photos, {} captions.",
                set.images.len(),
                set.captions.len()
            );
            Some(features(&bundle, &set, 1, &cache, &device)?)
        }
        None => None,
    };
    let options = AlignOptions {
        epochs: args.epochs,
        batch_size: args.batch_size,
        learning_rate: args.learning_rate,
        weight_decay: args.weight_decay,
        ..Default::default()
    };
    let text_last = *TEXT_EXITS.last().unwrap_or(&6);
    let mut heads = bundle.exit_heads(&device)?;
    let mut report = Vec::new();

    // Image exits, against fixed captions at the text tower's last exit.
    for exit in [STAGES, LOWER_STAGES[0], LOWER_STAGES[1]] {
        let rows = train.image_at(exit)?;
        let dim_in = rows.dim(1)?;
        let out = train.text_at(text_last)?.dim(1)?;
        let start = if exit == STAGES {
            conse_start(dim_in - out, out, &device)?
        } else {
            plain_start(dim_in, out, &device)?
        };
        let pairs = |f: &Features| -> anyhow::Result<(Side, Side)> {
            Ok((
                Side {
                    rows: f.image_at(exit)?.clone(),
                    item: f.view_item.clone(),
                },
                Side {
                    rows: f.text_at(text_last)?.clone(),
                    item: f.caption_item.clone(),
                },
            ))
        };
        let head = fit(
            &format!("image exit {exit}"),
            pairs(&train)?,
            dev.as_ref().map(pairs).transpose()?,
            Trained::Image,
            start,
            &options,
            &mut report,
        )?;
        heads.insert(Tower::Image, exit, head);
    }

    // Text exit 3, against the images' aligned last exit.
    let last_head = heads
        .get(Tower::Image, STAGES)
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("the last image exit's head was not trained"))?;
    let pairs = |f: &Features| -> anyhow::Result<(Side, Side)> {
        Ok((
            Side {
                rows: project(&last_head, f.image_at(STAGES)?)?,
                item: f.view_item.clone(),
            },
            Side {
                rows: f.text_at(TEXT_EXITS[0])?.clone(),
                item: f.caption_item.clone(),
            },
        ))
    };
    let dim = train.text_at(TEXT_EXITS[0])?.dim(1)?;
    let head = fit(
        &format!("text exit {}", TEXT_EXITS[0]),
        pairs(&train)?,
        dev.as_ref().map(pairs).transpose()?,
        Trained::Caption,
        plain_start(dim, dim, &device)?,
        &options,
        &mut report,
    )?;
    heads.insert(Tower::Text, TEXT_EXITS[0], head);

    let saved = bundle.save_exit_heads(&heads)?;
    if let Some(copy) = &args.copy_to {
        heads.to_dtype(candle_core::DType::F16)?.save(copy)?;
    }
    print_summary(&report);
    println!(
        "Saved {} heads ({} parameters) to {}.",
        heads.names().len(),
        heads.parameter_count(),
        saved.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Trains one head, printing each epoch; records its kept epoch in `report`.
fn fit(
    name: &str,
    (images, captions): (Side, Side),
    dev: Option<(Side, Side)>,
    trained: Trained,
    start: Linear,
    options: &AlignOptions,
    report: &mut Vec<(String, EpochReport)>,
) -> anyhow::Result<Linear> {
    println!(
        "{name}: {} rows x {} captions",
        images.item.len(),
        captions.item.len()
    );
    println!(
        "  {:>5} {:>8} {:>7} {:>21} {:>21}",
        "epoch", "loss", "scale", "dev text->image", "dev image->text"
    );
    let Aligned { head, epochs, kept } = train_alignment(
        &images,
        &captions,
        trained,
        start,
        dev.as_ref().map(|(i, c)| (i, c)),
        options,
    )?;
    for e in &epochs {
        println!(
            "  {:>5} {:>8.4} {:>7.2} {:>21} {:>21}",
            e.epoch,
            e.loss,
            e.scale,
            e.held_out.map_or("-".into(), |r| recall3(&r.text_to_image)),
            e.held_out.map_or("-".into(), |r| recall3(&r.image_to_text)),
        );
    }
    if let Some(kept) = kept.and_then(|i| epochs.get(i)) {
        report.push((name.to_string(), kept.clone()));
    }
    Ok(head)
}

fn recall3(r: &[f64; 3]) -> String {
    format!("{:.3}/{:.3}/{:.3}", r[0], r[1], r[2])
}

fn print_summary(report: &[(String, EpochReport)]) {
    println!(
        "{:<14} {:>6} {:>21} {:>21}",
        "head", "epoch", "dev text->image", "dev image->text"
    );
    for (name, e) in report {
        println!(
            "{name:<14} {:>6} {:>21} {:>21}",
            e.epoch,
            e.held_out.map_or("-".into(), |r| recall3(&r.text_to_image)),
            e.held_out.map_or("-".into(), |r| recall3(&r.image_to_text)),
        );
    }
}
