// The npvae app's page: scatter (plotly scattergl), labelling queue, training, compare.
"use strict";
const TOKEN = new URLSearchParams(location.search).get("token");
const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
  "#7f7f7f", "#bcbd22", "#17becf", "#393b79", "#e7ba52", "#ad494a", "#637939", "#7b4173",
  "#3182bd", "#e6550d", "#31a354", "#756bb1", "#636363"];
const S = { state: null, points: null, known: null, queue: [], focus: 0, version: -1,
            pending: Promise.resolve(), hoverCache: new Map(), painted: null };
window.npvaeApp = S;

function withToken(path) {
  return TOKEN ? path + (path.includes("?") ? "&" : "?") + "token=" + encodeURIComponent(TOKEN)
               : path;
}
async function api(path, body) {
  const opts = body === undefined ? {} : { method: "POST", body: JSON.stringify(body),
    headers: { "Content-Type": "application/json" } };
  const res = await fetch(withToken(path), opts);
  const data = await res.json();
  if (!res.ok) throw new Error(data.error || res.statusText);
  return data;
}
function say(text) { document.getElementById("message").textContent = text || ""; }
const $ = (id) => document.getElementById(id);
const esc = (text) => String(text).replace(/[&<>"']/g, (c) =>
  ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
// The name of class c (the run's class_names; the numbers when the data names none).
function className(c) {
  const names = S.state.class_names;
  return c >= 0 && c < names.length ? names[c] : String(c);
}

// ---------------------------------------------------------------- scatter
function colours(mode) {
  const p = S.points, n = p.n;
  if (mode === "unc") return { color: p.unc, colorscale: "Viridis", showscale: true,
    cmin: 0, cmax: 1, size: 4, colorbar: { title: { text: "uncertainty" }, thickness: 12 } };
  const cats = mode === "known" ? S.known : mode === "pred" ? p.pred
             : mode === "comp" ? p.comp : (p.truth || S.known);
  const color = new Array(n), size = new Array(n);
  for (let i = 0; i < n; i++) {
    const c = cats[i];
    color[i] = c >= 0 ? PALETTE[c % PALETTE.length] : "#d0d0d0";
    size[i] = mode === "known" && c >= 0 ? 8 : 4;
  }
  return { color, size, showscale: false };
}
function drawScatter() {
  const mode = $("colour").value, p = S.points;
  const trace = { type: "scattergl", mode: "markers", x: p.x, y: p.y, hoverinfo: "none",
                  marker: { ...colours(mode), opacity: 0.8 } };
  const lat = S.state.latent_dim;
  const layout = { margin: { l: 40, r: 10, t: 10, b: 30 }, hovermode: "closest",
    dragmode: "pan", uirevision: "keep", showlegend: false,
    xaxis: { title: lat > 2 ? "PC 1 of the latent means" : "z1", zeroline: false },
    yaxis: { title: lat > 2 ? "PC 2" : "z2", zeroline: false } };
  const t0 = performance.now();
  return Plotly.react("scatter", [trace], layout,
                      { displaylogo: false, responsive: true, scrollZoom: true }).then(() => {
    if (!S.hooked) { hookHover(); hookSelection(); S.hooked = true; }
    drawLegend(mode);
    $("scatter").dataset.version = String(p.version);
    $("scatter").dataset.drawMs = String(Math.round(performance.now() - t0));
    if (S.painted === null) S.painted = performance.now();
  });
}
function recolour() {
  if (!S.points) return;
  Plotly.restyle("scatter", { marker: [{ ...colours($("colour").value), opacity: 0.8 }] });
  drawLegend($("colour").value);
}
async function showHover(i) {
  let info = S.hoverCache.get(i);
  if (!info) { info = await api("/api/info/" + i); S.hoverCache.set(i, info); }
  $("hover-img").src = withToken("/api/image/" + i + ".png");
  const lines = ["#" + i + " (" + info.split + ")",
    "label: " + (S.known[i] >= 0 ? className(S.known[i]) : "-"), "component: " + info.component,
    ...info.top3.map(([c, q]) => className(c) + ": " + q.toFixed(3))];
  if (S.points.truth) lines.splice(2, 0, "data's label: " + className(S.points.truth[i]));
  $("hover-text").textContent = lines.join("\n");
  $("hover").hidden = false;
}
function hookHover() {
  const el = $("scatter");
  el.on("plotly_hover", (ev) => showHover(ev.points[0].pointIndex).catch((e) => say(e.message)));
}

// ---------------------------------------------------------------- queue
function drawQueue() {
  const box = $("queue");
  box.innerHTML = "";
  S.queue.forEach((it, k) => {
    const card = document.createElement("div");
    card.className = "card" + (k === S.focus ? " focused" : "");
    card.dataset.index = it.index;
    const top = it.top3.map(([c, q]) => esc(className(c)) + ":" + q.toFixed(2)).join(" ");
    card.innerHTML = `<img src="${withToken("/api/image/" + it.index + ".png")}" alt="">
      <div>#${it.index}</div><div class="guess">model: ${esc(className(it.guess))}</div>
      <div class="top3">${top}</div>`;
    card.onclick = () => { S.focus = k; drawQueue(); };
    box.appendChild(card);
  });
  if (!S.queue.length) box.textContent = "Nothing left to label in the training images.";
}
async function loadQueue() {
  if (!S.queue.length) $("queue").textContent = "choosing the next images (" +
    $("strategy").value + ") ...";
  const q = await api("/api/queue");
  S.queue = q.items;
  $("queue-source").textContent = q.strategy;
  S.focus = Math.min(S.focus, Math.max(0, S.queue.length - 1));
  $("strategy").value = q.strategy;
  drawQueue();
}
function drawCounts() {
  const C = S.state.num_classes, counts = new Array(C).fill(0);
  let total = 0;
  for (const c of S.known) if (c >= 0) { counts[c]++; total++; }
  $("labels-count").textContent = total + " label" + (total === 1 ? "" : "s");
  $("counts").textContent = counts.map((c, k) => className(k) + ":" + c).join("  ");
}
function serial(job) {          // one request at a time, in the order typed
  S.pending = S.pending.then(job).catch((e) => say(e.message));
  return S.pending;
}
function act(kind, label) {
  if (kind === "undo") {
    return serial(async () => {
      const r = (await api("/api/undo", {})).undone;
      if (!r) return say("nothing to undo");
      S.known[r.index] = r.label === null ? -1 : r.label;
      await loadQueue();
      S.focus = Math.max(0, S.queue.findIndex((it) => it.index === r.index));
      drawQueue(); drawCounts(); recolour(); say("");
    });
  }
  const item = S.queue[S.focus];
  if (!item) return;
  S.queue.splice(S.focus, 1);                 // at once: the page never waits for the disk
  if (S.focus >= S.queue.length) S.focus = 0;
  if (kind === "label") S.known[item.index] = label;
  drawQueue(); drawCounts();
  return serial(async () => {
    if (kind === "label") await api("/api/label", { index: item.index, label });
    else await api("/api/skip", { index: item.index });
    if (!S.queue.length) await loadQueue();
    say("");
    scheduleRecolour();
  });
}
let recolourTimer = null;
function scheduleRecolour() {
  if ($("colour").value !== "known") return;
  clearTimeout(recolourTimer);
  recolourTimer = setTimeout(recolour, 300);
}
document.addEventListener("keydown", (ev) => {
  if (ev.target.tagName === "INPUT" || ev.target.tagName === "SELECT") return;
  if ($("view-main").hidden || ev.ctrlKey || ev.metaKey || ev.altKey) return;
  if (/^[0-9]$/.test(ev.key) && +ev.key < S.state.num_classes) act("label", +ev.key);
  else if (ev.key === "/") $("picker").focus();
  else if (ev.key === "s") act("skip");
  else if (ev.key === "u") act("undo");
  else if (ev.key === "ArrowRight") { S.focus = (S.focus + 1) % Math.max(1, S.queue.length); drawQueue(); }
  else if (ev.key === "ArrowLeft") { S.focus = (S.focus + S.queue.length - 1) % Math.max(1, S.queue.length); drawQueue(); }
  else return;
  ev.preventDefault();
});

// ---------------------------------------------------------------- the class picker
// Any class by name (the keys reach the first ten only): the input filters the datalist as
// one types; Enter labels the focused image with the class the text names.
function pickClass(text) {
  const t = text.trim().toLowerCase(), names = S.state.class_names.map((n) => n.toLowerCase());
  if (!t) return { error: "type a class name" };
  const exact = names.indexOf(t);
  if (exact >= 0) return { c: exact };
  for (const fits of [(n) => n.startsWith(t), (n) => n.includes(t)]) {
    const found = names.flatMap((n, c) => fits(n) ? [c] : []);
    if (found.length === 1) return { c: found[0] };
    if (found.length > 1) return { error: "which one: " +
      found.slice(0, 8).map(className).join(", ") + (found.length > 8 ? ", ..." : "") + "?" };
  }
  return { error: "no class is named " + text.trim() };
}
function setupPicker() {
  const list = $("class-list");
  list.innerHTML = "";
  for (const name of S.state.class_names) list.appendChild(new Option(name));
  const C = S.state.num_classes, last = Math.min(C, 10) - 1;
  const keys = S.state.class_names.every((n, c) => n === String(c)) ? ""
    : " (" + S.state.class_names.slice(0, 10).map((n, c) => c + ": " + esc(n)).join(", ") + ")";
  $("keys-help").innerHTML = `Click an image or use the arrows to focus it; keys <b>0-${last}</b>
    label it${C > 10 ? " with one of the first ten classes" : ""}${keys}, or type a class in
    the box (<b>/</b> goes there) and press Enter; <b>s</b> skips, <b>u</b> undoes.`;
}
$("picker").addEventListener("keydown", (ev) => {
  if (ev.key === "Escape") { $("picker").blur(); return; }
  if (ev.key !== "Enter") return;
  ev.preventDefault();
  const r = pickClass($("picker").value);
  if (r.error) return say(r.error);
  $("picker").value = "";
  say("");
  act("label", r.c);                      // the picker keeps the focus for the next image
});

// ---------------------------------------------------------------- training
function drawProgress(p) {
  const running = p.status === "running";
  $("btn-train").disabled = running;
  $("btn-stop").disabled = !running;
  $("btn-continue").hidden = !(p.status === "stopped" || p.status === "interrupted");
  let text = p.status;
  if (p.last_epoch) {
    const span = p.last_epoch - p.first_epoch + 1, done = p.epoch - p.first_epoch + 1;
    $("bar-fill").style.width = Math.max(0, Math.min(100, 100 * done / span)) + "%";
    text += ` - round ${p.round}, epoch ${p.epoch}/${p.last_epoch}`;
    if (p.loss != null) text += `, loss ${p.loss.toFixed(2)}`;
    if (p.accuracy != null) text += `, held-out acc. ${p.accuracy.toFixed(3)}`;
  }
  if (p.message) text += ` (${p.message})`;
  $("status").textContent = text;
  $("status").dataset.epoch = p.epoch == null ? "" : String(p.epoch);
  $("status").dataset.status = p.status;
}
async function poll() {
  try {
    const p = await api("/api/progress");
    drawProgress(p);
    if (p.version !== S.version) await refresh();
  } catch (e) { say(e.message); }
  setTimeout(poll, 500);
}
async function refresh() {                 // a round ended: new points and a new queue
  S.points = await api("/api/points");
  S.version = S.points.version;
  S.hoverCache.clear();
  await drawScatter();
  await loadQueue();
  if (!$("view-components").hidden) await loadComponents();
}
$("btn-train").onclick = () => api("/api/train", { epochs: +$("epochs").value })
  .then(() => say("")).catch((e) => say(e.message));
$("btn-stop").onclick = () => api("/api/stop", {}).catch((e) => say(e.message));
$("btn-continue").onclick = () => api("/api/train", { resume: true }).catch((e) => say(e.message));
$("colour").onchange = () => { recolour(); $("colour").blur(); };  // keys label again
$("strategy").onchange = () => serial(async () => {
  $("strategy").blur();
  await api("/api/strategy", { name: $("strategy").value });
  S.focus = 0; await loadQueue();
});

// ---------------------------------------------------------------- compare
async function loadRuns() {
  const r = await api("/api/runs");
  $("runs-root").textContent = r.root;
  const body = document.querySelector("#runs tbody");
  body.innerHTML = "";
  const fmt = (v, d) => v == null ? "-" : (typeof v === "number" && d ? v.toFixed(d) : v);
  for (const run of r.runs) {
    const tr = document.createElement("tr");
    if (run.current) tr.className = "current";
    tr.innerHTML = [run.name, run.kind, run.model, run.K, run.latent_dim,
      (run.hidden_dims || []).join(","), run.data, fmt(run.labels), fmt(run.epochs),
      fmt(run.accuracy, 3), run.status].map((v) => `<td>${fmt(v)}</td>`).join("");
    const td = document.createElement("td");
    if (!run.current && run.model) {
      const b = document.createElement("button");
      b.textContent = "open";
      b.onclick = () => api("/api/open", { name: run.name }).then(() => location.reload())
        .catch((e) => alert(e.message));
      td.appendChild(b);
    } else if (run.current) td.textContent = "open now";
    tr.appendChild(td);
    body.appendChild(tr);
  }
}
for (const tab of document.querySelectorAll(".tab")) {
  tab.onclick = () => {
    document.querySelectorAll(".tab").forEach((t) => t.classList.toggle("active", t === tab));
    for (const view of ["main", "components", "compare"]) $("view-" + view).hidden =
      tab.dataset.view !== view;
    if (tab.dataset.view === "compare") loadRuns().catch((e) => say(e.message));
    else if (tab.dataset.view === "components") loadComponents().catch((e) => say(e.message));
    else Plotly.Plots.resize("scatter");
  };
}

// ---------------------------------------------------------------- start
(async function start() {
  S.state = await api("/api/state");
  $("run-name").textContent = S.state.name + " - " + S.state.n + " images, model " +
    S.state.model + ", latent " + S.state.latent_dim;
  $("epochs").value = S.state.round_epochs;
  for (const name of S.state.strategies) $("strategy").add(new Option(name, name));
  if (!S.state.has_truth) $("colour").querySelector("option[value=truth]").remove();
  setupPicker();
  const shape = S.state.image_shape;       // images larger than their box are scaled down
  document.body.classList.toggle("big-images", !!shape && Math.max(shape[0], shape[1]) > 84);
  S.known = new Array(S.state.n).fill(-1);
  for (const [i, c] of S.state.labels) S.known[i] = c;
  drawCounts();
  await refresh();
  poll();
})().catch((e) => say(e.message));
