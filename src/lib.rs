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

// In a browser (wasm32-unknown-unknown, feature `web`) the library is the GPU, the layers, the
// plans, the CPU reference and the bundled digits; GPU readbacks there are async
// ([`gpu::Gpu::read_f32_async`]). What needs files, a terminal or blocking GPU waits is
// `native` (a default feature).
#[cfg(all(target_arch = "wasm32", feature = "native"))]
compile_error!("feature `native` does not build for wasm32: use `--no-default-features --features web`");
#[cfg(all(target_arch = "wasm32", not(feature = "web")))]
compile_error!("wasm32 needs feature `web` (wgpu's WebGPU backend): `--no-default-features --features web`");

pub mod atomic;
pub mod check;
pub mod checkpoint;
pub mod config;
pub mod data;
pub mod error;
#[cfg(feature = "native")]
pub mod eval;
#[cfg(feature = "native")]
pub mod export;
pub mod gpu;
pub mod layers;
pub mod metrics;
pub mod model;
pub mod network;
pub mod optim;
#[cfg(feature = "native")]
pub mod plot;
#[cfg(feature = "native")]
pub mod profile;
#[cfg(feature = "native")]
pub mod progress;
pub mod reference;
#[cfg(feature = "native")]
pub mod report;
pub mod session;
#[cfg(feature = "native")]
pub mod train;
#[cfg(feature = "native")]
pub mod trace;
pub mod tune;
pub mod rng;

/// A clock for durations that also works in a browser (std's `Instant::now` panics on
/// wasm32-unknown-unknown).
#[cfg(not(target_arch = "wasm32"))]
pub(crate) use std::time::Instant;
#[cfg(target_arch = "wasm32")]
pub(crate) use web_time::Instant;

pub use error::{Error, Result};
