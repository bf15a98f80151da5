//! Every kernel on the GPU against the CPU reference (the cases live in `cnn3d::check`, so
//! `cnn3d check` and these tests judge the same thing).

mod common;
use common::assert_layer;

#[test]
fn activation() {
    assert_layer(
        "activation",
        &[
            "relu.forward", "relu.backward", "leaky_relu.forward", "leaky_relu.backward",
            "sigmoid.forward", "sigmoid.backward", "tanh.forward", "tanh.backward",
        ],
    );
}

#[test]
fn conv3d() {
    assert_layer("conv3d", &["conv3d.forward", "conv3d.backward_input", "conv3d.backward_weight", "conv3d.backward_bias"]);
}

#[test]
fn max_pool3d() {
    assert_layer("max_pool3d", &["max_pool3d.forward", "max_pool3d.backward"]);
}

#[test]
fn avg_pool3d() {
    assert_layer("avg_pool3d", &["avg_pool3d.forward", "avg_pool3d.backward"]);
}

#[test]
fn dense() {
    assert_layer("dense", &["dense.forward", "dense.backward_input", "dense.backward_weight", "dense.backward_bias"]);
}

#[test]
fn batch_norm() {
    assert_layer(
        "batch_norm",
        &["batch_norm.forward_train", "batch_norm.forward_eval", "batch_norm.backward_input", "batch_norm.backward_params"],
    );
}

#[test]
fn dropout() {
    assert_layer("dropout", &["dropout.forward", "dropout.backward"]);
}

#[test]
fn softmax_xent() {
    assert_layer("softmax_xent", &["softmax_xent.forward", "softmax_xent.backward", "softmax_xent.accumulate"]);
}

#[test]
fn optim() {
    assert_layer("optim", &["sgd.update", "adam.update", "adamw.update"]);
}

#[test]
fn clip_grad_norm() {
    assert_layer("clip_grad_norm", &["clip_grad_norm.norm", "clip_grad_norm.coef", "clip_grad_norm.scale"]);
}

#[test]
fn gather() {
    assert_layer("gather", &["gather.forward", "gather.forward_article", "gather.forward_raw", "gather.labels"]);
}
