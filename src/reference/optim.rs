//! Reference optimizer steps in f64, written as the textbook rules (PyTorch's docs for
//! torch.optim.SGD / Adam / AdamW), element by element over one flat parameter vector.
//!
//! SGD:   g = grad + wd·p
//!        buf = g on the first step, else momentum·buf + (1 − dampening)·g   (momentum ≠ 0)
//!        u = g + momentum·buf (nesterov), buf (momentum), g (no momentum);   p = p − lr·u
//! Adam:  g = grad + wd·p                         (AdamW instead: p = p·(1 − lr·wd))
//!        m = β1·m + (1 − β1)·g;   v = β2·v + (1 − β2)·g²
//!        m̂ = m / (1 − β1^t);      v̂ = v / (1 − β2^t);    p = p − lr·m̂ / (√v̂ + eps)

use crate::optim::{AdamConfig, SgdConfig, UpdateRule};

/// An optimizer's state as PyTorch keeps it: created on the first step.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct State {
    /// Steps taken (PyTorch's `state['step']`).
    pub step: u64,
    /// SGD with momentum; `None` until the first step, as in PyTorch.
    pub momentum_buffer: Option<Vec<f64>>,
    /// Adam / AdamW; empty until the first step, then zeros updated in place.
    pub exp_avg: Vec<f64>,
    pub exp_avg_sq: Vec<f64>,
}

/// One step of `rule` at learning rate `lr` (the schedule's value), updating `param` and
/// `state` in place.
pub fn step(rule: &UpdateRule, lr: f64, param: &mut [f64], grad: &[f64], state: &mut State) {
    assert_eq!(param.len(), grad.len(), "reference optimizer: param and grad differ in length");
    state.step += 1;
    match rule {
        UpdateRule::Sgd(c) => sgd(c, lr, param, grad, &mut state.momentum_buffer),
        UpdateRule::Adam(c) => adam(c, false, lr, state.step, param, grad, state),
        UpdateRule::AdamW(c) => adam(c, true, lr, state.step, param, grad, state),
    }
}

fn sgd(c: &SgdConfig, lr: f64, param: &mut [f64], grad: &[f64], buf: &mut Option<Vec<f64>>) {
    let g: Vec<f64> = param.iter().zip(grad).map(|(p, g)| g + c.weight_decay * p).collect();
    let u = if c.momentum == 0.0 {
        g
    } else {
        let b = match buf.take() {
            None => g.clone(),
            Some(b) => b.iter().zip(&g).map(|(b, g)| c.momentum * b + (1.0 - c.dampening) * g).collect(),
        };
        let u = if c.nesterov { g.iter().zip(&b).map(|(g, b)| g + c.momentum * b).collect() } else { b.clone() };
        *buf = Some(b);
        u
    };
    for (p, u) in param.iter_mut().zip(&u) {
        *p -= lr * u;
    }
}

fn adam(c: &AdamConfig, decoupled: bool, lr: f64, t: u64, param: &mut [f64], grad: &[f64], s: &mut State) {
    let [b1, b2] = c.betas;
    if s.exp_avg.is_empty() {
        s.exp_avg = vec![0.0; param.len()];
        s.exp_avg_sq = vec![0.0; param.len()];
    }
    for i in 0..param.len() {
        let mut g = grad[i];
        if decoupled {
            param[i] *= 1.0 - lr * c.weight_decay;
        } else {
            g += c.weight_decay * param[i];
        }
        s.exp_avg[i] = b1 * s.exp_avg[i] + (1.0 - b1) * g;
        s.exp_avg_sq[i] = b2 * s.exp_avg_sq[i] + (1.0 - b2) * g * g;
        let m_hat = s.exp_avg[i] / (1.0 - b1.powf(t as f64));
        let v_hat = s.exp_avg_sq[i] / (1.0 - b2.powf(t as f64));
        param[i] -= lr * m_hat / (v_hat.sqrt() + c.eps);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(rule: UpdateRule, lr: f64, p: f64, grads: &[f64]) -> Vec<f64> {
        let mut p = vec![p];
        let mut s = State::default();
        grads
            .iter()
            .map(|&g| {
                step(&rule, lr, &mut p, &[g], &mut s);
                p[0]
            })
            .collect()
    }

    /// Values worked by hand from the rules above.
    #[test]
    fn sgd_by_hand() {
        let plain = SgdConfig { lr: 0.1, ..Default::default() };
        assert_eq!(run(UpdateRule::Sgd(plain), 0.1, 1.0, &[2.0]), [0.8]);
        // weight decay 0.5: g = 2 + 0.5·1 = 2.5 → 1 − 0.25
        let wd = SgdConfig { weight_decay: 0.5, ..plain };
        assert_eq!(run(UpdateRule::Sgd(wd), 0.1, 1.0, &[2.0]), [0.75]);
        // momentum 0.5, dampening 0.5: buf₁ = g₁ = 1 (no dampening on the first step) → p = −0.1;
        // buf₂ = 0.5·1 + 0.5·1 = 1 → p = −0.2
        let mom = SgdConfig { momentum: 0.5, dampening: 0.5, ..plain };
        let got = run(UpdateRule::Sgd(mom), 0.1, 0.0, &[1.0, 1.0]);
        assert!((got[0] + 0.1).abs() < 1e-15 && (got[1] + 0.2).abs() < 1e-15, "{got:?}");
        // nesterov, momentum 0.5: buf₁ = 1, u = 1 + 0.5 = 1.5 → −0.15; buf₂ = 0.5 + 1 = 1.5,
        // u = 1 + 0.75 = 1.75 → −0.325
        let nes = SgdConfig { momentum: 0.5, nesterov: true, ..plain };
        let got = run(UpdateRule::Sgd(nes), 0.1, 0.0, &[1.0, 1.0]);
        assert!((got[0] + 0.15).abs() < 1e-15 && (got[1] + 0.325).abs() < 1e-15, "{got:?}");
    }

    #[test]
    fn adam_by_hand() {
        // First step: m̂ = g, v̂ = g², so p moves by lr·g/(|g| + eps) ≈ lr·sign(g).
        let c = AdamConfig { lr: 0.01, eps: 0.0, ..AdamConfig::adam() };
        let got = run(UpdateRule::Adam(c), 0.01, 1.0, &[-3.0]);
        assert!((got[0] - 1.01).abs() < 1e-15, "{got:?}");
        // Adam's weight decay goes through the moments: g = 0 + 1·1 → still a step of lr.
        let c = AdamConfig { lr: 0.01, eps: 0.0, weight_decay: 1.0, ..AdamConfig::adam() };
        let got = run(UpdateRule::Adam(c), 0.01, 1.0, &[0.0]);
        assert!((got[0] - 0.99).abs() < 1e-15, "{got:?}");
        // AdamW's decays p directly: 1·(1 − 0.01·1) = 0.99, then g = 0 leaves it (0/(0+eps)).
        let c = AdamConfig { lr: 0.01, eps: 1e-8, weight_decay: 1.0, ..AdamConfig::adam() };
        let got = run(UpdateRule::AdamW(c), 0.01, 1.0, &[0.0]);
        assert!((got[0] - 0.99).abs() < 1e-15, "{got:?}");
        // Constant gradients keep m̂ = g and v̂ = g² on every step: steps of lr·sign(g).
        let c = AdamConfig { lr: 0.01, eps: 0.0, ..AdamConfig::adam() };
        let got = run(UpdateRule::Adam(c), 0.01, 0.0, &[2.0, 2.0, 2.0]);
        for (k, p) in got.iter().enumerate() {
            assert!((p + 0.01 * (k + 1) as f64).abs() < 1e-14, "{got:?}");
        }
    }
}
