//! The library's error type. User input never panics: it becomes one of these, with a message
//! that names what was wrong and what was expected.

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

    /// Work that needs more workgroups than a 2D grid of the adapter's limit can hold.
    #[error("{label}: {groups} workgroups exceed the adapter's grid ({per_dim} per dimension, 2 dimensions)")]
    GridTooLarge { label: String, groups: u64, per_dim: u32 },

    /// A layer configuration or shape that cannot work (zero sizes, kernel larger than input, ...).
    #[error("{layer}: {message}")]
    Shape { layer: String, message: String },

    #[error("unknown kernel {0:?}")]
    UnknownKernel(String),

    /// A data file or data option that cannot be used (names the file, dataset, expectation).
    #[error(transparent)]
    Data(#[from] crate::data::DataError),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn shape(layer: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Shape { layer: layer.into(), message: message.into() }
    }
}
