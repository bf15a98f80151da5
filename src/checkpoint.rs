//! Checkpoints as safetensors files, the format PyTorch reads with
//! `safetensors.torch.load_file`.
//!
//! Tensors carry PyTorch `state_dict` names and layouts. Most are f32; i64 exists because
//! PyTorch keeps BatchNorm's `num_batches_tracked` as an int64 scalar, and
//! `load_state_dict` wants it back with that dtype. Writes are atomic (see [`crate::atomic`]);
//! reads check every tensor against what the model expects, so `--init` and `--resume` with the
//! wrong file fail with a message naming the file and the tensor, never a panic.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::Path;

use safetensors::tensor::{Dtype, TensorView};
use safetensors::{SafeTensorError, SafeTensors};

use crate::atomic::write_atomic;
use crate::{Error, Result};

/// The element types cnn3d reads and writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DType {
    F32,
    I64,
}

impl DType {
    fn to_safetensors(self) -> Dtype {
        match self {
            DType::F32 => Dtype::F32,
            DType::I64 => Dtype::I64,
        }
    }

    fn from_safetensors(d: Dtype) -> Option<DType> {
        match d {
            Dtype::F32 => Some(DType::F32),
            Dtype::I64 => Some(DType::I64),
            _ => None,
        }
    }
}

impl fmt::Display for DType {
    // The safetensors spellings, so that our messages match what other tools print.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DType::F32 => "F32",
            DType::I64 => "I64",
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum TensorData {
    F32(Vec<f32>),
    I64(Vec<i64>),
}

impl TensorData {
    pub fn len(&self) -> usize {
        match self {
            TensorData::F32(v) => v.len(),
            TensorData::I64(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn dtype(&self) -> DType {
        match self {
            TensorData::F32(_) => DType::F32,
            TensorData::I64(_) => DType::I64,
        }
    }

    /// Little-endian bytes, as safetensors stores them on every platform.
    fn to_le_bytes(&self) -> Vec<u8> {
        match self {
            TensorData::F32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            TensorData::I64(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        }
    }
}

/// One named tensor. A scalar (like `num_batches_tracked`) has an empty shape and one element.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub data: TensorData,
}

impl Tensor {
    pub fn f32(name: impl Into<String>, shape: &[usize], data: Vec<f32>) -> Tensor {
        Tensor { name: name.into(), shape: shape.to_vec(), data: TensorData::F32(data) }
    }

    pub fn i64(name: impl Into<String>, shape: &[usize], data: Vec<i64>) -> Tensor {
        Tensor { name: name.into(), shape: shape.to_vec(), data: TensorData::I64(data) }
    }

    pub fn dtype(&self) -> DType {
        self.data.dtype()
    }

    pub fn spec(&self) -> TensorSpec {
        TensorSpec { name: self.name.clone(), shape: self.shape.clone(), dtype: self.dtype() }
    }

    pub fn as_f32(&self) -> Option<&[f32]> {
        match &self.data {
            TensorData::F32(v) => Some(v),
            TensorData::I64(_) => None,
        }
    }

    pub fn as_i64(&self) -> Option<&[i64]> {
        match &self.data {
            TensorData::I64(v) => Some(v),
            TensorData::F32(_) => None,
        }
    }
}

/// What a reader expects a tensor to be: the model's side of the check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorSpec {
    pub name: String,
    pub shape: Vec<usize>,
    pub dtype: DType,
}

impl TensorSpec {
    pub fn f32(name: impl Into<String>, shape: &[usize]) -> TensorSpec {
        TensorSpec { name: name.into(), shape: shape.to_vec(), dtype: DType::F32 }
    }

    pub fn i64(name: impl Into<String>, shape: &[usize]) -> TensorSpec {
        TensorSpec { name: name.into(), shape: shape.to_vec(), dtype: DType::I64 }
    }
}

/// The contents of a checkpoint file: tensors plus free-form string metadata (the
/// safetensors `__metadata__` header entry; e.g. the optimizer's step or the config).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Checkpoint {
    pub tensors: Vec<Tensor>,
    pub metadata: BTreeMap<String, String>,
}

impl Checkpoint {
    pub fn get(&self, name: &str) -> Option<&Tensor> {
        self.tensors.iter().find(|t| t.name == name)
    }
}

/// Writes `tensors` and `metadata` to `path` as safetensors, atomically: a crash mid-write
/// leaves the previous file intact. Names must be unique and each tensor's data must hold
/// exactly the product of its shape.
pub fn save(path: &Path, tensors: &[Tensor], metadata: &BTreeMap<String, String>) -> Result<()> {
    let bytes = to_bytes(path, tensors, metadata)?;
    write_atomic(path, &bytes)
}

/// The bytes [`save`] writes (e.g. for a browser's download); `path` only names the file in
/// errors.
pub fn to_bytes(path: &Path, tensors: &[Tensor], metadata: &BTreeMap<String, String>) -> Result<Vec<u8>> {
    let write_err = |t: &Tensor, message: String| Error::CheckpointWrite {
        path: path.to_path_buf(),
        tensor: t.name.clone(),
        message,
    };
    let mut seen = std::collections::HashSet::new();
    let mut buffers = Vec::with_capacity(tensors.len());
    for t in tensors {
        if !seen.insert(t.name.as_str()) {
            // safetensors keys are a JSON object: a duplicate would silently drop one tensor.
            return Err(write_err(t, "the name appears twice".into()));
        }
        let numel: usize = t.shape.iter().product();
        if numel != t.data.len() {
            return Err(write_err(
                t,
                format!("shape {:?} needs {numel} elements, the data has {}", t.shape, t.data.len()),
            ));
        }
        buffers.push(t.data.to_le_bytes());
    }
    let views = tensors
        .iter()
        .zip(&buffers)
        .map(|(t, bytes)| {
            TensorView::new(t.dtype().to_safetensors(), t.shape.clone(), bytes)
                .map(|view| (t.name.as_str(), view))
                .map_err(|e| write_err(t, e.to_string()))
        })
        .collect::<Result<Vec<_>>>()?;
    let info: Option<HashMap<String, String>> =
        (!metadata.is_empty()).then(|| metadata.clone().into_iter().collect());
    let bytes = safetensors::serialize(views, info).map_err(|e| Error::CheckpointWrite {
        path: path.to_path_buf(),
        tensor: String::new(),
        message: e.to_string(),
    })?;
    Ok(canonical_header(bytes))
}

/// safetensors writes its metadata from a HashMap, in an order that changes from process to
/// process; rewriting the JSON header with sorted keys makes the same state the same bytes
/// (same seed → identical files). The data offsets are relative to the data, so they hold.
fn canonical_header(bytes: Vec<u8>) -> Vec<u8> {
    fn sorted(v: serde_json::Value) -> serde_json::Value {
        match v {
            serde_json::Value::Object(map) => {
                let mut entries: Vec<(String, serde_json::Value)> = map.into_iter().collect();
                entries.sort_by(|a, b| a.0.cmp(&b.0));
                serde_json::Value::Object(entries.into_iter().map(|(k, v)| (k, sorted(v))).collect())
            }
            other => other,
        }
    }
    let Some(len) = bytes.get(..8).map(|b| u64::from_le_bytes(b.try_into().unwrap()) as usize) else { return bytes };
    let Some(header) = bytes.get(8..8 + len).and_then(|h| serde_json::from_slice::<serde_json::Value>(h).ok()) else {
        return bytes;
    };
    let mut text = serde_json::to_vec(&sorted(header)).unwrap_or_default();
    // Keep the data 8-byte aligned, as safetensors does, by padding the header with spaces.
    while !(8 + text.len()).is_multiple_of(8) {
        text.push(b' ');
    }
    let mut out = Vec::with_capacity(8 + text.len() + bytes.len() - 8 - len);
    out.extend_from_slice(&(text.len() as u64).to_le_bytes());
    out.extend_from_slice(&text);
    out.extend_from_slice(&bytes[8 + len..]);
    out
}

/// Reads every tensor of a safetensors file, sorted by name. F32 and I64 only; any other
/// dtype is an error naming the tensor. Use [`load_expected`] to check against a model.
pub fn load(path: &Path) -> Result<Checkpoint> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, "reading", e))?;
    from_bytes(path, &bytes, None)
}

/// Reads a safetensors file and checks it holds exactly `expected`: the same names, shapes
/// and dtypes, nothing missing and nothing extra. The tensors come back in `expected`'s order.
pub fn load_expected(path: &Path, expected: &[TensorSpec]) -> Result<Checkpoint> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, "reading", e))?;
    from_bytes(path, &bytes, Some(expected))
}

/// [`load`] (`expected` None) or [`load_expected`] of a file already read into `bytes`;
/// `path` names it in errors.
pub fn from_bytes(path: &Path, bytes: &[u8], expected: Option<&[TensorSpec]>) -> Result<Checkpoint> {
    let st = SafeTensors::deserialize(bytes).map_err(|e| Error::NotSafetensors {
        path: path.to_path_buf(),
        reason: explain(bytes, &e),
    })?;
    let (_, header) = SafeTensors::read_metadata(bytes).map_err(|e| Error::NotSafetensors {
        path: path.to_path_buf(),
        reason: explain(bytes, &e),
    })?;
    let metadata: BTreeMap<String, String> =
        header.metadata().clone().unwrap_or_default().into_iter().collect();

    let mut views: BTreeMap<String, TensorView<'_>> = st.tensors().into_iter().collect();
    let tensors = match expected {
        None => views
            .iter()
            .map(|(name, view)| {
                let dtype = DType::from_safetensors(view.dtype()).ok_or_else(|| Error::TensorMismatch {
                    path: path.to_path_buf(),
                    tensor: name.clone(),
                    expected: "F32 or I64".into(),
                    found: describe(view.dtype(), view.shape()),
                })?;
                Ok(decode(name, dtype, view))
            })
            .collect::<Result<Vec<_>>>()?,
        Some(expected) => {
            let mut out = Vec::with_capacity(expected.len());
            for spec in expected {
                let want = describe(spec.dtype.to_safetensors(), &spec.shape);
                let Some(view) = views.remove(&spec.name) else {
                    return Err(Error::TensorMissing {
                        path: path.to_path_buf(),
                        tensor: spec.name.clone(),
                        expected: want,
                        found: list_names(st.names()),
                    });
                };
                if view.dtype() != spec.dtype.to_safetensors() || view.shape() != spec.shape.as_slice() {
                    return Err(Error::TensorMismatch {
                        path: path.to_path_buf(),
                        tensor: spec.name.clone(),
                        expected: want,
                        found: describe(view.dtype(), view.shape()),
                    });
                }
                out.push(decode(&spec.name, spec.dtype, &view));
            }
            // Whatever is left over has no place in the model; ignoring it would hide a typo
            // in a layer name or a checkpoint of a different model.
            if let Some((name, view)) = views.iter().next() {
                return Err(Error::TensorUnexpected {
                    path: path.to_path_buf(),
                    tensor: name.clone(),
                    found: describe(view.dtype(), view.shape()),
                });
            }
            out
        }
    };
    Ok(Checkpoint { tensors, metadata })
}

/// Copies a view's little-endian bytes into owned values; safetensors data need not be
/// aligned for f32/i64, so no casting in place. The dtype was checked by the caller, and the
/// byte length against the shape by safetensors.
fn decode(name: &str, dtype: DType, view: &TensorView<'_>) -> Tensor {
    let bytes = view.data();
    let data = match dtype {
        DType::F32 => TensorData::F32(
            bytes.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect(),
        ),
        DType::I64 => TensorData::I64(
            bytes.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap())).collect(),
        ),
    };
    Tensor { name: name.to_string(), shape: view.shape().to_vec(), data }
}

/// "F32 [32, 3, 3, 3, 3]"; a scalar is "I64 [] (scalar)".
fn describe(dtype: Dtype, shape: &[usize]) -> String {
    let name = DType::from_safetensors(dtype).map(|d| d.to_string()).unwrap_or_else(|| format!("{dtype:?}"));
    if shape.is_empty() {
        format!("{name} [] (scalar)")
    } else {
        format!("{name} {shape:?}")
    }
}

/// The file's tensor names for a "missing" message, so a wrong prefix (`module.fc1.weight`)
/// or a different model is visible at once. Long lists are cut.
fn list_names(mut names: Vec<&str>) -> String {
    const SHOWN: usize = 8;
    names.sort_unstable();
    let total = names.len();
    let mut s = match total {
        0 => return "no tensors".into(),
        1 => "1 tensor: ".to_string(),
        n => format!("{n} tensors: "),
    };
    s.push_str(&names.iter().take(SHOWN).map(|n| format!("{n:?}")).collect::<Vec<_>>().join(", "));
    if total > SHOWN {
        s.push_str(&format!(", ... ({} more)", total - SHOWN));
    }
    s
}

/// Turns safetensors' terse parse errors into a sentence a user can act on.
fn explain(bytes: &[u8], e: &SafeTensorError) -> String {
    let len = bytes.len();
    let header_len = bytes.get(..8).map(|b| u64::from_le_bytes(b.try_into().unwrap()));
    match e {
        SafeTensorError::HeaderTooSmall => {
            format!("the file is {len} bytes, too short for the 8-byte header length (empty or truncated)")
        }
        SafeTensorError::HeaderTooLarge | SafeTensorError::InvalidHeaderLength => format!(
            "the first 8 bytes declare a {}-byte JSON header but the file is {len} bytes (truncated, or not safetensors)",
            header_len.unwrap_or(0)
        ),
        SafeTensorError::InvalidHeader(_) | SafeTensorError::InvalidHeaderDeserialization(_) => {
            format!("the header is not safetensors JSON ({e})")
        }
        SafeTensorError::MetadataIncompleteBuffer => {
            let declared = declared_data_len(bytes).map(|n| format!("{n} bytes")).unwrap_or("a different size".into());
            let have = len.saturating_sub(8 + header_len.unwrap_or(0) as usize);
            format!("the header declares {declared} of tensor data, the file holds {have} (truncated, or trailing bytes)")
        }
        other => format!("inconsistent header: {other}"),
    }
}

/// The end of the last tensor's data according to the header, for the truncation message.
fn declared_data_len(bytes: &[u8]) -> Option<u64> {
    let n = u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?) as usize;
    let header: serde_json::Value = serde_json::from_slice(bytes.get(8..8usize.checked_add(n)?)?).ok()?;
    header
        .as_object()?
        .iter()
        .filter(|(k, _)| k.as_str() != "__metadata__")
        .filter_map(|(_, v)| v.get("data_offsets")?.get(1)?.as_u64())
        .max()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<Tensor> {
        vec![
            Tensor::f32("fc1.weight", &[3, 2], vec![1.0, -2.0, 3.5, f32::MIN_POSITIVE, -0.0, 1e30]),
            Tensor::f32("fc1.bias", &[3], vec![0.1, 0.2, 0.3]),
            Tensor::i64("batch.num_batches_tracked", &[], vec![450]),
        ]
    }

    fn specs() -> Vec<TensorSpec> {
        sample().iter().map(Tensor::spec).collect()
    }

    fn saved(dir: &tempfile::TempDir) -> std::path::PathBuf {
        let path = dir.path().join("model.safetensors");
        save(&path, &sample(), &BTreeMap::new()).unwrap();
        path
    }

    #[test]
    fn round_trip_with_metadata_and_i64_scalar() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.safetensors");
        let meta = BTreeMap::from([("step".to_string(), "42".to_string()), ("format".into(), "pt".into())]);
        save(&path, &sample(), &meta).unwrap();

        let ck = load_expected(&path, &specs()).unwrap();
        assert_eq!(ck.tensors, sample(), "tensors come back bit for bit, in expected order");
        assert_eq!(ck.metadata, meta);
        assert_eq!(ck.get("batch.num_batches_tracked").unwrap().as_i64(), Some(&[450i64][..]));

        let any = load(&path).unwrap();
        let names: Vec<_> = any.tensors.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["batch.num_batches_tracked", "fc1.bias", "fc1.weight"]);
    }

    #[test]
    fn overwrite_replaces_previous_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let path = saved(&dir);
        let newer = vec![Tensor::f32("w", &[1], vec![7.0])];
        save(&path, &newer, &BTreeMap::new()).unwrap();
        assert_eq!(load(&path).unwrap().tensors, newer);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn missing_tensor_names_file_tensor_and_what_is_there() {
        let dir = tempfile::tempdir().unwrap();
        let path = saved(&dir);
        let mut want = specs();
        want.push(TensorSpec::f32("fc2.weight", &[10, 128]));
        let err = load_expected(&path, &want).unwrap_err();
        assert!(matches!(err, Error::TensorMissing { ref tensor, .. } if tensor == "fc2.weight"), "{err}");
        let msg = err.to_string();
        assert!(msg.contains("model.safetensors") && msg.contains("F32 [10, 128]"), "{msg}");
        assert!(msg.contains("3 tensors: \"batch.num_batches_tracked\""), "{msg}");
    }

    #[test]
    fn extra_tensor_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = saved(&dir);
        let want: Vec<_> = specs().into_iter().filter(|s| s.name != "fc1.bias").collect();
        let err = load_expected(&path, &want).unwrap_err();
        assert!(matches!(err, Error::TensorUnexpected { ref tensor, .. } if tensor == "fc1.bias"), "{err}");
        assert!(err.to_string().contains("F32 [3]"), "{err}");
    }

    #[test]
    fn wrong_shape_says_expected_and_found() {
        let dir = tempfile::tempdir().unwrap();
        let path = saved(&dir);
        let mut want = specs();
        want[0].shape = vec![2, 3];
        let msg = load_expected(&path, &want).unwrap_err().to_string();
        assert!(
            msg.contains("\"fc1.weight\": expected F32 [2, 3], found F32 [3, 2]") && msg.contains("model.safetensors"),
            "{msg}"
        );
    }

    #[test]
    fn wrong_dtype_says_expected_and_found() {
        let dir = tempfile::tempdir().unwrap();
        let path = saved(&dir);
        let mut want = specs();
        want[2].dtype = DType::F32;
        let msg = load_expected(&path, &want).unwrap_err().to_string();
        assert!(
            msg.contains("\"batch.num_batches_tracked\": expected F32 [] (scalar), found I64 [] (scalar)"),
            "{msg}"
        );
    }

    #[test]
    fn unsupported_dtype_in_file_is_named() {
        // A half-precision tensor written by hand: a file from another tool.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("half.safetensors");
        let data = [0u8; 4];
        let view = TensorView::new(Dtype::F16, vec![2], &data).unwrap();
        std::fs::write(&path, safetensors::serialize([("w", view)], None).unwrap()).unwrap();
        let msg = load(&path).unwrap_err().to_string();
        assert!(msg.contains("\"w\": expected F32 or I64, found F16 [2]"), "{msg}");
        let msg = load_expected(&path, &[TensorSpec::f32("w", &[2])]).unwrap_err().to_string();
        assert!(msg.contains("expected F32 [2], found F16 [2]"), "{msg}");
    }

    #[test]
    fn not_safetensors_and_truncated_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.safetensors");
        let good = std::fs::read(saved(&dir)).unwrap();
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("empty", vec![]),
            ("text", b"this is a CSV file, not a checkpoint\n".to_vec()),
            ("header only half there", good[..20].to_vec()),
            ("data cut short", good[..good.len() - 3].to_vec()),
            ("trailing bytes", [good.clone(), vec![0; 4]].concat()),
        ];
        for (what, bytes) in cases {
            std::fs::write(&path, &bytes).unwrap();
            let err = load_expected(&path, &specs()).unwrap_err();
            assert!(matches!(err, Error::NotSafetensors { .. }), "{what}: {err}");
            assert!(err.to_string().contains("x.safetensors"), "{what}: {err}");
        }
        std::fs::write(&path, &good[..good.len() - 3]).unwrap();
        let msg = load(&path).unwrap_err().to_string();
        assert!(msg.contains("truncated"), "{msg}");
    }

    #[test]
    fn every_truncation_and_corruption_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let good = std::fs::read(saved(&dir)).unwrap();
        let want = specs();
        for cut in 0..good.len() {
            assert!(from_bytes(Path::new("t"), &good[..cut], Some(&want)).is_err(), "cut at {cut}");
        }
        // Flip bytes one at a time with a seeded generator; the result may still parse (a
        // flipped data byte is just another float), but it must never panic.
        let mut rng = crate::rng::Rng::new(7);
        for _ in 0..2000 {
            let mut bad = good.clone();
            for _ in 0..1 + rng.below(4) {
                let i = rng.below(bad.len() as u64) as usize;
                bad[i] = rng.next_u64() as u8;
            }
            let _ = from_bytes(Path::new("t"), &bad, Some(&want));
            let _ = from_bytes(Path::new("t"), &bad, None);
        }
    }

    #[test]
    fn missing_file_is_an_io_error_naming_it() {
        let msg = load(Path::new("/no/such/model.safetensors")).unwrap_err().to_string();
        assert!(msg.contains("/no/such/model.safetensors"), "{msg}");
    }

    #[test]
    fn writer_rejects_bad_tensors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.safetensors");
        let err = save(&path, &[Tensor::f32("w", &[2, 2], vec![1.0; 3])], &BTreeMap::new()).unwrap_err();
        assert!(err.to_string().contains("\"w\": shape [2, 2] needs 4 elements, the data has 3"), "{err}");
        let twice = [Tensor::f32("w", &[1], vec![1.0]), Tensor::f32("w", &[1], vec![2.0])];
        let err = save(&path, &twice, &BTreeMap::new()).unwrap_err();
        assert!(err.to_string().contains("appears twice"), "{err}");
        assert!(!path.exists(), "nothing written on error");
    }

    /// The state_dict of `tests/fixtures/make_torch_checkpoint.py`'s module.
    fn torch_specs() -> [TensorSpec; 11] {
        [
            TensorSpec::f32("conv_layer1.0.weight", &[4, 3, 3, 3, 3]),
            TensorSpec::f32("conv_layer1.0.bias", &[4]),
            TensorSpec::f32("fc1.weight", &[6, 4]),
            TensorSpec::f32("fc1.bias", &[6]),
            TensorSpec::f32("batch.weight", &[6]),
            TensorSpec::f32("batch.bias", &[6]),
            TensorSpec::f32("batch.running_mean", &[6]),
            TensorSpec::f32("batch.running_var", &[6]),
            TensorSpec::i64("batch.num_batches_tracked", &[]),
            TensorSpec::f32("fc2.weight", &[10, 6]),
            TensorSpec::f32("fc2.bias", &[10]),
        ]
    }

    /// A state_dict written by PyTorch (`tests/fixtures/make_torch_checkpoint.py`): names,
    /// dtypes (int64 `num_batches_tracked`) and values as torch stores them.
    #[test]
    fn reads_a_checkpoint_written_by_pytorch() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/torch_state_dict.safetensors");
        let ck = load_expected(&path, &torch_specs()).unwrap();
        // The script fills every tensor with arange(numel) * 0.001 + k, k its position in the
        // state_dict, so values are checkable here.
        for (k, t) in ck.tensors.iter().enumerate() {
            match &t.data {
                TensorData::F32(v) => {
                    for (i, x) in v.iter().enumerate() {
                        let want = i as f32 * 0.001 + k as f32;
                        assert!((x - want).abs() <= 1e-6 * want.abs().max(1.0), "{}[{i}] = {x}, want {want}", t.name);
                    }
                }
                TensorData::I64(v) => assert_eq!(v, &[3], "{}", t.name),
            }
        }
        assert_eq!(ck.metadata.get("written_by").map(String::as_str), Some("pytorch"));
    }

    /// The other direction: the same state_dict written by us reads back equal to PyTorch's
    /// file. With CNN3D_TORCH_OUT=FILE it is also written there, for a developer to check
    /// with `python tests/fixtures/make_torch_checkpoint.py --load FILE` (load_state_dict,
    /// strict, dtypes and values); CI has no torch.
    #[test]
    fn writes_a_checkpoint_pytorch_loads() {
        let tensors: Vec<Tensor> = torch_specs()
            .iter()
            .enumerate()
            .map(|(k, spec)| match spec.dtype {
                DType::F32 => {
                    let n = spec.shape.iter().product::<usize>();
                    Tensor::f32(&spec.name, &spec.shape, (0..n).map(|i| i as f32 * 0.001 + k as f32).collect())
                }
                DType::I64 => Tensor::i64(&spec.name, &spec.shape, vec![3]),
            })
            .collect();
        let dir = tempfile::tempdir().unwrap();
        let out = std::env::var_os("CNN3D_TORCH_OUT").map(std::path::PathBuf::from);
        let path = out.clone().unwrap_or_else(|| dir.path().join("model.safetensors"));
        save(&path, &tensors, &BTreeMap::from([("written_by".to_string(), "cnn3d".to_string())])).unwrap();

        let ours = load_expected(&path, &torch_specs()).unwrap();
        let torch_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/torch_state_dict.safetensors");
        let theirs = load_expected(&torch_path, &torch_specs()).unwrap();
        for (a, b) in ours.tensors.iter().zip(&theirs.tensors) {
            assert_eq!((&a.name, &a.shape, a.dtype()), (&b.name, &b.shape, b.dtype()));
            match (&a.data, &b.data) {
                (TensorData::F32(x), TensorData::F32(y)) => {
                    assert!(x.iter().zip(y).all(|(x, y)| (x - y).abs() <= 1e-6 * y.abs().max(1.0)), "{}", a.name)
                }
                (x, y) => assert_eq!(x, y, "{}", a.name),
            }
        }
    }
}
