//! Where a job's models run and in which precision: `--device cpu|cuda|cuda:N` and
//! `--precision auto|f32|bf16`, parsed once where they enter (`FromStr` for flags, serde for
//! job files, both through the same parser) and written back as the same names.
//!
//! Precision per model, on CUDA with `auto`: the CLIP towers and the BERT text tower hold
//! their weights and activations in bf16; pooling, L2 normalisation, exit heads, the ConSE
//! table and the NER branch run in f32 on the tower's output. EfficientNet-Lite0, CRAFT and
//! the recognizer stay in f32 (their outputs feed thresholds, and their convolutions are not
//! matrix-bound). On CPU `auto` is f32: candle's CPU kernels are no faster in bf16.

use std::fmt;
use std::str::FromStr;

use candle_core::{DType, Device};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The device a job asks for: `cpu` (the default), `cuda` or `cuda:N`; `gpu` and any case
/// are accepted too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum DeviceSpec {
    /// The CPU (candle's CPU backend, every core).
    #[default]
    Cpu,
    /// A CUDA GPU: `Some(n)` is GPU `n`; `None` lets each worker take GPU
    /// `worker_index % gpu_count`.
    Cuda(Option<usize>),
}

impl FromStr for DeviceSpec {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        let bad = |reason: &str| Error::Data {
            path: format!("device `{text}`"),
            reason: reason.to_string(),
        };
        match text.trim().to_ascii_lowercase().as_str() {
            "cpu" => Ok(DeviceSpec::Cpu),
            "cuda" | "gpu" => Ok(DeviceSpec::Cuda(None)),
            other => match other.strip_prefix("cuda:") {
                Some(n) => n
                    .parse()
                    .map(|n| DeviceSpec::Cuda(Some(n)))
                    .map_err(|_| bad("expected cuda:N with N a GPU number, e.g. cuda:0")),
                None => Err(bad("expected cpu, cuda or cuda:N")),
            },
        }
    }
}

impl TryFrom<String> for DeviceSpec {
    type Error = Error;

    fn try_from(text: String) -> Result<Self> {
        text.parse()
    }
}

impl From<DeviceSpec> for String {
    fn from(spec: DeviceSpec) -> Self {
        spec.to_string()
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceSpec::Cpu => f.write_str("cpu"),
            DeviceSpec::Cuda(None) => f.write_str("cuda"),
            DeviceSpec::Cuda(Some(n)) => write!(f, "cuda:{n}"),
        }
    }
}

impl DeviceSpec {
    /// The device for timely worker `worker` (its index across the whole cluster): the CPU,
    /// GPU `n` when one was named, else GPU `worker % gpu_count`. Fails with a message that
    /// says what to change when this build has no CUDA or the machine no GPU.
    pub fn for_worker(&self, worker: usize) -> Result<Device> {
        match *self {
            DeviceSpec::Cpu => Ok(Device::Cpu),
            DeviceSpec::Cuda(Some(n)) => cuda(n),
            DeviceSpec::Cuda(None) => cuda(self.gpu_of(worker, gpu_count()?).unwrap_or(0)),
        }
    }

    /// The GPU that worker `worker` uses on a machine with `gpus` GPUs (`None`: the CPU).
    pub fn gpu_of(&self, worker: usize, gpus: usize) -> Option<usize> {
        match *self {
            DeviceSpec::Cpu => None,
            DeviceSpec::Cuda(Some(n)) => Some(n),
            DeviceSpec::Cuda(None) => Some(worker % gpus.max(1)),
        }
    }

    /// The device of a single-process command (`vemo search`, `vemo-bench`): worker 0's.
    pub fn device(&self) -> Result<Device> {
        self.for_worker(0)
    }
}

/// The precision a job asks for: `auto` (the default), `f32` (or `fp32`) or `bf16`, in any
/// case; [`Precision::dtype_on`] resolves it on a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(try_from = "String", into = "&'static str")]
pub enum Precision {
    /// bf16 on CUDA, f32 on CPU.
    #[default]
    Auto,
    /// f32 everywhere.
    F32,
    /// bf16 wherever the towers allow it, also on CPU (parity tests use this).
    Bf16,
}

impl FromStr for Precision {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        match text.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(Precision::Auto),
            "f32" | "fp32" => Ok(Precision::F32),
            "bf16" => Ok(Precision::Bf16),
            _ => Err(Error::Data {
                path: format!("precision `{text}`"),
                reason: "expected auto, f32 or bf16".into(),
            }),
        }
    }
}

impl TryFrom<String> for Precision {
    type Error = Error;

    fn try_from(text: String) -> Result<Self> {
        text.parse()
    }
}

impl From<Precision> for &'static str {
    fn from(precision: Precision) -> Self {
        precision.name()
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

impl Precision {
    /// Every precision.
    pub const ALL: [Precision; 3] = [Precision::Auto, Precision::F32, Precision::Bf16];

    /// The precision's name: `auto`, `f32` or `bf16`.
    pub fn name(self) -> &'static str {
        match self {
            Precision::Auto => "auto",
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
        }
    }

    /// The dtype of the weights and activations of a tower that allows bf16, on `device`.
    pub fn dtype_on(&self, device: &Device) -> DType {
        match self {
            Precision::Auto if device.is_cuda() => DType::BF16,
            Precision::Auto | Precision::F32 => DType::F32,
            Precision::Bf16 => DType::BF16,
        }
    }
}

/// How many CUDA GPUs this machine has (0 in a build without the `cuda` feature).
pub fn gpu_count() -> Result<usize> {
    #[cfg(feature = "cuda")]
    {
        use candle_core::cuda::cudarc::driver::CudaContext;
        CudaContext::device_count()
            .map(|n| n.max(0) as usize)
            .map_err(|e| no_cuda(&format!("cannot count GPUs: {e:?}")))
    }
    #[cfg(not(feature = "cuda"))]
    Ok(0)
}

fn cuda(ordinal: usize) -> Result<Device> {
    if !cfg!(feature = "cuda") {
        return Err(no_cuda(
            "this vemo was built without CUDA; build with `--features cuda` (infra/gpu/) or run with --device cpu",
        ));
    }
    Device::new_cuda(ordinal).map_err(|e| {
        no_cuda(&format!(
            "cannot open GPU {ordinal}: {e}; run with --device cpu"
        ))
    })
}

fn no_cuda(reason: &str) -> Error {
    Error::Data {
        path: "device".into(),
        reason: reason.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_and_precision_names_parse() {
        let parse = |s: &str| s.parse::<DeviceSpec>().ok();
        assert_eq!(parse("cpu"), Some(DeviceSpec::Cpu));
        assert_eq!(parse("CUDA"), Some(DeviceSpec::Cuda(None)));
        assert_eq!(parse("cuda:3"), Some(DeviceSpec::Cuda(Some(3))));
        assert_eq!(parse("cuda:x"), None);
        assert_eq!(parse("tpu"), None);
        for spec in [
            DeviceSpec::Cpu,
            DeviceSpec::Cuda(None),
            DeviceSpec::Cuda(Some(2)),
        ] {
            assert_eq!(parse(&spec.to_string()), Some(spec));
        }
        assert_eq!("bf16".parse::<Precision>().ok(), Some(Precision::Bf16));
        assert!("f8".parse::<Precision>().is_err());
        assert_eq!(Precision::Auto.dtype_on(&Device::Cpu), DType::F32);
        assert_eq!(Precision::Bf16.dtype_on(&Device::Cpu), DType::BF16);
    }

    #[test]
    fn device_and_precision_round_trip_through_serde_and_from_str() {
        #[derive(Debug, PartialEq, Serialize, Deserialize)]
        struct Run {
            device: DeviceSpec,
            precision: Precision,
        }
        let devices = [
            DeviceSpec::Cpu,
            DeviceSpec::Cuda(None),
            DeviceSpec::Cuda(Some(2)),
        ];
        for (device, name) in devices.into_iter().zip(["cpu", "cuda", "cuda:2"]) {
            assert_eq!(device.to_string(), name);
            assert_eq!(name.parse::<DeviceSpec>().ok(), Some(device));
            let json = serde_json::to_string(&device).expect("serialise");
            assert_eq!(json, format!("\"{name}\""));
            assert_eq!(serde_json::from_str::<DeviceSpec>(&json).ok(), Some(device));
        }
        for (precision, name) in Precision::ALL.into_iter().zip(["auto", "f32", "bf16"]) {
            assert_eq!(precision.to_string(), name);
            assert_eq!(name.parse::<Precision>().ok(), Some(precision));
            let json = serde_json::to_string(&precision).expect("serialise");
            assert_eq!(json, format!("\"{name}\""));
            assert_eq!(
                serde_json::from_str::<Precision>(&json).ok(),
                Some(precision)
            );
        }
        // A job file's `[run]`: the names it accepts, and what is written back.
        let run: Run = toml::from_str("device = \"CUDA:1\"\nprecision = \"fp32\"\n").expect("run");
        assert_eq!(run.device, DeviceSpec::Cuda(Some(1)));
        assert_eq!(run.precision, Precision::F32);
        assert_eq!(
            toml::to_string(&run).expect("serialise"),
            "device = \"cuda:1\"\nprecision = \"f32\"\n"
        );
        // Unknown names are errors that list the valid ones.
        let err =
            toml::from_str::<Run>("device = \"tpu\"\nprecision = \"auto\"\n").expect_err("device");
        assert!(
            err.to_string().contains("expected cpu, cuda or cuda:N"),
            "{err}"
        );
        let err = "f8".parse::<Precision>().expect_err("precision");
        assert!(
            err.to_string().contains("expected auto, f32 or bf16"),
            "{err}"
        );
    }

    #[test]
    fn workers_spread_over_the_gpus_unless_one_is_named() {
        let spread: Vec<_> = (0..5)
            .map(|w| DeviceSpec::Cuda(None).gpu_of(w, 2))
            .collect();
        assert_eq!(spread, [Some(0), Some(1), Some(0), Some(1), Some(0)]);
        assert_eq!(DeviceSpec::Cuda(Some(3)).gpu_of(1, 8), Some(3));
        assert_eq!(DeviceSpec::Cuda(None).gpu_of(7, 0), Some(0));
        assert_eq!(DeviceSpec::Cpu.gpu_of(1, 8), None);
    }

    #[test]
    fn cpu_build_names_the_fix_for_cuda() {
        assert!(DeviceSpec::Cpu.for_worker(5).is_ok_and(|d| d.is_cpu()));
        if !cfg!(feature = "cuda") {
            let err = DeviceSpec::Cuda(None).for_worker(0).expect_err("no cuda");
            assert!(err.is_user_error());
            assert!(err.to_string().contains("--features cuda"), "{err}");
        }
    }
}
