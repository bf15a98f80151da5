//! batch_norm: training forward (y, saved mean and invstd, updated running statistics), eval
//! forward, and the training backward (dx; dgamma and dbeta) against the reference.

use crate::error::Result;
use crate::gpu::{DType, Gpu};
use crate::layers::batch_norm::BatchNorm;
use crate::reference::batch_norm as reference;
use crate::rng::Rng;

use super::{compare, f64s, shape_str, KernelReport, Tol};

const EPS: f64 = f32::EPSILON as f64;

struct Case {
    shape: &'static [usize],
    /// x = offset + U(−spread, spread): a large offset tests the numerics of the variance.
    offset: f64,
    spread: f64,
    eps: f32,
    momentum: f32,
}

const fn case(shape: &'static [usize], offset: f64, spread: f64) -> Case {
    Case { shape, offset, spread, eps: BatchNorm::DEFAULT_EPS, momentum: BatchNorm::DEFAULT_MOMENTUM }
}

const CASES: &[Case] = &[
    // The article's BatchNorm1d(128) on a batch of 100.
    case(&[100, 128], 0.0, 2.0),
    case(&[7, 13], 0.0, 2.0),
    case(&[3, 5, 5, 7, 9], 0.0, 2.0),
    Case { shape: &[2, 3, 3, 4, 5], offset: 0.5, spread: 3.0, eps: 1e-3, momentum: 0.3 },
    case(&[7, 13], 1000.0, 1.0),
    case(&[3, 5, 5, 7, 9], 1000.0, 1.0),
    // 4.4M elements: the per-element dispatches need more than 65,535 workgroups of 64.
    case(&[2, 2, 110, 100, 100], 0.0, 2.0),
];

fn max_abs(v: &[f64]) -> f64 {
    v.iter().fold(0.0, |m, x| m.max(x.abs()))
}

pub async fn run(gpu: &Gpu) -> Result<Vec<KernelReport>> {
    let mut out = vec![];
    let mut rng = Rng::new(0xB47C);
    for case in CASES {
        let bn = BatchNorm::new(case.shape)?.with_eps(case.eps)?.with_momentum(case.momentum)?;
        let (len, c) = (bn.elements(), bn.channels);
        // Activations as the device stores them (see Gpu::round_act), the rest in f32.
        let x = gpu.round_act(&rng.vec_f32(len, case.offset - case.spread, case.offset + case.spread));
        let gamma = rng.vec_f32(c, 0.5, 1.5);
        let beta = rng.vec_f32(c, -0.5, 0.5);
        let rm = rng.vec_f32(c, -1.0, 1.0);
        let rv = rng.vec_f32(c, 0.5, 2.0);
        let g = gpu.round_act(&rng.vec_f32(len, -1.0, 1.0));

        let xb = gpu.upload_act("x", &x)?;
        let gammab = gpu.upload_f32("gamma", &gamma)?;
        let betab = gpu.upload_f32("beta", &beta)?;
        let rmb = gpu.upload_f32("running_mean", &rm)?;
        let rvb = gpu.upload_f32("running_var", &rv)?;
        let dyb = gpu.upload_act("dy", &g)?;
        let y_evalb = gpu.zeros_act("y_eval", len)?;
        let yb = gpu.zeros_act("y", len)?;
        let meanb = gpu.zeros("mean", c, DType::F32)?;
        let invstdb = gpu.zeros("invstd", c, DType::F32)?;
        let dxb = gpu.zeros_act("dx", len)?;
        let dgammab = gpu.zeros("dgamma", c, DType::F32)?;
        let dbetab = gpu.zeros("dbeta", c, DType::F32)?;

        // Eval first, so that it reads the running statistics before training updates them.
        let mut ops = vec![bn.forward_eval(&xb, &gammab, &betab, &rmb, &rvb, &y_evalb)?];
        ops.extend(bn.forward_train(&xb, &gammab, &betab, &rmb, &rvb, &yb, &meanb, &invstdb)?);
        ops.extend(bn.backward(&xb, &meanb, &invstdb, &gammab, &dyb, &dxb, &dgammab, &dbetab)?);
        gpu.run_ops(&ops)?;

        let (xr, gammar, betar, rmr, rvr, gr) = (f64s(&x), f64s(&gamma), f64s(&beta), f64s(&rm), f64s(&rv), f64s(&g));
        let eval = reference::forward_eval(&bn, &xr, &gammar, &betar, &rmr, &rvr);
        let train = reference::forward_train(&bn, &xr, &gammar, &betar, &rmr, &rvr);
        // The backward reference uses the GPU's saved statistics (judged above, in
        // forward_train), so that only the backward kernels are judged here.
        let mean = gpu.read_f32_async(&meanb).await?;
        let invstd = gpu.read_f32_async(&invstdb).await?;
        let grads = reference::backward(&bn, &xr, &f64s(&mean), &f64s(&invstd), &gammar, &gr);

        let mut shape = shape_str(case.shape);
        if case.offset != 0.0 {
            shape += &format!(" x~{}±{}", case.offset, case.spread);
        }
        if case.eps != BatchNorm::DEFAULT_EPS || case.momentum != BatchNorm::DEFAULT_MOMENTUM {
            shape += &format!(" eps {} momentum {}", case.eps, case.momentum);
        }
        let at = |what: &str| format!("{shape} {what}");

        // The saved mean is an f32 near the values, off by up to ½ulp(|x|) from rounding plus
        // a smaller sum error (the sum runs over x − x0, which is small): together ≤ EPS·|x|.
        // Every y moves by that times invstd·gamma; the rest is a few roundings of |y|.
        let y_atol = 1e-5 + EPS * max_abs(&xr) * max_abs(&train.invstd) * max_abs(&gammar);
        let name = "batch_norm.forward_train";
        out.push(compare(name, &at("y"), &gpu.read_f32_async(&yb).await?, &train.y, Tol::new(y_atol, 1e-5).stored(gpu.precision())));
        out.push(compare(name, &at("mean"), &mean, &train.mean, Tol::new(1e-6, 2.0 * EPS)));
        // The variance is an f32 sum of M squares: relative error well below 1e-5, halved by
        // the square root.
        out.push(compare(name, &at("invstd"), &invstd, &train.invstd, Tol::new(1e-6, 1e-5)));
        out.push(compare(name, &at("running_mean"), &gpu.read_f32_async(&rmb).await?, &train.running_mean, Tol::new(1e-6, 1e-6)));
        out.push(compare(name, &at("running_var"), &gpu.read_f32_async(&rvb).await?, &train.running_var, Tol::new(1e-6, 1e-5)));

        // A handful of f32 roundings of values that do not cancel against beta.
        out.push(compare("batch_norm.forward_eval", &at("y"), &gpu.read_f32_async(&y_evalb).await?, &eval, Tol::new(1e-5, 1e-5).stored(gpu.precision())));

        // f32 sums over M terms (strided chains of M/256, then a tree): the rounding error of
        // such a sum stays below EPS·Σ|terms| for terms of random sign.
        let sum_atol = |terms: &dyn Fn(usize) -> f64| {
            let mut l1 = vec![0.0; c];
            for i in 0..len {
                l1[(i / bn.spatial) % c] += terms(i).abs();
            }
            1e-6 + EPS * max_abs(&l1)
        };
        let xhat = |i: usize| {
            let ch = (i / bn.spatial) % c;
            (xr[i] - mean[ch] as f64) * invstd[ch] as f64
        };
        let dgamma_tol = Tol::new(sum_atol(&|i| gr[i] * xhat(i)), 1e-5);
        let dbeta_tol = Tol::new(sum_atol(&|i| gr[i]), 1e-5);
        let name = "batch_norm.backward_params";
        out.push(compare(name, &at("dgamma"), &gpu.read_f32_async(&dgammab).await?, &grads.dgamma, dgamma_tol));
        out.push(compare(name, &at("dbeta"), &gpu.read_f32_async(&dbetab).await?, &grads.dbeta, dbeta_tol));
        // dx = gamma·invstd·(dy − Σdy/M − xhat·Σdy·xhat/M): a few roundings of values of order
        // gamma·invstd·|dy|; the sums' errors shrink by 1/M.
        out.push(compare("batch_norm.backward_input", &at("dx"), &gpu.read_f32_async(&dxb).await?, &grads.dx, Tol::new(1e-5, 1e-5).stored(gpu.precision())));
    }
    Ok(out)
}
