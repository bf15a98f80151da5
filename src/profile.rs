//! Profiles and benchmarks of training steps: `cnn3d profile` (per-kernel table, Chrome
//! trace, CSV) and `cnn3d bench` (throughput as JSON). The times come from
//! [`Gpu::submit_profiled`]; this module only runs steps and aggregates.
//!
//! Input data: the bundled digits (a few hundred generated samples), so that a profiled step is
//! the real one, gather included. Any model whose input is 16³ with ≤ 10 classes runs on it.

use std::time::Instant;

use serde::Serialize;

use crate::data::{self, DataOptions, DeviceSplit, SynthOptions};
use crate::error::{Error, Result};
use crate::gpu::{Buffer, DType, Gpu, Op, Plan, StepProfile, TimingMethod};
use crate::layers::conv3d::{Conv3d, ConvChoice};
use crate::layers::dense::Dense;
use crate::optim::{Optimizer, UpdateRule};
use crate::rng::Rng;
use crate::train::{Config, Session};

// The tables and trace of a profile live in crate::trace (train writes them too).
pub use crate::trace::{WGPU_VERSION, chrome_trace, csv, format_table, kernel_table, layer_table, write_profile, KernelStats};

/// Bundled samples generated for profiling and benchmarks: enough distinct inputs for a
/// batch of any size (indices wrap around), cheap to generate.
const SAMPLES: usize = 256;

/// A model with its state and bundled training data on the GPU, ready to build step plans.
pub struct Bench<'g> {
    pub session: Session<'g>,
    pub config: Config,
    split: DeviceSplit,
}

impl<'g> Bench<'g> {
    /// Loads the bundled data in the model's input shape and initialises the parameters.
    pub fn new(gpu: &'g Gpu, config: &Config) -> Result<Bench<'g>> {
        let seed = config.train.seed;
        let opts = DataOptions { synth: SynthOptions { train: SAMPLES, test: 0, seed }, seed, ..Default::default() };
        let ds = data::load(&opts)?;
        let session = Session::new(gpu, &config.model, &ds, &opts, seed)?;
        session.state.write_params(gpu, &session.model.init_params(&mut Rng::new(seed)))?;
        let split = session.input.upload(gpu, &ds.train, "train")?;
        Ok(Bench { session, config: config.clone(), split })
    }

    fn indices(&self, batch: usize) -> Result<Buffer> {
        let idx = self.session.gpu.zeros("bench indices", batch, DType::U32)?;
        let order: Vec<u32> = (0..batch).map(|i| (i % self.split.len) as u32).collect();
        self.session.gpu.write_u32(&idx, &order)?;
        Ok(idx)
    }

    /// A training step's plan (gather, forward, loss, backward, update) for `batch` samples.
    pub fn train_step(&mut self, batch: usize, rule: &UpdateRule) -> Result<TrainStep> {
        if batch < 2 {
            return Err(Error::shape("batch size", format!("training needs at least 2 samples per batch (batch norm), got {batch}")));
        }
        let gpu = self.session.gpu;
        let optim = Optimizer::new(gpu, rule, self.session.state.params.len())?;
        let idx = self.indices(batch)?;
        let split = DeviceSplit { data: self.split.data.clone(), labels: self.split.labels.clone(), len: self.split.len };
        let plan = self.session.train_plan(batch, &split, &idx, &optim, None)?;
        Ok(TrainStep { plan, optim, _indices: idx, lr: self.config.optimizer.lr_at(0), t: 0 })
    }

    /// An inference plan (gather, eval forward, loss) for `batch` samples.
    pub fn infer_step(&mut self, batch: usize) -> Result<Plan> {
        let idx = self.indices(batch)?;
        let split = DeviceSplit { data: self.split.data.clone(), labels: self.split.labels.clone(), len: self.split.len };
        let plan = self.session.eval_plan(batch, &split, &idx)?;
        // The plan's bind group keeps the indices alive.
        Ok(plan)
    }

    /// Writes what changes per step (dropout step, lr, t) before the step's submit.
    fn prepare(&self, step: &mut TrainStep) -> Result<()> {
        step.t += 1;
        let gpu = self.session.gpu;
        gpu.write_u32(&self.session.state.step, &[step.t as u32])?;
        step.optim.write_hyper(gpu, step.lr, step.t)
    }

    /// Runs one training step and waits.
    pub fn run(&self, step: &mut TrainStep) -> Result<()> {
        self.prepare(step)?;
        self.session.gpu.run(&step.plan)
    }

    /// Runs one training step with every dispatch timed.
    pub fn run_profiled(&self, step: &mut TrainStep) -> Result<StepProfile> {
        self.prepare(step)?;
        self.session.gpu.submit_profiled(&step.plan)
    }
}

/// A compiled training step and what it rewrites per replay.
pub struct TrainStep {
    pub plan: Plan,
    optim: Optimizer,
    _indices: Buffer,
    lr: f64,
    t: u64,
}

/// What `cnn3d profile` measures.
#[derive(Clone, Debug)]
pub struct ProfileOptions {
    pub batch: usize,
    pub steps: usize,
    pub warmup: usize,
}

/// `warmup` untimed training steps, then `steps` profiled ones (the config's optimizer).
pub fn profile_training(gpu: &Gpu, config: &Config, opts: &ProfileOptions) -> Result<Vec<StepProfile>> {
    if opts.steps == 0 {
        return Err(Error::InvalidOption { field: "--steps".into(), message: "must be at least 1".into() });
    }
    let mut bench = Bench::new(gpu, config)?;
    let mut step = bench.train_step(opts.batch, &config.optimizer.rule)?;
    for _ in 0..opts.warmup {
        bench.run(&mut step)?;
    }
    (0..opts.steps).map(|_| bench.run_profiled(&mut step)).collect()
}

/// Median, minimum and maximum of some repetitions.
#[derive(Clone, Debug, Serialize)]
pub struct Stats {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub reps: usize,
}

impl Stats {
    pub fn of(values: &[f64]) -> Stats {
        let mut v = values.to_vec();
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = match n {
            0 => f64::NAN,
            _ if n % 2 == 1 => v[n / 2],
            _ => (v[n / 2 - 1] + v[n / 2]) / 2.0,
        };
        Stats { median, min: v.first().copied().unwrap_or(f64::NAN), max: v.last().copied().unwrap_or(f64::NAN), reps: n }
    }
}

/// What `cnn3d bench` measures.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    /// Training batch size.
    pub batch: usize,
    pub reps: usize,
    pub warmup: usize,
    /// Inference batch sizes.
    pub infer_batches: Vec<usize>,
    /// M = N = K of the GEMM microbenchmark.
    pub gemm_size: usize,
}

#[derive(Clone, Debug, Serialize)]
pub struct AdapterSummary {
    pub name: String,
    pub backend: String,
    pub device_type: String,
    pub driver: String,
    pub driver_info: String,
    /// The subgroup size the subgroup kernels align to, where they can run (none: the device
    /// has no subgroups, or was opened with `--no-subgroups`).
    pub subgroup_size: Option<u32>,
}

#[derive(Clone, Debug, Serialize)]
pub struct TrainBench {
    pub optimizer: String,
    pub batch: usize,
    pub samples_per_s: Stats,
    pub step_ms: Stats,
}

#[derive(Clone, Debug, Serialize)]
pub struct InferBench {
    pub batch: usize,
    /// `None` when skipped.
    pub samples_per_s: Option<Stats>,
    /// When the batch's tensors exceed the adapter's limits: the largest divisor of `batch`
    /// that fits, run batch / micro_batch times back to back (the same work; eval-mode
    /// layers do not depend on the batch). `None` when the batch ran whole.
    pub micro_batch: Option<usize>,
    /// Why it was skipped (e.g. a tensor above the adapter's binding limit).
    pub skipped: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct LayerBench {
    pub layer: String,
    pub ms: f64,
    pub share: f64,
    pub gflops: Option<f64>,
    pub gbps: Option<f64>,
}

/// One convolution pass of one layer in the SGD step, its packing dispatches included,
/// against the best GEMM: each rep profiles a step and then runs the GEMM, so that the two
/// figures of a rep come from the same few seconds (a shared machine's speed drifts).
#[derive(Clone, Debug, Serialize)]
pub struct ConvPassBench {
    pub layer: String,
    /// forward, backward_input or backward_weight.
    pub pass: String,
    pub ms: Stats,
    /// At each rep; none where the pass's analytic cost is not known.
    pub gflops: Option<Stats>,
    /// gflops over the best GEMM kernel's GFLOP/s in the same rep.
    pub of_gemm: Option<Stats>,
}

/// The pass a conv3d dispatch belongs to, by its kernel label (the packing of weights or of
/// dy / x counts toward the pass that reads it).
fn conv_pass(kernel: &str) -> Option<&'static str> {
    match kernel {
        "conv3d.forward" | "conv3d.pack_forward" | "conv3d.pack_bias" => Some("forward"),
        "conv3d.backward_input" | "conv3d.pack_backward_input" => Some("backward_input"),
        "conv3d.backward_weight" | "conv3d.backward_weight_sum" | "conv3d.pack_rows" | "conv3d.pack_samples" => Some("backward_weight"),
        _ => None,
    }
}

/// The conv3d passes of `profile` by (layer, pass), in order of first dispatch: (layer, pass,
/// ns, flops).
fn conv_pass_times(profile: &StepProfile) -> Vec<(String, &'static str, u64, u64)> {
    let mut rows: Vec<(String, &'static str, u64, u64)> = vec![];
    for d in &profile.dispatches {
        let (layer, kernel) = d.label.split_once('/').unwrap_or(("", &d.label));
        let Some(pass) = conv_pass(kernel) else { continue };
        match rows.iter_mut().find(|r| r.0 == layer && r.1 == pass) {
            Some(r) => {
                r.2 += d.ns;
                r.3 += d.flops;
            }
            None => rows.push((layer.to_string(), pass, d.ns, d.flops)),
        }
    }
    rows
}

/// The passes over reps of (step profile, GEMM GFLOP/s in the same rep).
pub fn conv_passes(reps: &[(StepProfile, f64)]) -> Vec<ConvPassBench> {
    let per_rep: Vec<_> = reps.iter().map(|(p, g)| (conv_pass_times(p), *g)).collect();
    let Some((first, _)) = per_rep.first() else { return vec![] };
    first
        .iter()
        .map(|(layer, pass, _, _)| {
            let (mut ms, mut gflops, mut of_gemm) = (vec![], vec![], vec![]);
            for (rows, gemm) in &per_rep {
                let Some(&(_, _, ns, flops)) = rows.iter().find(|r| &r.0 == layer && r.1 == *pass) else { continue };
                ms.push(ns as f64 / 1e6);
                if flops > 0 && ns > 0 {
                    // flops / ns = GFLOP/s.
                    let g = flops as f64 / ns as f64;
                    gflops.push(g);
                    if *gemm > 0.0 {
                        of_gemm.push(g / gemm);
                    }
                }
            }
            let stats = |v: Vec<f64>| (!v.is_empty()).then(|| Stats::of(&v));
            ConvPassBench { layer: layer.clone(), pass: pass.to_string(), ms: Stats::of(&ms), gflops: stats(gflops), of_gemm: stats(of_gemm) }
        })
        .collect()
}

/// Device memory of training: everything the tensors hold once the SGD step is built (dataset,
/// weights, gradients, optimizer state, activations and their gradients, kernel scratch).
#[derive(Clone, Debug, Serialize)]
pub struct MemoryBench {
    pub batch: usize,
    pub train_bytes: u64,
    /// Of train_bytes, the bench's own dataset (a few hundred samples)...
    pub dataset_bytes: u64,
    pub dataset_samples: usize,
    /// ...whose device copy takes this much per sample (values and label).
    pub bytes_per_sample: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct GemmBench {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    /// The fastest of `candidates`: the best matmul the project's kernels reach here.
    pub kernel: String,
    pub ms: Stats,
    /// At the median time.
    pub gflops: f64,
    /// Every kernel timed: the dense layer's, and conv3d's as a 1×1×1 convolution.
    pub candidates: Vec<GemmCandidate>,
}

#[derive(Clone, Debug, Serialize)]
pub struct GemmCandidate {
    pub kernel: String,
    pub ms: Stats,
    pub gflops: f64,
}

/// The document `cnn3d bench --json` prints.
#[derive(Clone, Debug, Serialize)]
pub struct BenchReport {
    pub adapter: AdapterSummary,
    pub wgpu_version: String,
    pub timing: TimingMethod,
    pub input: Vec<usize>,
    pub parameters: usize,
    pub warmup: usize,
    pub reps: usize,
    pub train: Vec<TrainBench>,
    pub inference: Vec<InferBench>,
    /// From one profiled SGD training step at the training batch size.
    pub layers: Vec<LayerBench>,
    /// The same step's conv3d passes (the dense layers' included: they run conv3d's kernels as
    /// 1×1×1 convolutions), each against the best GEMM.
    pub conv_passes: Vec<ConvPassBench>,
    pub memory: MemoryBench,
    pub gemm: GemmBench,
}

fn time_reps(reps: usize, mut f: impl FnMut() -> Result<()>) -> Result<Vec<f64>> {
    (0..reps)
        .map(|_| {
            let t = Instant::now();
            f()?;
            Ok(t.elapsed().as_secs_f64())
        })
        .collect()
}

/// Training (SGD, Adam) and inference throughput, per-layer rates and a GEMM reference.
pub fn bench(gpu: &Gpu, config: &Config, opts: &BenchOptions) -> Result<BenchReport> {
    if opts.reps == 0 {
        return Err(Error::InvalidOption { field: "--reps".into(), message: "must be at least 1".into() });
    }
    if opts.gemm_size == 0 {
        return Err(Error::InvalidOption { field: "--gemm-size".into(), message: "must be positive".into() });
    }
    // Its three size² matrices, counted without wrapping, must fit before the run starts (and
    // before the host allocates them).
    let gemm_elements = opts.gemm_size.checked_mul(opts.gemm_size).ok_or_else(|| Error::InvalidOption {
        field: "--gemm-size".into(),
        message: format!("{} squared overflows 64 bits", opts.gemm_size),
    })?;
    gpu.check_fits("gemm x (--gemm-size squared)", gemm_elements)?;
    let mut b = Bench::new(gpu, config)?;
    let mut train = vec![];
    let mut layers = vec![];
    let mut conv = vec![];
    let mut gemm_bench = None;
    let mut memory = None;
    for kind in ["sgd", "adam"] {
        let rule = UpdateRule::defaults(kind)?;
        let mut step = b.train_step(opts.batch, &rule)?;
        if kind == "sgd" {
            let dataset_bytes = 4 * (b.split.data.len() + b.split.labels.len()) as u64;
            memory = Some(MemoryBench {
                batch: opts.batch,
                train_bytes: gpu.memory().live_bytes,
                dataset_bytes,
                dataset_samples: b.split.len,
                bytes_per_sample: dataset_bytes / b.split.len.max(1) as u64,
            });
        }
        for _ in 0..opts.warmup {
            b.run(&mut step)?;
        }
        let secs = time_reps(opts.reps, || b.run(&mut step))?;
        if kind == "sgd" {
            let profile = b.run_profiled(&mut step)?;
            layers = layer_table(std::slice::from_ref(&profile))
                .into_iter()
                .map(|r| LayerBench { layer: r.name, ms: r.total_ms, share: r.share, gflops: r.gflops, gbps: r.gbps })
                .collect();
            // The GEMM, then the convolution passes against it rep by rep.
            let (g, plan) = gemm(gpu, opts.gemm_size, opts.warmup, opts.reps)?;
            let flops = 2.0 * (opts.gemm_size as f64).powi(3);
            let mut reps = vec![];
            for _ in 0..opts.reps {
                let profile = b.run_profiled(&mut step)?;
                let ns = gpu.submit_profiled(&plan)?.gpu_ns() as f64;
                reps.push((profile, if ns > 0.0 { flops / ns } else { 0.0 }));
            }
            conv = conv_passes(&reps);
            gemm_bench = Some(g);
        }
        train.push(TrainBench {
            optimizer: kind.into(),
            batch: opts.batch,
            samples_per_s: Stats::of(&secs.iter().map(|s| opts.batch as f64 / s).collect::<Vec<_>>()),
            step_ms: Stats::of(&secs.iter().map(|s| s * 1e3).collect::<Vec<_>>()),
        });
    }
    let mut inference = vec![];
    for &batch in &opts.infer_batches {
        match infer_plan(&mut b, batch) {
            Ok((plan, micro)) => {
                let runs = batch / micro;
                let run = || (0..runs).try_for_each(|_| gpu.run(&plan));
                for _ in 0..opts.warmup {
                    run()?;
                }
                let secs = time_reps(opts.reps, run)?;
                let rates: Vec<f64> = secs.iter().map(|s| batch as f64 / s).collect();
                let micro_batch = (micro < batch).then_some(micro);
                inference.push(InferBench { batch, samples_per_s: Some(Stats::of(&rates)), micro_batch, skipped: None });
            }
            // A batch whose tensors this adapter cannot bind is a finding, not a failure.
            Err(e @ (Error::TooLarge { .. } | Error::GridTooLarge { .. })) => {
                inference.push(InferBench { batch, samples_per_s: None, micro_batch: None, skipped: Some(e.to_string()) })
            }
            Err(e) => return Err(e),
        }
    }
    let info = gpu.info();
    Ok(BenchReport {
        adapter: AdapterSummary {
            name: info.name.clone(),
            backend: info.backend.clone(),
            device_type: info.device_type.clone(),
            driver: info.driver.clone(),
            driver_info: info.driver_info.clone(),
            subgroup_size: gpu.subgroup_size(),
        },
        wgpu_version: WGPU_VERSION.into(),
        timing: gpu.timing_method(),
        input: b.session.model.input.to_vec(),
        parameters: b.session.model.param_count(),
        warmup: opts.warmup,
        reps: opts.reps,
        train,
        inference,
        layers,
        conv_passes: conv,
        memory: memory.expect("the SGD step ran first"),
        gemm: gemm_bench.expect("the SGD step ran first"),
    })
}

/// The inference plan for `batch` samples, or, when its tensors exceed the adapter's limits,
/// for the largest divisor of `batch` that fits (with that micro-batch size). The error of the
/// whole batch when not even one sample fits.
fn infer_plan(b: &mut Bench, batch: usize) -> Result<(Plan, usize)> {
    let whole = match b.infer_step(batch) {
        Ok(plan) => return Ok((plan, batch)),
        Err(e @ (Error::TooLarge { .. } | Error::GridTooLarge { .. })) => e,
        Err(e) => return Err(e),
    };
    for parts in 2..=batch {
        if !batch.is_multiple_of(parts) {
            continue;
        }
        match b.infer_step(batch / parts) {
            Ok(plan) => return Ok((plan, batch / parts)),
            Err(Error::TooLarge { .. } | Error::GridTooLarge { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Err(whole)
}

/// An m = n = k = `size` matmul with each of the project's kernels that computes one — the
/// dense layer's (y = x·wᵀ) and conv3d's tiled and direct kernels as a 1×1×1 convolution over
/// `size` positions (y = w·x) — timed on the GPU; the fastest is the reference. Also the plan
/// of the fastest, which bench runs again beside each profiled step.
pub fn gemm(gpu: &Gpu, size: usize, warmup: usize, reps: usize) -> Result<(GemmBench, Plan)> {
    if size == 0 {
        return Err(Error::InvalidOption { field: "--gemm-size".into(), message: "must be positive".into() });
    }
    let mut rng = Rng::new(1);
    // x and y are activations (f16 at --precision f16), w a parameter (f32).
    let x = gpu.upload_act("gemm x", &rng.vec_f32(size * size, -1.0, 1.0))?;
    let w = gpu.upload_f32("gemm w", &rng.vec_f32(size * size, -1.0, 1.0))?;
    let y = gpu.zeros_act("gemm y", size * size)?;
    let flops = 2 * (size as u64).pow(3);
    let mut candidates = vec![];
    let dense = Dense::new(size, size, size, false)?;
    let mut runs: Vec<(String, Vec<Op>)> = vec![("dense.forward".into(), vec![dense.forward(&x, &w, None, &y)?])];
    // The positions along W, where the tiled kernels take four neighbours per invocation.
    let conv = Conv3d::new(1, size, size, [1, 1, size], [1, 1, 1]).with_bias(false);
    let (kernels, _) = conv.candidates(gpu);
    let mut scratch = vec![];
    for k in kernels {
        let choice = ConvChoice { forward: k, ..conv.default_choice(gpu) };
        scratch.push(conv.scratch_with(gpu, choice)?);
        let ops = conv.forward(&x, &w, None, &y, scratch.last().expect("just pushed"))?;
        runs.push((format!("conv3d.forward ({} kernels, 1x1x1)", format!("{choice}").split('/').next().unwrap_or("")), ops));
    }
    let mut plans = vec![];
    for (kernel, ops) in runs {
        let plan = gpu.compile(&ops)?;
        for _ in 0..warmup {
            gpu.run(&plan)?;
        }
        let ms: Vec<f64> = (0..reps).map(|_| Ok(gpu.submit_profiled(&plan)?.gpu_ns() as f64 / 1e6)).collect::<Result<_>>()?;
        let ms = Stats::of(&ms);
        candidates.push(GemmCandidate { kernel, gflops: flops as f64 / (ms.median * 1e6), ms });
        plans.push(plan);
    }
    let i = (0..candidates.len()).max_by(|&a, &b| candidates[a].gflops.total_cmp(&candidates[b].gflops)).expect("at least the dense kernel");
    let best = candidates[i].clone();
    let plan = plans.swap_remove(i);
    Ok((GemmBench { m: size, n: size, k: size, kernel: best.kernel, ms: best.ms, gflops: best.gflops, candidates }, plan))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpu::DispatchTime;

    fn step(dispatches: &[(&str, u64, u64)]) -> StepProfile {
        let dispatches = dispatches.iter().map(|&(label, ns, flops)| DispatchTime { label: label.into(), start_ns: 0, ns, flops, bytes: 0 }).collect();
        StepProfile { method: TimingMethod::WallClock, dispatches, wall_ns: 0 }
    }

    #[test]
    fn conv_passes_sum_their_packing_and_compare_with_the_gemm_of_their_rep() {
        let a = step(&[
            ("c1/conv3d.pack_forward", 1_000, 0),
            ("c1/conv3d.forward", 9_000, 50_000),
            ("c1/conv3d.forward", 10_000, 50_000),
            ("c1/leaky_relu.forward", 5_000, 100),
            ("c1/conv3d.pack_rows", 2_000, 0),
            ("c1/conv3d.backward_weight", 8_000, 40_000),
            ("c1/conv3d.backward_bias", 3_000, 10),
        ]);
        let b = step(&[
            ("c1/conv3d.pack_forward", 1_000, 0),
            ("c1/conv3d.forward", 39_000, 100_000),
            ("c1/conv3d.pack_rows", 2_000, 0),
            ("c1/conv3d.backward_weight", 18_000, 40_000),
        ]);
        // GEMM at 4 and 2 GFLOP/s in the two reps.
        let p = conv_passes(&[(a, 4.0), (b, 2.0)]);
        assert_eq!(p.len(), 2, "{p:?}");
        assert_eq!((p[0].layer.as_str(), p[0].pass.as_str()), ("c1", "forward"));
        assert_eq!((p[1].layer.as_str(), p[1].pass.as_str()), ("c1", "backward_weight"));
        // forward: 100,000 flops in 20 µs and in 40 µs: 5 and 2.5 GFLOP/s, 1.25 and 1.25 of the GEMM.
        let f = &p[0];
        assert_eq!((f.ms.min, f.ms.max), (0.02, 0.04));
        let g = f.gflops.as_ref().unwrap();
        assert_eq!((g.min, g.max), (2.5, 5.0));
        let o = f.of_gemm.as_ref().unwrap();
        assert_eq!((o.min, o.max), (1.25, 1.25));
        // backward_weight: 40,000 flops in 10 µs (4 GFLOP/s, 1.0 of 4) and 20 µs (2, 1.0 of 2).
        let o = p[1].of_gemm.as_ref().unwrap();
        assert_eq!((o.min, o.median, o.max), (1.0, 1.0, 1.0));
    }
}
