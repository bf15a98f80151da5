//! Trains a model given as a TOML string (the format of `cnn3d train --config`, see
//! docs/models.md) on the bundled 3D digits, one channel, and prints its test accuracy.
//!
//!     cargo run --release --example train_toml
//!
//! The run's folder (weights as `model.safetensors`, metrics, curves) goes to the system's
//! temporary directory; `examples/predict_one.rs` reads the weights from there.

use cnn3d::data::{Colormap, DataOptions};
use cnn3d::gpu::{Gpu, GpuOptions};
use cnn3d::train::{self, Config, RunOptions};

/// A small volume classifier: a strided convolution, pooling, and two dense layers.
const MODEL: &str = r#"
[model]
input = [16, 16, 16]
classes = 10

[[model.layers]]
kind = "conv3d"
name = "conv"
out_channels = 8
kernel = 3
stride = 2

[[model.layers]]
kind = "leaky_relu"

[[model.layers]]
kind = "max_pool3d"
kernel = 2

[[model.layers]]
kind = "flatten"

[[model.layers]]
kind = "dense"
name = "fc1"
out_features = 32

[[model.layers]]
kind = "relu"

[[model.layers]]
kind = "dense"
name = "fc2"
out_features = 10

[train]
epochs = 3
batch_size = 32

[optimizer]
kind = "adam"
lr = 0.01
"#;

/// Where the run's folder goes (also read by the predict_one example).
pub fn run_dir() -> std::path::PathBuf {
    std::env::temp_dir().join("cnn3d-example-train_toml")
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The first adapter wgpu offers (a discrete GPU first); CNN3D_ADAPTER / WGPU_BACKEND choose.
    let gpu = Gpu::new(&GpuOptions { adapter: std::env::var("CNN3D_ADAPTER").ok(), ..Default::default() })?;
    println!("training on {} ({})", gpu.info().name, gpu.info().backend);
    let opts = RunOptions {
        config: Config::parse(MODEL, "the example's model")?,
        // The bundled digits as one density channel (no colormap).
        data: DataOptions { colormap: Colormap::None, ..Default::default() },
        init: None,
        resume: None,
        limit_train: Some(2000),
        limit_test: Some(500),
        out: run_dir(),
        quiet: true,
        profile_every: None,
        checkpoint_every: 1,
        clip_grad_norm: None,
        stop: None,
    };
    let summary = train::train(&gpu, &opts)?;
    println!(
        "test accuracy {:.1}% (loss {:.3}) after {} epochs in {:.0} s; weights in {}",
        summary.test_acc * 100.0,
        summary.test_loss,
        summary.epochs,
        summary.seconds,
        run_dir().join("model.safetensors").display()
    );
    Ok(())
}
