//! What a profile of training steps becomes: per-kernel and per-layer tables, a Chrome trace
//! (`profile.json`: Perfetto, chrome://tracing) and a CSV. Used by `cnn3d profile`
//! ([`crate::profile`]) and by `train --profile-every` ([`crate::train`]), neither of which
//! the other needs.

use std::path::Path;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::gpu::{GpuInfo, StepProfile};

pub const WGPU_VERSION: &str = "30.0.2";

/// Per-kernel (or per-layer) totals over some profiled steps.
#[derive(Clone, Debug, Serialize)]
pub struct KernelStats {
    pub name: String,
    pub calls: usize,
    pub total_ms: f64,
    pub mean_us: f64,
    /// Of the summed dispatch time of all the steps.
    pub share: f64,
    pub flops: u64,
    pub bytes: u64,
    /// `None` where the op's cost is not known.
    pub gflops: Option<f64>,
    pub gbps: Option<f64>,
}

/// Totals per dispatch label (`layer/kernel.entry`), in order of first appearance.
pub fn kernel_table(steps: &[StepProfile]) -> Vec<KernelStats> {
    table(steps, |label| label.to_string())
}

/// Totals per layer: the label's part before `/` (ops without a layer, such as the gather and
/// the optimizer, keep their kernel name).
pub fn layer_table(steps: &[StepProfile]) -> Vec<KernelStats> {
    table(steps, |label| label.split_once('/').map_or(label, |(layer, _)| layer).to_string())
}

fn table(steps: &[StepProfile], key: impl Fn(&str) -> String) -> Vec<KernelStats> {
    let mut rows: Vec<KernelStats> = vec![];
    let mut total_ns = 0u64;
    for d in steps.iter().flat_map(|s| &s.dispatches) {
        total_ns += d.ns;
        let name = key(&d.label);
        let i = match rows.iter().position(|r| r.name == name) {
            Some(i) => i,
            None => {
                rows.push(KernelStats {
                    name,
                    calls: 0,
                    total_ms: 0.0,
                    mean_us: 0.0,
                    share: 0.0,
                    flops: 0,
                    bytes: 0,
                    gflops: None,
                    gbps: None,
                });
                rows.len() - 1
            }
        };
        let r = &mut rows[i];
        r.calls += 1;
        r.total_ms += d.ns as f64 / 1e6;
        r.flops += d.flops;
        r.bytes += d.bytes;
    }
    for r in &mut rows {
        r.mean_us = r.total_ms * 1e3 / r.calls as f64;
        r.share = if total_ns > 0 { r.total_ms * 1e6 / total_ns as f64 } else { 0.0 };
        let secs = r.total_ms / 1e3;
        // flops / ns = GFLOP/s; bytes / ns = GB/s.
        r.gflops = (r.flops > 0 && secs > 0.0).then(|| r.flops as f64 / secs / 1e9);
        r.gbps = (r.bytes > 0 && secs > 0.0).then(|| r.bytes as f64 / secs / 1e9);
    }
    rows
}

/// The table `cnn3d profile` prints, then each step's GPU time against its wall time.
pub fn format_table(steps: &[StepProfile]) -> String {
    let rows = kernel_table(steps);
    let width = rows.iter().map(|r| r.name.len()).max().unwrap_or(6).max(6);
    let opt = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| format!("{v:.2}"));
    let mut out = String::new();
    if let Some(s) = steps.first() {
        out += &format!("timing: {}\n", s.method.describe());
    }
    out += &format!(
        "{:<width$} {:>6} {:>11} {:>11} {:>7} {:>9} {:>8}\n",
        "kernel", "calls", "total ms", "mean µs", "share", "GFLOP/s", "GB/s"
    );
    for r in &rows {
        out += &format!(
            "{:<width$} {:>6} {:>11.3} {:>11.1} {:>6.1}% {:>9} {:>8}\n",
            r.name,
            r.calls,
            r.total_ms,
            r.mean_us,
            100.0 * r.share,
            opt(r.gflops),
            opt(r.gbps)
        );
    }
    for (i, s) in steps.iter().enumerate() {
        out += &format!(
            "step {}: {} dispatches, GPU {:.3} ms, wall {:.3} ms ({:.1}% of the wall time on the GPU)\n",
            i + 1,
            s.dispatches.len(),
            s.gpu_ns() as f64 / 1e6,
            s.wall_ns as f64 / 1e6,
            100.0 * s.gpu_ns() as f64 / s.wall_ns.max(1) as f64
        );
    }
    out
}

/// The steps in the Chrome trace event format (Perfetto, chrome://tracing): one process
/// "GPU", one track, one complete ("X") slice per dispatch; steps follow one another on the
/// time axis at their wall-clock distance (a step's dispatches at their GPU offsets).
pub fn chrome_trace(steps: &[StepProfile], adapter: &GpuInfo) -> serde_json::Value {
    let mut events = vec![
        serde_json::json!({"name": "process_name", "ph": "M", "pid": 1, "tid": 1, "args": {"name": format!("GPU: {}", adapter.name)}}),
        serde_json::json!({"name": "thread_name", "ph": "M", "pid": 1, "tid": 1, "args": {"name": "dispatches"}}),
    ];
    let mut offset_ns = 0u64;
    for (k, s) in steps.iter().enumerate() {
        for d in &s.dispatches {
            let (layer, kernel) = d.label.split_once('/').unwrap_or(("", d.label.as_str()));
            events.push(serde_json::json!({
                "name": d.label,
                "cat": kernel.split('.').next().unwrap_or(kernel),
                "ph": "X",
                "ts": (offset_ns + d.start_ns) as f64 / 1e3,
                "dur": d.ns as f64 / 1e3,
                "pid": 1,
                "tid": 1,
                "args": {"step": k + 1, "layer": layer, "kernel": kernel, "flops": d.flops, "bytes": d.bytes},
            }));
        }
        let span = s.dispatches.last().map_or(0, |d| d.start_ns + d.ns);
        offset_ns += span.max(s.wall_ns);
    }
    serde_json::json!({
        "traceEvents": events,
        "displayTimeUnit": "ms",
        "otherData": {
            "adapter": adapter.name,
            "backend": adapter.backend,
            "timing": steps.first().map(|s| s.method),
            "wgpu": WGPU_VERSION,
        },
    })
}

/// One row per dispatch: step, index, label, start and duration (µs), analytic cost.
pub fn csv(steps: &[StepProfile]) -> String {
    let mut out = String::from("step,index,label,start_us,dur_us,flops,bytes\n");
    for (k, s) in steps.iter().enumerate() {
        for (i, d) in s.dispatches.iter().enumerate() {
            out += &format!(
                "{},{},{},{:.3},{:.3},{},{}\n",
                k + 1,
                i,
                d.label,
                d.start_ns as f64 / 1e3,
                d.ns as f64 / 1e3,
                d.flops,
                d.bytes
            );
        }
    }
    out
}

/// Writes `profile.json` (Chrome trace) and `profile.csv` into `dir`.
pub fn write_profile(dir: &Path, steps: &[StepProfile], adapter: &GpuInfo) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, "creating the profile folder", e))?;
    let trace = serde_json::to_vec_pretty(&chrome_trace(steps, adapter)).expect("a JSON value serialises");
    crate::atomic::write_atomic(&dir.join("profile.json"), &trace)?;
    crate::atomic::write_atomic(&dir.join("profile.csv"), csv(steps).as_bytes())
}

