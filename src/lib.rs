//! cnn3d: train 3D convolutional networks on any desktop GPU through WebGPU.
//!
//! - [`gpu`]: the only module that names wgpu types (adapters, buffers, pipelines, plans).
//! - [`layers`]: per layer, its shapes and the dispatches of its forward and backward passes.
//! - [`reference`]: the plain CPU reference every kernel is checked against.
//! - [`optim`]: SGD, Adam and AdamW (torch.optim's rules) as one update dispatch, and
//!   learning-rate schedules.
//! - [`check`]: runs every kernel against the reference on the chosen GPU.

pub mod check;
pub mod error;
pub mod gpu;
pub mod layers;
pub mod optim;
pub mod reference;
pub mod rng;

pub use error::{Error, Result};
