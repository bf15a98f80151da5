//! `cnn3d export`: a trained model leaves cnn3d, as a PyTorch module ([`torch`]: `model.py`
//! and its weights, to train on under PyTorch's distributed tools) or as an ONNX graph
//! ([`onnx`]: the eval-mode network, for inference runtimes).
//!
//! Both start from [`Exportable`]: the model of a checkpoint's config, its input channels, the
//! preprocessing the run recorded, and the checkpoint's tensors checked against the model.

pub mod onnx;
mod onnx_proto;
pub mod torch;

use std::path::{Path, PathBuf};

use crate::checkpoint::{self, Checkpoint};
use crate::data::Colormap;
use crate::error::{Error, Result};
use crate::eval::{recorded_input_of, resolve_config};
use crate::model::Model;
use crate::train::Config;

/// The most input channels [`input_channels`] tries when it reads them off the weights.
const MAX_CHANNELS: usize = 4096;

/// A checkpoint with the model it belongs to, ready to be written in another format.
#[derive(Clone, Debug)]
pub struct Exportable {
    pub config: Config,
    /// Where the config came from (`--config`, the run's `config.toml`, or the seed model).
    pub config_origin: String,
    pub checkpoint_path: PathBuf,
    /// The model for the input channels the checkpoint was trained on.
    pub model: Model,
    /// The state_dict, in the model's order, names, shapes and dtypes checked.
    pub checkpoint: Checkpoint,
    /// How the run turned voxels into the model's input (recorded in the checkpoint).
    pub colormap: Colormap,
    pub article_reshape: bool,
}

impl Exportable {
    /// Reads `checkpoint` (a `model.safetensors`) with its config: `config` if given, else the
    /// `config.toml` beside it, else the seed model (as `eval` does). A checkpoint of another
    /// model is refused naming the layer whose tensor differs.
    pub fn load(checkpoint: &Path, config: Option<&Path>) -> Result<Exportable> {
        let (config, config_origin) = resolve_config(checkpoint, config)?;
        // Read once: as it is (the recorded input mapping, the shapes the input channels are
        // read off), then checked against the model of those channels.
        let bytes = std::fs::read(checkpoint).map_err(|e| Error::io(checkpoint, "reading", e))?;
        let raw = checkpoint::from_bytes(checkpoint, &bytes, None)?;
        let (colormap, article_reshape) = recorded_input_of(&raw)?;
        // Checkpoints written before the colormap was recorded were trained with the default.
        let colormap = colormap.unwrap_or_default();
        let channels = input_channels(&config, &config_origin, &raw, colormap)?;
        let model = Model::from_config(&config.model, channels).map_err(|e| e.in_config(&config_origin))?;
        let specs = model.state_dict_specs();
        let checked = checkpoint::from_bytes(checkpoint, &bytes, Some(&specs)).map_err(|e| name_layer(&model, &config_origin, e))?;
        Ok(Exportable { config, config_origin, checkpoint_path: checkpoint.to_path_buf(), model, checkpoint: checked, colormap, article_reshape })
    }

    /// The f32 values of a state_dict tensor (present: [`Exportable::load`] checked them).
    pub fn f32s(&self, name: &str) -> &[f32] {
        self.checkpoint.get(name).and_then(|t| t.as_f32()).expect("load checked every tensor of the model")
    }
}

/// The model's input channels: 3 for the Oranges colormap; for raw values as many as the
/// data had, which the checkpoint does not record but its first parameter's shape tells (a
/// convolution's input channels, or a dense layer's input features).
fn input_channels(config: &Config, origin: &str, ck: &Checkpoint, colormap: Colormap) -> Result<usize> {
    if colormap == Colormap::Oranges {
        return Ok(3);
    }
    let one = Model::from_config(&config.model, 1).map_err(|e| e.in_config(origin))?;
    // No parameters at all: the input channels cannot matter to the weights; one it is.
    let Some(first) = one.params().next() else { return Ok(1) };
    let fits = |c: usize| {
        let shape = Model::from_config(&config.model, c).ok().and_then(|m| m.params().next().map(|t| t.shape.clone()));
        shape.is_some_and(|s| ck.get(&first.name).is_some_and(|t| t.shape == s))
    };
    if let Some(c) = (1..=MAX_CHANNELS).find(|&c| fits(c)) {
        return Ok(c);
    }
    let found = ck.get(&first.name).map_or("nothing of that name".to_string(), |t| format!("shape {:?}", t.shape));
    let layer = one.layers.iter().find(|l| l.params.iter().any(|t| t.name == first.name)).map_or(first.name.clone(), |l| l.describe());
    Err(Error::Export {
        what: layer,
        message: format!(
            "the checkpoint holds {found} for {:?}, which the config {origin} gives for no number of input channels: the checkpoint is of another model",
            first.name
        ),
    })
}

/// A checkpoint that does not match the model, said of the layer whose tensor differs.
fn name_layer(model: &Model, origin: &str, e: Error) -> Error {
    let tensor = match &e {
        Error::TensorMissing { tensor, .. } | Error::TensorMismatch { tensor, .. } | Error::TensorUnexpected { tensor, .. } => tensor.clone(),
        _ => return e,
    };
    let layer = model
        .layers
        .iter()
        .find(|l| tensor.strip_prefix(&l.name).is_some_and(|rest| rest.starts_with('.')))
        .map_or_else(|| "the checkpoint".to_string(), |l| l.describe());
    Error::Export { what: layer, message: format!("the checkpoint does not match the config {origin}: {e}") }
}

/// Refuses a layer an export format cannot express.
pub(crate) fn refuse(layer: &crate::model::Layer, format: &str, why: String) -> Error {
    Error::Export { what: layer.describe(), message: format!("{format} cannot express it: {why}") }
}

/// Writes `dir/model.py` and `dir/model.safetensors` (a copy of the checkpoint, unless it is
/// that file already); returns the files written.
pub fn write_torch(e: &Exportable, dir: &Path) -> Result<Vec<PathBuf>> {
    let source = torch::model_py(e)?;
    std::fs::create_dir_all(dir).map_err(|err| Error::io(dir, "creating the folder", err))?;
    let py = dir.join("model.py");
    crate::atomic::write_atomic(&py, source.as_bytes())?;
    let weights = dir.join("model.safetensors");
    let same = |a: &Path, b: &Path| matches!((a.canonicalize(), b.canonicalize()), (Ok(a), Ok(b)) if a == b);
    if !same(&weights, &e.checkpoint_path) {
        let bytes = std::fs::read(&e.checkpoint_path).map_err(|err| Error::io(&e.checkpoint_path, "reading", err))?;
        crate::atomic::write_atomic(&weights, &bytes)?;
    }
    Ok(vec![py, weights])
}

/// Writes the ONNX graph to `path`.
pub fn write_onnx(e: &Exportable, path: &Path) -> Result<()> {
    let bytes = onnx::to_onnx(e)?;
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|err| Error::io(parent, "creating the folder", err))?;
    }
    crate::atomic::write_atomic(path, &bytes)
}
