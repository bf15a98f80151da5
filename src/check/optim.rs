//! optimizers: several steps of `sgd.update`, `adam.update` and `adamw.update` against the f64
//! reference, replaying one compiled plan with new gradients and a new hyper buffer per step.

use crate::error::Result;
use crate::gpu::{DType, Gpu};
use crate::optim::{AdamConfig, Optimizer, Schedule, SgdConfig, UpdateRule};
use crate::reference::optim as reference;
use crate::rng::Rng;

use super::{compare, f64s, KernelReport, Tol};

/// Steps per case: the first (momentum buffer created from the gradient, Adam's largest bias
/// corrections) and three more, each at the schedule's next learning rate.
const STEPS: u64 = 4;
/// At LARGE, where the point is the 2D grid and the reference costs seconds in a debug
/// build: the first step and one more, compared after the last.
const LARGE_STEPS: u64 = 2;

/// Element counts: one, odd and not a multiple of the workgroup, and one above 65,535
/// workgroups of 64, so that the update runs on a 2D grid.
const SMALL: &[usize] = &[1, 1_001];
const LARGE: usize = 65_535 * 64 + 1_001;

/// Every 97th element is held at 0 in parameters and gradients, as the alignment padding of a
/// flat parameter buffer is: it must stay exactly 0 (no NaN from Adam's 0/(0 + eps)).
const PAD_EVERY: usize = 97;

const U: f64 = f32::EPSILON as f64 / 2.0;

struct Case {
    what: &'static str,
    rule: UpdateRule,
    /// Whether it also runs at LARGE (one case per shader entry point; the rest of the
    /// combinations at the small sizes, where they cost nothing).
    large: bool,
}

fn sgd(lr: f64, momentum: f64, dampening: f64, weight_decay: f64, nesterov: bool) -> UpdateRule {
    UpdateRule::Sgd(SgdConfig { lr, momentum, dampening, weight_decay, nesterov })
}

fn adam(lr: f64, betas: [f64; 2], eps: f64, weight_decay: f64) -> AdamConfig {
    AdamConfig { lr, betas, eps, weight_decay }
}

/// Learning rates large enough that the update is a visible part of each parameter (lr·|u|
/// around 0.01–0.2 against |p| ≤ 1), so an error in the update cannot hide in p's rounding.
fn cases() -> Vec<Case> {
    vec![
        Case { what: "lr 0.1, plain", rule: sgd(0.1, 0.0, 0.0, 0.0, false), large: true },
        Case { what: "lr 0.1, weight_decay 0.05", rule: sgd(0.1, 0.0, 0.0, 0.05, false), large: false },
        Case { what: "lr 0.1, momentum 0.9", rule: sgd(0.1, 0.9, 0.0, 0.0, false), large: false },
        Case { what: "lr 0.1, momentum 0.9, dampening 0.3, weight_decay 0.01", rule: sgd(0.1, 0.9, 0.3, 0.01, false), large: false },
        Case { what: "lr 0.05, nesterov, momentum 0.9, weight_decay 5e-4", rule: sgd(0.05, 0.9, 0.0, 5e-4, true), large: true },
        Case { what: "lr 0.01, defaults", rule: UpdateRule::Adam(adam(0.01, [0.9, 0.999], 1e-8, 0.0)), large: true },
        Case {
            what: "lr 0.01, betas (0.8, 0.99), eps 1e-6, weight_decay 0.1",
            rule: UpdateRule::Adam(adam(0.01, [0.8, 0.99], 1e-6, 0.1)),
            large: false,
        },
        // 1 − β1 ≥ 0.5 takes lerp's other formula.
        Case { what: "lr 0.01, betas (0.3, 0.9)", rule: UpdateRule::Adam(adam(0.01, [0.3, 0.9], 1e-8, 0.0)), large: false },
        Case { what: "lr 0.01, defaults (weight_decay 0.01)", rule: UpdateRule::AdamW(adam(0.01, [0.9, 0.999], 1e-8, 0.01)), large: true },
        Case {
            what: "lr 0.02, betas (0.5, 0.95), weight_decay 0.5",
            rule: UpdateRule::AdamW(adam(0.02, [0.5, 0.95], 1e-8, 0.5)),
            large: false,
        },
    ]
}

/// The learning rate changes every step (each step is one "epoch" of a cosine schedule), so a
/// hyper buffer that is not re-read, or read from the wrong slot, fails.
const SCHEDULE: Schedule = Schedule::Cosine { t_max: 3, eta_min: 1e-3 };

/// An f32 value computed from inputs of magnitude ≤ m by a few roundings (the update is ≤ 8
/// operations, each rounding by u relative to numbers ≤ m), accumulated over `steps` steps in
/// which the rounded value feeds the next step. Adam's ratio m̂ / (√v̂ + eps) stays ≤ √t in
/// magnitude and its relative error a few u, so lr times it is within m as well. A factor 2
/// on top for the roundings of the f32 hyper-parameters (lr, β, 1 − β: relative u each).
fn tol(steps: u64, m: f64) -> Tol {
    Tol::new(8.0 * steps as f64 * U * m, 0.0)
}

fn max_abs(v: &[f64]) -> f64 {
    v.iter().fold(0.0, |a, &x| a.max(x.abs()))
}

pub async fn run(gpu: &Gpu) -> Result<Vec<KernelReport>> {
    let mut out = vec![];
    let mut rng = Rng::new(0x0971_1234);
    for case in cases() {
        let sizes: Vec<usize> = SMALL.iter().copied().chain(case.large.then_some(LARGE)).collect();
        let name = case.rule.kernel_name();
        for n in sizes {
            let pad = |v: &mut Vec<f32>| v.iter_mut().step_by(PAD_EVERY).for_each(|x| *x = 0.0);
            let mut p0 = rng.vec_f32(n, -1.0, 1.0);
            pad(&mut p0);
            let steps = if n == LARGE { LARGE_STEPS } else { STEPS };
            let grads: Vec<Vec<f32>> = (0..steps)
                .map(|_| {
                    let mut g = rng.vec_f32(n, -1.0, 1.0);
                    pad(&mut g);
                    g
                })
                .collect();

            let opt = Optimizer::new(gpu, &case.rule, n)?;
            let pb = gpu.upload_f32("params", &p0)?;
            let gb = gpu.zeros("grads", n, DType::F32)?;
            let plan = gpu.compile(&[opt.update(&pb, &gb)?])?;

            let mut pr = f64s(&p0);
            let mut state = reference::State::default();
            for t in 1..=steps {
                let lr = SCHEDULE.lr_at(case.rule.lr(), t - 1);
                let g = &grads[t as usize - 1];
                gpu.write_f32(&gb, g)?;
                opt.write_hyper(gpu, lr, t)?;
                gpu.submit(&plan)?;
                let before = max_abs(&pr);
                reference::step(&case.rule, lr, &mut pr, &f64s(g), &mut state);
                if n != LARGE || t == steps {
                    let shape = format!("[{n}] {}; param after step {t} at lr {lr:.5}", case.what);
                    let m = before.max(max_abs(&pr)).max(1.0);
                    out.push(compare(name, &shape, &gpu.read_f32_async(&pb).await?, &pr, tol(t, m)));
                }
            }
            for (key, buf) in opt.state() {
                let want = match *key {
                    "momentum_buffer" => state.momentum_buffer.clone().unwrap_or_default(),
                    "exp_avg" => state.exp_avg.clone(),
                    _ => state.exp_avg_sq.clone(),
                };
                let shape = format!("[{n}] {}; {key} after step {steps}", case.what);
                // The state is built from gradients of magnitude ≤ 1 (plus weight decay·p).
                let m = max_abs(&want).max(1.0);
                out.push(compare(name, &shape, &gpu.read_f32_async(buf).await?, &want, tol(steps, m)));
            }
            // Padding stays exactly 0 (compare's tolerance would let a tiny value through).
            let got = gpu.read_f32_async(&pb).await?;
            let stray: Vec<f32> = got.iter().step_by(PAD_EVERY).copied().collect();
            let zeros = vec![0.0; stray.len()];
            out.push(compare(name, &format!("[{n}] {}; zero padding", case.what), &stray, &zeros, Tol::new(0.0, 0.0)));
        }
    }
    Ok(out)
}
