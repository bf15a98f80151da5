//! Shared by the GPU tests: one device per test binary, and assertions with useful failures.
#![allow(dead_code)] // each test binary uses a different part of this module

use std::sync::OnceLock;

use cnn3d::check::KernelReport;
use cnn3d::gpu::{Gpu, GpuOptions};

/// The adapter the tests run on (`WGPU_BACKEND` / `CNN3D_ADAPTER` choose). A machine without
/// one fails here, with the message saying how to get one; it never passes silently.
pub fn gpu() -> &'static Gpu {
    static GPU: OnceLock<Gpu> = OnceLock::new();
    GPU.get_or_init(|| {
        match Gpu::new(&options()) {
            Ok(g) => g,
            Err(e) => panic!("these tests need a wgpu adapter and none could be opened: {e}"),
        }
    })
}

/// The options of [`gpu`]'s device, for a test that needs a device of its own.
pub fn options() -> GpuOptions {
    GpuOptions { adapter: std::env::var("CNN3D_ADAPTER").ok(), ..Default::default() }
}

/// The same adapter as [`gpu`] opened at `--precision f16`: activations stored in f16. An
/// adapter without shader-f16 fails here, saying so (lavapipe, where CI runs, has it).
pub fn gpu_f16() -> &'static Gpu {
    static GPU: OnceLock<Gpu> = OnceLock::new();
    GPU.get_or_init(|| {
        let opts = GpuOptions { precision: cnn3d::gpu::Precision::F16, ..options() };
        match Gpu::new(&opts) {
            Ok(g) => g,
            Err(e) => panic!("the f16 tests need an adapter with shader-f16 and none could be opened at f16: {e}"),
        }
    })
}

/// Asserts that the layer produced reports for exactly `kernels` and that every one passed;
/// otherwise panics with the worst error and the first mismatches of each failure.
pub fn assert_layer(layer: &str, kernels: &[&str]) {
    assert_layer_on(gpu(), layer, kernels)
}

/// [`assert_layer`] on `gpu`.
pub fn assert_layer_on(gpu: &Gpu, layer: &str, kernels: &[&str]) {
    let reports = cnn3d::check::run_layer(gpu, layer).unwrap_or_else(|e| panic!("{layer}: {e}"));
    let merged = cnn3d::check::merge_by_name(reports.clone());
    let names: Vec<&str> = merged.iter().map(|r| r.name.as_str()).collect();
    for k in kernels {
        assert!(names.contains(k), "{layer}: no report for kernel {k}; got {names:?}");
    }
    let failures: Vec<&KernelReport> = reports.iter().filter(|r| !r.pass).collect();
    assert!(
        failures.is_empty(),
        "{} of {} {layer} cases failed:\n{}",
        failures.len(),
        reports.len(),
        failures.iter().map(|r| r.describe()).collect::<Vec<_>>().join("\n")
    );
}
