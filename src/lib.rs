//! cnn3d: train 3D convolutional networks on any desktop GPU through WebGPU.
//!
//! - [`gpu`]: the only module that names wgpu types (adapters, buffers, pipelines, plans).
//! - [`layers`]: per layer, its shapes and the dispatches of its forward and backward passes.
//! - [`reference`](mod@reference): the plain CPU reference every kernel is checked against.
//! - [`optim`]: SGD, Adam and AdamW (torch.optim's rules) as one update dispatch, and
//!   learning-rate schedules.
//! - [`check`]: runs every kernel against the reference on the chosen GPU.
//! - Run artifacts: [`checkpoint`] (safetensors), [`metrics`] (`metrics.csv`, `summary.json`),
//!   [`plot`] (`curves.png`, `curves.svg`), [`progress`] (the per-epoch display); all written
//!   atomically through [`atomic`].
//! - [`data`]: HDF5 datasets, the bundled digits, splits and the article's colormap.
//! - [`report`]: `cnn3d report`, one measurement of an adapter (check, bench, kernels, GEMM).
//! - [`export`]: a checkpoint as a PyTorch module (`model.py`) or an ONNX graph.

pub mod atomic;
pub mod check;
pub mod checkpoint;
pub mod config;
pub mod data;
pub mod error;
pub mod eval;
pub mod export;
pub mod gpu;
pub mod layers;
pub mod metrics;
pub mod model;
pub mod network;
pub mod optim;
pub mod plot;
pub mod profile;
pub mod progress;
pub mod reference;
pub mod report;
pub mod train;
pub mod trace;
pub mod tune;
pub mod rng;

pub use error::{Error, Result};
