//! Reference batch norm over (N, C, S), element (n, c, s) at (n·C + c)·S + s: the training
//! forward (batch statistics and the running-statistics update), the eval forward, and the
//! training backward from the saved statistics.

use crate::layers::batch_norm::BatchNorm;

/// Everything the training forward produces.
pub struct Train {
    pub y: Vec<f64>,
    /// Batch mean per channel.
    pub mean: Vec<f64>,
    /// 1/sqrt(biased batch variance + eps) per channel.
    pub invstd: Vec<f64>,
    /// The running statistics after the update.
    pub running_mean: Vec<f64>,
    pub running_var: Vec<f64>,
}

/// The training backward's gradients.
pub struct Grads {
    pub dx: Vec<f64>,
    pub dgamma: Vec<f64>,
    pub dbeta: Vec<f64>,
}

/// The flat indices of channel c's M values.
fn channel(bn: &BatchNorm, c: usize) -> impl Iterator<Item = usize> + '_ {
    (0..bn.batch).flat_map(move |n| (0..bn.spatial).map(move |s| (n * bn.channels + c) * bn.spatial + s))
}

/// The channel of flat index i.
fn channel_of(bn: &BatchNorm, i: usize) -> usize {
    (i / bn.spatial) % bn.channels
}

pub fn forward_train(
    bn: &BatchNorm,
    x: &[f64],
    gamma: &[f64],
    beta: &[f64],
    running_mean: &[f64],
    running_var: &[f64],
) -> Train {
    let m = bn.count() as f64;
    let momentum = bn.momentum as f64;
    let mut out = Train {
        y: vec![0.0; x.len()],
        mean: vec![0.0; bn.channels],
        invstd: vec![0.0; bn.channels],
        running_mean: vec![0.0; bn.channels],
        running_var: vec![0.0; bn.channels],
    };
    for c in 0..bn.channels {
        let mean = channel(bn, c).map(|i| x[i]).sum::<f64>() / m;
        let sq = channel(bn, c).map(|i| (x[i] - mean).powi(2)).sum::<f64>();
        let var = sq / m;
        let invstd = 1.0 / (var + bn.eps as f64).sqrt();
        for i in channel(bn, c) {
            out.y[i] = (x[i] - mean) * invstd * gamma[c] + beta[c];
        }
        out.mean[c] = mean;
        out.invstd[c] = invstd;
        out.running_mean[c] = (1.0 - momentum) * running_mean[c] + momentum * mean;
        // The running variance is the unbiased one, as PyTorch's.
        out.running_var[c] = (1.0 - momentum) * running_var[c] + momentum * sq / (m - 1.0);
    }
    out
}

pub fn forward_eval(
    bn: &BatchNorm,
    x: &[f64],
    gamma: &[f64],
    beta: &[f64],
    running_mean: &[f64],
    running_var: &[f64],
) -> Vec<f64> {
    (0..x.len())
        .map(|i| {
            let c = channel_of(bn, i);
            (x[i] - running_mean[c]) / (running_var[c] + bn.eps as f64).sqrt() * gamma[c] + beta[c]
        })
        .collect()
}

/// The training backward, from the saved `mean` and `invstd`, with xhat = (x − mean)·invstd:
/// dgamma = Σ dy·xhat, dbeta = Σ dy, dx = gamma·invstd/M·(M·dy − Σdy − xhat·Σdy·xhat).
pub fn backward(bn: &BatchNorm, x: &[f64], mean: &[f64], invstd: &[f64], gamma: &[f64], dy: &[f64]) -> Grads {
    let m = bn.count() as f64;
    let mut g = Grads { dx: vec![0.0; x.len()], dgamma: vec![0.0; bn.channels], dbeta: vec![0.0; bn.channels] };
    for c in 0..bn.channels {
        let xhat = |i: usize| (x[i] - mean[c]) * invstd[c];
        let sum_dy: f64 = channel(bn, c).map(|i| dy[i]).sum();
        let sum_dy_xhat: f64 = channel(bn, c).map(|i| dy[i] * xhat(i)).sum();
        for i in channel(bn, c) {
            g.dx[i] = gamma[c] * invstd[c] / m * (m * dy[i] - sum_dy - xhat(i) * sum_dy_xhat);
        }
        g.dgamma[c] = sum_dy_xhat;
        g.dbeta[c] = sum_dy;
    }
    g
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference::{assert_grad_close, numeric_grad, random};

    /// dx, dgamma and dbeta against finite differences of the training forward's y.
    fn gradcheck(bn: &BatchNorm, seed: u64) {
        let (len, c) = (bn.elements(), bn.channels);
        let x = random(seed, len, -2.0, 3.0);
        let gamma = random(seed + 1, c, 0.5, 1.5);
        let beta = random(seed + 2, c, -0.5, 0.5);
        let rm = random(seed + 3, c, -1.0, 1.0);
        let rv = random(seed + 4, c, 0.5, 2.0);
        let g = random(seed + 5, len, -1.0, 1.0);
        let y = |x: &[f64], gamma: &[f64], beta: &[f64]| forward_train(bn, x, gamma, beta, &rm, &rv).y;
        let t = forward_train(bn, &x, &gamma, &beta, &rm, &rv);
        let a = backward(bn, &x, &t.mean, &t.invstd, &gamma, &g);
        let what = format!("batch_norm {:?}", (bn.batch, bn.channels, bn.spatial));
        let dx = numeric_grad(&|x| y(x, &gamma, &beta), &x, &g, 1e-6);
        assert_grad_close(&format!("{what} dx"), &a.dx, &dx, 1e-7, 1e-6).unwrap();
        let dgamma = numeric_grad(&|gm| y(&x, gm, &beta), &gamma, &g, 1e-6);
        assert_grad_close(&format!("{what} dgamma"), &a.dgamma, &dgamma, 1e-7, 1e-6).unwrap();
        let dbeta = numeric_grad(&|bt| y(&x, &gamma, bt), &beta, &g, 1e-6);
        assert_grad_close(&format!("{what} dbeta"), &a.dbeta, &dbeta, 1e-7, 1e-6).unwrap();
    }

    #[test]
    fn gradcheck_1d() {
        gradcheck(&BatchNorm::new(&[7, 3]).unwrap(), 10);
        gradcheck(&BatchNorm::new(&[2, 3, 5]).unwrap().with_eps(1e-3).unwrap(), 20);
    }

    #[test]
    fn gradcheck_3d() {
        gradcheck(&BatchNorm::new(&[2, 3, 2, 3, 5]).unwrap(), 30);
        gradcheck(&BatchNorm::new(&[3, 2, 3, 1, 2]).unwrap().with_momentum(0.3).unwrap(), 40);
    }

    /// PyTorch's numbers for BatchNorm1d(1) on x = [1, 2, 3, 4] from running stats (0, 1):
    /// biased var 1.25 normalises, unbiased var 5/3 enters running_var.
    #[test]
    fn statistics_match_pytorch() {
        let bn = BatchNorm::new(&[4, 1]).unwrap();
        let t = forward_train(&bn, &[1.0, 2.0, 3.0, 4.0], &[1.0], &[0.0], &[0.0], &[1.0]);
        let invstd = 1.0 / (1.25f64 + 1e-5f32 as f64).sqrt();
        assert!((t.mean[0] - 2.5).abs() < 1e-15);
        assert!((t.invstd[0] - invstd).abs() < 1e-15);
        assert!((t.y[0] - (-1.5 * invstd)).abs() < 1e-15);
        // momentum is the f32 0.1, about 1.5e-9 above 0.1.
        assert!((t.running_mean[0] - 0.25).abs() < 1e-7);
        assert!((t.running_var[0] - (0.9 + 0.1 * 5.0 / 3.0)).abs() < 1e-7);
        let y = forward_eval(&bn, &[3.0], &[2.0], &[0.5], &[1.0], &[4.0]);
        assert!((y[0] - (2.0 / (4.0f64 + 1e-5f32 as f64).sqrt() * 2.0 + 0.5)).abs() < 1e-15);
    }
}
