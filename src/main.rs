//! The cnn3d command line: parse, call the library, print.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};

use cnn3d::{check, eval, profile, train};
use cnn3d::data::{self, Colormap, DataOptions, Input, Keys, Layout, LoadOptions, SynthOptions};
use cnn3d::gpu::{list_adapters, BackendChoice, Gpu, GpuOptions, Precision, Tuning};

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

    /// Use every layer's default kernels instead of timing the candidates on this adapter at
    /// first use (the winners are cached in $CNN3D_CACHE_DIR, $XDG_CACHE_HOME/cnn3d or
    /// ~/.cache/cnn3d, tune.json). Also CNN3D_NO_TUNE=1.
    #[arg(long, global = true, env = "CNN3D_NO_TUNE", action = clap::ArgAction::SetTrue,
          value_parser = clap::builder::BoolishValueParser::new())]
    no_tune: bool,

    /// Open the device with WebGPU's default limits (128 MiB storage bindings, 256
    /// invocations and 16 KiB of workgroup memory a workgroup, …) instead of the adapter's: as
    /// a browser page that asks for nothing gets them. Also CNN3D_DEFAULT_LIMITS=1.
    #[arg(long, global = true, env = "CNN3D_DEFAULT_LIMITS", action = clap::ArgAction::SetTrue,
          value_parser = clap::builder::BoolishValueParser::new())]
    default_limits: bool,

    /// Open the device with at most this max_storage_buffer_binding_size (bytes), to see how
    /// a run fares on a GPU with smaller limits.
    #[arg(long, global = true, value_name = "BYTES", env = "CNN3D_MAX_STORAGE_BINDING")]
    max_storage_binding: Option<u64>,

    /// Open the device with at most this max_uniform_buffer_binding_size (bytes): below 65536
    /// the convolutions run their direct kernels, as on a GPU with small uniform bindings.
    #[arg(long, global = true, value_name = "BYTES", env = "CNN3D_MAX_UNIFORM_BINDING")]
    max_uniform_binding: Option<u64>,

    /// Open the device without subgroup operations even where the adapter has them, so the
    /// kernels that need none run instead (compare them with `profile`). Also
    /// CNN3D_NO_SUBGROUPS=1.
    #[arg(long, global = true, env = "CNN3D_NO_SUBGROUPS", action = clap::ArgAction::SetTrue,
          value_parser = clap::builder::BoolishValueParser::new())]
    no_subgroups: bool,

    /// What activations and their gradients are stored in: f32, or f16 on devices with
    /// shader-f16 (half the activation memory and traffic; parameters, optimizer state and
    /// every sum stay f32). Also CNN3D_PRECISION.
    #[arg(long, global = true, default_value = "f32", value_name = "f32|f16", env = "CNN3D_PRECISION")]
    precision: Precision,

    #[command(subcommand)]
    command: Command,
}

// Parsed once per run, so the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
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
        /// dropout, softmax_xent, optim, clip_grad_norm, gather); repeat or separate with commas.
        #[arg(long, value_delimiter = ',', value_name = "LAYER")]
        layer: Vec<String>,
        /// Also write every compute pipeline the check created (shader, entry point, override
        /// constants) to this JSON file, e.g. to compile them under Tint
        /// (tools/tint/validate.mjs --pipelines FILE).
        #[arg(long, value_name = "FILE.json")]
        pipelines: Option<PathBuf>,
    },
    /// Train a model (default: the article's 3D CNN on the bundled 3D digits).
    Train(Box<TrainArgs>),
    /// Evaluate a model.safetensors on a split: loss, accuracy, per-class accuracy and the
    /// confusion matrix (rows: true label, columns: predicted).
    Eval(Box<EvalArgs>),
    /// One CSV row per sample of a split: index, label, predicted class, then the class
    /// probabilities (or the logits with --logits).
    Predict(Box<PredictArgs>),
    /// Time every dispatch of a few training steps (on the bundled digits): a table per
    /// kernel, profile.json (Chrome trace: Perfetto, chrome://tracing) and profile.csv.
    Profile(ProfileArgs),
    /// Training and inference throughput, per-layer GFLOP/s and a GEMM reference, on this GPU.
    Bench(BenchArgs),
    /// Measure this GPU with cnn3d in one run: the adapter and its limits, `check`, training
    /// (batch 100 and 1000) and inference (100, 1000, 10,000) throughput, the top kernels of a
    /// training step and a GEMM (1024, 2048, 4096), each rate also as a fraction of the
    /// adapter's peak FP32 rate where known. Writes DIR/report.json and DIR/report.md.
    Report(ReportArgs),
    /// Write every shader as it is compiled (composed where a file builds on another, see
    /// DESIGN.md; at --precision f16 with f16 activations) to DIR, one `.wgsl` file each, to
    /// check them with other tools (naga, Tint).
    Shaders {
        /// The folder to write to (created if missing).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Write a trained model for PyTorch (model.py, an nn.Module whose state_dict the
    /// checkpoint loads into, and a copy of the weights) and/or as an ONNX graph (eval mode).
    Export(ExportArgs),
    /// Write the bundled dataset to HDF5, or inspect an HDF5 file (or the bundled dataset).
    Data {
        #[command(subcommand)]
        command: DataCommand,
    },
}

#[derive(clap::Args)]
struct TrainArgs {
    /// The model and training config (TOML) [default: the article's, assets/seed.toml].
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Epochs (overrides the config's train.epochs).
    #[arg(long)]
    epochs: Option<usize>,
    /// Samples per step (overrides train.batch_size).
    #[arg(long)]
    batch_size: Option<usize>,
    /// sgd, adam or adamw (overrides the config's optimizer; other options take that
    /// optimizer's defaults, the learning rate and schedule are kept).
    #[arg(long)]
    optimizer: Option<String>,
    /// Learning rate (overrides the config's).
    #[arg(long)]
    lr: Option<f64>,
    /// Seed of initialisation, shuffling, dropout and the bundled data (overrides train.seed).
    #[arg(long)]
    seed: Option<u64>,
    /// Start from these weights (a model.safetensors of the same model).
    #[arg(long, value_name = "FILE.safetensors")]
    init: Option<PathBuf>,
    /// Continue the run in DIR from its last checkpoint (its config.toml unless --config is
    /// given; --epochs may extend it). Ends with the same weights as an uninterrupted run.
    /// --data, --limit-train, --limit-test, --batch-size and --colormap default to the run's;
    /// a different --data, limit or batch size is refused.
    #[arg(long, value_name = "DIR")]
    resume: Option<PathBuf>,
    /// Keep the samples in file order.
    #[arg(long)]
    no_shuffle: bool,
    /// Use only the first N training samples.
    #[arg(long, value_name = "N")]
    limit_train: Option<usize>,
    /// Use only the first N test samples.
    #[arg(long, value_name = "N")]
    limit_test: Option<usize>,
    /// The run's folder [default: runs/<date-time>].
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// No progress output.
    #[arg(long)]
    quiet: bool,
    /// Print the summary as one JSON line on stdout at the end.
    #[arg(long)]
    json: bool,
    /// Time every dispatch of one training step in K and write the last such step to the
    /// run's profile.json (Chrome trace) and profile.csv.
    #[arg(long, value_name = "K", value_parser = clap::value_parser!(u64).range(1..))]
    profile_every: Option<u64>,
    /// Write the checkpoint (model, optimizer state, epoch) after every N-th epoch and after
    /// the last; --resume continues from the latest one.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    checkpoint_every: u64,
    /// Before each update, scale the gradients so that their total 2-norm is at most X
    /// (torch.nn.utils.clip_grad_norm_).
    #[arg(long, value_name = "X")]
    clip_grad_norm: Option<f32>,
    #[command(flatten)]
    data: DataArgs,
}

/// What `eval` and `predict` share: the model, its weights and the samples to run.
#[derive(clap::Args)]
struct ModelArgs {
    /// The weights: a model.safetensors (names and shapes are checked against the model).
    #[arg(long, value_name = "FILE.safetensors")]
    checkpoint: PathBuf,
    /// The model's config [default: config.toml beside the checkpoint if there is one (a run
    /// folder), else the article's model, assets/seed.toml].
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Which split to run over: test, train or val.
    #[arg(long, default_value = "test")]
    split: eval::SplitName,
    /// Samples per GPU batch [default: the config's train.batch_size].
    #[arg(long)]
    batch_size: Option<usize>,
    /// Seeds the bundled dataset and the carved splits [default: the config's train.seed,
    /// as in training].
    #[arg(long)]
    seed: Option<u64>,
    /// Use only the split's first N samples (as train's --limit-test).
    #[arg(long, value_name = "N")]
    limit: Option<usize>,
    #[command(flatten)]
    data: DataArgs,
}

#[derive(clap::Args)]
struct EvalArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Print one JSON document instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
struct PredictArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// The CSV file to write [default: stdout].
    #[arg(long, value_name = "FILE.csv")]
    out: Option<PathBuf>,
    /// Write the raw logits (l0..) instead of softmax probabilities (p0..).
    #[arg(long)]
    logits: bool,
}

#[derive(clap::Args)]
#[command(group = clap::ArgGroup::new("format").required(true).multiple(true).args(["torch", "onnx"]))]
struct ExportArgs {
    /// The weights: a model.safetensors (names and shapes are checked against the model).
    #[arg(long, value_name = "FILE.safetensors")]
    checkpoint: PathBuf,
    /// The model's config [default: config.toml beside the checkpoint if there is one (a run
    /// folder), else the article's model, assets/seed.toml].
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Write DIR/model.py (the PyTorch module and the run's preprocessing) and
    /// DIR/model.safetensors (the weights).
    #[arg(long, value_name = "DIR")]
    torch: Option<PathBuf>,
    /// Write the eval-mode network as ONNX (opset 17; input (N, C, D, H, W) float32 named
    /// "input", output "logits").
    #[arg(long, value_name = "FILE.onnx")]
    onnx: Option<PathBuf>,
}

#[derive(clap::Args)]
struct ReportArgs {
    /// Where report.json and report.md go (created if missing).
    #[arg(long, value_name = "DIR", default_value = ".")]
    out: PathBuf,
    /// Measure less (training at batch 100, inference at 100 and 1000, a 1024³ GEMM, 2
    /// repetitions): for CPU drivers such as lavapipe and SwiftShader.
    #[arg(long)]
    quick: bool,
    /// The adapter's peak FP32 rate in TFLOP/s, for an adapter cnn3d's table does not know.
    #[arg(long, value_name = "TFLOPS")]
    peak_tflops: Option<f64>,
}

#[derive(clap::Args)]
struct ProfileArgs {
    /// The model and training config (TOML) [default: the article's, assets/seed.toml].
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Samples per step [default: the config's train.batch_size].
    #[arg(long)]
    batch_size: Option<usize>,
    /// Profiled steps.
    #[arg(long, default_value_t = 2)]
    steps: usize,
    /// Untimed steps first (pipeline warm-up, first-touch allocations).
    #[arg(long, default_value_t = 1)]
    warmup: usize,
    /// Where profile.json and profile.csv go.
    #[arg(long, value_name = "DIR", default_value = ".")]
    out: PathBuf,
    /// Print the per-kernel table and the steps as one JSON document instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
struct BenchArgs {
    /// The model and training config (TOML) [default: the article's, assets/seed.toml].
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Training samples per step [default: the config's train.batch_size].
    #[arg(long)]
    batch_size: Option<usize>,
    /// Timed repetitions of each measurement (median, min and max are reported).
    #[arg(long, default_value_t = 3)]
    reps: usize,
    /// Untimed runs before each measurement.
    #[arg(long, default_value_t = 1)]
    warmup: usize,
    /// Inference batch sizes; a batch this adapter cannot hold runs as equal micro-batches
    /// that it can (or is reported as skipped when not even one sample fits).
    #[arg(long, value_delimiter = ',', default_value = "100,1000", value_name = "N,...")]
    infer_batch: Vec<usize>,
    /// M = N = K of the GEMM microbenchmark (the dense kernel).
    #[arg(long, default_value_t = 512, value_name = "N")]
    gemm_size: usize,
    /// Print one JSON document instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
enum DataCommand {
    /// Write the bundled 3D digits in the 3D MNIST layout (X_train (N, 4096) float32, y_train,
    /// X_test, y_test), so that the HDF5 path and the bundled path are one path.
    Synth {
        /// The HDF5 file to write.
        #[arg(long, value_name = "FILE.h5")]
        out: PathBuf,
        /// Training samples (balanced over the 10 digits).
        #[arg(long, default_value_t = SynthOptions::default().train)]
        train: usize,
        /// Test samples (0: no test datasets).
        #[arg(long, default_value_t = SynthOptions::default().test)]
        test: usize,
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    /// Load a file (or the bundled dataset) as training would and print its datasets, shapes,
    /// dtypes, value ranges and label histograms. A file training could not read is an error
    /// (exit code 2) saying why.
    Inspect {
        /// The HDF5 file (the same as --data); without one, the bundled dataset.
        #[arg(value_name = "FILE.h5", conflicts_with = "data")]
        file: Option<PathBuf>,
        /// Print one JSON document instead of text.
        #[arg(long)]
        json: bool,
        /// The model's class count: labels must lie in 0..CLASSES.
        #[arg(long, default_value_t = 10)]
        classes: usize,
        /// Seeds the bundled dataset and the carved splits.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        #[command(flatten)]
        data: DataArgs,
    },
}

/// Where the data comes from and how it becomes the model's input: the flags of `train`,
/// `eval` and `data inspect`.
#[derive(clap::Args, Clone, Debug)]
struct DataArgs {
    /// An HDF5 file, e.g. Kaggle's 3D MNIST full_dataset_vectors.h5 (default: the bundled digits).
    #[arg(long, value_name = "FILE.h5")]
    data: Option<PathBuf>,
    /// How a sample's values are laid out: auto, flat (N, V), ndhw, ndhwc (channels-last) or
    /// ncdhw (channels-first).
    #[arg(long, default_value = "auto")]
    layout: Layout,
    /// The volume's shape for flat vectors whose length is not a cube.
    #[arg(long, value_name = "D,H,W", value_parser = parse_dims)]
    shape: Option<[usize; 3]>,
    /// The dataset of training volumes (a path such as train/volumes works too).
    #[arg(long, default_value = "X_train", value_name = "NAME")]
    x_train_key: String,
    /// The dataset of training labels.
    #[arg(long, default_value = "y_train", value_name = "NAME")]
    y_train_key: String,
    /// The dataset of test volumes [default: X_test if the file has it].
    #[arg(long, value_name = "NAME")]
    x_test_key: Option<String>,
    /// The dataset of test labels [default: y_test if the file has it].
    #[arg(long, value_name = "NAME")]
    y_test_key: Option<String>,
    /// Fraction of the training data held out for testing, for files without test data
    /// [default: 0.2 for such files].
    #[arg(long, value_name = "FRACTION")]
    test_split: Option<f64>,
    /// Fraction of the training data (after any test split) held out for validation.
    #[arg(long, default_value_t = 0.0, value_name = "FRACTION")]
    val_split: f64,
    /// oranges: the article's per-sample min-max scaling and matplotlib's "Oranges" RGB
    /// (3 input channels); none: the raw values (one input channel per data channel)
    /// [default: oranges; for eval and predict, what the checkpoint was trained on].
    #[arg(long)]
    colormap: Option<Colormap>,
    /// Reproduce the article's plain reshape(N, 3, 16, 16, 16) of channels-last RGB, which
    /// scrambles channels and voxels, instead of the correct transpose (for parity with its code
    /// and weights).
    #[arg(long)]
    article_reshape: bool,
}

fn parse_dims(s: &str) -> Result<[usize; 3], cnn3d::data::DataError> {
    data::parse_dims(s)
}

impl DataArgs {
    /// The library's options; `classes` comes from the model, `seed` from the run.
    fn options(&self, classes: usize, seed: u64) -> DataOptions {
        DataOptions {
            data: self.data.clone(),
            load: LoadOptions {
                layout: self.layout,
                shape: self.shape,
                keys: Keys {
                    x_train: self.x_train_key.clone(),
                    y_train: self.y_train_key.clone(),
                    x_test: self.x_test_key.clone(),
                    y_test: self.y_test_key.clone(),
                },
                classes,
            },
            synth: SynthOptions { seed, ..Default::default() },
            test_split: self.test_split,
            val_split: self.val_split,
            seed,
            colormap: self.colormap.unwrap_or_default(),
            article_reshape: self.article_reshape,
        }
    }
}

fn main() -> ExitCode {
    quiet_device_select();
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
            // Ctrl-C: the shell's convention for a run ended by SIGINT.
            if matches!(e.downcast_ref::<cnn3d::Error>(), Some(cnn3d::Error::Interrupted { .. })) {
                return ExitCode::from(130);
            }
            // Bad user input (flags naming things that do not exist, unusable data files) exits with 2.
            let data_error = e.downcast_ref::<cnn3d::data::DataError>().is_some();
            let user_error = data_error || e.downcast_ref::<cnn3d::Error>().is_some_and(|e| {
                matches!(
                    e,
                    cnn3d::Error::AdapterNotFound { .. }
                        | cnn3d::Error::UnknownBackend(_)
                        | cnn3d::Error::UnknownKernel(_)
                        | cnn3d::Error::Data(_)
                        | cnn3d::Error::Config { .. }
                        | cnn3d::Error::InvalidOption { .. }
                        | cnn3d::Error::NotSafetensors { .. }
                        | cnn3d::Error::TensorMissing { .. }
                        | cnn3d::Error::TensorUnexpected { .. }
                        | cnn3d::Error::TensorMismatch { .. }
                        | cnn3d::Error::Shape { .. }
                        | cnn3d::Error::TooLarge { .. }
                        | cnn3d::Error::BatchTooLarge { .. }
                        | cnn3d::Error::Export { .. }
                ) || e.is_unreadable_input()
            });
            ExitCode::from(if user_error { 2 } else { 1 })
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    // `check` runs every kernel itself; tuning would only cost time there.
    let tune = if cli.no_tune || matches!(cli.command, Command::Check { .. } | Command::Adapters { .. }) {
        Tuning::Off
    } else {
        Tuning::On { cache: cnn3d::tune::default_cache() }
    };
    let opts = GpuOptions { backend: cli.backend, adapter: cli.adapter.clone(), default_limits: cli.default_limits, max_storage_binding: cli.max_storage_binding, max_uniform_binding: cli.max_uniform_binding, tune, no_subgroups: cli.no_subgroups, precision: cli.precision };
    match cli.command {
        Command::Adapters { json } => adapters(cli.backend, json),
        Command::Check { json, layer, pipelines } => check_cmd(&opts, json, &layer, pipelines.as_deref()),
        Command::Train(args) => train_cmd(&opts, &args),
        Command::Eval(args) => eval_cmd(&opts, &args),
        Command::Predict(args) => predict_cmd(&opts, &args),
        Command::Profile(args) => profile_cmd(&opts, &args),
        Command::Bench(args) => bench_cmd(&opts, &args),
        Command::Shaders { out } => shaders_cmd(&out, cli.precision),
        Command::Export(args) => export_cmd(&args),
        Command::Report(args) => report_cmd(&opts, &args),
        Command::Data { command: DataCommand::Synth { out, train, test, seed } } => synth_cmd(&out, train, test, seed),
        Command::Data { command: DataCommand::Inspect { file, json, classes, seed, mut data } } => {
            data.data = file.or(data.data);
            inspect_cmd(&data, classes, seed, json)
        }
    }
}

fn train_cmd(opts: &GpuOptions, args: &TrainArgs) -> anyhow::Result<ExitCode> {
    let origin = match (&args.config, &args.resume) {
        (Some(path), _) => path.clone(),
        (None, Some(dir)) => dir.join("config.toml"),
        (None, None) => PathBuf::from("assets/seed.toml"),
    };
    let mut config = match (&args.config, &args.resume) {
        (None, None) => train::Config::seed(),
        _ => train::Config::load(&origin)?,
    };
    if let Some(e) = args.epochs {
        config.train.epochs = e;
    }
    // --resume continues the run on the data its checkpoint records: the data flags not given
    // take the recorded values (train refuses a given one that differs, naming both).
    let recorded = match &args.resume {
        Some(dir) => train::RecordedData::of_run(dir)?,
        None => train::RecordedData::default(),
    };
    if let Some(b) = args.batch_size.or(recorded.batch_size) {
        config.train.batch_size = b;
    }
    if let Some(s) = args.seed {
        config.train.seed = s;
    }
    if args.no_shuffle {
        config.train.shuffle = false;
    }
    if let Some(kind) = &args.optimizer {
        config.optimizer = config.optimizer.with_kind(kind)?;
    }
    if let Some(lr) = args.lr {
        config.optimizer.rule.set_lr(lr);
    }
    config.validate("the command line")?;
    let out = args.out.clone().or_else(|| args.resume.clone()).unwrap_or_else(default_run_dir);
    let mut data = args.data.options(config.model.classes, config.train.seed);
    if let Some(dir) = &args.resume {
        data.data = recorded.data_file(dir, args.data.data.as_deref())?;
    }
    // A resumed run feeds the model what it was trained on unless the flags say otherwise.
    if let (Some(dir), None) = (&args.resume, args.data.colormap) {
        let (colormap, reshape) = eval::recorded_input(&dir.join("model.safetensors"))?;
        data.colormap = colormap.unwrap_or_default();
        data.article_reshape |= reshape;
    }
    let run = train::RunOptions {
        data,
        config,
        init: args.init.clone(),
        resume: args.resume.clone(),
        limit_train: args.limit_train.or(recorded.limit_train),
        limit_test: args.limit_test.or(recorded.limit_test),
        out: out.clone(),
        quiet: args.quiet,
        profile_every: args.profile_every,
        checkpoint_every: args.checkpoint_every as usize,
        clip_grad_norm: args.clip_grad_norm,
        stop: Some(stop_on_ctrl_c()?),
    };
    let gpu = Gpu::new(opts)?;
    let summary = train::train(&gpu, &run).map_err(|e| e.in_config(&origin.display().to_string()))?;
    if !args.quiet {
        eprintln!(
            "test accuracy {:.2}%, test loss {:.4}, {:.0} training samples/s, {:.1} s, {:.1} MiB of GPU memory; wrote {}",
            summary.test_acc * 100.0,
            summary.test_loss,
            summary.samples_per_s,
            summary.seconds,
            summary.gpu_memory_bytes.unwrap_or(0) as f64 / MIB,
            out.display()
        );
    }
    if args.json {
        println!("{}", summary.to_json_line());
    }
    Ok(ExitCode::SUCCESS)
}

/// A flag that the first Ctrl-C sets (the run ends after its current step, with a
/// checkpoint); a second Ctrl-C quits at once.
fn stop_on_ctrl_c() -> anyhow::Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
        eprintln!("\nstopping after this step and saving a checkpoint (Ctrl-C again to quit now)");
    })
    .context("installing the Ctrl-C handler")?;
    Ok(stop)
}

/// The config, data and weights `eval` and `predict` run with; also the config's origin.
fn eval_options(args: &ModelArgs) -> anyhow::Result<(eval::EvalOptions, String)> {
    let (config, origin) = eval::resolve_config(&args.checkpoint, args.config.as_deref())?;
    let seed = args.seed.unwrap_or(config.train.seed);
    let mut data = args.data.options(config.model.classes, seed);
    // Feed the model what it was trained on unless the flags say otherwise.
    let (colormap, reshape) = eval::recorded_input(&args.checkpoint)?;
    if args.data.colormap.is_none() {
        data.colormap = colormap.unwrap_or_default();
    }
    data.article_reshape |= reshape && data.colormap == Colormap::Oranges;
    let batch_size = args.batch_size.unwrap_or(config.train.batch_size);
    let opts = eval::EvalOptions { checkpoint: args.checkpoint.clone(), config, data, split: args.split, batch_size, limit: args.limit };
    Ok((opts, origin))
}

fn eval_cmd(opts: &GpuOptions, args: &EvalArgs) -> anyhow::Result<ExitCode> {
    let (eopts, origin) = eval_options(&args.model)?;
    let gpu = Gpu::new(opts)?;
    let out = eval::run(&gpu, &eopts).map_err(|e| e.in_config(&origin))?;
    let report = eval::Report::new(&out, &eopts.checkpoint, &origin, eopts.split);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.text());
    }
    Ok(ExitCode::SUCCESS)
}

fn predict_cmd(opts: &GpuOptions, args: &PredictArgs) -> anyhow::Result<ExitCode> {
    let (eopts, origin) = eval_options(&args.model)?;
    let gpu = Gpu::new(opts)?;
    let out = eval::run(&gpu, &eopts).map_err(|e| e.in_config(&origin))?;
    match &args.out {
        Some(path) => {
            let mut bytes = vec![];
            eval::write_csv(&out, args.logits, &mut bytes)?;
            cnn3d::atomic::write_atomic(path, &bytes)?;
            eprintln!("wrote {} predictions to {}", out.labels.len(), path.display());
        }
        None => {
            let stdout = std::io::stdout();
            let mut lock = std::io::BufWriter::new(stdout.lock());
            eval::write_csv(&out, args.logits, &mut lock)?;
            lock.flush()?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The config of `profile` and `bench`: a file or the seed, with the batch size overridden.
fn bench_config(path: Option<&Path>, batch: Option<usize>) -> anyhow::Result<train::Config> {
    let mut config = match path {
        Some(path) => train::Config::load(path)?,
        None => train::Config::seed(),
    };
    if let Some(b) = batch {
        config.train.batch_size = b;
    }
    config.validate("the command line")?;
    Ok(config)
}

fn profile_cmd(opts: &GpuOptions, args: &ProfileArgs) -> anyhow::Result<ExitCode> {
    let config = bench_config(args.config.as_deref(), args.batch_size)?;
    let gpu = Gpu::new(opts)?;
    let popts = profile::ProfileOptions { batch: config.train.batch_size, steps: args.steps, warmup: args.warmup };
    let steps = profile::profile_training(&gpu, &config, &popts)?;
    profile::write_profile(&args.out, &steps, gpu.info())?;
    if args.json {
        let doc = serde_json::json!({
            "adapter": gpu.info(),
            "timing": gpu.timing_method(),
            "batch_size": popts.batch,
            "kernels": profile::kernel_table(&steps),
            "steps": steps.iter().map(|s| serde_json::json!({
                "gpu_ms": s.gpu_ns() as f64 / 1e6,
                "wall_ms": s.wall_ns as f64 / 1e6,
                "dispatches": s.dispatches,
            })).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        let i = gpu.info();
        println!("adapter: {} ({}, {} {}), batch {}", i.name, i.backend, i.driver, i.driver_info, popts.batch);
        print!("{}", profile::format_table(&steps));
        println!("wrote {} and {}", args.out.join("profile.json").display(), args.out.join("profile.csv").display());
    }
    Ok(ExitCode::SUCCESS)
}

fn bench_cmd(opts: &GpuOptions, args: &BenchArgs) -> anyhow::Result<ExitCode> {
    let config = bench_config(args.config.as_deref(), args.batch_size)?;
    let gpu = Gpu::new(opts)?;
    let bopts = profile::BenchOptions {
        batch: config.train.batch_size,
        reps: args.reps,
        warmup: args.warmup,
        infer_batches: args.infer_batch.clone(),
        gemm_size: args.gemm_size,
    };
    let r = profile::bench(&gpu, &config, &bopts)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(ExitCode::SUCCESS);
    }
    let a = &r.adapter;
    let subgroups = a.subgroup_size.map_or("no subgroups".to_string(), |s| format!("subgroups of {s}"));
    println!("adapter: {} ({}, {}, {} {}, {subgroups}), wgpu {}", a.name, a.backend, a.device_type, a.driver, a.driver_info, r.wgpu_version);
    println!("model: input {:?}, {} parameters; {} warm-up + {} timed runs each", r.input, r.parameters, r.warmup, r.reps);
    for t in &r.train {
        let s = &t.samples_per_s;
        println!("train {:<5} batch {:>5}: {:>10.1} samples/s (min {:.1}, max {:.1})", t.optimizer, t.batch, s.median, s.min, s.max);
    }
    for i in &r.inference {
        match (&i.samples_per_s, &i.skipped) {
            (Some(s), _) => {
                let micro = i.micro_batch.map(|m| format!(", as {} micro-batches of {m} (adapter limits)", i.batch / m)).unwrap_or_default();
                println!("infer       batch {:>5}: {:>10.1} samples/s (min {:.1}, max {:.1}{micro})", i.batch, s.median, s.min, s.max)
            }
            (None, why) => println!("infer       batch {:>5}: skipped: {}", i.batch, why.as_deref().unwrap_or("")),
        }
    }
    println!("per layer (one SGD step, {}):", r.timing.describe());
    for l in &r.layers {
        let opt = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| format!("{v:.2}"));
        println!("  {:<24} {:>10.3} ms {:>6.1}% {:>9} GFLOP/s {:>8} GB/s", l.layer, l.ms, 100.0 * l.share, opt(l.gflops), opt(l.gbps));
    }
    let m = &r.memory;
    println!(
        "gpu memory, training at batch {}: {:.1} MiB ({:.1} MiB of it the bench's {} samples; a dataset of N samples adds {:.1} KiB each)",
        m.batch,
        m.train_bytes as f64 / MIB,
        m.dataset_bytes as f64 / MIB,
        m.dataset_samples,
        m.bytes_per_sample as f64 / 1024.0
    );
    let g = &r.gemm;
    for c in &g.candidates {
        println!("gemm {}x{}x{} {:<36} {:>10.3} ms {:>8.2} GFLOP/s", g.m, g.n, g.k, c.kernel, c.ms.median, c.gflops);
    }
    println!("best gemm: {} at {:.2} GFLOP/s", g.kernel, g.gflops);
    println!("conv3d passes of the SGD step (packing included), each rep a profiled step then the best gemm; medians:");
    for c in &r.conv_passes {
        let gflops = c.gflops.as_ref().map_or_else(|| "-".to_string(), |s| format!("{:.2}", s.median));
        let of = c.of_gemm.as_ref().map_or_else(|| "-".to_string(), |s| format!("{:.0}% ({:.0}–{:.0}%)", 100.0 * s.median, 100.0 * s.min, 100.0 * s.max));
        println!("  {:<16} {:<16} {:>10.3} ms {:>9} GFLOP/s {:>5} of the gemm", c.layer, c.pass, c.ms.median, gflops, of);
    }
    Ok(ExitCode::SUCCESS)
}

const MIB: f64 = 1024.0 * 1024.0;

/// `runs/<UTC date-time>`, from the system clock (no time-zone database needed).
fn default_run_dir() -> PathBuf {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    PathBuf::from(format!("runs/{y:04}-{m:02}-{d:02}_{:02}-{:02}-{:02}", rem / 3600, rem % 3600 / 60, rem % 60))
}

/// Mesa's device-select Vulkan layer connects to Wayland to order the GPUs it reports; on a
/// machine without a session, libwayland then prints "error: XDG_RUNTIME_DIR is invalid or not
/// set in the environment." on every start. cnn3d orders the adapters itself (discrete first),
/// so there the layer is turned off (`NODEVICE_SELECT`, which the layer reads) unless the user
/// set it. Runs first, before any thread exists.
fn quiet_device_select() {
    let session = std::env::var_os("XDG_RUNTIME_DIR").is_some_and(|d| Path::new(&d).is_dir());
    if !session && std::env::var_os("NODEVICE_SELECT").is_none() {
        std::env::set_var("NODEVICE_SELECT", "1");
    }
}

fn shaders_cmd(out: &Path, precision: Precision) -> anyhow::Result<ExitCode> {
    for &shader in cnn3d::gpu::Shader::ALL {
        let path = out.join(format!("{}.wgsl", shader.name()));
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| cnn3d::Error::io(dir, "creating", e))?;
        }
        std::fs::write(&path, shader.source_at(precision)).map_err(|e| cnn3d::Error::io(&path, "writing", e))?;
        println!("{}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn report_cmd(opts: &GpuOptions, args: &ReportArgs) -> anyhow::Result<ExitCode> {
    let gpu = Gpu::new(opts)?;
    let ropts = cnn3d::report::ReportOptions { quick: args.quick, peak_tflops: args.peak_tflops };
    let start = std::time::Instant::now();
    let mut progress = |what: &str| eprintln!("[{:>5.0} s] {what}", start.elapsed().as_secs_f64());
    let report = cnn3d::report::run(&gpu, &train::Config::seed(), &ropts, &mut progress)?;
    std::fs::create_dir_all(&args.out).map_err(|e| cnn3d::Error::io(&args.out, "creating the folder", e))?;
    let json = args.out.join("report.json");
    let md = args.out.join("report.md");
    cnn3d::atomic::write_atomic(&json, format!("{}\n", serde_json::to_string_pretty(&report)?).as_bytes())?;
    cnn3d::atomic::write_atomic(&md, cnn3d::report::markdown(&report).as_bytes())?;
    println!("{} of {} kernels pass; wrote {} and {} ({:.0} s)", report.check.passed, report.check.kernels, json.display(), md.display(), report.seconds);
    Ok(if report.check.passed == report.check.kernels { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

fn export_cmd(args: &ExportArgs) -> anyhow::Result<ExitCode> {
    let e = cnn3d::export::Exportable::load(&args.checkpoint, args.config.as_deref())?;
    if let Some(dir) = &args.torch {
        for path in cnn3d::export::write_torch(&e, dir)? {
            println!("wrote {}", path.display());
        }
    }
    if let Some(path) = &args.onnx {
        cnn3d::export::write_onnx(&e, path)?;
        println!("wrote {} (ONNX opset {})", path.display(), cnn3d::export::onnx::OPSET);
    }
    Ok(ExitCode::SUCCESS)
}

fn synth_cmd(out: &Path, train: usize, test: usize, seed: u64) -> anyhow::Result<ExitCode> {
    let ds = data::synth::generate(&SynthOptions { train, test, seed })?;
    data::hdf5::write(out, &ds)?;
    println!(
        "wrote {}: {} training and {} test samples of {:?} voxels, 10 digits, seed {seed}",
        out.display(),
        ds.train.len(),
        ds.test.len(),
        ds.dims
    );
    Ok(ExitCode::SUCCESS)
}

fn inspect_cmd(args: &DataArgs, classes: usize, seed: u64, json: bool) -> anyhow::Result<ExitCode> {
    let opts = args.options(classes, seed);
    let datasets = match &opts.data {
        Some(path) => data::hdf5::list(path)?,
        None => vec![],
    };
    let ds = data::load(&opts)?;
    let input = Input::new(&ds, opts.colormap, opts.article_reshape)?;
    let summary = ds.summary();
    if json {
        let doc = serde_json::json!({
            "source": ds.source,
            "datasets": datasets,
            "summary": summary,
            "input": {
                "colormap": input.colormap,
                "article_reshape": input.article_reshape,
                "channels": input.channels(),
                "dims": input.dims,
            },
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("source: {}", ds.source);
    if !datasets.is_empty() {
        println!("datasets:");
        let width = datasets.iter().map(|d| d.name.len()).max().unwrap_or(0);
        for d in &datasets {
            println!("  {:<width$}  {:<18} {}", d.name, format!("{:?}", d.shape), d.dtype);
        }
    }
    println!("loaded: {} channel(s) of {:?} voxels, {} classes", ds.channels, ds.dims, ds.classes);
    for s in &summary.splits {
        println!(
            "  {:<5} {:<22} values {:.6} .. {:.6}  mean {:.6}  nonzero {:.1}%",
            s.name,
            format!("{:?}", s.shape),
            s.min,
            s.max,
            s.mean,
            100.0 * s.nonzero
        );
        let hist: Vec<String> = s.label_histogram.iter().enumerate().map(|(c, n)| format!("{c}:{n}")).collect();
        println!("        labels {}", hist.join(" "));
    }
    let how = match (input.colormap, input.article_reshape) {
        (Colormap::None, _) => "raw values",
        (Colormap::Oranges, false) => "per-sample min-max, Oranges RGB, channels first",
        (Colormap::Oranges, true) => "per-sample min-max, Oranges RGB, the article's plain reshape",
    };
    println!("input: {} channel(s) of {:?} ({how})", input.channels(), input.dims);
    Ok(ExitCode::SUCCESS)
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
            "    timestamps: {}, timestamps inside passes: {}, f16: {}, subgroups: {}",
            yes(a.timestamp_query),
            yes(a.timestamp_query_inside_passes),
            yes(a.shader_f16),
            if a.subgroups { format!("yes ({}–{} lanes)", a.subgroup_sizes.0, a.subgroup_sizes.1) } else { "no".to_string() }
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn yes(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

fn check_cmd(opts: &GpuOptions, json: bool, layers: &[String], pipelines: Option<&Path>) -> anyhow::Result<ExitCode> {
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
    if let Some(path) = pipelines {
        let text = format!("{}\n", serde_json::to_string_pretty(&gpu.pipelines_used())?);
        cnn3d::atomic::write_atomic(path, text.as_bytes())?;
    }
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
        for r in reports.iter().filter(|r| !r.variants.is_empty()) {
            println!("{:<28} ran with {}", r.name, r.variants.join(", "));
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
