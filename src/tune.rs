//! Kernel tuning: where a layer has several kernels for a pass, time each on this adapter at
//! the layer's real shape, keep only those whose output matches the CPU reference, and take
//! the fastest. Winners are cached per (adapter, driver, geometry) in a JSON file, so a later
//! run starts at once; [`Tuning::Off`] (`--no-tune`) takes the defaults.
//!
//! On a CPU adapter such as lavapipe the tiled convolution kernels win; on a discrete GPU the
//! balance between uniform-buffer blocks and direct loads differs, and the tuner finds out.

use std::collections::BTreeMap;
use std::path::Path;

use crate::error::{Error, Result};
use crate::gpu::{Buffer, Gpu, Tuning};
use crate::layers::conv3d::{Conv3d, ConvChoice, ConvScratch};
use crate::Instant;

// Timing and verifying candidates blocks on the GPU: native only.
#[cfg(feature = "native")]
mod measure;
#[cfg(feature = "native")]
use measure::measure;
#[cfg(feature = "native")]
pub use measure::tamper_with_outputs;

/// Without blocking GPU waits (in a browser) nothing is timed: every layer takes its default
/// kernels, as with [`Tuning::Off`].
#[cfg(not(feature = "native"))]
fn measure(gpu: &Gpu, g: &Conv3d, _backward_input: bool) -> Result<ConvChoice> {
    log::warn!("kernel tuning needs blocking GPU waits (feature `native`); conv3d takes its default kernels");
    Ok(g.default_choice(gpu))
}


/// The version a cache must carry to be read: cnn3d's, and a revision of the candidate set
/// (raised when kernels are added or changed, so that old choices are measured again).
const CACHE_VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " kernels 7");

/// The cache file: tuning results by key, with the version of cnn3d that measured them.
#[derive(Default, serde::Serialize, serde::Deserialize)]
struct CacheFile {
    version: String,
    conv3d: BTreeMap<String, ConvChoice>,
}

/// The default cache file: `$CNN3D_CACHE_DIR/tune.json`, else `$XDG_CACHE_HOME/cnn3d/tune.json`,
/// else `~/.cache/cnn3d/tune.json`; none when there is no home directory.
pub fn default_cache() -> Option<std::path::PathBuf> {
    let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(std::path::PathBuf::from);
    let dir = var("CNN3D_CACHE_DIR")
        .or_else(|| var("XDG_CACHE_HOME").map(|d| d.join("cnn3d")))
        .or_else(|| var("HOME").map(|h| h.join(".cache").join("cnn3d")))?;
    Some(dir.join("tune.json"))
}

fn key(gpu: &Gpu, g: &Conv3d) -> String {
    let i = gpu.info();
    format!(
        "{} | {} {} | {}{}{} | n{} ci{} co{} in{:?} k{:?} s{:?} p{:?} d{:?}{}",
        i.name,
        i.driver,
        i.driver_info,
        i.backend,
        // The same adapter opened without subgroups (--no-subgroups) has other candidates.
        gpu.subgroup_size().map(|s| format!(" subgroups {s}")).unwrap_or_default(),
        // And at f16 other candidates, other costs.
        if gpu.precision() == crate::gpu::Precision::F32 { String::new() } else { format!(" {}", gpu.precision()) },
        g.n,
        g.c_in,
        g.c_out,
        g.input,
        g.kernel,
        g.stride,
        g.padding,
        g.dilation,
        if g.has_bias { " bias" } else { "" }
    )
}

/// A cache that cannot be read is ignored (with a warning) and rewritten: tuning again is
/// always safe.
fn read_cache(path: &Path) -> CacheFile {
    match std::fs::read(path) {
        Ok(bytes) => match serde_json::from_slice::<CacheFile>(&bytes) {
            Ok(c) if c.version == CACHE_VERSION => c,
            Ok(c) => {
                log::info!("the tuning cache {} is from cnn3d {}; tuning again", path.display(), c.version);
                CacheFile::default()
            }
            Err(e) => {
                log::warn!("ignoring the tuning cache {}: {e}; tuning again", path.display());
                CacheFile::default()
            }
        },
        Err(_) => CacheFile::default(),
    }
}

/// Adds one result to the cache file. Read, merge and the atomic replace happen under an
/// exclusive lock on a lock file beside it, so two runs tuning at once both keep their
/// results, and a reader never sees half a file.
fn write_cache(path: &Path, key: &str, choice: ConvChoice) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, "creating", e))?;
    }
    let lock_path = path.with_extension("json.lock");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| Error::io(&lock_path, "opening", e))?;
    lock.lock().map_err(|e| Error::io(&lock_path, "locking", e))?;
    let mut c = read_cache(path);
    c.version = CACHE_VERSION.to_string();
    c.conv3d.insert(key.to_string(), choice);
    let json = serde_json::to_vec_pretty(&c).map_err(|e| Error::shape("tuning cache", e.to_string()))?;
    crate::atomic::write_atomic(path, &json)
    // The lock goes with `lock`.
}

/// Whether a cached choice can still run `g` on `gpu` (its kernels are among today's
/// candidates for this device): a cache written before a driver update, or by a build with
/// other kernels, may name one that no longer can.
fn still_applies(gpu: &Gpu, g: &Conv3d, c: ConvChoice) -> bool {
    let (kernels, weight) = g.candidates(gpu);
    kernels.contains(&c.forward) && kernels.contains(&c.backward_input) && weight.contains(&c.backward_weight)
}

/// The kernels and buffers the passes of `g` run with on `gpu`: tuned for this adapter and
/// geometry where the adapter was opened with tuning on, else [`Conv3d::default_choice`].
/// `backward_input`: whether that pass will run (a first layer needs no input gradient; it is
/// then not tuned). `x`: the input buffer the passes will read, if known (see
/// [`Conv3d::scratch_for`]). The kernel choice sits here, above the layers: a layer computes
/// with the kernels it is given.
pub fn scratch(gpu: &Gpu, g: &Conv3d, backward_input: bool, x: Option<&Buffer>) -> Result<ConvScratch> {
    let choice = conv3d(gpu, g, backward_input)?;
    g.scratch_for(gpu, choice, x)
}

/// This process's choices are kept on the device (`Gpu::tuned`), by key, as JSON.
fn memo_get(gpu: &Gpu, key: &str) -> Option<ConvChoice> {
    gpu.tuned.lock().expect("tuning memo").get(key).and_then(|v| serde_json::from_str(v).ok())
}

fn memo_put(gpu: &Gpu, key: String, c: ConvChoice) {
    let v = serde_json::to_string(&c).expect("a choice serialises");
    gpu.tuned.lock().expect("tuning memo").insert(key, v);
}

/// The kernels `g` runs with on `gpu`: the defaults without tuning, else the cached or newly
/// measured winners. Without `backward_input` (a first layer needs no input gradient) that
/// pass keeps its default and is not timed.
pub fn conv3d(gpu: &Gpu, g: &Conv3d, backward_input: bool) -> Result<ConvChoice> {
    let cache = match &gpu.tuning {
        Tuning::Off => return Ok(g.default_choice(gpu)),
        Tuning::On { cache } => cache,
    };
    let key = format!("{}{}", key(gpu, g), if backward_input { "" } else { " no-dx" });
    if let Some(c) = memo_get(gpu, &key) {
        return Ok(c);
    }
    if let Some(path) = cache.as_deref() {
        match read_cache(path).conv3d.get(&key).copied() {
            Some(c) if still_applies(gpu, g, c) => {
                memo_put(gpu, key, c);
                return Ok(c);
            }
            Some(c) => log::warn!("the tuning cache {} names {c} for a layer that cannot run it on this device; tuning again", path.display()),
            None => {}
        }
    }
    let started = Instant::now();
    let choice = gpu.without_transient_peak(|| measure(gpu, g, backward_input))?;
    log::info!("tuned conv3d {key}: {choice} in {:.1} s", started.elapsed().as_secs_f64());
    if let Some(path) = cache {
        if let Err(e) = write_cache(path, &key, choice) {
            log::warn!("could not write the tuning cache {}: {e}", path.display());
        }
    }
    memo_put(gpu, key, choice);
    Ok(choice)
}
