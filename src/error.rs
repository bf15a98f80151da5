//! The library's error type. User input never panics: it becomes one of these, with a message
//! that names what was wrong and what was expected.

use std::path::PathBuf;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum Error {
    #[error("no GPU adapter found on backend(s) {backends}. {hint}")]
    NoAdapter { backends: String, hint: String },

    #[error("no adapter matches --adapter {wanted:?}; available adapters:\n{available}")]
    AdapterNotFound { wanted: String, available: String },

    #[error("unknown backend {0:?}: expected one of vulkan, metal, dx12, gl, auto")]
    UnknownBackend(String),

    #[error("could not open a device on adapter {adapter:?}: {message}")]
    RequestDevice { adapter: String, message: String },

    /// A wgpu validation or out-of-memory error caught by an error scope.
    #[error("GPU error while {context}: {message}")]
    Gpu { context: String, message: String },

    #[error("reading back buffer {buffer:?} failed: {message}")]
    Readback { buffer: String, message: String },

    /// A tensor that the adapter cannot hold in one binding or buffer.
    #[error("tensor {tensor:?} needs {bytes} bytes, above this adapter's {limit_name} of {limit} bytes")]
    TooLarge { tensor: String, bytes: u64, limit_name: &'static str, limit: u64 },

    /// A training batch whose tensors the device cannot hold (training cannot split a batch:
    /// batch norm's statistics are the whole batch's), with the largest batch that fits.
    #[error(
        "a training batch of {batch} samples{} does not fit this device: {cause}; the largest training batch that fits is {largest} samples (--batch-size {largest})",
        if batch == asked {
            String::new()
        } else if asked > samples {
            format!(" (all {samples} samples: --batch-size {asked} is more than the data has)")
        } else {
            format!(" (the last of {samples} samples in batches of {asked})")
        }
    )]
    BatchTooLarge { batch: usize, asked: usize, samples: usize, largest: usize, cause: String },

    /// Work that needs more workgroups than a 2D grid of the adapter's limit can hold.
    #[error("{label}: {groups} workgroups exceed the adapter's grid ({per_dim} per dimension, 2 dimensions)")]
    GridTooLarge { label: String, groups: u64, per_dim: u32 },

    /// An option value that cannot work (an optimizer's learning rate ≤ 0, betas outside
    /// [0, 1), ...); `field` is its path in the config, e.g. `optimizer.betas[1]`.
    #[error("{field}: {message}")]
    InvalidOption { field: String, message: String },

    /// A layer configuration or shape that cannot work (zero sizes, kernel larger than input, ...).
    #[error("{layer}: {message}")]
    Shape { layer: String, message: String },

    /// A config file that does not parse or does not describe a valid model.
    #[error("{file}: {message}")]
    Config { file: String, message: String },

    /// A non-finite loss: the run stops rather than train on garbage.
    /// `first..=step`: the steps since the last finite reading of the running loss sum (read
    /// back every few steps only, since each read waits for the GPU).
    #[error(
        "the training loss became {loss} at epoch {epoch}, {}; the run stopped there and the last checkpoint was kept. Try a lower learning rate (--lr) or --clip-grad-norm",
        if first == step { format!("step {step}") } else { format!("within steps {first} to {step}") }
    )]
    Diverged { epoch: usize, first: usize, step: usize, loss: f64 },

    /// Ctrl-C: the run stopped after a step and saved a checkpoint to continue from.
    #[error("interrupted in epoch {epoch} after step {step} of {steps}; saved a checkpoint: continue with `cnn3d train --resume {}`", dir.display())]
    Interrupted { epoch: usize, step: usize, steps: usize, dir: PathBuf },

    #[error("unknown kernel {0:?}")]
    UnknownKernel(String),

    /// A file system operation on a run artifact or input file failed. (The OS error is in
    /// the message, not a `source`: printed with its chain it would appear twice.)
    #[error("{action} {}: {error}", path.display())]
    Io { path: PathBuf, action: &'static str, error: std::io::Error },

    /// The bytes of a checkpoint are not a well-formed safetensors file (garbage, truncated).
    #[error("{}: not a valid safetensors file: {reason}", path.display())]
    NotSafetensors { path: PathBuf, reason: String },

    /// A tensor the model needs is not in the checkpoint.
    #[error("{}: tensor {tensor:?} is missing (expected {expected}); the file holds {found}", path.display())]
    TensorMissing { path: PathBuf, tensor: String, expected: String, found: String },

    /// The checkpoint holds a tensor the model has no place for.
    #[error("{}: unexpected tensor {tensor:?} ({found}): the model has no tensor of that name", path.display())]
    TensorUnexpected { path: PathBuf, tensor: String, found: String },

    /// A tensor with the right name but the wrong shape or dtype.
    #[error("{}: tensor {tensor:?}: expected {expected}, found {found}", path.display())]
    TensorMismatch { path: PathBuf, tensor: String, expected: String, found: String },

    /// Tensors handed to the checkpoint writer that cannot be written as given.
    #[error("{}: cannot write tensor {tensor:?}: {message}", path.display())]
    CheckpointWrite { path: PathBuf, tensor: String, message: String },

    /// A line of a metrics file that does not parse.
    #[error("{}:{line}: {message}", path.display())]
    Parse { path: PathBuf, line: usize, message: String },

    /// Drawing the training curves failed.
    #[error("{}: drawing the curves failed: {message}", path.display())]
    Plot { path: PathBuf, message: String },
    /// A model `cnn3d export` cannot write: a checkpoint that does not match its config, or a
    /// layer the format cannot express; `what` names the layer.
    #[error("{what}: {message}")]
    Export { what: String, message: String },

    /// A data file or data option that cannot be used (names the file, dataset, expectation).
    /// Boxed: it is the largest variant, and every `Result` of the library carries this enum.
    #[error(transparent)]
    Data(Box<crate::data::DataError>),
}

impl From<crate::data::DataError> for Error {
    fn from(e: crate::data::DataError) -> Self {
        Error::Data(Box::new(e))
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn shape(layer: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Shape { layer: layer.into(), message: message.into() }
    }

    /// Puts a model's shape error (a layer that cannot work, an input the data does not have)
    /// in the context of the config file `origin` that declared the model; other errors pass.
    pub fn in_config(self, origin: &str) -> Error {
        match self {
            Error::Shape { layer, message } if layer.starts_with("layer ") || layer.starts_with("model") => {
                Error::Config { file: origin.to_string(), message: format!("{layer}: {message}") }
            }
            e => e,
        }
    }

    /// Whether a file the user named could not be read (a bad input, not a failing system).
    pub fn is_unreadable_input(&self) -> bool {
        matches!(self, Error::Io { action, .. } if action.starts_with("reading"))
    }

    pub fn io(path: impl Into<PathBuf>, action: &'static str, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), action, error: source }
    }
}
