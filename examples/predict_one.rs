//! Runs a trained checkpoint on one volume and prints the class probabilities.
//!
//!     cargo run --release --example train_toml          # makes a checkpoint first
//!     cargo run --release --example predict_one [RUN_DIR]
//!
//! RUN_DIR is a run's folder (its `model.safetensors` and `config.toml`, as `cnn3d train`
//! writes them); by default the train_toml example's. The volume is a digit of the bundled
//! dataset, drawn here with a seed of its own.

use cnn3d::data::synth::{generate, SynthOptions};
use cnn3d::data::DataOptions;
use cnn3d::eval::{recorded_input, softmax};
use cnn3d::gpu::{Gpu, GpuOptions};
use cnn3d::train::{Config, Session};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = match std::env::args_os().nth(1) {
        Some(d) => std::path::PathBuf::from(d),
        None => std::env::temp_dir().join("cnn3d-example-train_toml"),
    };
    let (checkpoint, config) = (dir.join("model.safetensors"), dir.join("config.toml"));
    if !checkpoint.is_file() {
        return Err(format!("no checkpoint at {}: run `cargo run --release --example train_toml` first, or pass a run's folder", checkpoint.display()).into());
    }
    let config = Config::load(&config)?;
    // The input mapping the run trained with (colormap, reshape), as the checkpoint records it.
    let (colormap, article_reshape) = recorded_input(&checkpoint)?;
    let data = DataOptions { colormap: colormap.unwrap_or_default(), article_reshape, ..Default::default() };
    // One volume: the first test digit of a bundled set drawn with seed 7.

    let mut volume = generate(&SynthOptions { train: 1, test: 1, seed: 7 })?;
    volume.train = volume.test.clone();
    let gpu = Gpu::new(&GpuOptions { adapter: std::env::var("CNN3D_ADAPTER").ok(), ..Default::default() })?;
    let mut session = Session::new(&gpu, &config.model, &volume, &data, config.train.seed)?;
    session.load_weights(&checkpoint)?;
    let on_gpu = session.input.upload(&gpu, &volume.test, "the volume")?;
    let logits = session.predictions(&on_gpu, 1)?.logits;
    let predicted = cnn3d::eval::argmax(&logits);
    println!("a digit {} (its label), predicted {predicted}; class probabilities:", volume.test.y[0]);
    for (class, p) in softmax(&logits).iter().enumerate() {
        println!("  {class}: {:5.1}%  {}", p * 100.0, "#".repeat((p * 40.0).round() as usize));
    }
    Ok(())
}
