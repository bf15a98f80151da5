//! Every kernel on this GPU against the CPU reference: seeded random inputs, random upstream
//! gradients, odd shapes that differ per axis, and one shape that needs a 2D workgroup grid.
//! `cnn3d check` prints these reports; the tests assert them.

pub mod activation;
pub mod avg_pool3d;
pub mod batch_norm;
pub mod clip_grad_norm;
pub mod conv3d;
pub mod dense;
pub mod dropout;
pub mod gather;
pub mod max_pool3d;
pub mod optim;
pub mod softmax_xent;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::gpu::Gpu;

/// The layers `check` knows, in the order it runs them.
pub const LAYERS: &[&str] = &[
    "conv3d",
    "max_pool3d",
    "avg_pool3d",
    "activation",
    "dense",
    "batch_norm",
    "dropout",
    "softmax_xent",
    "optim",
    "clip_grad_norm",
    "gather",
];

/// Absolute and relative tolerance: an element passes when `|got − ref| ≤ atol + rtol·|ref|`.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Tol {
    pub atol: f64,
    pub rtol: f64,
}

impl Tol {
    pub const fn new(atol: f64, rtol: f64) -> Tol {
        Tol { atol, rtol }
    }

    /// The tolerance of an output that a kernel computes in f32 (within `self` of the
    /// reference) and then stores at `precision`: at f16 the store rounds to nearest once,
    /// adding at most half an f16 ulp, 2⁻¹¹·|v| for normal values (11 significant bits) and
    /// 2⁻²⁵ below 2⁻¹⁴ (subnormal spacing 2⁻²⁴). So |got − ref| ≤ atol + rtol·|ref| +
    /// 2⁻¹¹·(|ref| + atol + rtol·|ref|) + 2⁻²⁵, which this rounds up to whole terms.
    /// The reference is computed from the inputs as stored (rounded to f16 too, see
    /// [`Gpu::round_act`]), so input rounding adds nothing.
    pub fn stored(self, precision: crate::gpu::Precision) -> Tol {
        match precision {
            crate::gpu::Precision::F32 => self,
            crate::gpu::Precision::F16 => {
                const HALF_ULP: f64 = 1.0 / 2048.0; // 2⁻¹¹
                const SUBNORMAL: f64 = 1.0 / 33_554_432.0; // 2⁻²⁵
                Tol { atol: self.atol * (1.0 + HALF_ULP) + SUBNORMAL, rtol: self.rtol * (1.0 + HALF_ULP) + HALF_ULP }
            }
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Mismatch {
    pub index: usize,
    pub got: f64,
    pub want: f64,
}

/// The result of one kernel (`<layer>.<pass>`) on one or more shapes.
#[derive(Clone, Debug, Serialize)]
pub struct KernelReport {
    pub name: String,
    pub shapes: Vec<String>,
    pub elements: usize,
    pub max_abs_err: f64,
    /// `|got − ref| / max(|ref|, atol/rtol)`: relative where values are large, without
    /// near-zero references dominating.
    pub max_rel_err: f64,
    pub atol: f64,
    pub rtol: f64,
    /// The largest `|got − ref| / (atol + rtol·|ref|)`: below 1 passes; how close to failing.
    pub err_over_tol: f64,
    pub pass: bool,
    /// The worst element, and up to [`MAX_MISMATCHES`] failing ones in index order.
    pub worst: Option<Mismatch>,
    pub mismatches: Vec<Mismatch>,
    /// The kernel variants these cases ran, where a pass has several (conv3d: `tiled`,
    /// `implicit_gemm_64x64`, …), in first-seen order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub variants: Vec<String>,
}

pub const MAX_MISMATCHES: usize = 8;

impl KernelReport {
    /// Folds another report of the same kernel (another shape or output) into this one.
    pub fn merge(&mut self, other: KernelReport) {
        self.shapes.extend(other.shapes);
        for v in other.variants {
            if !self.variants.contains(&v) {
                self.variants.push(v);
            }
        }
        self.elements += other.elements;
        if other.max_abs_err > self.max_abs_err || self.worst.is_none() {
            self.worst = other.worst.or(self.worst.take());
        }
        self.max_abs_err = self.max_abs_err.max(other.max_abs_err);
        self.max_rel_err = self.max_rel_err.max(other.max_rel_err);
        self.err_over_tol = self.err_over_tol.max(other.err_over_tol);
        self.pass &= other.pass;
        self.atol = self.atol.max(other.atol);
        self.rtol = self.rtol.max(other.rtol);
        for m in other.mismatches {
            if self.mismatches.len() < MAX_MISMATCHES {
                self.mismatches.push(m);
            }
        }
    }

    /// The same report, naming the kernel variant that produced it.
    pub fn with_variant(mut self, variant: &str) -> KernelReport {
        self.variants = vec![variant.to_string()];
        self
    }

    /// A multi-line account for a failing test: the worst error and the first mismatches.
    pub fn describe(&self) -> String {
        let mut s = format!(
            "{} on {}: {} (max abs err {:e}, max rel err {:e}, err/tol {:.3}, atol {:e}, rtol {:e}, {} elements)",
            self.name,
            self.shapes.join("; "),
            if self.pass { "pass" } else { "FAIL" },
            self.max_abs_err,
            self.max_rel_err,
            self.err_over_tol,
            self.atol,
            self.rtol,
            self.elements
        );
        if let Some(w) = &self.worst {
            s += &format!("\n  worst: [{}] got {} want {}", w.index, w.got, w.want);
        }
        for m in &self.mismatches {
            s += &format!("\n  mismatch: [{}] got {} want {}", m.index, m.got, m.want);
        }
        s
    }
}

/// Compares GPU output `got` with the reference `want`, element by element.
pub fn compare(name: &str, shape: &str, got: &[f32], want: &[f64], tol: Tol) -> KernelReport {
    let got: Vec<f64> = got.iter().map(|&v| v as f64).collect();
    compare_f64(name, shape, &got, want, tol)
}

/// [`compare`] for values already in f64 (e.g. the reference against PyTorch).
pub fn compare_f64(name: &str, shape: &str, got: &[f64], want: &[f64], tol: Tol) -> KernelReport {
    let mut r = KernelReport {
        name: name.to_string(),
        shapes: vec![shape.to_string()],
        elements: want.len(),
        max_abs_err: 0.0,
        max_rel_err: 0.0,
        atol: tol.atol,
        rtol: tol.rtol,
        err_over_tol: 0.0,
        pass: got.len() == want.len(),
        worst: None,
        mismatches: vec![],
        variants: vec![],
    };
    if got.len() != want.len() {
        r.max_abs_err = f64::INFINITY;
        r.max_rel_err = f64::INFINITY;
        r.err_over_tol = f64::INFINITY;
        r.shapes[0] += &format!(" (got {} elements, reference {})", got.len(), want.len());
        return r;
    }
    let floor = if tol.rtol > 0.0 { tol.atol / tol.rtol } else { 1.0 };
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        // NaN or an infinity on either side is an infinite error unless both sides agree on it
        // exactly: a tolerance relative to an infinite reference (atol + rtol·∞ = ∞) would
        // otherwise pass any finite value.
        let exact = g == w || g.is_nan() && w.is_nan();
        let err = if exact {
            0.0
        } else if g.is_finite() && w.is_finite() {
            (g - w).abs()
        } else {
            f64::INFINITY
        };
        let rel = err / w.abs().max(floor);
        if err > r.max_abs_err || r.worst.is_none() {
            r.max_abs_err = err;
            r.worst = Some(Mismatch { index: i, got: g, want: w });
        }
        r.max_rel_err = r.max_rel_err.max(rel);
        let bound = tol.atol + tol.rtol * w.abs();
        let ratio = if err == 0.0 { 0.0 } else if bound > 0.0 && bound.is_finite() { err / bound } else { f64::INFINITY };
        r.err_over_tol = r.err_over_tol.max(ratio);
        if !(err == 0.0 || err.is_finite() && err <= bound) {
            r.pass = false;
            if r.mismatches.len() < MAX_MISMATCHES {
                r.mismatches.push(Mismatch { index: i, got: g, want: w });
            }
        }
    }
    r
}

/// [`compare`] for large outputs: the reference comes in chunks (`want(range)` for the
/// elements `range` of `got`), so that no f64 copy of a whole large tensor is held (the
/// elementwise layers' 2D-grid cases have 17 M elements: 134 MB per f64 copy). One report,
/// with the indices of the whole tensor.
pub fn compare_chunked(name: &str, shape: &str, got: &[f32], tol: Tol, want: impl Fn(std::ops::Range<usize>) -> Vec<f64>) -> KernelReport {
    const CHUNK: usize = 1 << 20;
    let mut report: Option<KernelReport> = None;
    let mut start = 0;
    loop {
        let end = (start + CHUNK).min(got.len());
        let mut r = compare(name, shape, &got[start..end], &want(start..end), tol);
        for m in r.worst.iter_mut().chain(r.mismatches.iter_mut()) {
            m.index += start;
        }
        match &mut report {
            None => report = Some(r),
            Some(all) => {
                all.merge(r);
                all.shapes.truncate(1);
            }
        }
        if end == got.len() {
            break;
        }
        start = end;
    }
    report.expect("at least one chunk")
}

/// Compares exact integer outputs (indices, counts): every u32 is exact in f64 (not in f32,
/// which rounds above 2^24), and with no tolerance only equal values pass.
pub fn compare_u32(name: &str, shape: &str, got: &[u32], want: &[u32]) -> KernelReport {
    let g: Vec<f64> = got.iter().map(|&v| v as f64).collect();
    let w: Vec<f64> = want.iter().map(|&v| v as f64).collect();
    compare_f64(name, shape, &g, &w, Tol::new(0.0, 0.0))
}

/// Merges reports that share a kernel name, keeping first-seen order.
pub fn merge_by_name(reports: Vec<KernelReport>) -> Vec<KernelReport> {
    let mut out: Vec<KernelReport> = vec![];
    for r in reports {
        match out.iter_mut().find(|o| o.name == r.name) {
            Some(o) => o.merge(r),
            None => out.push(r),
        }
    }
    out
}

/// Runs every case of one layer; one report per (kernel, shape, output). Blocks on the GPU;
/// in a browser, [`run_layer_async`].
#[cfg(not(target_arch = "wasm32"))]
pub fn run_layer(gpu: &Gpu, layer: &str) -> Result<Vec<KernelReport>> {
    pollster::block_on(run_layer_async(gpu, layer))
}

/// [`run_layer`] as a future: the same cases, with readbacks that do not block (how a browser
/// page runs them; natively each readback waits for the GPU and is then ready at once).
pub async fn run_layer_async(gpu: &Gpu, layer: &str) -> Result<Vec<KernelReport>> {
    match layer {
        "activation" => activation::run(gpu).await,
        "avg_pool3d" => avg_pool3d::run(gpu).await,
        "batch_norm" => batch_norm::run(gpu).await,
        "clip_grad_norm" => clip_grad_norm::run(gpu).await,
        "conv3d" => conv3d::run(gpu).await,
        "dense" => dense::run(gpu).await,
        "dropout" => dropout::run(gpu).await,
        "gather" => gather::run(gpu).await,
        "max_pool3d" => max_pool3d::run(gpu).await,
        "optim" => optim::run(gpu).await,
        "softmax_xent" => softmax_xent::run(gpu).await,
        _ => Err(Error::UnknownKernel(layer.to_string())),
    }
}

/// Every kernel of every layer, one merged report per kernel name.
#[cfg(not(target_arch = "wasm32"))]
pub fn run_all(gpu: &Gpu) -> Result<Vec<KernelReport>> {
    let mut all = vec![];
    for layer in LAYERS {
        all.extend(run_layer(gpu, layer)?);
    }
    Ok(merge_by_name(all))
}

/// f32 → f64, for handing GPU inputs to the reference.
pub fn f64s(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

/// A shape as text, e.g. `[2, 3, 5, 7, 9]`.
pub fn shape_str(dims: &[usize]) -> String {
    format!("{dims:?}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_infinite_reference_passes_only_the_same_infinity() {
        let tol = Tol::new(1e-6, 1e-5);
        let inf = f64::INFINITY;
        for got in [0.0f32, 1.0, -3.4e38, f32::MAX, f32::NEG_INFINITY, f32::NAN] {
            let r = compare("k", "[1]", &[got], &[inf], tol);
            assert!(!r.pass, "{got} passed against +inf");
            assert_eq!((r.max_abs_err, r.err_over_tol), (inf, inf), "{got}");
            assert_eq!(r.mismatches.len(), 1);
        }
        assert!(compare("k", "[1]", &[f32::INFINITY], &[inf], tol).pass);
        assert!(compare("k", "[1]", &[f32::NEG_INFINITY], &[-inf], tol).pass);
        // An infinite result against a finite reference, and NaN against a number, fail too.
        assert!(!compare("k", "[1]", &[f32::INFINITY], &[1e30], tol).pass);
        assert!(!compare("k", "[1]", &[f32::NAN], &[0.0], tol).pass);
        assert!(compare("k", "[1]", &[f32::NAN], &[f64::NAN], tol).pass);
        // Finite values keep their tolerance.
        assert!(compare("k", "[2]", &[1.0, 100.0005], &[1.0, 100.0], tol).pass);
        assert!(!compare("k", "[1]", &[100.01], &[100.0], tol).pass);
    }

    #[test]
    fn integer_outputs_compare_exactly_above_f32s_integers() {
        // 2^24 + 1 rounds to 2^24 in f32: the old comparison through f32 passed it.
        let r = compare_u32("idx", "[1]", &[(1 << 24) + 1], &[1 << 24]);
        assert!(!r.pass);
        assert_eq!(r.max_abs_err, 1.0);
        let r = compare_u32("idx", "[2]", &[(1 << 31) + 1, 0], &[1 << 31, 0]);
        assert!(!r.pass && r.mismatches.len() == 1 && r.mismatches[0].index == 0, "{}", r.describe());
        assert!(compare_u32("idx", "[3]", &[0, 1 << 31, u32::MAX], &[0, 1 << 31, u32::MAX]).pass);
    }

    #[test]
    fn a_chunked_comparison_reports_as_one_comparison_would() {
        let n = (1 << 20) * 2 + 77;
        let want: Vec<f64> = (0..n).map(|i| (i % 1000) as f64 * 1e-3).collect();
        let mut got: Vec<f32> = want.iter().map(|&v| v as f32).collect();
        // Two bad elements, in the second and third chunks.
        got[(1 << 20) + 5] += 1.0;
        got[n - 1] -= 2.0;
        let tol = Tol::new(1e-6, 1e-5);
        let whole = compare("k", "[n]", &got, &want, tol);
        let chunked = compare_chunked("k", "[n]", &got, tol, |r| want[r].to_vec());
        assert_eq!(chunked.shapes, vec!["[n]".to_string()]);
        assert_eq!(chunked.elements, whole.elements);
        assert_eq!(chunked.pass, whole.pass);
        assert_eq!(chunked.max_abs_err, whole.max_abs_err);
        assert_eq!(chunked.err_over_tol, whole.err_over_tol);
        assert_eq!(chunked.worst.as_ref().map(|m| m.index), Some(n - 1));
        let idx: Vec<usize> = chunked.mismatches.iter().map(|m| m.index).collect();
        assert_eq!(idx, vec![(1 << 20) + 5, n - 1]);
    }
}
