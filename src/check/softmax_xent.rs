//! softmax_xent: forward (loss with a tolerance, correct count exactly) and backward against
//! the reference.

use crate::error::Result;
use crate::gpu::{DType, Gpu};
use crate::layers::softmax_xent::SoftmaxXent;
use crate::reference::softmax_xent as reference;
use crate::rng::Rng;

use super::{compare, compare_u32, f64s, shape_str, KernelReport, Tol};

#[derive(Clone, Copy)]
enum Logits {
    /// Uniform in [−4, 4).
    Random,
    /// Uniform in [996, 1004): exp would overflow without the max shift.
    Offset,
    /// Small integers, so most rows tie for the maximum; half of the labels are the LAST tied
    /// index, which counts as correct only if argmax wrongly prefers later maxima.
    Ties,
}

/// (batch, classes, logits): the article's 10 classes, a small odd case, the stability and
/// ties cases, and a batch of 420,000 · 10 = 4.2M logits, whose backward needs 65,625
/// workgroups of 64 (a 2D grid) and whose forward loops 1,641 samples per thread.
const CASES: &[(usize, usize, Logits)] = &[
    (100, 10, Logits::Random),
    (7, 3, Logits::Random),
    (33, 5, Logits::Offset),
    (50, 4, Logits::Ties),
    (420_000, 10, Logits::Random),
];

const EPS_F32: f64 = f32::EPSILON as f64 / 2.0;

pub async fn run(gpu: &Gpu) -> Result<Vec<KernelReport>> {
    let mut out = vec![];
    let mut rng = Rng::new(0x50F7);
    for &(n, k, kind) in CASES {
        let l = SoftmaxXent::new(n, k)?;
        let z: Vec<f32> = gpu.round_act(&match kind {
            Logits::Random => rng.vec_f32(n * k, -4.0, 4.0),
            Logits::Offset => rng.vec_f32(n * k, 996.0, 1004.0),
            Logits::Ties => (0..n * k).map(|_| rng.below(3) as f32).collect(),
        });
        let labels: Vec<u32> = (0..n)
            .map(|s| {
                let row = &z[s * k..(s + 1) * k];
                let m = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
                match kind {
                    Logits::Ties if rng.below(2) == 0 => row.iter().rposition(|&v| v == m).unwrap() as u32,
                    _ => rng.below(k as u64) as u32,
                }
            })
            .collect();
        l.check_labels(&labels)?;

        let zb = gpu.upload_act("logits", &z)?;
        let lb = gpu.upload_u32("labels", &labels)?;
        let lossb = gpu.zeros("loss", 1, DType::F32)?;
        let correctb = gpu.zeros("correct", 1, DType::U32)?;
        let dzb = gpu.zeros_act("dlogits", n * k)?;
        gpu.run_ops(&[l.forward(&zb, &lb, &lossb, &correctb)?, l.backward(&zb, &lb, &dzb)?])?;

        let zr = f64s(&z);
        let (loss, correct) = reference::forward(&l, &zr, &labels);
        let shape = shape_str(&[n, k]);
        // Each sample's term has a relative error of about (k + 4)·u (the k-term sum of exps,
        // its log, the shift); the terms are positive, and each thread adds ⌈n/256⌉ of them
        // in sequence before 8 tree levels, so the sum's relative error is at most
        // (⌈n/256⌉ + 8)·u. Samples left out would show in the exact correct count.
        let rtol = (n.div_ceil(256) + 8 + k + 4) as f64 * EPS_F32;
        out.push(compare("softmax_xent.forward", &format!("{shape} loss"), &gpu.read_f32_async(&lossb).await?, &[loss], Tol::new(1e-6, rtol)));
        out.push(compare_u32("softmax_xent.forward", &format!("{shape} correct"), &gpu.read_u32_async(&correctb).await?, &[correct]));
        // softmax values in [0, 1] carry about (k + 4)·u relative error plus the GPU exp's
        // (Vulkan allows 3 + 2·|x| ulp; |x| ≤ 8 here): below 1e-6 absolute, divided by n.
        let dzr = reference::backward(&l, &zr, &labels);
        out.push(compare("softmax_xent.backward", &shape, &gpu.read_f32_async(&dzb).await?, &dzr, Tol::new(1e-6 / n as f64, 1e-5).stored(gpu.precision())));

        // accumulate, replayed twice onto non-zero sums: sum + 2·loss·n and count + 2·correct.
        let gpu_loss = gpu.read_f32_async(&lossb).await?[0] as f64;
        let gpu_correct = gpu.read_u32_async(&correctb).await?[0];
        let sum0 = rng.uniform(0.0, 50.0) as f32;
        let count0 = rng.below(1000) as u32;
        let sumb = gpu.upload_f32("loss_sum", &[sum0])?;
        let countb = gpu.upload_u32("correct_sum", &[count0])?;
        let plan = gpu.compile(&[l.accumulate(&lossb, &correctb, &sumb, &countb)?])?;
        gpu.submit(&plan)?;
        gpu.submit(&plan)?;
        let want = sum0 as f64 + 2.0 * gpu_loss * n as f64;
        // Three f32 roundings (the product and two additions) of values up to |want|.
        out.push(compare("softmax_xent.accumulate", &format!("{shape} loss_sum"), &gpu.read_f32_async(&sumb).await?, &[want], Tol::new(0.0, 4.0 * EPS_F32)));
        out.push(compare_u32("softmax_xent.accumulate", &format!("{shape} correct_sum"), &gpu.read_u32_async(&countb).await?, &[count0 + 2 * gpu_correct]));
    }
    Ok(out)
}
