//! cnn3d: train 3D convolutional networks on any desktop GPU through WebGPU.
//!
//! - [`gpu`]: the only module that names wgpu types (adapters, buffers, pipelines, plans).
//! - [`layers`]: per layer, its shapes and the dispatches of its forward and backward passes.
//! - [`reference`]: the plain CPU reference every kernel is checked against.
//! - [`check`]: runs every kernel against the reference on the chosen GPU.
//! - [`data`]: HDF5 datasets, the bundled digits, splits and the article's colormap.

pub mod check;
pub mod data;
pub mod error;
pub mod gpu;
pub mod layers;
pub mod reference;
pub mod rng;

pub use error::{Error, Result};
