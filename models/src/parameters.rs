//! Parameter counts of a bundle's sub-modules (`vemo models check`, `vemo inspect`), read from
//! the safetensors headers of its files without loading a model (PP-OCR's ONNX files are read
//! whole: their initializers are the parameters).

use std::path::Path;

use candle_core::Device;

use crate::bundle::{Bundle, ImageArchitecture, SpottingModule, SpottingSpec, TextArchitecture};
use crate::models::bert::default_device;
use crate::onnx::OnnxGraph;
use crate::{Error, Result};

/// Parameter counts of a bundle's sub-modules, for the semantic task.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BundleParameters {
    pub bundle: String,
    pub text_tower: usize,
    pub image_tower: usize,
    pub exit_heads: usize,
    /// The ConSE class-embedding table: computed from the text tower, not trained.
    pub conse_table: usize,
    /// The NER branch (tuned copies of the tower's top layers + classifier), if any.
    pub ner_branch: usize,
    /// Everything the bundle's semantic and entity tasks load: both towers, heads, ConSE
    /// table, NER branch.
    pub total: usize,
    /// The spotting sub-module (detector + recognizer), if any: image-only models that share
    /// nothing with the towers, so it is outside `total` and the ratio.
    pub spotting: usize,
    /// The same searches from separate uni-task models: a caption encoder and an image encoder
    /// for semantic search, plus a whole NER model (its own text tower: the tower's layers
    /// below the branch, the branch and the classifier) for entity search.
    pub separate_uni_task_models: usize,
}
/// Counts the parameters of `bundle`'s sub-modules from their safetensors headers. The two
/// towers of a CLIP checkpoint share a file: each counts its own tensors and projection.
pub fn bundle_parameters(bundle: &Bundle) -> Result<BundleParameters> {
    let text_tower = match bundle.manifest.text.as_ref().map(|t| (t.architecture, t)) {
        Some((TextArchitecture::Clip, text)) => {
            parameter_count(&bundle.file(&text.weights), |name| {
                name.starts_with("text_model.") || name.starts_with("text_projection.")
            })?
        }
        Some((TextArchitecture::Bert, text)) => {
            parameter_count(&bundle.file(&text.weights), |name| {
                !name.starts_with("pooler") && !name.ends_with("position_ids")
            })?
        }
        None => 0,
    };
    let (image_tower, conse_table) = match &bundle.manifest.image {
        Some(image) => (
            parameter_count(&bundle.file(&image.weights), |name| {
                match image.architecture {
                    ImageArchitecture::Clip => {
                        name.starts_with("vision_model.") || name.starts_with("visual_projection.")
                    }
                    ImageArchitecture::EfficientNetLite0 => !name.ends_with("num_batches_tracked"),
                }
            })?,
            match &image.conse {
                Some(conse) => parameter_count(&bundle.file(&conse.classes), |_| true)?,
                None => 0,
            },
        ),
        None => (0, 0),
    };
    let exit_heads = bundle.exit_heads(&default_device())?.parameter_count();
    let (ner_branch, ner_shared) = match (&bundle.manifest.ner, &bundle.manifest.text) {
        (Some(ner), Some(text)) => {
            let branch = parameter_count(&bundle.file(&ner.weights), |_| true)?;
            // The shared part of the tower: embeddings and the layers below the branch.
            let shared = parameter_count(&bundle.file(&text.weights), |name| {
                let layer = name
                    .split("encoder.layer.")
                    .nth(1)
                    .and_then(|rest| rest.split('.').next())
                    .and_then(|n| n.parse::<usize>().ok());
                !name.starts_with("pooler")
                    && !name.ends_with("position_ids")
                    && layer.is_none_or(|l| l < ner.shared_layers)
            })?;
            (branch, shared)
        }
        _ => (0, 0),
    };
    let total = text_tower + image_tower + exit_heads + conse_table + ner_branch;
    let spotting = match &bundle.manifest.spotting {
        Some(spec) => spotting_parameters(bundle, spec)?,
        None => 0,
    };
    Ok(BundleParameters {
        bundle: bundle.id(),
        text_tower,
        image_tower,
        exit_heads,
        conse_table,
        ner_branch,
        total,
        spotting,
        separate_uni_task_models: text_tower
            + image_tower
            + conse_table
            + exit_heads
            + ner_shared
            + ner_branch,
    })
}

/// Elements of the tensors in a safetensors file whose names pass `keep`.
fn parameter_count(path: &Path, keep: impl Fn(&str) -> bool) -> Result<usize> {
    let bytes = std::fs::read(path).map_err(|cause| Error::Io {
        path: path.display().to_string(),
        cause,
    })?;
    let tensors = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| Error::Bundle {
        path: path.display().to_string(),
        reason: format!("not a safetensors file: {e}"),
    })?;
    Ok(tensors
        .tensors()
        .iter()
        .filter(|(name, _)| keep(name))
        .map(|(_, t)| t.shape().iter().product::<usize>())
        .sum())
}

/// The parameters of the spotting module a bundle uses.
fn spotting_parameters(bundle: &Bundle, spec: &SpottingSpec) -> Result<usize> {
    match (spec.module, &spec.ppocr, &spec.easyocr) {
        (SpottingModule::Ppocr, Some(p), _) => [&p.detector, &p.recognizer]
            .into_iter()
            .map(|rel| Ok(OnnxGraph::load(&bundle.file(rel), &Device::Cpu)?.parameter_count()))
            .sum(),
        (SpottingModule::Easyocr, _, Some(e)) => [&e.detector, &e.recognizer]
            .into_iter()
            .map(|rel| {
                parameter_count(&bundle.file(rel), |name| {
                    !name.ends_with("num_batches_tracked")
                })
            })
            .sum(),
        _ => Ok(0),
    }
}
