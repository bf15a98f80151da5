//! Every kernel that stores activations, at `--precision f16` against the CPU reference: the
//! same cases as `cnn3d --precision f16 check` (inputs rounded to f16 as the device stores
//! them; tolerances widened by one f16 rounding of each stored output, see check::Tol::stored).

mod common;
use cnn3d::gpu::Precision;
use common::{assert_layer_on, gpu_f16};

#[test]
fn the_device_runs_at_f16() {
    assert_eq!(gpu_f16().precision(), Precision::F16);
    assert_eq!(gpu_f16().activations(), cnn3d::gpu::DType::F16);
}

#[test]
fn activation() {
    assert_layer_on(
        gpu_f16(),
        "activation",
        &[
            "relu.forward", "relu.backward", "leaky_relu.forward", "leaky_relu.backward",
            "sigmoid.forward", "sigmoid.backward", "tanh.forward", "tanh.backward",
        ],
    );
}

#[test]
fn conv3d() {
    assert_layer_on(gpu_f16(), "conv3d", &["conv3d.forward", "conv3d.backward_input", "conv3d.backward_weight", "conv3d.backward_bias"]);
}

/// The tiled kernels add into y and dx over several dispatches: at f16 each addition would
/// round the stored sum, so they are no candidates there (direct and implicit GEMM remain).
#[test]
fn conv3d_at_f16_has_no_accumulating_kernels() {
    let g = cnn3d::layers::conv3d::Conv3d::new(2, 39, 41, [4, 5, 6], [3, 3, 3]);
    let (kernels, _) = g.candidates(gpu_f16());
    assert!(kernels.contains(&cnn3d::layers::conv3d::Kernels::Direct), "{kernels:?}");
    for k in &kernels {
        assert!(matches!(k.name(), "direct") || k.name().starts_with("implicit_gemm"), "{} is a candidate at f16", k.name());
    }
    let (at_f32, _) = g.candidates(common::gpu());
    assert!(at_f32.iter().any(|k| k.name() == "tiled"), "at f32 the tiled kernels remain: {at_f32:?}");
}

#[test]
fn max_pool3d() {
    assert_layer_on(gpu_f16(), "max_pool3d", &["max_pool3d.forward", "max_pool3d.backward"]);
}

#[test]
fn avg_pool3d() {
    assert_layer_on(gpu_f16(), "avg_pool3d", &["avg_pool3d.forward", "avg_pool3d.backward"]);
}

#[test]
fn dense() {
    assert_layer_on(gpu_f16(), "dense", &["dense.forward", "dense.backward_input", "dense.backward_weight", "dense.backward_bias"]);
}

#[test]
fn batch_norm() {
    assert_layer_on(
        gpu_f16(),
        "batch_norm",
        &["batch_norm.forward_train", "batch_norm.forward_eval", "batch_norm.backward_input", "batch_norm.backward_params"],
    );
}

#[test]
fn dropout() {
    assert_layer_on(gpu_f16(), "dropout", &["dropout.forward", "dropout.backward"]);
}

#[test]
fn softmax_xent() {
    assert_layer_on(gpu_f16(), "softmax_xent", &["softmax_xent.forward", "softmax_xent.backward", "softmax_xent.accumulate"]);
}

#[test]
fn gather() {
    assert_layer_on(gpu_f16(), "gather", &["gather.forward", "gather.forward_article", "gather.forward_raw", "gather.labels"]);
}
