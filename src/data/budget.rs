//! How much memory loading data may take: the cap that every HDF5 read and the bundled
//! digits are checked against before anything is allocated.

use super::DataError;

/// How a dataset's values are stored (what reading them costs per value).
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(not(feature = "hdf5"), allow(dead_code))]
pub(crate) enum DataType {
    U8,
    F16,
    F32,
    F64,
}

/// The environment variable that sets the most bytes of memory loading a data file may take.
pub const MAX_DATA_BYTES_ENV: &str = "CNN3D_MAX_DATA_BYTES";

/// The cap without [`MAX_DATA_BYTES_ENV`]: 16 GiB (3D MNIST's 12,000 samples take 0.2 GB), or
/// the memory available now where that is less.
pub const DEFAULT_MAX_DATA_BYTES: u64 = 16 << 30;

/// How many bytes loading may still take: the cap, where it comes from, what is taken so far.
#[cfg_attr(not(feature = "hdf5"), allow(dead_code))]
pub(crate) struct Budget {
    pub(crate) cap: u64,
    pub(crate) source: String,
    used: u64,
}

impl Budget {
    /// The cap: [`MAX_DATA_BYTES_ENV`] where set, else [`DEFAULT_MAX_DATA_BYTES`] or the memory
    /// available now where that is less.
    pub(crate) fn new() -> Result<Budget, DataError> {
        if let Ok(v) = std::env::var(MAX_DATA_BYTES_ENV) {
            let cap = v.trim().parse::<u64>().map_err(|_| {
                DataError::Parse(format!("{MAX_DATA_BYTES_ENV}={v:?}: expected a number of bytes, such as 34359738368 for 32 GiB"))
            })?;
            return Ok(Budget { cap, source: format!("{MAX_DATA_BYTES_ENV}={cap}"), used: 0 });
        }
        let source = format!("the default, {} GiB", DEFAULT_MAX_DATA_BYTES >> 30);
        Ok(match available_memory() {
            Some(free) if free < DEFAULT_MAX_DATA_BYTES => {
                Budget { cap: free, source: "the memory available now, MemAvailable in /proc/meminfo".into(), used: 0 }
            }
            _ => Budget { cap: DEFAULT_MAX_DATA_BYTES, source, used: 0 },
        })
    }

    /// Takes what reading the pair (x of `shape` stored as `dtype`, n labels) needs, or refuses
    /// it with the numbers, before anything is read: the declared shape is metadata only.
    #[cfg_attr(not(feature = "hdf5"), allow(dead_code))]
    pub(crate) fn take(&mut self, file: &str, key: &str, shape: &[usize], dtype: DataType, ndhwc: bool) -> Result<(), DataError> {
        let values = shape.iter().fold(1u128, |acc, &d| acc.saturating_mul(d as u128));
        let elem = match dtype {
            DataType::U8 => 1,
            DataType::F16 => 2,
            DataType::F32 => 4,
            DataType::F64 => 8,
        };
        let as_read = values.saturating_mul(elem);
        let as_f32 = if dtype == DataType::F32 { 0 } else { values.saturating_mul(4) };
        let transposed = if ndhwc { values.saturating_mul(4) } else { 0 };
        // Labels are read as 64-bit integers, then kept as u32.
        let labels = (shape[0] as u128).saturating_mul(12);
        let need = as_read.saturating_add(as_f32).saturating_add(transposed).saturating_add(labels);
        let total = need.saturating_add(self.used as u128);
        let clamp = |v: u128| u64::try_from(v).unwrap_or(u64::MAX);
        if total > self.cap as u128 {
            let mut detail = format!("{values} values of {elem} byte(s) as read: {}", clamp(as_read));
            if as_f32 > 0 {
                detail += &format!(", as f32: {}", clamp(as_f32));
            }
            if transposed > 0 {
                detail += &format!(", the channels-first copy: {}", clamp(transposed));
            }
            detail += &format!(", {} labels: {}", shape[0], clamp(labels));
            if self.used > 0 {
                detail += &format!(", and {} for the datasets read before it", self.used);
            }
            return Err(DataError::TooBig(Box::new(super::TooBig {
                file: file.into(),
                dataset: key.into(),
                shape: shape.to_vec(),
                dtype: format!("float{}", elem * 8).replace("float8", "uint8"),
                bytes: clamp(total),
                detail,
                cap: self.cap,
                cap_source: self.source.clone(),
            })));
        }
        // What stays after the read: the f32 values and the u32 labels.
        self.used = clamp((values.saturating_add(shape[0] as u128)).saturating_mul(4).saturating_add(self.used as u128));
        Ok(())
    }
}

/// MemAvailable of /proc/meminfo in bytes (Linux); None elsewhere.
fn available_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kb.checked_mul(1024)
}
