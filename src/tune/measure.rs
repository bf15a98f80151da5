//! Timing and verifying the candidates of one convolution on the device (see [`super`]); it
//! blocks on the GPU, so it is native only.

use crate::check::{compare, Tol};
use crate::error::{Error, Result};
use crate::gpu::{Buffer, Gpu, Op};
use crate::layers::conv3d::{Conv3d, ConvChoice, Kernels, WeightKernels};
use crate::reference::conv3d as reference;
use crate::rng::Rng;
use crate::Instant;

/// The tensors of one geometry, random, on the GPU and (for checking) on the host.
struct Data {
    x: Vec<f32>,
    w: Vec<f32>,
    b: Vec<f32>,
    dy: Vec<f32>,
    xb: Buffer,
    wb: Buffer,
    bb: Buffer,
    dyb: Buffer,
    yb: Buffer,
    dxb: Buffer,
    dwb: Buffer,
}

impl Data {
    fn new(gpu: &Gpu, g: &Conv3d, seed: u64) -> Result<Data> {
        let mut rng = Rng::new(seed);
        let y_len = g.y_shape()?.iter().product();
        // Activations as the device stores them (f16-rounded at --precision f16).
        let x = gpu.round_act(&rng.vec_f32(g.x_shape().iter().product(), -1.0, 1.0));
        let w = rng.vec_f32(g.weight_shape().iter().product(), -1.0, 1.0);
        let b = rng.vec_f32(g.bias_len(), -1.0, 1.0);
        let dy = gpu.round_act(&rng.vec_f32(y_len, -1.0, 1.0));
        Ok(Data {
            xb: gpu.upload_act("tune x", &x)?,
            wb: gpu.upload_f32("tune weight", &w)?,
            bb: gpu.upload_f32("tune bias", &b)?,
            dyb: gpu.upload_act("tune dy", &dy)?,
            yb: gpu.zeros_act("tune y", y_len)?,
            dxb: gpu.zeros_act("tune dx", x.len())?,
            dwb: gpu.zeros("tune dweight", w.len(), crate::gpu::DType::F32)?,
            x,
            w,
            b,
            dy,
        })
    }
}

#[derive(Clone, Copy, Debug)]
enum Pass {
    Forward,
    BackwardInput,
    BackwardWeight,
}

fn ops(gpu: &Gpu, g: &Conv3d, choice: ConvChoice, pass: Pass, d: &Data) -> Result<Vec<Op>> {
    let s = g.scratch_with(gpu, choice)?;
    match pass {
        Pass::Forward => g.forward(&d.xb, &d.wb, g.has_bias.then_some(&d.bb), &d.yb, &s),
        Pass::BackwardInput => g.backward_input(&d.dyb, &d.wb, &d.dxb, &s),
        Pass::BackwardWeight => g.backward_weight(&d.xb, &d.dyb, &d.dwb, &s),
    }
}

/// The reference's result of `pass` of `g` on `d` and its tolerance (that of `cnn3d check`:
/// f32 sums of `terms` products, stored as the device stores activations; dweight is f32).
fn expected(gpu: &Gpu, g: &Conv3d, pass: Pass, d: &Data) -> Result<(Vec<f64>, Tol)> {
    let f = |v: &[f32]| v.iter().map(|&x| x as f64).collect::<Vec<f64>>();
    let taps: usize = g.kernel.iter().product();
    let out = g.output()?;
    let tol = |terms: usize| Tol::new(4e-6 * (terms as f64).sqrt().max(5.0), 1e-5);
    let act = |terms: usize| tol(terms).stored(gpu.precision());
    Ok(match pass {
        Pass::Forward => (reference::forward(g, &f(&d.x), &f(&d.w), g.has_bias.then_some(&f(&d.b)[..])), act(g.c_in * taps + 1)),
        Pass::BackwardInput => (reference::backward_input(g, &f(&d.w), &f(&d.dy)), act(g.c_out * taps)),
        Pass::BackwardWeight => (reference::backward_weight(g, &f(&d.x), &f(&d.dy)), tol(g.n * out.iter().product::<usize>())),
    })
}

/// See [`tamper_with_outputs`].
type Tamper = Box<dyn Fn(&str, ConvChoice, &mut Vec<f32>)>;

thread_local! {
    /// The test seam of [`tamper_with_outputs`]: nothing in a run sets it.
    static TAMPER: std::cell::RefCell<Option<Tamper>> = const { std::cell::RefCell::new(None) };
}

/// For tests only: while `body` runs on this thread, `tamper` sees each output the tuner
/// reads back to verify a candidate (the pass as `conv3d.forward`, `conv3d.backward_input`
/// or `conv3d.backward_weight`, the candidate's choice, the values) and may change it before
/// it is compared with the reference, as a wrong kernel would: `tests/tune.rs` proves that
/// such a candidate is never chosen nor cached. Timing is untouched.
#[doc(hidden)]
pub fn tamper_with_outputs<R>(tamper: impl Fn(&str, ConvChoice, &mut Vec<f32>) + 'static, body: impl FnOnce() -> R) -> R {
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            TAMPER.with(|t| t.borrow_mut().take());
        }
    }
    TAMPER.with(|t| *t.borrow_mut() = Some(Box::new(tamper)));
    let _reset = Reset;
    body()
}

/// Whether `choice` computes `pass` of `g` as the reference does (`want`, from [`expected`]).
fn verify(gpu: &Gpu, g: &Conv3d, choice: ConvChoice, pass: Pass, d: &Data, (want, tol): &(Vec<f64>, Tol)) -> Result<bool> {
    gpu.run_ops(&ops(gpu, g, choice, pass, d)?)?;
    let (label, mut got) = match pass {
        Pass::Forward => ("conv3d.forward", gpu.read_f32(&d.yb)?),
        Pass::BackwardInput => ("conv3d.backward_input", gpu.read_f32(&d.dxb)?),
        Pass::BackwardWeight => ("conv3d.backward_weight", gpu.read_f32(&d.dwb)?),
    };
    TAMPER.with(|t| t.borrow().as_ref().map(|f| f(label, choice, &mut got)));
    let report = compare(label, "", &got, want, *tol);
    if !report.pass {
        log::warn!("tuning: {choice:?} gives a wrong {pass:?} (worst error {:.3} of the tolerance); not used", report.err_over_tol);
    }
    Ok(report.pass)
}

/// How candidates are timed on this adapter. The shortcuts (a candidate out after a slow
/// warm-up run or probe, or with its twin) and the single timed run were measured on a CPU
/// adapter (lavapipe), where start-up time is seconds a candidate; elsewhere every candidate
/// that suits the device is timed, as the median of [`GPU_RUNS`] runs.
#[derive(Clone, Copy, Debug)]
struct Policy {
    shortcuts: bool,
    runs: usize,
}

/// Timed runs of each candidate on an adapter that is not a CPU (a run there takes
/// milliseconds).
const GPU_RUNS: usize = 5;

impl Policy {
    fn of(gpu: &Gpu) -> Policy {
        if gpu.info().device_type == "cpu" {
            Policy { shortcuts: true, runs: 1 }
        } else {
            Policy { shortcuts: false, runs: GPU_RUNS }
        }
    }
}

/// Seconds of one replay of `plan`: the sum of its dispatches' GPU timestamps where the
/// adapter has timestamp queries, else the host's wall clock around a submit and a wait.
fn run_time(gpu: &Gpu, plan: &crate::gpu::Plan) -> Result<f64> {
    if gpu.timing_method() == crate::gpu::TimingMethod::WallClock {
        let t = Instant::now();
        gpu.run(plan)?;
        Ok(t.elapsed().as_secs_f64())
    } else {
        Ok(gpu.submit_profiled(plan)?.gpu_ns() as f64 * 1e-9)
    }
}

/// Seconds of `pass` with `choice`: the median of `policy.runs` runs after one that compiles
/// and warms up. With shortcuts, that first run's time when it is already 1.5× `best` (no need
/// to look closer: on lavapipe a warm-up run took 0.87–1.57× the timed one, so a candidate cut
/// here could at best have been within a few percent of `best`; each cut saves a full run at
/// the batch, 0.2–0.6 s on lavapipe).
#[allow(clippy::too_many_arguments)]
fn time(gpu: &Gpu, g: &Conv3d, choice: ConvChoice, pass: Pass, d: &Data, best: Option<f64>, policy: Policy) -> Result<f64> {
    let plan = gpu.compile(&ops(gpu, g, choice, pass, d)?)?;
    let first = run_time(gpu, &plan)?;
    if policy.shortcuts && best.is_some_and(|b| first > 1.5 * b) {
        return Ok(first);
    }
    let mut runs = (0..policy.runs.max(1)).map(|_| run_time(gpu, &plan)).collect::<Result<Vec<f64>>>()?;
    runs.sort_by(f64::total_cmp);
    Ok(runs[runs.len() / 2])
}

/// A kernel's twin: one that does the same work with at least as much reuse, tried first.
/// Where the twin was put out, the kernel is not tried. The plain blocked kernels' twins are
/// their subgroup versions (the same arithmetic and loads of x and dy; only how a block
/// column reaches the lanes differs); the direct kernels' is the plain tiled one (4 channels
/// an invocation instead of 16, weights from storage instead of a uniform block). An
/// implicit-GEMM tile's twin is the next larger tile (more products per staged value).
trait Twin: Sized {
    fn twin(self) -> Option<Self>;
}

impl Twin for Kernels {
    fn twin(self) -> Option<Kernels> {
        match self {
            Kernels::Tiled => Some(Kernels::Subgroups),
            Kernels::TiledWide => Some(Kernels::SubgroupsWide),
            Kernels::Direct => Some(Kernels::Tiled),
            Kernels::Gemm64x64 => Some(Kernels::Gemm128x64),
            Kernels::Gemm32x32 => Some(Kernels::Gemm64x64),
            _ => None,
        }
    }
}

impl Twin for WeightKernels {
    fn twin(self) -> Option<WeightKernels> {
        match self {
            WeightKernels::Gemm64x64 => Some(WeightKernels::Gemm128x64),
            WeightKernels::Gemm32x32 => Some(WeightKernels::Gemm64x64),
            _ => self.with_subgroups(),
        }
    }
}

/// Samples of the probe that screens a candidate before it runs at the real batch.
const PROBE: usize = 8;

/// The fastest of `candidates` that is right, checked on a few samples of `g` (`small`) and
/// timed on `g`. The default kernel goes first. With the CPU adapters' shortcuts (see
/// [`Policy`]), each later candidate first runs on a probe of
/// [`PROBE`] samples, and one whose probe, scaled to the batch, already takes 1.6× the best
/// is out without its (then long) run at the real batch: a slow candidate costs a fraction
/// of a second of start-up instead of seconds. A probe overstates (its fixed costs are scaled
/// up with it): on lavapipe, the convolution layers' scaled probes were 1.07–1.6× their times
/// at the batch, so a candidate cut at 1.6× would not have beaten the best; and a kernel
/// whose twin was put out is not tried (see [`Twin`]).
#[allow(clippy::too_many_arguments)]
fn pick<K: Copy + std::fmt::Debug + PartialEq + Twin>(
    gpu: &Gpu,
    g: &Conv3d,
    pass: Pass,
    candidates: &[K],
    default: K,
    with: impl Fn(K) -> ConvChoice,
    small: (&Conv3d, &Data),
    probe: Option<(&Conv3d, &Data)>,
    full: &Data,
    policy: Policy,
) -> Result<K> {
    let mut best: Option<(K, f64)> = None;
    let mut out = vec![];
    let want = expected(gpu, small.0, pass, small.1)?;
    let order = candidates.iter().copied().filter(|&k| k == default).chain(candidates.iter().copied().filter(|&k| k != default));
    for k in order {
        if policy.shortcuts && k.twin().is_some_and(|t| out.contains(&t)) {
            log::debug!("tuning {pass:?}: {k:?} out with its twin");
            out.push(k);
            continue;
        }
        if !verify(gpu, small.0, with(k), pass, small.1, &want)? {
            continue;
        }
        if let (Some((_, b)), Some((pg, pd)), true) = (best, probe, policy.shortcuts) {
            let scaled = match time(gpu, pg, with(k), pass, pd, None, policy) {
                Ok(t) => t * g.n as f64 / pg.n as f64,
                Err(Error::TooLarge { .. }) => f64::INFINITY,
                Err(e) => return Err(e),
            };
            if scaled > 1.6 * b {
                log::debug!("tuning {pass:?}: {k:?} out after its probe (~{:.1} ms at the batch)", scaled * 1e3);
                out.push(k);
                continue;
            }
        }
        let t = match time(gpu, g, with(k), pass, full, best.map(|(_, b)| b), policy) {
            Ok(t) => t,
            // A candidate whose scratch does not fit this adapter at the real batch is out.
            Err(e @ Error::TooLarge { .. }) => {
                log::debug!("tuning {pass:?}: {k:?} skipped: {e}");
                continue;
            }
            Err(e) => return Err(e),
        };
        log::debug!("tuning {pass:?}: {k:?} {:.1} ms", t * 1e3);
        if best.is_none_or(|(_, b)| t < b) {
            best = Some((k, t));
        }
    }
    best.map(|(k, _)| k).ok_or_else(|| Error::shape("conv3d", format!("no {pass:?} kernel matched the reference on this adapter")))
}

pub(super) fn measure(gpu: &Gpu, g: &Conv3d, backward_input: bool) -> Result<ConvChoice> {
    // Correctness on a few samples (the reference is plain loops), laid out as the batch's so
    // that the check runs the pipelines the batch does; speed at the real batch.
    let small_g = Conv3d { n: g.check_batch(), ..*g };
    let small = Data::new(gpu, &small_g, 0x7E57)?;
    let full = Data::new(gpu, g, 0x7E58)?;
    // A probe only where it is much smaller than the batch.
    let probe_g = Conv3d { n: PROBE, ..*g };
    let policy = Policy::of(gpu);
    let probe_data = if policy.shortcuts && g.n >= 4 * PROBE { Some(Data::new(gpu, &probe_g, 0x7E59)?) } else { None };
    let probe = probe_data.as_ref().map(|d| (&probe_g, d));
    let base = g.default_choice(gpu);
    let small = (&small_g, &small);
    let (kernels, weight) = g.candidates(gpu);
    // The wide kernels only for a pass of two channel groups or more.
    let suiting = |channels: usize| kernels.iter().copied().filter(|k| k.suits(channels)).collect::<Vec<_>>();
    let forward = pick(gpu, g, Pass::Forward, &suiting(g.c_out), base.forward, |k| ConvChoice { forward: k, ..base }, small, probe, &full, policy)?;
    let backward_input = if backward_input {
        pick(gpu, g, Pass::BackwardInput, &suiting(g.c_in), base.backward_input, |k| ConvChoice { backward_input: k, ..base }, small, probe, &full, policy)?
    } else {
        base.backward_input
    };
    let backward_weight: WeightKernels = pick(
        gpu,
        g,
        Pass::BackwardWeight,
        &weight,
        base.backward_weight,
        |k| ConvChoice { backward_weight: k, ..base },
        small,
        probe,
        &full,
        policy,
    )?;
    Ok(ConvChoice { forward, backward_input, backward_weight })
}
