//! conv3d forward, backward_input, backward_weight, backward_bias against the reference.

use crate::error::Result;
use crate::gpu::{DType, Gpu};
use crate::layers::conv3d::{Conv3d, ConvChoice};
use crate::reference::conv3d as reference;
use crate::rng::Rng;

use super::{compare, f64s, shape_str, KernelReport, Tol};

fn cases() -> Vec<Conv3d> {
    vec![
        // Odd sizes; kernel, stride, padding and dilation all different per axis.
        Conv3d::new(2, 3, 4, [5, 7, 9], [3, 2, 3])
            .with_stride([1, 2, 2])
            .with_padding([1, 0, 2])
            .with_dilation([1, 2, 1]),
        // The article's first layer (3 → 32 channels, kernel 3), scaled down; no bias.
        Conv3d::new(3, 3, 5, [8, 9, 10], [3, 3, 3]).with_bias(false),
        // Stride larger than the kernel (inputs read by no output get a zero gradient), padding
        // as large as the kernel (outputs that read only padding).
        Conv3d::new(2, 2, 3, [7, 8, 10], [2, 2, 2])
            .with_stride([3, 3, 3])
            .with_padding([0, 2, 1])
            .with_dilation([1, 1, 2]),
        // The tiled kernels' blocking: 39·27 input-channel taps and 41·27 output-channel taps
        // need two uniform blocks each, 41 and 39 channels three groups of 16 (the last one
        // partial), and backward_weight's last tile of 8 input channels holds 7.
        Conv3d::new(2, 39, 41, [4, 5, 6], [3, 3, 3])
            .with_stride([1, 2, 1])
            .with_padding([1, 0, 1])
            .with_dilation([1, 1, 2]),
        // 20 output channels over 2,970 output rows: the rows kernels' dy spans 6 uniform
        // blocks of 512 rows (the last partial), 135 (odd) weight columns.
        Conv3d::new(3, 5, 20, [9, 10, 11], [3, 3, 3]).with_padding([1, 1, 1]),
        // Many channel groups of 16: 1030 output channels, 65 groups (the last one of 6, alone
        // in the wide kernels); 18 input channels, the wide backward_input's pair of groups with
        // a partial second one.
        Conv3d::new(1, 18, 1030, [2, 1, 3], [1, 1, 2]),
        // 11·10·11 = 1210 taps do not fit a uniform block: the direct kernels.
        Conv3d::new(2, 2, 3, [12, 11, 12], [11, 10, 11]).with_padding([0, 1, 0]),
        // An odd OW (3) and a batch of 4: the tiled kernels take four samples per invocation.
        Conv3d::new(4, 6, 9, [7, 6, 5], [3, 3, 3]),
        // The same with an odd batch (the last invocation has three samples) and one output along W;
        // padding along H, stride along W, dilation along D.
        Conv3d::new(3, 4, 5, [5, 4, 3], [2, 2, 3])
            .with_stride([1, 1, 2])
            .with_padding([0, 1, 0])
            .with_dilation([2, 1, 1]),
        // Two samples and one output along W: the tiled kernels take two positions per
        // invocation, the two samples (four would idle half the lanes).
        Conv3d::new(2, 3, 4, [3, 4, 2], [2, 2, 2]),
        // Kernel as large as the input: a single output position.
        Conv3d::new(1, 2, 3, [3, 2, 4], [3, 2, 4]),
        // 162³ = 4,251,528 elements > 65,535 workgroups × 64: forward and backward_input need
        // a 2D grid, and backward_weight splits its 162² rows into 26 partial sums. A 1×1×1 kernel
        // with one channel keeps the reference cheap.
        Conv3d::new(1, 1, 1, [162, 162, 162], [1, 1, 1]),
    ]
}

/// Tolerance for outputs that are f32 sums of `terms` products of values in [-1, 1] (the
/// reference sums in f64, so the difference is the GPU's rounding). Each addition rounds by up to
/// half an ulp of the running sum (size ~√k/3 after k terms, unit roundoff u = 2⁻²⁴ ≈ 6e-8);
/// with random signs these errors grow like a random walk, and the reductions split their terms
/// over 256 lanes and a tree, which keeps them smaller still. atol = 4e-6·√terms: 3.6e-5 for the
/// ~80-term forward sums, 8e-3 for the 4.25M-term reductions of the large case (whose results
/// are ~700, so 1e-5 of their scale). Measured errors on lavapipe sit ~10× below this.
fn tol(terms: usize) -> Tol {
    Tol::new(4e-6 * (terms as f64).sqrt().max(5.0), 1e-5)
}

pub async fn run(gpu: &Gpu) -> Result<Vec<KernelReport>> {
    let mut out = vec![];
    let mut rng = Rng::new(0xC0_3D);
    for g in cases() {
        let y_shape = g.y_shape()?;
        let x_shape = g.x_shape();
        let w_shape = g.weight_shape();
        // Activations as the device stores them (see Gpu::round_act), parameters in f32.
        let x = gpu.round_act(&rng.vec_f32(x_shape.iter().product(), -1.0, 1.0));
        let w = rng.vec_f32(w_shape.iter().product(), -1.0, 1.0);
        let b = rng.vec_f32(g.bias_len(), -1.0, 1.0);
        let dy = gpu.round_act(&rng.vec_f32(y_shape.iter().product(), -1.0, 1.0));

        let xb = gpu.upload_act("x", &x)?;
        let wb = gpu.upload_f32("weight", &w)?;
        let bb = gpu.upload_f32("bias", &b)?;
        let dyb = gpu.upload_act("dy", &dy)?;
        let (xr, wr, br, dyr) = (f64s(&x), f64s(&w), f64s(&b), f64s(&dy));
        let kvol: usize = g.kernel.iter().product();
        let positions = y_shape[0] * y_shape[2] * y_shape[3] * y_shape[4];
        let shape = format!(
            "x {} w {} s {:?} p {:?} d {:?}{}",
            shape_str(&x_shape),
            shape_str(&w_shape),
            g.stride,
            g.padding,
            g.dilation,
            if g.has_bias { " +bias" } else { "" }
        );
        let yr = reference::forward(&g, &xr, &wr, g.has_bias.then_some(&br[..]));
        let dxr = reference::backward_input(&g, &wr, &dyr);
        let dwr = reference::backward_weight(&g, &xr, &dyr);
        let dbr = reference::backward_bias(&g, &dyr);

        // Every kernel this geometry can run, since the tuner may pick any of them.
        let (kernels, weight) = g.candidates(gpu);
        let mut choices: Vec<ConvChoice> = kernels
            .iter()
            .zip(weight.iter().cycle())
            .map(|(&k, &wk)| ConvChoice { forward: k, backward_input: k, backward_weight: wk })
            .collect();
        for &wk in &weight {
            if !choices.iter().any(|c| c.backward_weight == wk) {
                choices.push(ConvChoice { backward_weight: wk, ..choices[0] });
            }
        }
        for choice in choices {
            // Outputs start as garbage: every pass must write every element.
            let garbage = |label: &str, len: usize, dtype| gpu.upload(label, &vec![f32::NAN; len], dtype);
            let yb = garbage("y", dy.len(), gpu.activations())?;
            let dxb = garbage("dx", x.len(), gpu.activations())?;
            let dwb = garbage("dweight", w.len(), DType::F32)?;
            let dbb = garbage("dbias", b.len(), DType::F32)?;
            let scratch = g.scratch_with(gpu, choice)?;
            let mut ops = g.forward(&xb, &wb, g.has_bias.then_some(&bb), &yb, &scratch)?;
            ops.extend(g.backward_input(&dyb, &wb, &dxb, &scratch)?);
            ops.extend(g.backward_weight(&xb, &dyb, &dwb, &scratch)?);
            if g.has_bias {
                ops.push(g.backward_bias(&dyb, &dbb)?);
            }
            gpu.run_ops(&ops)?;
            let shape = format!("{shape} kernels {choice}");
            out.push(compare("conv3d.forward", &shape, &gpu.read_f32_async(&yb).await?, &yr, tol(g.c_in * kvol + 1).stored(gpu.precision())).with_variant(choice.forward.name()));
            out.push(compare("conv3d.backward_input", &shape, &gpu.read_f32_async(&dxb).await?, &dxr, tol(g.c_out * kvol).stored(gpu.precision())).with_variant(choice.backward_input.name()));
            out.push(compare("conv3d.backward_weight", &shape, &gpu.read_f32_async(&dwb).await?, &dwr, tol(positions)).with_variant(choice.backward_weight.name()));
            if g.has_bias {
                out.push(compare("conv3d.backward_bias", &shape, &gpu.read_f32_async(&dbb).await?, &dbr, tol(positions)));
            }
        }
    }
    Ok(out)
}
