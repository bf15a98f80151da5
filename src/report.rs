//! `cnn3d report`: one run that says what this GPU does with cnn3d — the adapter and its
//! limits, `check`, `bench` (training at batch 100 and 1000, inference at 100, 1000 and
//! 10,000), the top kernels of a profiled training step and a GEMM at 1024, 2048 and 4096 —
//! each rate also as a fraction of the adapter's peak FP32 rate where that is known. Written as
//! `report.json` and `report.md`. `--quick` measures less, for CPU drivers.

use std::fmt::Write as _;
use std::time::Instant;

use serde::Serialize;

use crate::check;
use crate::error::{Error, Result};
use crate::gpu::{Gpu, GpuInfo};
use crate::profile::{self, BenchOptions, BenchReport, GemmBench};
use crate::train::Config;

/// Peak FP32 rates (TFLOP/s, without tensor cores, at boost clock, as the vendors publish
/// them) of common GPUs, matched as substrings of the adapter's name, the more specific first.
const PEAKS: &[(&str, f64)] = &[
    ("H200", 67.0),
    ("H100 PCIe", 51.2),
    ("H100", 67.0),
    ("A100", 19.5),
    ("L40S", 91.6),
    ("L4", 30.3),
    ("RTX 5090", 104.8),
    ("RTX 4090", 82.6),
    ("RTX 4080", 48.7),
    ("RTX 4070", 29.1),
    ("RTX 3090", 35.6),
    ("RTX 3080", 29.8),
    ("RTX 3070", 20.3),
    ("RTX 3060", 12.7),
    ("RX 7900 XTX", 61.4),
    ("RX 7900 XT", 51.5),
    ("RX 6900 XT", 23.0),
    ("RX 6800 XT", 20.7),
    ("Arc(TM) A770", 19.7),
    ("Arc A770", 19.7),
    ("Apple M3 Max", 16.4),
    ("Apple M2 Max", 13.6),
    ("Apple M1 Max", 10.4),
    ("Apple M3", 4.1),
    ("Apple M2", 3.6),
    ("Apple M1", 2.6),
];

/// The adapter's peak FP32 rate in TFLOP/s and where the figure comes from.
pub fn peak(name: &str, given: Option<f64>) -> (Option<f64>, String) {
    if let Some(t) = given {
        return (Some(t), "--peak-tflops".into());
    }
    match PEAKS.iter().find(|(key, _)| name.contains(key)) {
        Some((key, t)) => (Some(*t), format!("cnn3d's table of published peaks ({key})")),
        None => (None, "not in cnn3d's table; give it with --peak-tflops".into()),
    }
}

#[derive(Clone, Debug)]
pub struct ReportOptions {
    /// Fewer sizes and repetitions, for CPU drivers (minutes there, not hours).
    pub quick: bool,
    /// The adapter's peak FP32 rate in TFLOP/s, where cnn3d's table does not know it.
    pub peak_tflops: Option<f64>,
}

impl ReportOptions {
    /// Training batch sizes, inference batch sizes, GEMM sizes, repetitions.
    fn plan(&self) -> (Vec<usize>, Vec<usize>, Vec<usize>, usize) {
        if self.quick {
            (vec![100], vec![100, 1000], vec![1024], 2)
        } else {
            (vec![100, 1000], vec![100, 1000, 10_000], vec![1024, 2048, 4096], 5)
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct CheckSummary {
    pub kernels: usize,
    pub passed: usize,
    /// The largest error as a fraction of its tolerance, over every kernel and case.
    pub worst_err_over_tol: f64,
    /// `describe()` of each failing kernel.
    pub failures: Vec<String>,
    pub seconds: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct GemmRow {
    pub size: usize,
    pub kernel: String,
    pub ms: f64,
    pub gflops: f64,
    pub of_peak: Option<f64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct KernelRow {
    pub kernel: String,
    pub ms: f64,
    pub share: f64,
    /// None where the kernel's cost is not known.
    pub gflops: Option<f64>,
    pub of_peak: Option<f64>,
}

/// The document of `report.json`.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub cnn3d_version: String,
    pub quick: bool,
    /// What activations were stored in (`--precision`): every figure is at this precision.
    pub precision: crate::gpu::Precision,
    pub adapter: GpuInfo,
    pub peak_fp32_tflops: Option<f64>,
    pub peak_source: String,
    pub check: CheckSummary,
    /// One bench per training batch size (the inference batches with the first).
    pub bench: Vec<BenchReport>,
    /// Of one profiled SGD step at the largest training batch: its most expensive kernels.
    pub top_kernels: Vec<KernelRow>,
    pub gemm: Vec<GemmRow>,
    /// What this adapter could not run (a training batch or GEMM beyond its limits), and why.
    pub skipped: Vec<String>,
    pub seconds: f64,
}

/// Runs everything on `gpu` with the article's model (`config`).
pub fn run(gpu: &Gpu, config: &Config, opts: &ReportOptions, progress: &mut dyn FnMut(&str)) -> Result<Report> {
    if opts.peak_tflops.is_some_and(|t| !(t.is_finite() && t > 0.0)) {
        return Err(Error::InvalidOption { field: "--peak-tflops".into(), message: "must be a positive number of TFLOP/s".into() });
    }
    let start = Instant::now();
    let (train_batches, infer_batches, gemm_sizes, reps) = opts.plan();
    let info = gpu.info().clone();
    let (peak_fp32_tflops, peak_source) = peak(&info.name, opts.peak_tflops);
    let of_peak = |gflops: f64| fraction_of_peak(gflops, peak_fp32_tflops);

    progress("check: every kernel against the CPU reference");
    let t = Instant::now();
    let reports = check::run_all(gpu)?;
    let merged = check::merge_by_name(reports.clone());
    let check = CheckSummary {
        kernels: merged.len(),
        passed: merged.iter().filter(|r| r.pass).count(),
        worst_err_over_tol: reports.iter().map(|r| r.err_over_tol).fold(0.0, f64::max),
        failures: merged.iter().filter(|r| !r.pass).map(|r| r.describe()).collect(),
        seconds: t.elapsed().as_secs_f64(),
    };

    let mut bench = vec![];
    let mut skipped = vec![];
    for &batch in &train_batches {
        progress(&format!("bench: training at batch {batch}"));
        let mut cfg = config.clone();
        cfg.train.batch_size = batch;
        let bopts = BenchOptions {
            batch,
            reps,
            warmup: 1,
            // Inference and the GEMM need measuring once.
            infer_batches: if bench.is_empty() { infer_batches.clone() } else { vec![] },
            gemm_size: gemm_sizes[0],
        };
        match profile::bench(gpu, &cfg, &bopts) {
            Ok(b) => bench.push(b),
            Err(e) if beyond_limits(&e) => skipped.push(format!("training at batch {batch}: {e}")),
            Err(e) => return Err(e),
        }
    }
    let Some(largest) = bench.iter().filter_map(|b| b.train.first()).map(|t| t.batch).next_back() else {
        return Err(Error::InvalidOption { field: "report".into(), message: format!("no training batch fits this adapter: {}", skipped.join("; ")) });
    };

    progress("profile: the kernels of one training step");
    let mut cfg = config.clone();
    cfg.train.batch_size = largest;
    let steps = profile::profile_training(gpu, &cfg, &profile::ProfileOptions { batch: largest, steps: 1, warmup: 1 })?;
    let mut kernels = profile::kernel_table(&steps);
    kernels.sort_by(|a, b| b.total_ms.total_cmp(&a.total_ms));
    let top_kernels = kernels
        .into_iter()
        .take(10)
        .map(|k| {
            KernelRow { kernel: k.name, ms: k.total_ms, share: k.share, gflops: k.gflops, of_peak: k.gflops.and_then(of_peak) }
        })
        .collect();

    let mut gemm = vec![];
    for &size in &gemm_sizes {
        progress(&format!("gemm: {size}³"));
        let g: GemmBench = match (size == gemm_sizes[0], bench.first()) {
            (true, Some(b)) => b.gemm.clone(),
            _ => match profile::gemm(gpu, size, 1, reps) {
                Ok((g, _)) => g,
                Err(e) if beyond_limits(&e) => {
                    skipped.push(format!("GEMM {size}³: {e}"));
                    continue;
                }
                Err(e) => return Err(e),
            },
        };
        gemm.push(GemmRow { size, kernel: g.kernel, ms: g.ms.median, gflops: g.gflops, of_peak: of_peak(g.gflops) });
    }

    Ok(Report {
        cnn3d_version: env!("CARGO_PKG_VERSION").into(),
        precision: gpu.precision(),
        quick: opts.quick,
        adapter: info,
        peak_fp32_tflops,
        peak_source,
        check,
        bench,
        top_kernels,
        gemm,
        skipped,
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// A rate in GFLOP/s as a fraction of a peak in TFLOP/s, where the peak is known.
fn fraction_of_peak(gflops: f64, peak_tflops: Option<f64>) -> Option<f64> {
    peak_tflops.map(|p| gflops / (p * 1e3))
}

/// An error that says the adapter's limits are too small for a size, not that something broke.
fn beyond_limits(e: &Error) -> bool {
    matches!(e, Error::TooLarge { .. } | Error::GridTooLarge { .. } | Error::BatchTooLarge { .. })
}

fn pct(v: Option<f64>) -> String {
    v.map_or_else(|| "–".into(), |v| format!("{:.1} %", 100.0 * v))
}

fn rate(gflops: Option<f64>) -> String {
    gflops.map_or_else(|| "–".into(), |g| format!("{g:.1}"))
}

fn yes(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

/// The report as Markdown: what a person reads first.
pub fn markdown(r: &Report) -> String {
    let a = &r.adapter;
    let mut s = String::new();
    let _ = writeln!(s, "# cnn3d report: {}\n", a.name);
    let _ = writeln!(
        s,
        "cnn3d {}, {} mode, activations in {}, {:.0} s. Adapter: {} ({}, {}, {} {}). Peak FP32: {} ({}).\n",
        r.cnn3d_version,
        if r.quick { "quick" } else { "full" },
        r.precision,
        r.seconds,
        a.name,
        a.backend,
        a.device_type,
        a.driver,
        a.driver_info,
        r.peak_fp32_tflops.map_or_else(|| "unknown".into(), |p| format!("{p} TFLOP/s")),
        r.peak_source
    );
    let _ = writeln!(s, "## Limits\n");
    let _ = writeln!(s, "| limit | value |\n|---|---|");
    let rows: [(&str, String); 9] = [
        ("max storage buffer binding", format!("{} bytes", a.max_storage_buffer_binding_size)),
        ("max buffer", format!("{} bytes", a.max_buffer_size)),
        ("max uniform buffer binding", format!("{} bytes", a.max_uniform_buffer_binding_size)),
        ("workgroups per dimension", a.max_compute_workgroups_per_dimension.to_string()),
        ("invocations per workgroup", a.max_compute_invocations_per_workgroup.to_string()),
        ("workgroup memory", format!("{} bytes", a.max_compute_workgroup_storage_size)),
        ("subgroups", a.subgroup_sizes.map_or("no".into(), |(lo, hi)| format!("{lo}..{hi} lanes"))),
        ("f16 in shaders", yes(a.shader_f16).into()),
        ("timestamps", format!("{} (inside passes: {})", yes(a.timestamp_query), yes(a.timestamp_query_inside_passes))),
    ];
    for (k, v) in rows {
        let _ = writeln!(s, "| {k} | {v} |");
    }
    let c = &r.check;
    let _ = writeln!(
        s,
        "\n## Check\n\n{} of {} kernels pass against the CPU reference (worst error {:.3} of its tolerance, {:.0} s).",
        c.passed, c.kernels, c.worst_err_over_tol, c.seconds
    );
    for f in &c.failures {
        let _ = writeln!(s, "- FAIL {f}");
    }
    let _ = writeln!(s, "\n## Throughput (the article's model)\n\n| what | batch | samples/s (median) | min | max |\n|---|---|---|---|---|");
    for b in &r.bench {
        for t in &b.train {
            let v = &t.samples_per_s;
            let _ = writeln!(s, "| training, {} | {} | {:.1} | {:.1} | {:.1} |", t.optimizer, t.batch, v.median, v.min, v.max);
        }
        for i in &b.inference {
            match (&i.samples_per_s, &i.skipped) {
                (Some(v), _) => {
                    let micro = i.micro_batch.map(|m| format!(" ({} × {m})", i.batch / m)).unwrap_or_default();
                    let _ = writeln!(s, "| inference | {}{micro} | {:.1} | {:.1} | {:.1} |", i.batch, v.median, v.min, v.max);
                }
                (None, why) => {
                    let _ = writeln!(s, "| inference | {} | skipped: {} | | |", i.batch, why.as_deref().unwrap_or(""));
                }
            }
        }
    }
    let _ = writeln!(s, "\n## Convolution passes (one SGD step; dense layers run as 1×1×1 convolutions)\n\n| batch | layer | pass | ms | GFLOP/s | of peak |\n|---|---|---|---|---|---|");
    for b in &r.bench {
        let batch = b.train.first().map_or(0, |t| t.batch);
        for p in &b.conv_passes {
            let gflops = p.gflops.as_ref().map(|g| g.median);
            let of_peak = gflops.and_then(|g| fraction_of_peak(g, r.peak_fp32_tflops));
            let _ = writeln!(s, "| {batch} | {} | {} | {:.3} | {} | {} |", p.layer, p.pass, p.ms.median, rate(gflops), pct(of_peak));
        }
    }
    let _ = writeln!(s, "\n## Top kernels (one profiled SGD step at the largest batch)\n\n| kernel | ms | share | GFLOP/s | of peak |\n|---|---|---|---|---|");
    for k in &r.top_kernels {
        let _ = writeln!(s, "| {} | {:.3} | {:.1} % | {} | {} |", k.kernel, k.ms, 100.0 * k.share, rate(k.gflops), pct(k.of_peak));
    }
    let _ = writeln!(s, "\n## GEMM (M = N = K, f32)\n\n| size | best kernel | ms | GFLOP/s | of peak |\n|---|---|---|---|---|");
    for g in &r.gemm {
        let _ = writeln!(s, "| {} | {} | {:.3} | {:.1} | {} |", g.size, g.kernel, g.ms, g.gflops, pct(g.of_peak));
    }
    if !r.skipped.is_empty() {
        let _ = writeln!(s, "\n## Skipped (beyond this adapter's limits)\n");
        for why in &r.skipped {
            let _ = writeln!(s, "- {why}");
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_peak_comes_from_the_flag_then_the_table() {
        assert_eq!(peak("NVIDIA H100 PCIe", None).0, Some(51.2), "the PCIe card before the H100 entry");
        assert_eq!(peak("NVIDIA H100 80GB HBM3", None).0, Some(67.0));
        assert_eq!(peak("NVIDIA H200", None).0, Some(67.0));
        assert_eq!(peak("NVIDIA GeForce RTX 4090", None).0, Some(82.6));
        assert_eq!(peak("llvmpipe (LLVM 15.0.6, 256 bits)", None).0, None);
        assert_eq!(peak("llvmpipe", Some(1.5)), (Some(1.5), "--peak-tflops".to_string()));
    }
}
