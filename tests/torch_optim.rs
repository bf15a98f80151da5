//! PyTorch as the outside oracle for the optimizers and schedules:
//! `tests/fixtures/torch_optim.json` (written by `tests/fixtures/make_torch_optim.py`) holds
//! parameters, 3 steps of gradients, and the parameters after each step under torch.optim
//! (float64), plus the learning rates of PyTorch's schedulers per epoch. Both the CPU reference
//! and the GPU update must reproduce them, and every case's optimizer config must parse.

mod common;
use common::gpu;

use cnn3d::check::{compare, compare_f64, KernelReport, Tol};
use cnn3d::gpu::DType;
use cnn3d::optim::{Optimizer, OptimizerConfig, Schedule};
use cnn3d::reference::optim as reference;
use serde_json::Value;

/// The reference is f64 like PyTorch's run, with the same rules in a different operation order
/// (m̂ / (√v̂ + eps) against PyTorch's m / (√v / √bc2 + eps) · lr / bc1): they agree to a few
/// f64 roundings, far below 1e-12.
const REF_TOL: Tol = Tol::new(1e-12, 1e-12);

/// The GPU runs in f32. Each step rounds the new parameter (|p| ≤ m) and the few operations of
/// its update (lr·|u| ≤ m) by 2⁻²⁴ each, and the rounded result feeds the next step, so after t
/// steps the error is within 8·t·2⁻²⁴·m (≈ 1.4e-6 at t = 3, m = 1) — the same bound as
/// `cnn3d check`'s optimizer cases, where it holds over millions of elements. The f32 rounding
/// of hyper-parameters (lr 0.1 is not an f32) adds relative 2⁻²⁴ of lr·|u|, inside the bound.
fn gpu_tol(t: usize, m: f64) -> Tol {
    Tol::new(8.0 * t as f64 * (f32::EPSILON as f64 / 2.0) * m.max(1.0), 0.0)
}

fn doc() -> Value {
    serde_json::from_str(include_str!("fixtures/torch_optim.json")).expect("torch_optim.json parses")
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array().expect("an array of numbers").iter().map(|x| x.as_f64().expect("a number")).collect()
}

fn f32s(v: &[f64]) -> Vec<f32> {
    v.iter().map(|&x| x as f32).collect()
}

fn max_abs(v: &[f64]) -> f64 {
    v.iter().fold(0.0, |a, &x| a.max(x.abs()))
}

fn finish(reports: Vec<KernelReport>) {
    let bad: Vec<String> = reports.iter().filter(|r| !r.pass).map(|r| r.describe()).collect();
    assert!(bad.is_empty(), "disagreements with PyTorch:\n{}", bad.join("\n"));
}

#[test]
fn schedules_match_pytorch() {
    let mut reports = vec![];
    for s in doc()["schedules"].as_array().unwrap() {
        let schedule: Schedule = serde_json::from_value(s["schedule"].clone()).expect("schedule parses");
        schedule.validate().unwrap();
        let base = s["base_lr"].as_f64().unwrap();
        let want = floats(&s["lrs"]);
        let got: Vec<f64> = (0..want.len() as u64).map(|e| schedule.lr_at(base, e)).collect();
        // PyTorch's schedulers update the lr recursively, we use the closed form: a few f64
        // roundings apart per epoch (atol for the cosine's 0 at t_max).
        reports.push(compare_f64(&format!("{schedule:?}"), "", &got, &want, Tol::new(1e-15, 1e-12)));
    }
    finish(reports);
}

#[test]
fn optimizers_match_pytorch() {
    let doc = doc();
    let p0 = floats(&doc["params"]);
    let grads: Vec<Vec<f64>> = doc["grads"].as_array().unwrap().iter().map(floats).collect();
    let n = p0.len();
    let expected_len: usize = doc["shapes"].as_array().unwrap().iter().map(|s| floats(s).iter().product::<f64>() as usize).sum();
    assert_eq!(n, expected_len, "the fixture's parameters are its tensors concatenated");
    let g = gpu();
    let mut reports = vec![];
    for c in doc["cases"].as_array().unwrap() {
        let name = c["name"].as_str().unwrap();
        let config: OptimizerConfig =
            serde_json::from_value(c["optimizer"].clone()).unwrap_or_else(|e| panic!("{name}: optimizer config: {e}"));
        config.validate().unwrap_or_else(|e| panic!("{name}: {e}"));
        let lrs = floats(&c["lrs"]);
        let after: Vec<Vec<f64>> = c["params_after"].as_array().unwrap().iter().map(floats).collect();
        assert_eq!(after.len(), grads.len(), "{name}: one parameter snapshot per step");

        // One flat parameter buffer for all tensors, as the model's; one plan replayed per step.
        let opt = Optimizer::new(g, &config.rule, n).unwrap();
        let pb = g.upload_f32("params", &f32s(&p0)).unwrap();
        let gb = g.zeros("grads", n, DType::F32).unwrap();
        let plan = g.compile(&[opt.update(&pb, &gb).unwrap()]).unwrap();
        let mut pr = p0.clone();
        let mut state = reference::State::default();
        for (k, grad) in grads.iter().enumerate() {
            let t = k + 1;
            // The schedule, stepped once per epoch with one step per epoch here.
            let lr = config.lr_at(k as u64);
            reports.push(compare_f64(&format!("{name}: schedule lr"), &format!("step {t}"), &[lr], &[lrs[k]], REF_TOL));

            reference::step(&config.rule, lr, &mut pr, grad, &mut state);
            reports.push(compare_f64(&format!("reference {name}"), &format!("params after step {t}"), &pr, &after[k], REF_TOL));

            g.write_f32(&gb, &f32s(grad)).unwrap();
            opt.write_hyper(g, lr, t as u64).unwrap();
            g.run(&plan).unwrap();
            let tol = gpu_tol(t, max_abs(&after[k]));
            reports.push(compare(&format!("gpu {}: {name}", config.rule.kernel_name()), &format!("params after step {t}"), &g.read_f32(&pb).unwrap(), &after[k], tol));
        }
    }
    finish(reports);
}
