// The page: loads the models, names the adapter, classifies the bundled photos and any
// photo dropped on it. window.pageResults holds every result (the end-to-end test reads
// it); document.body.dataset.ready is "1" once the bundled photos are done, "error" on a
// failure.
import init, { Classifier } from "./pkg/wgpu_quant_web.js";

const BUNDLED = ["chelsea.png", "coffee.png", "rocket.jpg"];
const status = document.getElementById("status");
window.pageResults = [];

async function bytes(url) {
  const r = await fetch(url);
  if (!r.ok) throw new Error(`${url}: HTTP ${r.status}`);
  return new Uint8Array(await r.arrayBuffer());
}

function row(cells, header = false) {
  const tr = document.createElement("tr");
  for (const c of cells) {
    const td = document.createElement(header ? "th" : "td");
    td.textContent = c;
    if (typeof c === "number" || /^[0-9.]+( ms| MB)?$/.test(c)) td.className = "num";
    tr.appendChild(td);
  }
  return tr;
}

function showAdapter(info) {
  const t = document.getElementById("adapter");
  const yes = (b) => (b ? "yes" : "no");
  const sizes = info.models.map((m) => `${m.precision} ${(m.weight_bytes / 1e6).toFixed(2)} MB`).join(", ");
  for (const [k, v] of [
    ["adapter", info.name || "(the browser gives no name)"],
    ["driver", [info.driver, info.driver_info].filter((x) => x).join(" ") || "(not given)"],
    ["backend", `${info.backend} (${info.device_type})`],
    ["dot4I8Packed (packed INT8 dot products)", yes(info.packed_int8_dot)],
    ["shader-f16", yes(info.shader_f16) + (info.shader_f16 ? "" : " (FP16 stores f16, computes in f32)")],
    ["subgroups", yes(info.subgroups)],
    ["weights on the GPU", sizes],
  ]) t.appendChild(row([k, v]));
}

async function classify(classifier, name, data, url) {
  const div = document.createElement("div");
  div.className = "photo";
  div.dataset.photo = name;
  const img = document.createElement("img");
  img.src = url;
  img.alt = name;
  div.appendChild(img);
  const right = document.createElement("div");
  div.appendChild(right);
  document.getElementById("photos").appendChild(div);
  try {
    const r = JSON.parse(await classifier.classify(data));
    const h = document.createElement("h3");
    h.textContent = `${name} (${r.width}x${r.height})`;
    right.appendChild(h);
    const t = document.createElement("table");
    t.appendChild(row(["precision", "ms / image", "top-5"], true));
    for (const p of r.results) {
      const top = p.top5.map((x) => `${x.label.split(",")[0]} ${(100 * x.p).toFixed(1)}%`).join(" | ");
      const tr = row([p.precision, `${p.ms.toFixed(1)} ms`, top]);
      tr.dataset.precision = p.precision;
      tr.dataset.top1 = p.top5[0].index;
      t.appendChild(tr);
    }
    right.appendChild(t);
    window.pageResults.push({ photo: name, ...r });
    console.log(`${name}: ${r.results.map((p) => `${p.precision} ${p.top5[0].label.split(",")[0]} ${p.ms.toFixed(0)} ms`).join(", ")}`);
  } catch (e) {
    const p = document.createElement("p");
    p.className = "error";
    p.textContent = `${name}: ${e}`;
    right.appendChild(p);
  }
}

// The benchmark runner's quick linear cases on this adapter, each verified before it is
// timed: a table with FP32, W8A8 and W8A16 side by side.
async function bench(classifier) {
  const rows = JSON.parse(await classifier.bench());
  window.pageBench = rows;
  const t = document.getElementById("bench");
  t.appendChild(row(["case", "M x N x K", "precision", "kernel", "verified", "ms", "GOP/s", "vs FP32"], true));
  for (const r of rows) {
    const fp32 = rows.find((x) => x.case === r.case && x.precision === "fp32");
    const vs = r.ms && fp32 && fp32.ms ? `${(fp32.ms / r.ms).toFixed(2)}x` : "-";
    const tr = row([
      r.case,
      r.shape,
      r.precision,
      r.kernel,
      r.verified ? (r.rel_error === 0 ? "yes (exact)" : `yes (${r.rel_error.toExponential(1)})`) : "NO",
      r.ms === null ? "-" : `${r.ms.toFixed(2)}`,
      r.gops === null ? "-" : r.gops.toFixed(2),
      vs,
    ]);
    t.appendChild(tr);
  }
}

async function main() {
  await init();
  if (!navigator.gpu) throw new Error("this browser has no WebGPU (navigator.gpu is missing)");
  const [fp32, int8, labels] = await Promise.all([
    bytes("data/efficientnet_lite0.safetensors"),
    bytes("data/efficientnet_lite0_int8.safetensors"),
    fetch("data/imagenet_labels.txt").then((r) => r.text()),
  ]);
  const classifier = await Classifier.create(fp32, int8, labels);
  showAdapter(JSON.parse(classifier.adapter()));
  status.textContent = "Classifying the bundled photos...";
  for (const name of BUNDLED) {
    await classify(classifier, name, await bytes(`data/${name}`), `data/${name}`);
  }
  status.textContent = "Running the benchmark runner's quick linear cases...";
  await bench(classifier);
  status.textContent = "Ready: drop a photo to classify it.";
  document.body.dataset.ready = "1";
  const take = async (file) => {
    status.textContent = `Classifying ${file.name}...`;
    const data = new Uint8Array(await file.arrayBuffer());
    await classify(classifier, file.name, data, URL.createObjectURL(file));
    status.textContent = "Ready: drop a photo to classify it.";
  };
  const drop = document.getElementById("drop");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    for (const f of e.dataTransfer.files) take(f);
  });
  document.getElementById("file").addEventListener("change", (e) => {
    for (const f of e.target.files) take(f);
  });
}

main().catch((e) => {
  status.className = "error";
  status.textContent = `Error: ${e}`;
  document.body.dataset.ready = "error";
});
