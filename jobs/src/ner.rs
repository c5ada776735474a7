//! `vemo train ner` and `vemo eval ner`: the NER branch of a bundle, trained and scored on
//! CoNLL-2003 files.

use std::process::ExitCode;

use candle_nn::VarMap;

use vemo_models::assemble::NER_BRANCH_FILE;
use vemo_models::bundle::{Bundle, NerSpec};
use vemo_models::models::bert::default_device;
use vemo_models::models::text_encoder::bert_tower;
use vemo_models::ner::conll::read_conll;
use vemo_models::ner::metrics::{Report, evaluate};
use vemo_models::ner::model::{NerModel, save, trainable};
use vemo_models::ner::train::{
    Batch, DevSet, EpochReport, TrainSettings, bundle_tokenizer, encode_sentences, predict,
    prepare, train as fit,
};

use crate::cli::{EvalNerArgs, TrainNerArgs};
use crate::home::{bundle_dir, expand};
use crate::usage;

fn read(path: &std::path::Path) -> anyhow::Result<Vec<vemo_models::ner::conll::Sentence>> {
    read_conll(path).map_err(|e| usage(e.to_string()))
}

/// Runs `vemo train ner`.
pub fn train(args: TrainNerArgs) -> anyhow::Result<ExitCode> {
    let mut bundle = Bundle::open(&bundle_dir(&expand(&args.bundle)))?;
    let device = default_device();
    let branch_layers = branch_layers(&bundle, args.shared_layers)?;
    let mut train_set = read(&args.train)?;
    if let Some(n) = args.max_sentences {
        train_set.truncate(n);
    }
    let dev_set = read(&args.dev)?;
    let tokenizer = bundle_tokenizer(&bundle)?;
    let start = std::time::Instant::now();
    let train_encoded = encode_sentences(&tokenizer, &train_set)?;
    let dev_encoded = encode_sentences(&tokenizer, &dev_set)?;
    let (tower, cfg) = bert_tower(&bundle, args.shared_layers, &device)?;
    let train_batches = prepare(
        &tower,
        args.shared_layers,
        &train_encoded,
        args.batch_size,
        &device,
    )?;
    let dev_batches = prepare(&tower, args.shared_layers, &dev_encoded, 64, &device)?;
    println!(
        "NER branch of {}: {} shared layers + {branch_layers} tuned; {} train / {} dev sentences; shared layers run in {:.0} s",
        bundle.id(),
        args.shared_layers,
        train_set.len(),
        dev_set.len(),
        start.elapsed().as_secs_f64()
    );
    let (varmap, model) = trainable(
        &bundle.file(&bundle.text()?.weights),
        &cfg,
        args.shared_layers,
        branch_layers,
        &device,
    )?;
    let dev_gold: Vec<Vec<String>> = dev_set.iter().map(|s| s.tags.clone()).collect();
    let dev = DevSet {
        batches: &dev_batches,
        encoded: &dev_encoded,
        gold: &dev_gold,
    };
    let best = fit_printing_epochs(&varmap, &model, &train_batches, &dev, &args)?;
    let target = bundle.file(NER_BRANCH_FILE);
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent)?;
    }
    save(&varmap, &target)?;
    if let Some(copy) = &args.copy_to {
        std::fs::copy(&target, copy)?;
    }
    bundle.manifest.ner = Some(NerSpec {
        weights: NER_BRANCH_FILE.into(),
        shared_layers: args.shared_layers,
        branch_layers,
        source: branch_source(&args, train_set.len(), &best),
    });
    bundle.save_manifest()?;
    println!(
        "Saved the branch of epoch {} (dev F1 {:.4}) to {}.",
        best.epoch,
        best.dev.micro.f1,
        target.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// The layers of the NER branch above `shared` of the text tower's (a usage error unless
/// `shared` is in `1..depth`).
fn branch_layers(bundle: &Bundle, shared: usize) -> anyhow::Result<usize> {
    let text = bundle.text()?;
    let depth = text
        .exits
        .iter()
        .copied()
        .max()
        .unwrap_or(text.default_exit);
    if shared == 0 || shared >= depth {
        return Err(usage(format!(
            "--shared-layers must be in 1..{depth} (the tower has {depth} layers)"
        )));
    }
    Ok(depth - shared)
}

/// Trains the branch, printing a line per epoch; returns the best epoch's record.
fn fit_printing_epochs(
    varmap: &VarMap,
    model: &NerModel,
    train_batches: &[Batch],
    dev: &DevSet<'_>,
    args: &TrainNerArgs,
) -> anyhow::Result<EpochReport> {
    let settings = TrainSettings {
        epochs: args.epochs,
        learning_rate: args.learning_rate,
        batch_size: args.batch_size,
        patience: 2,
    };
    println!(
        "{:>6} {:>10} {:>8} {:>8} {:>8} {:>8}",
        "epoch", "loss", "dev P", "dev R", "dev F1", "seconds"
    );
    let best = fit(varmap, model, train_batches, dev, &settings, |r| {
        println!(
            "{:>6} {:>10.4} {:>8.4} {:>8.4} {:>8.4} {:>8.0}",
            r.epoch, r.loss, r.dev.micro.precision, r.dev.micro.recall, r.dev.micro.f1, r.seconds
        );
    })?;
    best.ok_or_else(|| usage("no epoch ran: --epochs must be at least 1"))
}

/// How the branch was made, for the bundle manifest.
fn branch_source(args: &TrainNerArgs, sentences: usize, best: &EpochReport) -> String {
    format!(
        "vemo train ner --shared-layers {} --epochs {} --learning-rate {} --batch-size {} on {} ({} sentences); best epoch {}: dev F1 {:.4}",
        args.shared_layers,
        args.epochs,
        args.learning_rate,
        args.batch_size,
        args.train
            .file_name()
            .and_then(|f| f.to_str())
            .unwrap_or("?"),
        sentences,
        best.epoch,
        best.dev.micro.f1
    )
}

/// Scores the bundle's NER branch on a CoNLL file.
pub fn score(bundle: &Bundle, path: &std::path::Path) -> anyhow::Result<Report> {
    let spec = bundle
        .manifest
        .ner
        .clone()
        .ok_or_else(|| usage("the bundle has no NER branch (run `vemo train ner`)"))?;
    let device = default_device();
    let sentences = read(path)?;
    let encoded = encode_sentences(&bundle_tokenizer(bundle)?, &sentences)?;
    let (tower, cfg) = bert_tower(bundle, spec.shared_layers, &device)?;
    let batches = prepare(&tower, spec.shared_layers, &encoded, 64, &device)?;
    let model = NerModel::from_file(
        &bundle.file(&spec.weights),
        &cfg,
        spec.branch_layers,
        &device,
    )?;
    let predicted = predict(&model, &batches, &encoded)?;
    let gold: Vec<Vec<String>> = sentences.iter().map(|s| s.tags.clone()).collect();
    Ok(evaluate(&gold, &predicted))
}

/// Runs `vemo eval ner`.
pub fn eval(args: EvalNerArgs) -> anyhow::Result<ExitCode> {
    let bundle = Bundle::open(&bundle_dir(&expand(&args.bundle)))?;
    let report = score(&bundle, &args.data)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("{}: NER of {}", args.data.display(), bundle.id());
    println!(
        "{:<6} {:>9} {:>9} {:>9} {:>7}",
        "type", "precision", "recall", "F1", "gold"
    );
    let row = |name: &str, s: &vemo_models::ner::metrics::Scores| {
        println!(
            "{name:<6} {:>9.4} {:>9.4} {:>9.4} {:>7}",
            s.precision, s.recall, s.f1, s.gold
        );
    };
    for (kind, scores) in &report.per_type {
        row(kind, scores);
    }
    row("micro", &report.micro);
    Ok(ExitCode::SUCCESS)
}
