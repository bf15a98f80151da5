//! The whole model: the GPU training step against the CPU reference network, with the same
//! weights, input and labels — loss, logits, every gradient tensor and the running statistics.

mod common;
use common::gpu;

use cnn3d::check::{compare, KernelReport, Tol};
use cnn3d::config::ModelConfig;
use cnn3d::model::Model;
use cnn3d::network::{Network, State};
use cnn3d::reference;
use cnn3d::rng::Rng;

fn seed_model() -> Model {
    #[derive(serde::Deserialize)]
    struct Seed {
        model: ModelConfig,
    }
    let seed: Seed = toml::from_str(include_str!("../assets/seed.toml")).unwrap();
    Model::from_config(&seed.model, 3).unwrap()
}

fn f64s(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

/// Per tensor: an f32 chain of sums of up to ~10^4 terms (conv1's weight gradient sums over
/// N·14³ positions) carries relative errors of ~1e-6 of the tensor's scale; 1e-4 of the
/// largest magnitude plus 1e-4 relative leaves room without hiding a wrong index or sign.
fn tol_for(want: &[f64]) -> Tol {
    let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    Tol::new(1e-4 * scale + 1e-7, 1e-4)
}

fn run(train: bool) {
    let g = gpu();
    let model = seed_model();
    let n = 4;
    let seed = 11;
    let mut rng = Rng::new(5);
    let params = model.init_params(&mut rng);
    // Non-trivial running statistics and batch-norm affine parameters.
    let buffers: Vec<Vec<f32>> =
        model.buffers().map(|t| rng.vec_f32(t.len(), if t.name.ends_with("var") { 0.5 } else { -0.5 }, 1.5)).collect();
    let x = rng.vec_f32(n * model.input.iter().product::<usize>(), 0.0, 1.0);
    let labels: Vec<u32> = (0..n).map(|_| rng.below(10) as u32).collect();

    let state = State::new(g, &model).unwrap();
    state.write_params(g, &params).unwrap();
    state.write_buffers(g, &buffers).unwrap();
    let net = Network::new(g, &model, n, seed).unwrap();
    g.write_f32(&net.input, &x).unwrap();
    g.write_u32(&net.labels, &labels).unwrap();
    let step = 3u32;
    g.write_u32(&state.step, &[step]).unwrap();
    let ops = if train { net.train_ops(&state).unwrap() } else { net.eval_ops(&state).unwrap() };
    g.run_ops(&ops).unwrap();

    let p64: Vec<Vec<f64>> = params.iter().map(|p| f64s(p)).collect();
    let b64: Vec<Vec<f64>> = buffers.iter().map(|p| f64s(p)).collect();
    let want = reference::model::step(&model, seed, step, train, &p64, &b64, &f64s(&x), &labels).unwrap();

    let mut reports: Vec<KernelReport> = vec![];
    let logits = if train { net.logits() } else { net.eval_logits() };
    reports.push(compare("logits", "", &g.read_f32(logits).unwrap(), &want.logits, tol_for(&want.logits)));
    reports.push(compare("loss", "", &g.read_f32(&net.loss).unwrap(), &[want.loss], Tol::new(1e-6, 1e-5)));
    assert_eq!(g.read_u32(&net.correct).unwrap()[0], want.correct, "correct count");
    if train {
        for ((t, got), w) in model.params().zip(state.read_grads(g).unwrap()).zip(&want.grads) {
            reports.push(compare(&format!("d{}", t.name), "", &got, w, tol_for(w)));
        }
        for ((t, got), w) in model.buffers().zip(state.read_buffers(g).unwrap()).zip(&want.buffers) {
            reports.push(compare(&t.name, "", &got, w, tol_for(w)));
        }
    }
    let bad: Vec<String> = reports.iter().filter(|r| !r.pass).map(|r| r.describe()).collect();
    assert!(bad.is_empty(), "GPU and reference disagree:\n{}", bad.join("\n"));
}

#[test]
fn training_step_matches_the_reference() {
    run(true);
}

#[test]
fn eval_forward_matches_the_reference() {
    run(false);
}
