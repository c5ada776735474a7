//! `vemo`: the command line of the vemo batch indexing pipeline.
//!
//! Exit codes: 0 ok, 1 the job failed, 2 usage or configuration error (the message says what
//! to fix).

mod align;
mod align_features;
mod bench;
mod bench_reference;
mod cli;
mod corpus;
mod eval;
mod eval_spotting;
mod home;
mod index;
mod inspect;
mod job;
#[cfg(test)]
mod job_fuzz;
mod models;
mod ner;
mod plan;
mod search;
mod status;
mod train;

use std::process::ExitCode;

use clap::Parser;

/// An error the user fixes by changing the command, the job file or the input: exit code 2.
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// Shorthand for a [`UsageError`] wrapped in anyhow.
pub fn usage(message: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(UsageError(message.into()))
}

fn exit_code(error: &anyhow::Error) -> u8 {
    let user = error.chain().any(|e| {
        e.is::<UsageError>()
            || e.downcast_ref::<vemo_pipeline::Error>()
                .is_some_and(|e| e.is_user_error())
            || e.downcast_ref::<vemo_output::Error>()
                .is_some_and(|e| e.is_user_error())
            || e.downcast_ref::<vemo_operators::Error>()
                .is_some_and(|e| e.is_user_error())
            || e.downcast_ref::<vemo_models::Error>()
                .is_some_and(|e| e.is_user_error())
    });
    if user { 2 } else { 1 }
}

/// candle asks for its thread count before every CPU operation and, unless RAYON_NUM_THREADS
/// is set, parses /proc/cpuinfo each time: that made EfficientNet-Lite0 run at ~1.5 images/s.
/// Fix the count once, to the value candle would choose.
#[allow(unsafe_code)]
fn pin_candle_thread_count() {
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        let threads = candle_core::utils::get_num_threads();
        // SAFETY: called first thing in `main`, before any other thread exists, so nothing can
        // read the environment concurrently.
        unsafe { std::env::set_var("RAYON_NUM_THREADS", threads.to_string()) };
    }
}

/// glibc hands blocks over 128 KiB back to the kernel when they are freed (mmap'd, or trimmed
/// off the heap), so every feature map of a convolutional network is a fresh allocation that
/// page-faults in again: a tenth of the PP-OCR detector's time. Serve every block from the
/// heap (no mmap) and keep up to 256 MiB of free heap for reuse. Peak memory is unchanged
/// (what is kept was in use before); it measured lower, as the heap reuses its holes.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn keep_freed_memory() {
    // SAFETY: plain settings of the allocator, made before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_MAX, 0);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 256 << 20);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn keep_freed_memory() {}

fn main() -> ExitCode {
    keep_freed_memory();
    pin_candle_thread_count();
    let cli = cli::Cli::parse();
    init_logging(cli.verbose, cli.log_format);
    let result = match cli.command {
        cli::Command::Index(args) => index::run(args),
        cli::Command::Plan(args) => plan::run(args),
        cli::Command::Models(args) => models::run(args),
        cli::Command::Corpus(args) => corpus::run(args),
        cli::Command::Inspect(args) => inspect::run(args),
        cli::Command::Status(args) => status::run(args),
        cli::Command::Bench(args) => bench::run(args),
        cli::Command::Train(args) => match args.command {
            cli::TrainCommand::Exits(args) => train::run(args),
            cli::TrainCommand::Align(args) => align::run(args),
            cli::TrainCommand::Ner(args) => ner::train(args),
        },
        cli::Command::Search(args) => search::run(args),
        cli::Command::Embed(args) => search::embed(args),
        cli::Command::Eval(args) => match args.command {
            cli::EvalCommand::Retrieval(args) => eval::run(args),
            cli::EvalCommand::Ner(args) => ner::eval(args),
            cli::EvalCommand::Spotting(args) => eval_spotting::run(args),
        },
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            say(true, &format!("error: {error:#}"));
            ExitCode::from(exit_code(&error))
        }
    }
}

/// Set by `--log-format json`: the closing lines go through the log as JSON too.
static JSON_LOGS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Prints a closing line for people to stderr, or logs it (`error`: at error level) when the
/// logs are JSON, so that every stderr line is one JSON object.
pub fn say(error: bool, line: &str) {
    match (JSON_LOGS.load(std::sync::atomic::Ordering::Relaxed), error) {
        (false, _) => eprintln!("{line}"),
        (true, false) => tracing::info!("{line}"),
        (true, true) => tracing::error!("{line}"),
    }
}

fn init_logging(verbose: u8, format: cli::LogFormat) {
    let default = match verbose {
        0 => "info,lance=warn,lance::dataset::write::insert=error",
        1 => "debug,lance=info",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("VEMO_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        cli::LogFormat::Text => logs.init(),
        cli::LogFormat::Json => {
            JSON_LOGS.store(true, std::sync::atomic::Ordering::Relaxed);
            logs.json().flatten_event(true).init();
        }
    }
}
