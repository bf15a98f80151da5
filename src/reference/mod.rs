//! The CPU reference: one file per layer, forward next to backward, plain loops in f64.
//! It is the oracle the GPU kernels are checked against, so it stays obvious rather than fast.

pub mod activation;
pub mod avg_pool3d;
pub mod batch_norm;
pub mod clip_grad_norm;
pub mod conv3d;
pub mod dense;
pub mod dropout;
pub mod gather;
pub mod max_pool3d;
pub mod model;
pub mod optim;
pub mod softmax_xent;

/// Central-difference gradient of `L(x) = Σ f(x)·g` with respect to `x`: what every backward
/// pass computes for an upstream gradient `g`.
pub fn numeric_grad(f: &dyn Fn(&[f64]) -> Vec<f64>, x: &[f64], g: &[f64], eps: f64) -> Vec<f64> {
    let mut x = x.to_vec();
    let loss = |y: Vec<f64>| -> f64 {
        assert_eq!(y.len(), g.len(), "numeric_grad: output and upstream gradient differ in length");
        y.iter().zip(g).map(|(a, b)| a * b).sum()
    };
    (0..x.len())
        .map(|i| {
            let orig = x[i];
            x[i] = orig + eps;
            let up = loss(f(&x));
            x[i] = orig - eps;
            let down = loss(f(&x));
            x[i] = orig;
            (up - down) / (2.0 * eps)
        })
        .collect()
}

/// Compares an analytic gradient with a numeric one; `Err` names the worst element.
pub fn assert_grad_close(what: &str, analytic: &[f64], numeric: &[f64], atol: f64, rtol: f64) -> Result<(), String> {
    if analytic.len() != numeric.len() {
        return Err(format!("{what}: analytic has {} elements, numeric {}", analytic.len(), numeric.len()));
    }
    let mut worst: Option<(usize, f64)> = None;
    for (i, (a, n)) in analytic.iter().zip(numeric).enumerate() {
        let err = (a - n).abs();
        // Written negated so that a NaN error counts as outside the tolerance.
        #[allow(clippy::neg_cmp_op_on_partial_ord)]
        let outside = !(err <= atol + rtol * n.abs());
        if outside && worst.is_none_or(|(_, w)| err > w) {
            worst = Some((i, err));
        }
    }
    match worst {
        None => Ok(()),
        Some((i, e)) => Err(format!(
            "{what}: gradient mismatch at {i}: analytic {} vs numeric {} (|err| {e:e}, atol {atol:e}, rtol {rtol:e})",
            analytic[i], numeric[i]
        )),
    }
}

/// Seeded random f64 values in [lo, hi) for the gradient checks.
#[cfg(test)]
pub(crate) fn random(seed: u64, len: usize, lo: f64, hi: f64) -> Vec<f64> {
    let mut r = crate::rng::Rng::new(seed);
    (0..len).map(|_| r.uniform(lo, hi)).collect()
}
