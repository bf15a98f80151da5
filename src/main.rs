//! The cnn3d command line: parse, call the library, print.

use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use cnn3d::check;
use cnn3d::gpu::{list_adapters, BackendChoice, Gpu, GpuOptions};

#[derive(Parser)]
#[command(name = "cnn3d", version, about = "Train 3D convolutional neural networks on any desktop GPU through WebGPU")]
struct Cli {
    /// Graphics API: vulkan, metal, dx12, gl or auto (discrete GPU first, then integrated, then
    /// CPU adapters such as lavapipe). Also read from WGPU_BACKEND.
    #[arg(long, global = true, default_value = "auto", value_name = "BACKEND")]
    backend: BackendChoice,

    /// Adapter to use: its index in `cnn3d adapters`, or a substring of its name.
    #[arg(long, global = true, value_name = "INDEX|NAME")]
    adapter: Option<String>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List every adapter wgpu sees, per backend, with the limits that matter to cnn3d.
    Adapters {
        /// Print one JSON document instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Run every kernel on this GPU against the CPU reference and print the worst error per kernel.
    Check {
        /// Print one JSON document instead of a table.
        #[arg(long)]
        json: bool,
        /// Only these layers (conv3d, max_pool3d, avg_pool3d, activation, dense, batch_norm,
        /// dropout, softmax_xent); repeat or separate with commas.
        #[arg(long, value_delimiter = ',', value_name = "LAYER")]
        layer: Vec<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // `--backend auto` probes GL only for listings; without a display its EGL setup fails
    // loudly and harmlessly, so that one module is quiet unless GL was asked for.
    let filter = if cli.backend == BackendChoice::Auto { "warn,wgpu_hal::gles=off,cnn3d=info" } else { "warn,cnn3d=info" };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(filter))
        .format_timestamp(None)
        .init();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            // Bad user input (flags naming things that do not exist) exits with 2.
            let user_error = e.downcast_ref::<cnn3d::Error>().is_some_and(|e| {
                matches!(e, cnn3d::Error::AdapterNotFound { .. } | cnn3d::Error::UnknownBackend(_) | cnn3d::Error::UnknownKernel(_))
            });
            ExitCode::from(if user_error { 2 } else { 1 })
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let opts = GpuOptions { backend: cli.backend, adapter: cli.adapter.clone() };
    match cli.command {
        Command::Adapters { json } => adapters(cli.backend, json),
        Command::Check { json, layer } => check_cmd(&opts, json, &layer),
    }
}

fn adapters(backend: BackendChoice, json: bool) -> anyhow::Result<ExitCode> {
    let list = list_adapters(backend)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&serde_json::json!({ "adapters": list }))?);
        return Ok(ExitCode::SUCCESS);
    }
    if list.is_empty() {
        println!("no adapters found. On Linux without a GPU: apt-get install mesa-vulkan-drivers");
        return Ok(ExitCode::from(1));
    }
    for a in &list {
        println!("{}: {} ({}, {})", a.index, a.name, a.backend, a.device_type);
        println!("    driver: {} {}", a.driver, a.driver_info);
        println!("    max storage binding: {} bytes, max buffer: {} bytes", a.max_storage_buffer_binding_size, a.max_buffer_size);
        println!(
            "    workgroups per dimension: {}, invocations per workgroup: {}, workgroup memory: {} bytes",
            a.max_compute_workgroups_per_dimension, a.max_compute_invocations_per_workgroup, a.max_compute_workgroup_storage_size
        );
        println!(
            "    timestamps: {}, timestamps inside passes: {}, f16: {}",
            yes(a.timestamp_query),
            yes(a.timestamp_query_inside_passes),
            yes(a.shader_f16)
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn yes(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

fn check_cmd(opts: &GpuOptions, json: bool, layers: &[String]) -> anyhow::Result<ExitCode> {
    for l in layers {
        if !check::LAYERS.contains(&l.as_str()) {
            return Err(cnn3d::Error::UnknownKernel(format!("{l} (known layers: {})", check::LAYERS.join(", "))).into());
        }
    }
    let gpu = Gpu::new(opts)?;
    let started = std::time::Instant::now();
    let mut reports = vec![];
    for layer in check::LAYERS.iter().filter(|l| layers.is_empty() || layers.iter().any(|x| x == *l)) {
        reports.extend(check::run_layer(&gpu, layer).with_context(|| format!("checking {layer}"))?);
    }
    let reports = check::merge_by_name(reports);
    let all_pass = reports.iter().all(|r| r.pass);
    if json {
        let doc = serde_json::json!({
            "adapter": gpu.info(),
            "pass": all_pass,
            "seconds": started.elapsed().as_secs_f64(),
            "kernels": reports,
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        let i = gpu.info();
        println!("adapter: {} ({}, {}, {} {})", i.name, i.backend, i.device_type, i.driver, i.driver_info);
        println!("{:<28} {:>5} {:>11} {:>11} {:>8}  {:<6} shapes", "kernel", "cases", "max abs err", "max rel err", "err/tol", "result");
        for r in &reports {
            let first = r.shapes.first().cloned().unwrap_or_default();
            let more = if r.shapes.len() > 1 { format!(" (+{} more)", r.shapes.len() - 1) } else { String::new() };
            println!(
                "{:<28} {:>5} {:>11.3e} {:>11.3e} {:>8.3}  {:<6} {first}{more}",
                r.name,
                r.shapes.len(),
                r.max_abs_err,
                r.max_rel_err,
                r.err_over_tol,
                if r.pass { "pass" } else { "FAIL" }
            );
        }
        for r in reports.iter().filter(|r| !r.pass) {
            println!("\n{}", r.describe());
        }
        println!(
            "\n{} of {} kernels pass ({:.1} s)",
            reports.iter().filter(|r| r.pass).count(),
            reports.len(),
            started.elapsed().as_secs_f64()
        );
    }
    Ok(if all_pass { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
