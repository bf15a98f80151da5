// The page: opens the GPU through cnn3d (wasm), runs `check` layer by layer, trains with live
// curves and offers the trained model.safetensors. With ?auto=1 it runs check and then a training
// run on its own (train, test, epochs, batch, optimizer, lr, seed from the query override the
// form) and reports through the DOM for web/drive.py: dataset.phase (what it is doing),
// dataset.status ("done" or "error"), window.cnn3dResult, window.cnn3dError.
import init, * as cnn3d from "./pkg/cnn3d_web.js";

const $ = (id) => document.getElementById(id);
const root = document.documentElement;
const params = new URLSearchParams(location.search);
const result = { adapter: null, check: null, train: null };

function phase(text) {
  root.dataset.phase = text;
  $("status").textContent = text;
  $("status").className = "";
}

function cell(tr, text, cls) {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  tr.appendChild(td);
  return td;
}

function row(table, cells) {
  const tr = document.createElement("tr");
  for (const [text, cls] of cells) cell(tr, text, cls);
  (table.tBodies[0] || table).appendChild(tr);
  return tr;
}

const num = (v, digits = 4) => (v === null || v === undefined || Number.isNaN(v) ? "–" : Number(v).toFixed(digits));
const sci = (v) => (v === null || v === undefined ? "–" : Number(v).toExponential(2));

async function openGpu() {
  phase("opening the GPU");
  // The browser's own description of the adapter (wgpu's WebGPU backend leaves the name empty).
  const adapter = await navigator.gpu?.requestAdapter();
  const ainfo = adapter?.info ?? {};
  const limits = params.get("limits") ?? "adapter";
  if (limits !== "adapter" && limits !== "default") throw new Error(`?limits=${limits}: expected adapter or default`);
  const opened = JSON.parse(await cnn3d.open_gpu(params.get("precision") ?? "f32", limits === "default"));
  const info = opened.info;
  const described = [ainfo.vendor, ainfo.architecture, ainfo.device, ainfo.description].filter(Boolean).join(" / ");
  result.adapter = { browser: described, name: info.name, backend: info.backend, device_type: info.device_type };
  const t = $("adapter");
  for (const [k, v] of [
    ["adapter (browser)", described || "–"],
    ["backend", `${info.backend} (${info.device_type})`],
    ["limits", limits === "default" ? "WebGPU's defaults (?limits=default)" : "the adapter's"],
    ["activations", opened.precision],
    ["timestamp queries", opened.timing],
    ["shader-f16", info.shader_f16 ? "yes" : "no"],
    ["subgroups", info.subgroup_sizes ? info.subgroup_sizes.join("–") : "no (not passed through by wgpu's web backend)"],
  ]) row(t, [[k], [v]]);
  const l = $("limits");
  for (const k of ["max_storage_buffer_binding_size", "max_buffer_size", "max_compute_invocations_per_workgroup",
    "max_compute_workgroup_storage_size", "max_compute_workgroups_per_dimension", "max_uniform_buffer_binding_size",
    "min_storage_buffer_offset_alignment"]) row(l, [[k], [String(info[k]), "num"]]);
}

// One job at a time on the device: check and training disable both buttons while they run.
function busy(yes) {
  $("check-btn").disabled = $("train-btn").disabled = yes;
}

async function runCheck() {
  busy(true);
  $("check").tBodies[0].replaceChildren();
  const started = performance.now();
  const layers = JSON.parse(cnn3d.check_layers());
  const kernels = [];
  for (const layer of layers) {
    phase(`check ${layer}`);
    $("check-summary").textContent = `checking ${layer}…`;
    for (const r of JSON.parse(await cnn3d.check_layer(layer))) {
      kernels.push(r);
      row($("check"), [
        [r.name], [(r.variants ?? []).join(", ")], [String(r.shapes.length), "num"], [String(r.elements), "num"],
        [sci(r.max_abs_err), "num"], [num(r.err_over_tol, 3), "num"], [r.pass ? "pass" : "FAIL", r.pass ? "pass" : "fail"],
      ]);
    }
  }
  const seconds = (performance.now() - started) / 1000;
  const failed = kernels.filter((r) => !r.pass).map((r) => r.name);
  $("check-summary").textContent = `${kernels.length - failed.length} of ${kernels.length} kernels pass (${seconds.toFixed(1)} s)` +
    (failed.length ? `; failing: ${failed.join(", ")}` : "");
  result.check = { kernels: kernels.length, passed: kernels.length - failed.length, failed, seconds };
  busy(false);
}

// Curves: running training means within each epoch, test metrics after each.
function draw(canvas, series, title, ymax) {
  const ctx = canvas.getContext("2d");
  const [w, h, m] = [canvas.width, canvas.height, { l: 44, r: 10, t: 22, b: 26 }];
  ctx.clearRect(0, 0, w, h);
  const xs = series.flatMap((s) => s.points.map((p) => p[0]));
  const xmax = Math.max(1, ...xs);
  const top = ymax ?? Math.max(0.1, ...series.flatMap((s) => s.points.map((p) => p[1]))) * 1.05;
  const X = (x) => m.l + (x / xmax) * (w - m.l - m.r);
  const Y = (y) => h - m.b - (y / top) * (h - m.t - m.b);
  ctx.font = "12px system-ui, sans-serif";
  ctx.fillStyle = "#222";
  ctx.fillText(title, m.l, 14);
  ctx.strokeStyle = "#ccc";
  ctx.beginPath();
  ctx.moveTo(m.l, m.t); ctx.lineTo(m.l, h - m.b); ctx.lineTo(w - m.r, h - m.b);
  ctx.stroke();
  ctx.fillStyle = "#666";
  for (let i = 0; i <= 4; i++) ctx.fillText((top * i / 4).toFixed(2), 4, Y(top * i / 4) + 4);
  for (let e = 0; e <= xmax; e++) ctx.fillText(String(e), X(e) - 3, h - 8);
  series.forEach((s, i) => {
    ctx.strokeStyle = ctx.fillStyle = s.color;
    ctx.beginPath();
    s.points.forEach(([x, y], j) => (j ? ctx.lineTo(X(x), Y(y)) : ctx.moveTo(X(x), Y(y))));
    ctx.stroke();
    for (const [x, y] of s.dots ? s.points : []) ctx.fillRect(X(x) - 2.5, Y(y) - 2.5, 5, 5);
    ctx.fillText(s.name, w - m.r - 110, m.t + 14 * (i + 1));
  });
}

function formRequest() {
  const f = new FormData($("train-form"));
  const get = (k) => f.get(k);
  return {
    train: Number(get("train")), test: Number(get("test")), epochs: Number(get("epochs")), batch: Number(get("batch")),
    optimizer: String(get("optimizer")), lr: Number(get("lr")), seed: Number(get("seed")),
  };
}

async function runTraining(request) {
  busy(true);
  $("download-btn").disabled = true;
  $("epochs").tBodies[0].replaceChildren();
  $("profile").tBodies[0].replaceChildren();
  const curves = { trainLoss: [], testLoss: [], trainAcc: [], testAcc: [] };
  const redraw = () => {
    draw($("loss"), [
      { name: "train loss", color: "#1f77b4", points: curves.trainLoss },
      { name: "test loss", color: "#ff7f0e", points: curves.testLoss, dots: true },
    ], "loss (cross-entropy)");
    draw($("acc"), [
      { name: "train accuracy", color: "#1f77b4", points: curves.trainAcc },
      { name: "test accuracy", color: "#ff7f0e", points: curves.testAcc, dots: true },
    ], "accuracy", 1);
  };
  phase("training");
  const onProgress = (text) => {
    const p = JSON.parse(text);
    const x = p.epoch - 1 + p.step / p.steps;
    phase(`training epoch ${p.epoch}/${p.epochs} step ${p.step}/${p.steps}`);
    if (p.test_loss === null) {
      curves.trainLoss.push([x, p.train_loss]);
      curves.trainAcc.push([x, p.train_acc]);
    } else {
      curves.testLoss.push([p.epoch, p.test_loss]);
      curves.testAcc.push([p.epoch, p.test_acc]);
      row($("epochs"), [[String(p.epoch), "num"], [num(p.train_loss), "num"], [num(p.train_acc, 3), "num"],
        [num(p.test_loss), "num"], [num(p.test_acc, 3), "num"], [num(p.seconds, 1), "num"]]);
    }
    redraw();
  };
  const r = JSON.parse(await cnn3d.train(JSON.stringify(request), onProgress));
  $("train-summary").textContent = `${r.parameters} parameters, ${r.train_samples} training and ${r.test_samples} test samples, ` +
    `batch ${r.batch}, ${r.optimizer} lr ${r.lr}: test accuracy ${num(r.test_acc, 3)} (loss ${num(r.test_loss)}) after ` +
    `${r.epochs} epochs, ${num(r.seconds, 1)} s, ${num(r.samples_per_s, 1)} samples/s, ` +
    `peak GPU memory of this page ${(r.gpu_memory_bytes / 1048576).toFixed(1)} MiB.`;
  if (r.profile) {
    // Per kernel: a label is layer/kernel.entry; the kernel's dispatches over all layers add up.
    const total = r.profile.dispatches.reduce((a, d) => a + d.ns, 0);
    const kernels = new Map();
    for (const d of r.profile.dispatches) {
      const name = d.label.slice(d.label.lastIndexOf("/") + 1);
      const k = kernels.get(name) ?? { n: 0, ns: 0, flops: 0 };
      kernels.set(name, { n: k.n + 1, ns: k.ns + d.ns, flops: k.flops + d.flops });
    }
    $("profile-note").textContent = `${r.profile.dispatches.length} dispatches, ${(total / 1000).toFixed(0)} µs of GPU time ` +
      `(${r.profile.method.replaceAll("_", " ")})`;
    for (const [name, k] of [...kernels].sort((a, b) => b[1].ns - a[1].ns)) {
      row($("profile"), [[name], [String(k.n), "num"], [(k.ns / 1000).toFixed(1), "num"],
        [`${(100 * k.ns / Math.max(1, total)).toFixed(1)} %`, "num"], [k.flops && k.ns ? (k.flops / k.ns).toFixed(2) : "–", "num"]]);
    }
  } else {
    $("profile-note").textContent = `not timed: ${r.profile_error}`;
  }
  const { profile, ...summary } = r;
  result.train = { ...summary, profiled_dispatches: profile ? profile.dispatches.length : 0 };
  busy(false);
  $("download-btn").disabled = false;
}

function download() {
  const bytes = cnn3d.model_safetensors();
  if (!bytes) return;
  const a = document.createElement("a");
  a.href = URL.createObjectURL(new Blob([bytes], { type: "application/octet-stream" }));
  a.download = "model.safetensors";
  a.click();
  setTimeout(() => URL.revokeObjectURL(a.href), 10000);
}

function failed(e) {
  const text = e instanceof Error ? `${e.message}` : String(e);
  window.cnn3dError = text;
  root.dataset.status = "error";
  $("status").textContent = `error: ${text}`;
  $("status").className = "fail";
  console.error(`cnn3d: ${text}`);
  // Once the GPU is open, a failed check or run can be tried again (e.g. with other settings).
  if (result.adapter) busy(false);
}

async function main() {
  await init();
  if (!navigator.gpu) throw new Error("this browser has no WebGPU (navigator.gpu is missing)");
  // The query's training options fill the form (and so the run ?auto=1 starts).
  for (const el of $("train-form").elements) if (el.name && params.has(el.name)) el.value = params.get(el.name);
  await openGpu();
  phase("ready");
  busy(false);
  $("check-btn").onclick = () => runCheck().then(() => phase("ready"), failed);
  $("train-form").onsubmit = (ev) => {
    ev.preventDefault();
    runTraining(formRequest()).then(() => phase("ready"), failed);
  };
  $("download-btn").onclick = download;
  if (params.get("auto") === "1") {
    await runCheck();
    await runTraining(formRequest());
    // What the download button saves, for the test to read back natively (base64).
    window.cnn3dModelBase64 = () => {
      const bytes = cnn3d.model_safetensors();
      let text = "";
      for (let i = 0; i < bytes.length; i += 0x8000) text += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
      return btoa(text);
    };
    window.cnn3dResult = result;
    phase("done");
    root.dataset.status = "done";
  }
}

main().catch(failed);
