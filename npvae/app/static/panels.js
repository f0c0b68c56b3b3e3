// The npvae app's panels beside the scatter: the colour legend, a lasso/box selection
// ("inspect", then label it as the queue) and the Components view. Uses app.js's S, $, api.
"use strict";

// ---------------------------------------------------------------- legend
function drawLegend(mode) {
  const box = $("legend");
  box.dataset.mode = mode;
  if (mode === "unc") {
    box.textContent = "colour bar: uncertainty = 1 - the largest class probability " +
      "(0: sure, 1: unsure)";
    return;
  }
  const n = mode === "comp" ? S.state.K : S.state.num_classes;
  const what = { known: "label given", pred: "predicted label", comp: "component",
                 truth: "data's own label" }[mode];
  const grey = { known: "no label given", truth: "no label in the data" }[mode];
  const sw = (colour, text) => `<span class="sw"><i style="background:${colour}"></i>${text}</span>`;
  let html = `<b>${what}:</b> `;
  for (let c = 0; c < n; c++) {
    html += sw(PALETTE[c % PALETTE.length], mode === "comp" ? c : esc(className(c)));
  }
  if (grey) html += sw("#d0d0d0", grey);
  if (mode === "known") html += " (labelled images drawn larger)";
  box.innerHTML = html;
}

// ---------------------------------------------------------------- selection
function hookSelection() {
  const el = $("scatter");
  el.on("plotly_selected", (ev) => {
    const idx = ev && ev.points ? ev.points.map((p) => p.pointIndex) : [];
    if (idx.length) inspect(idx).catch((e) => say(e.message));
  });
}
async function inspect(indices) {
  const r = await api("/api/inspect", { indices });
  S.selection = indices;
  $("sel-text").textContent = `${r.selected} selected` +
    (r.selected > r.items.length ? ` (the first ${r.items.length} shown)` : "") +
    `; ${r.to_label} of them to label (training split, no label yet)`;
  $("btn-sel-queue").disabled = !r.to_label;
  const grid = $("sel-grid");
  grid.innerHTML = "";
  for (const it of r.items) {
    const d = document.createElement("div");
    d.className = "thumb" + (it.label === null ? "" : " done");
    d.dataset.index = it.index;
    d.title = `#${it.index} (${it.split}) model: ${className(it.guess)}; top 3: ` +
      it.top3.map(([c, q]) => className(c) + ": " + q.toFixed(3)).join(", ") +
      (it.label === null ? "" : `; label ${className(it.label)}`);
    d.innerHTML = `<img src="${withToken("/api/image/" + it.index + ".png")}" alt="">
      <div>#${it.index}</div><div class="guess">${esc(it.label === null
        ? "model: " + className(it.guess) : "label " + className(it.label))}</div>`;
    grid.appendChild(d);
  }
  showSelection(true);
}
function showSelection(on) {         // the scatter gets shorter while the selection shows
  $("selection").hidden = !on;
  $("left").classList.toggle("selecting", on);
  Plotly.Plots.resize("scatter");
}
$("btn-sel-queue").onclick = () => serial(async () => {
  $("btn-sel-queue").blur();
  const q = await api("/api/select", { indices: S.selection });
  S.queue = q.items; S.focus = 0;
  $("queue-source").textContent = "the selection (" + q.items.length + " images)";
  drawQueue();
  say("");
});
$("btn-sel-close").onclick = () => { showSelection(false); $("btn-sel-close").blur(); };

// ---------------------------------------------------------------- components
async function loadComponents() {
  const v = await api("/api/components");
  const grid = $("comp-grid");
  grid.innerHTML = "";
  for (const c of v.components) {
    const d = document.createElement("div");
    d.className = "comp";
    d.innerHTML = `<img src="${c.image || ""}" alt=""><div><b>component ${c.component}</b></div>
      <div>usage ${(100 * c.usage).toFixed(1)}% (${c.count})</div>
      <div>${c.majority === null ? "no label yet" : "majority label <b>" +
        esc(className(c.majority)) + `</b> (${c.labelled} labelled)`}</div>` +
      (c.truth_majority === null ? ""
        : `<div class="truth">data's label: ${esc(className(c.truth_majority))}</div>`);
    grid.appendChild(d);
  }
  confusionTable($("confusion-given"), v.given, v.num_classes);
  $("truth-block").hidden = v.truth === null;
  if (v.truth) confusionTable($("confusion-truth"), v.truth, v.num_classes);
  $("view-components").dataset.version = String(v.version);
  $("view-components").dataset.labels = String(v.labels);
}
function confusionTable(table, rows, C) {
  const top = Math.max(1, ...rows.flat());
  let html = "<tr><th>component</th>" +
    Array.from({ length: C }, (_, c) => `<th>${esc(className(c))}</th>`).join("") +
    "<th>all</th></tr>";
  rows.forEach((row, k) => {
    html += `<tr><th>${k}</th>` + row.map((n) =>
      `<td style="background:rgba(31,119,180,${(0.6 * n / top).toFixed(3)})">${n || ""}</td>`)
      .join("") + `<td>${row.reduce((a, b) => a + b, 0)}</td></tr>`;
  });
  table.innerHTML = html;
}
