//! vemo-bench: a lean benchmark binary (vemo-models and candle, no Lance) that travels to a
//! GPU machine. It times each tower and head at several batch sizes, checks the towers on the
//! chosen device and precision against the CPU in f32, and runs decode -> encode from JPEGs;
//! every command prints Markdown tables. Asserts nothing but parity tolerances.

mod e2e;
mod synthetic;
mod towers;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use candle_core::{DType, Device};
use clap::{Args, Parser, Subcommand};
use vemo_models::device::{DeviceSpec, Precision};

use synthetic::{Arch, Side, Weights};
use towers::TOWERS;

#[derive(Debug, Parser)]
#[command(
    name = "vemo-bench",
    about = "Throughput and parity of vemo's towers on a device"
)]
struct Cli {
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value_t = DeviceSpec::Cpu, global = true)]
    device: DeviceSpec,
    /// auto (bf16 on CUDA, f32 on CPU), f32 or bf16.
    #[arg(long, default_value_t = Precision::Auto, global = true)]
    precision: Precision,
    /// Only the towers whose label contains this (e.g. `b32`, `minilm`).
    #[arg(long, global = true)]
    only: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Model-only throughput of each tower at each batch size.
    Towers(TowerArgs),
    /// Each tower on the device and precision against the CPU in f32.
    Parity(ParityArgs),
    /// Decode -> encode (CLIP ViT-B/32) from JPEGs.
    E2e(E2eArgs),
    /// Parity, towers and end to end: what infra/gpu/check.sh runs.
    All {
        #[command(flatten)]
        towers: TowerArgs,
        #[command(flatten)]
        parity: ParityArgs,
        #[command(flatten)]
        e2e: E2eArgs,
    },
}

#[derive(Debug, Args)]
struct TowerArgs {
    /// Batch sizes to time.
    #[arg(long, value_delimiter = ',', default_value = "32,256")]
    batch_sizes: Vec<usize>,
    /// Seconds per measurement (at least 3 batches).
    #[arg(long, default_value_t = 2.0)]
    seconds: f64,
}

#[derive(Debug, Args)]
struct ParityArgs {
    /// Inputs per tower in the parity check.
    #[arg(long, default_value_t = 8)]
    parity_batch: usize,
}

#[derive(Debug, Args)]
struct E2eArgs {
    /// A folder of JPEGs (used in turn); default: synthetic 640x480 photos.
    #[arg(long)]
    images: Option<PathBuf>,
    /// Images to decode and encode.
    #[arg(long, default_value_t = 2048)]
    count: usize,
    /// Images per device batch.
    #[arg(long, default_value_t = 256)]
    e2e_batch: usize,
    /// Decoding threads (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("vemo-bench: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    let device = cli.device.device()?;
    let precision = cli.precision;
    let dtype = precision.dtype_on(&device);
    println!(
        "device {} ({:?}), precision {precision} ({dtype:?}), {} CPU threads, vemo-bench {}\n",
        cli.device,
        device.location(),
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        env!("CARGO_PKG_VERSION"),
    );
    let mut ok = true;
    let only = cli.only.as_deref();
    match cli.command {
        Command::Towers(args) => print_towers(&args, only, &device, dtype)?,
        Command::Parity(args) => ok = print_parity(&args, only, &device, dtype)?,
        Command::E2e(args) => print_e2e(&args, &device, dtype)?,
        Command::All {
            towers,
            parity,
            e2e,
        } => {
            ok = print_parity(&parity, only, &device, dtype)?;
            print_towers(&towers, only, &device, dtype)?;
            print_e2e(&e2e, &device, dtype)?;
        }
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The towers to run: all, or those whose label contains `only`.
fn selected(only: Option<&str>) -> impl Iterator<Item = &'static (Arch, Side, Option<f64>)> {
    TOWERS
        .iter()
        .filter(move |(arch, side, _)| only.is_none_or(|o| towers::label(*arch, *side).contains(o)))
}

fn print_towers(args: &TowerArgs, only: Option<&str>, device: &Device, dtype: DType) -> Result<()> {
    println!("| tower | batch | items/s | PyTorch 2.11 bf16 (H200) | ratio |");
    println!("|---|---:|---:|---:|---:|");
    for &(arch, side, anchor) in selected(only) {
        let weights = Weights::random(arch)?;
        let rates = towers::throughput(
            &weights,
            arch,
            side,
            device,
            dtype,
            &args.batch_sizes,
            args.seconds,
        )?;
        for rate in rates {
            // The anchors were measured on the H200: a ratio only means something on a GPU.
            let (anchor, ratio) = match anchor {
                Some(a) if device.is_cuda() => {
                    (format!("{a:.0}"), format!("{:.2}", rate.items_per_s / a))
                }
                Some(a) => (format!("{a:.0}"), "-".into()),
                None => ("-".into(), "-".into()),
            };
            println!(
                "| {} | {} | {:.1} | {anchor} | {ratio} |",
                rate.tower, rate.batch, rate.items_per_s
            );
        }
    }
    println!();
    Ok(())
}

/// Tolerances of the device against the CPU in f32: (max |a - b|, min cosine) for unit
/// embeddings, and max |a - b| of tag log-probabilities.
fn tolerance(arch: Arch, dtype: DType) -> (f32, f32) {
    match (dtype, arch) {
        (DType::F32, _) => (1e-3, 0.99999),
        (_, Arch::BertBase) => (0.25, 0.99),
        _ => (0.03, 0.998),
    }
}

fn print_parity(
    args: &ParityArgs,
    only: Option<&str>,
    device: &Device,
    dtype: DType,
) -> Result<bool> {
    println!("| tower vs CPU f32 | max abs diff | min cosine | tolerance | ok |");
    println!("|---|---:|---:|---|---|");
    let mut all_ok = true;
    let mut seen: Vec<(Arch, Weights)> = Vec::new();
    for &(arch, side, _) in selected(only) {
        if !seen.iter().any(|(a, _)| *a == arch) {
            seen.push((arch, Weights::random(arch)?));
        }
        let weights = &seen.iter().find(|(a, _)| *a == arch).context("weights")?.1;
        let p = towers::parity(weights, arch, side, device, dtype, args.parity_batch)?;
        let (max_diff, min_cos) = tolerance(arch, dtype);
        let ok = p.max_abs_diff < max_diff && p.min_cosine > min_cos;
        all_ok &= ok;
        println!(
            "| {} | {:.2e} | {:.5} | < {max_diff}, > {min_cos} | {} |",
            p.tower,
            p.max_abs_diff,
            p.min_cosine,
            if ok { "yes" } else { "NO" }
        );
    }
    println!();
    Ok(all_ok)
}

fn print_e2e(args: &E2eArgs, device: &Device, dtype: DType) -> Result<()> {
    let images = match &args.images {
        Some(dir) => read_jpegs(dir)?,
        None => e2e::synthetic_jpegs(64, 640, 480)?,
    };
    let source = match &args.images {
        Some(dir) => format!("{} JPEGs from {}", images.len(), dir.display()),
        None => "64 synthetic 640x480 JPEGs (quality 90)".into(),
    };
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let (mean, max) = e2e::reduced_decode_error(&images[..images.len().min(16)], 224, 224)?;
    println!(
        "decode -> resize 224 -> crop 224 -> CLIP ViT-B/32 image tower, {} images in batches of {} ({source}); reduced-scale decode changes crops by {mean:.2} grey levels on average (max {max})\n",
        args.count, args.e2e_batch
    );
    let tower = Weights::random(Arch::ClipB32)?.tower(Side::Image, device, dtype)?;
    println!("| decode | threads | decode only, images/s | end to end, images/s |");
    println!("|---|---:|---:|---:|");
    for reduced in [false, true] {
        let work = e2e::Workload {
            images: &images,
            count: args.count,
            batch: args.e2e_batch,
            threads,
            reduced,
            resize: 224,
            crop: 224,
        };
        let decode = e2e::decode_only(&work)?;
        let end_to_end = e2e::end_to_end(&work, &tower, device)?;
        let how = if reduced { "DCT-scaled" } else { "full" };
        println!("| {how} | {threads} | {decode:.1} | {end_to_end:.1} |");
    }
    println!();
    Ok(())
}

fn read_jpegs(dir: &std::path::Path) -> Result<Vec<Vec<u8>>> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension()
                .is_some_and(|x| x.eq_ignore_ascii_case("jpg") || x.eq_ignore_ascii_case("jpeg"))
        })
        .collect();
    paths.sort();
    anyhow::ensure!(!paths.is_empty(), "no .jpg files in {}", dir.display());
    paths
        .iter()
        .map(|p| std::fs::read(p).with_context(|| format!("reading {}", p.display())))
        .collect()
}
