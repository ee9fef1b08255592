// glassbox workbench: plain DOM code over the JSON API (GET /api documents it). Every number
// shown is a field of an API answer, which is the CLI's --json document for the same request.
"use strict";

const main = document.getElementById("main");
const tooltip = document.getElementById("tooltip");

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null) node.setAttribute(k, v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

// Replaces a node's children: arrays flattened, null / undefined (absent sections) left out.
function put(node, ...children) {
  node.replaceChildren(...children.flat(Infinity).filter((c) => c !== null && c !== undefined));
}

async function api(path, body) {
  const opts = body === undefined ? {} : {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  };
  const res = await fetch(path, opts);
  const text = await res.text();
  let doc;
  try { doc = JSON.parse(text); } catch { doc = { error: text }; }
  if (!res.ok) throw new Error(doc.error || `${res.status} ${res.statusText}`);
  return doc;
}

const fmt = {
  int: (n) => n === null || n === undefined ? "—" : Number(n).toLocaleString("en-US"),
  bytes: (n) => {
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0, v = n;
    while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
    return `${v.toFixed(i ? 1 : 0)} ${units[i]}`;
  },
  num: (x, d = 4) => x === null || x === undefined ? "—" : Number(x).toPrecision(d),
  // Values from the model: null in JSON where they are NaN or infinite (a broken weight).
  fixed: (x, d) => Number.isFinite(x) ? x.toFixed(d) : "—",
  prob: (p) => Number.isFinite(p) ? `${(100 * p).toFixed(2)}%` : "—",
  tok: (t) => JSON.stringify(t),
};

function showError(where, err) {
  put(where, el("p", { class: "error" }, String(err.message || err)));
}

function setNav(which) {
  for (const id of ["nav-models", "nav-explore", "nav-patch", "nav-features", "nav-diff", "nav-drift", "nav-audit"]) {
    document.getElementById(id).classList.toggle("active", id === which);
  }
}

function showTip(ev, text) {
  tooltip.textContent = text;
  tooltip.hidden = false;
  tooltip.style.left = `${ev.clientX + 12}px`;
  tooltip.style.top = `${ev.clientY + 12}px`;
}
function hideTip() { tooltip.hidden = true; }

// ---- models ----------------------------------------------------------------------------

let modelsCache = null;
async function modelList() {
  if (!modelsCache) modelsCache = await api("/api/models");
  return modelsCache;
}

async function pageModels() {
  setNav("nav-models");
  put(main, el("h1", {}, "Models"), el("p", { class: "muted" }, "Loading…"));
  const models = await modelList();
  put(main, 
    el("h1", {}, "Models"),
    el("div", { class: "cards", id: "model-cards" }, models.map((m) => m.weights
      ? el("div", { class: "card" },
        el("a", { href: `#/model/${m.id}` }, m.name),
        el("div", { class: "muted" }, `${m.architecture?.family || "?"} · ${m.format}`),
        el("div", {}, `${fmt.int(m.parameters)} parameters · ${fmt.bytes(m.bytes)}`),
        el("div", {}, el("a", { href: `#/explore/${m.id}` }, "Prompt explorer →")))
      // A release folder without weights is served for its audit only.
      : el("div", { class: "card" },
        el("a", { href: `#/audit/model/${m.id}` }, m.name),
        el("div", { class: "muted" }, "release folder without weights"),
        el("div", {}, el("a", { href: `#/audit/model/${m.id}` }, "Audit →"))),
    )),
  );
}

function keyValueTable(rows) {
  return el("table", {}, rows.map(([k, v]) => el("tr", {}, el("th", {}, k), el("td", {}, v))));
}

async function pageModel(id) {
  setNav("nav-models");
  put(main, el("p", { class: "muted" }, "Loading…"));
  const doc = await api(`/api/models/${id}`);
  const a = doc.architecture;
  const archRows = [
    ["family", a.family], ["classes", (a.classes || []).join(", ")], ["layers", a.layers],
    ["d_model", a.d_model], ["heads", a.heads], ["kv_heads", a.kv_heads], ["head_dim", a.head_dim],
    ["d_mlp", a.d_mlp], ["vocab", a.vocab], ["context_length", a.context_length],
    ["positions", a.positions], ["norm", a.norm], ["tied_embeddings", a.tied_embeddings],
    ["experts", a.experts], ["experts_per_token", a.experts_per_token],
  ].filter(([, v]) => v !== null && v !== undefined && v !== "").map(([k, v]) => [k, String(v)]);
  const comp = Object.entries(doc.parameters_by_component).map(([k, v]) => [k, fmt.int(v)]);
  const detail = el("div", { id: "tensor-detail" });
  put(main, 
    el("h1", {}, doc.path),
    el("p", {}, `${doc.format} · ${fmt.int(doc.parameters)} parameters · ${fmt.bytes(doc.bytes)} · `,
      el("a", { href: `#/explore/${id}` }, "prompt explorer")),
    el("div", { class: "row top" },
      el("div", {}, el("h2", {}, "Architecture"), keyValueTable(archRows)),
      el("div", {}, el("h2", {}, "Parameters by component"), keyValueTable(comp),
        el("h2", {}, "By dtype"),
        el("table", { id: "dtype-table" },
          el("tr", {}, el("th", {}, "dtype"), el("th", { class: "num" }, "tensors"), el("th", { class: "num" }, "parameters"), el("th", { class: "num" }, "bytes")),
          doc.dtypes.map((d) => el("tr", {}, el("td", {}, d.dtype), el("td", { class: "num" }, fmt.int(d.tensors)), el("td", { class: "num" }, fmt.int(d.parameters)), el("td", { class: "num" }, fmt.bytes(d.bytes))))))),
    el("h2", {}, `Tensors (${doc.tensors.length})`),
    tensorTable(id, doc.tensors, detail),
    detail,
  );
}

function tensorTable(id, tensors, detail) {
  const columns = [
    ["name", (t) => t.name, false], ["shape", (t) => t.shape.join(" × "), false],
    ["dtype", (t) => t.dtype, false], ["bytes", (t) => t.bytes, true], ["component", (t) => t.component, false],
  ];
  let sortBy = -1, ascending = true, filter = "";
  const body = el("tbody");
  const render = () => {
    let rows = tensors.filter((t) => t.name.toLowerCase().includes(filter));
    if (sortBy >= 0) {
      const key = columns[sortBy][1];
      rows = rows.slice().sort((x, y) => {
        const a = key(x), b = key(y);
        const c = typeof a === "number" ? a - b : String(a).localeCompare(String(b));
        return ascending ? c : -c;
      });
    }
    marks();
    put(body, ...rows.map((t) => el("tr", { "data-tensor": t.name },
      el("td", {}, el("a", { href: "javascript:void 0", class: "tensor-link", onclick: () => tensorDetail(id, t.name, detail) }, t.name)),
      el("td", {}, t.shape.join(" × ")), el("td", {}, t.dtype),
      el("td", { class: "num" }, fmt.bytes(t.bytes)), el("td", {}, t.component))));
  };
  const head = el("tr", {}, columns.map(([name, , numeric], i) => el("th", {
    class: `sortable${numeric ? " num" : ""}`, "data-column": name,
    onclick: () => { ascending = sortBy === i ? !ascending : true; sortBy = i; render(); },
  }, name)));
  const marks = () => [...head.children].forEach((th, i) => {
    th.textContent = columns[i][0] + (i === sortBy ? (ascending ? " ▲" : " ▼") : "");
  });
  const search = el("input", { type: "search", id: "tensor-search", placeholder: "search tensors",
    oninput: (e) => { filter = e.target.value.toLowerCase(); render(); } });
  render();
  return el("div", {}, el("div", { class: "row" }, search), el("table", { id: "tensor-table" }, el("thead", {}, head), body));
}

async function tensorDetail(id, name, where) {
  put(where, el("h2", {}, name), el("p", { class: "spinner" }, "Computing statistics…"));
  try {
    const doc = await api(`/api/models/${id}/tensors/${encodeURIComponent(name)}?bins=40`);
    const s = doc.stats.tensors[name];
    const h = doc.histogram;
    put(where, 
      el("h2", {}, name),
      s ? el("table", { id: "tensor-stats" }, ["elements", "mean", "std", "min", "max", "abs_max", "l2_norm", "zeros", "nan", "inf"].map((k) =>
        el("tr", {}, el("th", {}, k), el("td", { class: "num", "data-stat": k, "data-value": s[k] }, k === "elements" || k === "zeros" || k === "nan" || k === "inf" ? fmt.int(s[k]) : fmt.num(s[k], 6)))))
        : el("p", { class: "muted" }, "no finite values"),
      histogramSvg(h),
    );
  } catch (err) { showError(where, err); }
}

function histogramSvg(h) {
  const ns = "http://www.w3.org/2000/svg";
  const W = 640, H = 180, pad = 30;
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("width", W); svg.setAttribute("height", H + 20); svg.setAttribute("id", "histogram");
  const max = Math.max(1, ...h.counts);
  const bw = (W - 2 * pad) / h.counts.length;
  h.counts.forEach((c, i) => {
    const r = document.createElementNS(ns, "rect");
    const bh = (H - pad) * c / max;
    r.setAttribute("x", pad + i * bw); r.setAttribute("y", H - bh); r.setAttribute("width", Math.max(1, bw - 1)); r.setAttribute("height", bh);
    r.setAttribute("fill", "#2455c3");
    r.addEventListener("mousemove", (e) => showTip(e, `[${fmt.num(h.edges[i])}, ${fmt.num(h.edges[i + 1])}): ${fmt.int(c)}`));
    r.addEventListener("mouseleave", hideTip);
    svg.append(r);
  });
  for (const [x, v] of [[pad, h.edges[0]], [W - pad, h.edges[h.edges.length - 1]]]) {
    const t = document.createElementNS(ns, "text");
    t.setAttribute("x", x); t.setAttribute("y", H + 14); t.setAttribute("text-anchor", "middle");
    t.textContent = fmt.num(v);
    svg.append(t);
  }
  return svg;
}

// ---- defaults ----------------------------------------------------------------------------

// What the pages offer until the user types their own: the served model's card examples (the
// Hub's `widget` list: a prompt, and for patching the first two whose shown outputs differ),
// else the indirect-object task, which GPT-2-style vocabularies know.
const IOI = {
  clean: "When Mary and John went to the store, John gave a drink to",
  corrupt: "When Mary and John went to the store, Mary gave a drink to",
  answer: " Mary", wrong: " John",
};
function defaultsFor(model) {
  const examples = (model?.examples || []).filter((x) => x.text);
  const told = examples.filter((x) => x.output);
  let pair = null;
  for (let i = 0; i < told.length && !pair; i++) {
    const other = told.slice(i + 1).find((x) => x.output !== told[i].output);
    if (other) pair = { clean: told[i].text, corrupt: other.text, answer: told[i].output, wrong: other.output };
  }
  const first = examples[0];
  return {
    prompt: first ? first.text : IOI.clean,
    patch: pair || IOI,
    ablate: first ? first.text + (first.output || "") : IOI.clean + IOI.answer,
    drift: examples.length ? examples.map((x) => x.text).join("\n")
      : [IOI.clean, "The capital of France is", "the cat sat on the mat"].join("\n"),
  };
}
async function modelDefaults(id) {
  return defaultsFor((await modelList()).find((m) => m.id === id));
}

// ---- prompt explorer ---------------------------------------------------------------------

// A prompt the user typed (null: the model's default) and the lens target.
const explorer = { prompt: null, target: "" };

async function pageExplore(id) {
  setNav("nav-explore");
  const models = (await modelList()).filter((m) => m.weights);
  const select = el("select", { id: "model-select", onchange: (e) => { location.hash = `#/explore/${e.target.value}`; } },
    models.map((m) => el("option", { value: m.id, ...(m.id === id ? { selected: "" } : {}) }, m.name)));
  const fallback = defaultsFor(models.find((m) => m.id === id)).prompt;
  const prompt = el("textarea", { id: "prompt", rows: 3 });
  prompt.value = explorer.prompt ?? fallback;
  const target = el("input", { type: "text", id: "target", placeholder: "lens target (token or #id; default: the model's prediction)", size: 44 });
  target.value = explorer.target;
  const results = el("div", { id: "results" });
  const run = el("button", { id: "run", onclick: async () => {
    if (prompt.value !== fallback) explorer.prompt = prompt.value;
    explorer.target = target.value;
    run.disabled = true;
    await explore(id, prompt.value, target.value, results);
    run.disabled = false;
  } }, "Run");
  put(main, 
    el("h1", {}, "Prompt explorer"),
    el("div", { class: "row" }, "Model", select),
    prompt,
    el("div", { class: "row" }, target, run),
    results,
  );
}

async function explore(id, prompt, target, where) {
  put(where, el("p", { class: "spinner" }, "Running…"));
  try {
    const [pred, attn, lens] = await Promise.all([
      api(`/api/models/${id}/predictions`, { prompt, top_k: 10 }),
      api(`/api/models/${id}/attention`, { prompt }),
      api(`/api/models/${id}/lens`, { prompt, top_k: 5, ...(target ? { target } : {}) }),
    ]);
    const predBox = el("div", { id: "predictions" });
    const tokens = el("div", { class: "tokens", id: "tokens" });
    const select = (p) => {
      for (const t of tokens.children) t.classList.toggle("selected", Number(t.dataset.position) === p);
      put(predBox, predictionTable(pred.positions[p]));
    };
    pred.positions.forEach((p) => tokens.append(el("span", { class: "tok", "data-position": p.position, onclick: () => select(p.position) }, p.token)));
    select(pred.positions.length - 1);
    put(where, 
      el("h2", {}, `Tokens (${pred.input_ids.length}) — click one for its next-token predictions`),
      tokens, predBox,
      el("h2", {}, "Attention patterns — click a head for the large view"),
      attentionGrid(attn),
      el("h2", {}, `Logit lens${lens.report.target ? ` — following ${fmt.tok(lens.report.target.token)}` : ""}`),
      el("div", { class: "scroll" }, lensGrid(lens.report)),
      hasExperts(id) ? el("h2", {}, "Expert routing (weight of each chosen expert, per token)") : null,
      hasExperts(id) ? expertRouting(id, prompt) : null,
      el("h2", {}, "Direct logit attribution (last position)"),
      attributionPanel(id, prompt, pred.positions[pred.positions.length - 1].top[0]),
      el("h2", {}, "Head roles (random repeated sequences, the CLI's defaults)"),
      headRoles(id),
    );
  } catch (err) { showError(where, err); }
}

function predictionTable(p) {
  return el("table", { id: "pred-table", "data-position": p.position },
    el("caption", { class: "muted" }, `after position ${p.position} ${fmt.tok(p.token)}`),
    el("tr", {}, el("th", {}, "token"), el("th", { class: "num" }, "id"), el("th", { class: "num" }, "logit"), el("th", { class: "num" }, "probability")),
    p.top.map((c) => el("tr", {}, el("td", { class: "tok-cell" }, fmt.tok(c.token)), el("td", { class: "num" }, c.id),
      el("td", { class: "num", "data-logit": c.logit }, fmt.fixed(c.logit, 4)), el("td", { class: "num", "data-prob": c.prob }, fmt.prob(c.prob)))));
}

function heat(v) {
  // White → blue: the colour of weight v in [0, 1].
  const t = Math.max(0, Math.min(1, v));
  return `rgb(${Math.round(255 - 219 * t)},${Math.round(255 - 170 * t)},${Math.round(255 - 60 * t)})`;
}

function drawPattern(canvas, pattern, cell) {
  const n = pattern.length;
  canvas.width = n * cell; canvas.height = n * cell;
  const ctx = canvas.getContext("2d");
  for (let q = 0; q < n; q++) for (let k = 0; k < n; k++) {
    ctx.fillStyle = heat(pattern[q][k]);
    ctx.fillRect(k * cell, q * cell, cell, cell);
  }
}

function attentionGrid(attn) {
  const large = el("div", { class: "large", id: "large-view" });
  const grid = el("div", { class: "grid", id: "attention-grid" });
  const n = attn.input_ids.length;
  const cell = Math.max(1, Math.floor(72 / n));
  grid.style.gridTemplateColumns = `repeat(${attn.n_heads + 1}, max-content)`;
  attn.patterns.forEach((layer, l) => {
    grid.append(el("div", { class: "muted" }, `L${l}`));
    if (!layer) { for (let h = 0; h < attn.n_heads; h++) grid.append(el("div", { class: "muted" }, "—")); return; }
    layer.forEach((pattern, h) => {
      const canvas = el("canvas");
      drawPattern(canvas, pattern, cell);
      const mini = el("div", { class: "mini", "data-layer": l, "data-head": h, onclick: () => {
        for (const m of grid.querySelectorAll(".mini")) m.classList.remove("selected");
        mini.classList.add("selected");
        showLarge(large, attn, l, h);
      } }, canvas, `L${l}H${h}`);
      grid.append(mini);
    });
  });
  return el("div", {}, grid, large);
}

function showLarge(where, attn, l, h) {
  const pattern = attn.patterns[l][h];
  const tokens = attn.tokens;
  const n = tokens.length;
  const cell = Math.max(8, Math.min(28, Math.floor(560 / n)));
  const label = 110;
  const canvas = el("canvas", { id: "large-canvas" });
  canvas.width = label + n * cell; canvas.height = label + n * cell;
  const ctx = canvas.getContext("2d");
  ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, canvas.width, canvas.height);
  for (let q = 0; q < n; q++) for (let k = 0; k < n; k++) {
    ctx.fillStyle = heat(pattern[q][k]);
    ctx.fillRect(label + k * cell, label + q * cell, cell, cell);
  }
  ctx.fillStyle = "#374151"; ctx.font = `${Math.min(12, cell)}px ui-monospace, monospace`;
  ctx.textAlign = "right"; ctx.textBaseline = "middle";
  tokens.forEach((t, i) => ctx.fillText(fmt.tok(t).slice(0, 14), label - 4, label + i * cell + cell / 2));
  tokens.forEach((t, i) => {
    ctx.save(); ctx.translate(label + i * cell + cell / 2, label - 4); ctx.rotate(-Math.PI / 2);
    ctx.textAlign = "left"; ctx.fillText(fmt.tok(t).slice(0, 14), 0, 0); ctx.restore();
  });
  canvas.addEventListener("mousemove", (e) => {
    const r = canvas.getBoundingClientRect();
    const k = Math.floor((e.clientX - r.left - label) / cell), q = Math.floor((e.clientY - r.top - label) / cell);
    if (q >= 0 && k >= 0 && q < n && k < n) showTip(e, `${fmt.tok(tokens[q])} → ${fmt.tok(tokens[k])}: ${fmt.fixed(pattern[q][k], 4)}`);
    else hideTip();
  });
  canvas.addEventListener("mouseleave", hideTip);
  put(where, el("h2", { id: "large-title", "data-layer": l, "data-head": h }, `Layer ${l}, head ${h} (rows: query, columns: key)`), canvas);
}

function lensGrid(report) {
  const n = report.prompt_tokens.length;
  return el("table", { class: "lens", id: "lens-grid" },
    el("tr", {}, el("th", {}, "layer"), report.prompt_tokens.map((t) => el("th", {}, fmt.tok(t)))),
    report.layers.map((name, l) => el("tr", {}, el("th", {}, name),
      Array.from({ length: n }, (_, p) => {
        const best = report.top[l][p][0];
        const td = el("td", { "data-layer": l, "data-position": p }, fmt.tok(best.token));
        // Probability on a log scale from 1e-4 to 1, kept light enough to read the token.
        td.style.background = heat(0.6 * Math.max(0, 1 + Math.log10(Math.max(best.prob, 1e-4)) / 4));
        const target = report.target ? report.target.scores[l][p] : null;
        td.addEventListener("mousemove", (e) => showTip(e, report.top[l][p].map((c) => `${fmt.tok(c.token)} ${fmt.prob(c.prob)}`).join("\n")
          + (target ? `\ntarget ${fmt.tok(report.target.token)}: ${fmt.prob(target.prob)}, rank ${target.rank}` : "")));
        td.addEventListener("mouseleave", hideTip);
        return td;
      }))));
}

function signedGrid(id, rows, rowLabel, colLabel, values, tip) {
  const extent = Math.max(1e-9, ...values.flat().filter(Number.isFinite).map(Math.abs));
  return el("table", { class: "lens", id },
    el("tr", {}, el("th", {}, ""), values[0].map((_, c) => el("th", {}, colLabel(c)))),
    values.map((row, r) => el("tr", {}, el("th", {}, rowLabel(r)), row.map((v, c) => {
      const td = el("td", { "data-row": r, "data-col": c, "data-value": v }, fmt.fixed(v, 3));
      td.style.background = diverging(v, extent);
      td.addEventListener("mousemove", (e) => showTip(e, tip(r, c, v)));
      td.addEventListener("mouseleave", hideTip);
      return td;
    }))));
}

function attributionPanel(id, prompt, best) {
  const target = el("input", { type: "text", id: "dla-target", size: 12 });
  target.value = `#${best.id}`;
  const versus = el("input", { type: "text", id: "dla-versus", size: 12, placeholder: "optional" });
  const out = el("div", { id: "dla-results" });
  const go = async () => {
    put(out, el("p", { class: "spinner" }, "Attributing…"));
    try {
      const doc = await api(`/api/models/${id}/attribute`, { prompt, target: target.value, ...(versus.value ? { versus: versus.value } : {}) });
      put(out, 
        el("p", { id: "dla-metric" }, `${doc.metric} at position ${doc.position}: ${fmt.fixed(doc.total, 4)} (sum of parts ${fmt.fixed(doc.sum_of_parts, 4)})`),
        signedGrid("dla-heads", doc.heads.length, (l) => `L${l}`, (h) => `H${h}`, doc.heads, (l, h, v) => `L${l}H${h}: ${v}`),
        el("table", { id: "dla-parts" }, doc.parts.filter((p) => !p.label.match(/^L\d+H\d+$/)).map((p) =>
          el("tr", {}, el("td", {}, p.label), el("td", { class: "num", "data-value": p.value }, fmt.fixed(p.value, 4))))),
      );
    } catch (err) { showError(out, err); }
  };
  const run = el("button", { id: "dla-run", onclick: go }, "Attribute");
  go();
  return el("div", {}, el("div", { class: "row" }, "target", target, "versus", versus, run), out);
}

function hasExperts(id) {
  const m = (modelsCache || []).find((m) => m.id === id);
  return !!(m && m.architecture && m.architecture.experts);
}

function expertRouting(id, prompt) {
  const out = el("div", { id: "expert-routing" }, el("p", { class: "spinner" }, "Routing…"));
  (async () => {
    try {
      const doc = await api(`/api/models/${id}/experts`, { prompt });
      put(out, el("div", { class: "row top" }, doc.layers.map((layer) => {
        const weights = doc.tokens.map((_, p) => {
          const row = new Array(layer.n_experts).fill(0);
          for (const [e, w] of layer.routes[p]) row[e] = w;
          return row;
        });
        return el("div", {}, el("div", { class: "muted" }, `layer ${layer.layer}`),
          el("table", { class: "lens", "data-layer": layer.layer },
            el("tr", {}, el("th", {}, ""), Array.from({ length: layer.n_experts }, (_, e) => el("th", {}, `E${e}`))),
            weights.map((row, p) => el("tr", {}, el("th", {}, fmt.tok(doc.tokens[p])), row.map((w, e) => {
              const td = el("td", { "data-position": p, "data-expert": e, "data-value": w }, w ? w.toFixed(2) : "");
              td.style.background = heat(w);
              return td;
            })))));
      })));
    } catch (err) { showError(out, err); }
  })();
  return out;
}

const headCache = new Map();
function headRoles(id) {
  const out = el("div", { id: "head-roles" }, el("p", { class: "spinner" }, "Scoring heads…"));
  (async () => {
    try {
      if (!headCache.has(id)) headCache.set(id, await api(`/api/models/${id}/heads`, {}));
      const doc = headCache.get(id);
      const s = doc.scores;
      put(out, el("div", { class: "row top" }, ["previous_token", "duplicate_token", "induction", "first_token"].map((role) =>
        el("div", {}, el("div", { class: "muted" }, role.replace("_", "-")),
          el("table", { class: "lens", "data-role": role },
            el("tr", {}, el("th", {}, ""), Array.from({ length: s.n_heads }, (_, h) => el("th", {}, `H${h}`))),
            s[role].map((row, i) => el("tr", {}, el("th", {}, `L${s.layers[i]}`), row.map((v, h) => {
              const td = el("td", { "data-layer": s.layers[i], "data-head": h, "data-value": v }, fmt.fixed(v, 2));
              td.style.background = heat(v);
              return td;
            }))))))));
    } catch (err) { showError(out, err); }
  })();
  return out;
}

// ---- patching ----------------------------------------------------------------------------

// The pair the user typed (null fields: the model's default pair).
const patchForm = { clean: null, corrupt: null, answer: null, wrong: null, what: "resid_pre", method: "activation" };

// Reads server-sent events from a streamed response: calls on(event, data) for each.
async function readEvents(res, on) {
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      let event = "message", data = "";
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) event = line.slice(6).trim();
        else if (line.startsWith("data:")) data += line.slice(5).trim();
      }
      if (data) on(event, JSON.parse(data));
    }
  }
}

// Runs a streamed computation (patch, ablate): progress into `progress` / `status`, the
// document to `done`; `cancel` aborts it. Returns when it ends.
function streamedRunner(path, body, { run, cancel, progress, status, results, done }) {
  let controller = null;
  cancel.addEventListener("click", () => controller && controller.abort());
  run.addEventListener("click", async () => {
    controller = new AbortController();
    run.disabled = true; cancel.disabled = false;
    progress.value = 0; status.textContent = "starting…"; put(results);
    try {
      const res = await fetch(path, {
        method: "POST", headers: { "content-type": "application/json" },
        body: JSON.stringify(body()), signal: controller.signal,
      });
      if (!res.ok) {
        const doc = await res.json().catch(() => ({ error: res.statusText }));
        throw new Error(doc.error);
      }
      await readEvents(res, (event, data) => {
        if (event === "progress") {
          progress.max = Math.max(1, data.total); progress.value = data.done;
          status.textContent = `${data.done} of ${data.total}`;
        } else if (event === "result") {
          status.textContent = "done";
          progress.value = progress.max;
          put(results, done(data));
        } else if (event === "error") {
          throw new Error(data.error);
        }
      });
    } catch (err) {
      if (err.name === "AbortError") status.textContent = "cancelled";
      else { status.textContent = ""; showError(results, err); }
    }
    run.disabled = false; cancel.disabled = true; controller = null;
  });
}

const ablateForm = { text: null, targets: "heads", method: "zero", each: true };

function ablationPanel(id, defaults) {
  const text = el("input", { type: "text", id: "ablate-text", size: 64 });
  text.value = ablateForm.text ?? defaults.ablate;
  text.addEventListener("input", () => { ablateForm.text = text.value; });
  const targets = el("input", { type: "text", id: "ablate-targets", size: 24, title: "L3H1, L3MLP, L3N42, heads, mlps (comma-separated)" });
  targets.value = ablateForm.targets;
  targets.addEventListener("input", () => { ablateForm.targets = targets.value; });
  const method = el("select", { id: "ablate-method" }, ["zero", "mean", "resample"].map((m) => el("option", { value: m }, m)));
  method.addEventListener("change", () => { ablateForm.method = method.value; });
  const reference = el("input", { type: "text", id: "ablate-reference", size: 40, placeholder: "reference prompts for mean / resample, separated by |" });
  const each = el("input", { type: "checkbox", id: "ablate-each", ...(ablateForm.each ? { checked: "" } : {}) });
  each.addEventListener("change", () => { ablateForm.each = each.checked; });
  const parts = {
    run: el("button", { id: "ablate-run" }, "Run"),
    cancel: el("button", { id: "ablate-cancel", disabled: "" }, "Cancel"),
    progress: el("progress", { id: "ablate-progress", max: 1, value: 0 }),
    status: el("span", { id: "ablate-status", class: "muted" }),
    results: el("div", { id: "ablate-results" }),
    done: ablationResults,
  };
  streamedRunner(`/api/models/${id}/ablate`, () => ({
    text: text.value,
    targets: ablateForm.targets.split(",").map((t) => t.trim()).filter(Boolean),
    method: ablateForm.method,
    reference: reference.value.split("|").map((t) => t.trim()).filter(Boolean),
    each: ablateForm.each,
  }), parts);
  return el("div", {},
    el("h1", {}, "Ablation"),
    el("div", { class: "row" }, el("label", {}, "text ", text)),
    el("div", { class: "row" }, el("label", {}, "targets ", targets), el("label", {}, "method ", method), reference,
      el("label", {}, each, " one at a time")),
    el("div", { class: "row" }, parts.run, parts.cancel, parts.progress, parts.status),
    parts.results);
}

function ablationResults(doc) {
  const rows = doc.results.map((r) => ({
    label: r.targets.map((t) => t.kind === "head" ? `L${t.layer}H${t.head}` : t.kind === "mlp" ? `L${t.layer}MLP` : t.kind === "neuron" ? `L${t.layer}N${t.neuron}` : JSON.stringify(t)).join(", "),
    baseline: r.baseline_loss, ablated: r.ablated_loss, delta: r.ablated_loss - r.baseline_loss,
  }));
  const extent = Math.max(1e-9, ...rows.map((r) => Math.abs(r.delta)));
  // One head at a time over every head: the layer × head grid of the loss change too.
  const heads = doc.each && doc.results.every((r) => r.targets.length === 1 && r.targets[0].kind === "head")
    ? doc.results.map((r) => r.targets[0]) : null;
  let grid = null;
  if (heads) {
    const layers = Math.max(...heads.map((t) => t.layer)) + 1, perLayer = Math.max(...heads.map((t) => t.head)) + 1;
    const values = Array.from({ length: layers }, () => new Array(perLayer).fill(NaN));
    heads.forEach((t, i) => { values[t.layer][t.head] = rows[i].delta; });
    grid = el("div", {}, el("p", { class: "muted" }, "Δ loss when each head is ablated (blue: the loss rises without it; red: it falls)"),
      signedGrid("ablate-grid", layers, (l) => `L${l}`, (h) => `H${h}`, values, (l, h, v) => `L${l}H${h}: Δ loss ${v}`));
  }
  return el("div", {}, grid, el("table", { id: "ablate-table" },
    el("tr", {}, ["targets", "baseline loss", "ablated loss", "Δ loss"].map((h) => el("th", {}, h))),
    rows.map((r, i) => {
      const td = el("td", { class: "num", "data-index": i, "data-value": r.delta }, fmt.fixed(r.delta, 4));
      td.style.background = diverging(r.delta, extent);
      return el("tr", {}, el("td", {}, r.label), el("td", { class: "num" }, fmt.fixed(r.baseline, 4)), el("td", { class: "num" }, fmt.fixed(r.ablated, 4)), td);
    })));
}

async function pagePatch(id) {
  setNav("nav-patch");
  const models = (await modelList()).filter((m) => m.weights);
  const defaults = defaultsFor(models.find((m) => m.id === id));
  const inputs = {};
  const field = (name, size) => {
    const input = el("input", { type: "text", id: `patch-${name}`, size });
    input.value = patchForm[name] ?? defaults.patch[name];
    inputs[name] = input;
    input.addEventListener("input", () => { patchForm[name] = input.value; });
    return el("label", {}, `${name} `, input);
  };
  const choice = (name, options) => {
    const select = el("select", { id: `patch-${name}` }, options.map((o) => el("option", { value: o, ...(o === patchForm[name] ? { selected: "" } : {}) }, o)));
    select.addEventListener("change", () => { patchForm[name] = select.value; });
    return el("label", {}, `${name} `, select);
  };
  const parts = {
    run: el("button", { id: "patch-run" }, "Run"),
    cancel: el("button", { id: "patch-cancel", disabled: "" }, "Cancel"),
    progress: el("progress", { id: "patch-progress", max: 1, value: 0 }),
    status: el("span", { id: "patch-status", class: "muted" }),
    results: el("div", { id: "patch-results" }),
    done: patchResults,
  };
  streamedRunner(`/api/models/${id}/patch`, () => ({
    ...patchForm, ...Object.fromEntries(Object.entries(inputs).map(([k, i]) => [k, i.value])),
  }), parts);
  put(main, 
    el("h1", {}, "Activation patching"),
    el("div", { class: "row" }, "Model", el("select", { id: "model-select", onchange: (e) => { location.hash = `#/patch/${e.target.value}`; } },
      models.map((m) => el("option", { value: m.id, ...(m.id === id ? { selected: "" } : {}) }, m.name)))),
    el("div", { class: "row" }, field("clean", 64)),
    el("div", { class: "row" }, field("corrupt", 64)),
    el("div", { class: "row" }, field("answer", 10), field("wrong", 10),
      choice("what", ["resid_pre", "attn_out", "mlp_out", "heads"]),
      choice("method", ["activation", "attribution", "both"])),
    el("div", { class: "row" }, parts.run, parts.cancel, parts.progress, parts.status),
    parts.results,
    ablationPanel(id, defaults),
  );
}

function diverging(v, extent) {
  // Blue for recovery toward the clean run (positive), red for the other way.
  const t = Math.max(-1, Math.min(1, v / extent));
  if (!Number.isFinite(t)) return "#ddd";
  const a = Math.abs(t);
  return t >= 0
    ? `rgb(${Math.round(255 - 219 * a)},${Math.round(255 - 170 * a)},${Math.round(255 - 60 * a)})`
    : `rgb(${Math.round(255 - 40 * a)},${Math.round(255 - 190 * a)},${Math.round(255 - 190 * a)})`;
}

function patchResults(doc) {
  const cleanTokens = doc.clean_ids.length;
  const extent = Math.max(1, ...doc.results.flatMap((r) => r.normalized.flat().filter(Number.isFinite).map(Math.abs)));
  return el("div", {},
    el("p", {}, `metric: logit[${doc.answer_token}] − logit[${doc.wrong_token}] at the last position; gap ${fmt.fixed(doc.gap, 4)}`),
    doc.warnings.map((w) => el("p", { class: "error" }, `⚠ ${w}`)),
    doc.results.map((r) => {
      const cols = r.normalized[0].length;
      const table = el("table", { class: "lens patch-grid", "data-method": r.method },
        el("tr", {}, el("th", {}, "layer"), Array.from({ length: cols }, (_, c) => el("th", {}, r.what === "heads" ? `H${c}` : String(c)))),
        r.normalized.map((row, l) => el("tr", {}, el("th", {}, `L${l}`), row.map((v, c) => {
          const td = el("td", { "data-layer": l, "data-col": c, "data-value": v }, fmt.fixed(v, 2));
          td.style.background = diverging(v, extent);
          td.addEventListener("mousemove", (e) => showTip(e, `L${l} ${r.what === "heads" ? "H" : "position "}${c}: normalised ${v}, metric ${r.raw[l][c]}`));
          td.addEventListener("mouseleave", hideTip);
          return td;
        }))));
      return el("div", {}, el("h2", {}, `${r.method} patching of ${r.what} (0 = corrupted, 1 = clean; ${cleanTokens} tokens)`), table);
    }),
  );
}

// ---- features ----------------------------------------------------------------------------

async function pageFeatures(id) {
  setNav("nav-features");
  put(main, el("h1", {}, "Features"), el("p", { class: "muted" }, "Loading…"));
  let sae;
  try { sae = await api(`/api/models/${id}/sae`); } catch (err) {
    put(main, el("h1", {}, "Features"), el("p", { class: "muted", id: "no-sae" }, err.message));
    return;
  }
  const dash = el("div", { id: "dashboards" });
  const ids = el("input", { type: "text", id: "feature-ids", size: 24, placeholder: "feature ids, e.g. 3,17 (empty: the most frequent)" });
  const show = el("button", { id: "feature-show", onclick: () => loadDashboards(id, ids.value, dash) }, "Show");
  const prompt = el("textarea", { id: "feature-prompt", rows: 2 });
  prompt.value = explorer.prompt ?? (await modelDefaults(id)).prompt;
  const activeOut = el("div", { id: "active-features" });
  const run = el("button", { id: "feature-run", onclick: async () => {
    put(activeOut, el("p", { class: "spinner" }, "Encoding…"));
    try {
      const doc = await api(`/api/models/${id}/features/active`, { prompt: prompt.value, top_k: 5 });
      const list = el("div", { id: "active-list" });
      const tokens = el("div", { class: "tokens" }, doc.tokens.map((t, p) => el("span", { class: "tok", "data-position": p, onclick: () => {
        for (const c of tokens.children) c.classList.toggle("selected", Number(c.dataset.position) === p);
        put(list, el("table", { id: "active-table", "data-position": p },
          el("tr", {}, el("th", {}, "feature"), el("th", { class: "num" }, "activation")),
          doc.active[p].map((f) => el("tr", {}, el("td", {}, el("a", { href: "javascript:void 0", "data-feature": f.feature,
            onclick: () => { ids.value = String(f.feature); loadDashboards(id, ids.value, dash); } }, `feature ${f.feature}`)),
            el("td", { class: "num", "data-value": f.activation }, fmt.fixed(f.activation, 4))))));
      } }, t)));
      put(activeOut, el("p", { class: "muted" }, `${doc.hook_name}: click a token for its most active features`), tokens, list);
      tokens.lastChild.click();
    } catch (err) { showError(activeOut, err); }
  } }, "Encode");
  put(main, 
    el("h1", {}, "Features"),
    el("p", { id: "sae-about" }, `${sae.architecture} SAE ${sae.sae} at ${sae.hook_name}, ${fmt.int(sae.d_sae)} features; dashboards over ${sae.corpus || "no corpus"}`),
    el("h2", {}, "Features active on a prompt"), prompt, el("div", { class: "row" }, run), activeOut,
    el("h2", {}, "Dashboards"), el("div", { class: "row" }, ids, show), dash,
  );
}

async function loadDashboards(id, list, where) {
  put(where, el("p", { class: "spinner" }, "Reading the corpus…"));
  try {
    const q = list.trim() ? `?features=${encodeURIComponent(list.trim())}` : "";
    const d = await api(`/api/models/${id}/features${q}`);
    const text = (t) => d.token_text[String(t)] ?? `#${t}`;
    put(where, 
      el("p", { class: "muted" }, `${d.tokens} tokens read at ${d.hook_name}; ${d.dead_features} of ${d.d_sae} features never fire`),
      ...d.features.map((f) => el("div", { class: "card dashboard", "data-feature": f.feature },
        el("h2", {}, `Feature ${f.feature}`),
        el("p", { "data-density": f.density }, `fires on ${fmt.fixed(100 * f.density, 3)}% of tokens; max activation ${fmt.fixed(f.max_activation, 3)}`),
        el("div", { class: "contexts" }, f.top_contexts.map((c) => el("div", { class: "tokens", "data-activation": c.activation },
          el("span", { class: "muted" }, fmt.fixed(c.activation, 3)),
          c.tokens.map((t, i) => {
            const span = el("span", { class: `tok${i === c.marked ? " selected" : ""}` }, text(t));
            span.style.background = heat(0.7 * (f.max_activation > 0 ? c.activations[i] / f.max_activation : 0));
            span.addEventListener("mousemove", (e) => showTip(e, `${fmt.tok(text(t))}: ${c.activations[i]}`));
            span.addEventListener("mouseleave", hideTip);
            return span;
          })))),
        d.logit_effects ? el("p", {}, "raises: ", f.logit_top.map(([t, v]) => `${fmt.tok(text(t))} ${v >= 0 ? "+" : ""}${fmt.fixed(v, 2)}`).join(", ")) : null,
        d.logit_effects ? el("p", {}, "lowers: ", f.logit_bottom.map(([t, v]) => `${fmt.tok(text(t))} ${fmt.fixed(v, 2)}`).join(", ")) : null,
      )),
    );
  } catch (err) { showError(where, err); }
}

// ---- diff --------------------------------------------------------------------------------

async function pageDiff(a, b) {
  setNav("nav-diff");
  const models = (await modelList()).filter((m) => m.weights);
  const pick = (id, value) => el("select", { id }, models.map((m) => el("option", { value: m.id, ...(m.id === value ? { selected: "" } : {}) }, m.name)));
  const selA = pick("diff-a", a ?? models[0]?.id), selB = pick("diff-b", b ?? models[Math.min(1, models.length - 1)]?.id);
  const out = el("div", { id: "diff-results" });
  const run = el("button", { id: "diff-run", onclick: () => { location.hash = `#/diff/${selA.value}/${selB.value}`; } }, "Compare");
  put(main, el("h1", {}, "Diff of two checkpoints"), el("div", { class: "row" }, "A", selA, "B", selB, run), out);
  if (a === undefined || b === undefined) return;
  put(out, el("p", { class: "spinner" }, "Comparing…"));
  try {
    const doc = await api(`/api/diff/${a}/${b}`);
    const s = doc.summary;
    put(out, 
      el("p", { id: "diff-summary" }, `${s.compared} tensors compared (${s.identical} identical), ${s.shape_changed} changed shape, ${s.only_in_a} only in A, ${s.only_in_b} only in B; largest ‖A−B‖/‖A‖ ${fmt.num(s.max_relative_change)}`),
      el("table", { id: "diff-table" },
        el("tr", {}, ["tensor", "status", "‖A−B‖/‖A‖", "cosine", "max |A−B|", "shape A", "shape B"].map((h) => el("th", {}, h))),
        doc.tensors.map((t) => el("tr", { "data-tensor": t.name },
          el("td", {}, t.name), el("td", {}, t.status),
          el("td", { class: "num", "data-value": t.relative_change ?? "" }, fmt.num(t.relative_change)),
          el("td", { class: "num" }, fmt.num(t.cosine)), el("td", { class: "num" }, fmt.num(t.max_abs_diff)),
          el("td", {}, (t.shape_a || []).join(" × ")), el("td", {}, (t.shape_b || []).join(" × "))))),
    );
  } catch (err) { showError(out, err); }
}

// ---- drift -------------------------------------------------------------------------------

// The prompts the user typed (null: model A's default prompts).
const driftForm = { prompts: null };

async function pageDrift() {
  setNav("nav-drift");
  const models = (await modelList()).filter((m) => m.weights);
  const pick = (id, value) => el("select", { id }, models.map((m) => el("option", { value: m.id, ...(m.id === value ? { selected: "" } : {}) }, m.name)));
  const selA = pick("drift-a", models[0]?.id), selB = pick("drift-b", models[Math.min(1, models.length - 1)]?.id);
  const prompts = el("textarea", { id: "drift-prompts", rows: 4 });
  prompts.value = driftForm.prompts ?? defaultsFor(models[0]).drift;
  prompts.addEventListener("input", () => { driftForm.prompts = prompts.value; });
  const out = el("div", { id: "drift-results" });
  const run = el("button", { id: "drift-run", onclick: async () => {
    run.disabled = true;
    put(out, el("p", { class: "spinner" }, "Comparing…"));
    try {
      const doc = await api(`/api/drift/${selA.value}/${selB.value}`, { prompts: prompts.value });
      const r = doc.report, o = r.outputs;
      put(out, 
        el("p", { id: "drift-outputs", "data-kl": o.kl_mean, "data-top1": o.top1_agreement },
          `${o.predicted_tokens} predicted tokens: KL(A‖B) mean ${fmt.num(o.kl_mean)} nats (max ${fmt.num(o.kl_max)}), top-1 agreement ${fmt.prob(o.top1_agreement)}, perplexity ${fmt.num(o.perplexity_a)} → ${fmt.num(o.perplexity_b)}`),
        r.notes.map((n) => el("p", { class: "muted" }, n)),
        el("h2", {}, "Per layer"),
        el("table", { id: "drift-layers" },
          el("tr", {}, ["layer", "residual cosine", "relative error", "lens top-1 agreement", "lens KL", "attention local change", "MLP local change"].map((h) => el("th", {}, h))),
          r.layers.map((l) => el("tr", {}, el("td", {}, l.layer), [l.resid_cosine, l.resid_relative_error, l.lens_top1_agreement, l.lens_kl, l.attn_local_change, l.mlp_local_change].map((v) => el("td", { class: "num" }, fmt.num(v)))))),
        el("h2", {}, "Components, most moved first (local change: B's component fed A's inputs)"),
        el("table", { id: "drift-components" },
          el("tr", {}, ["component", "local change", "end-to-end change", "DLA in A", "DLA in B"].map((h) => el("th", {}, h))),
          r.components.slice(0, 30).map((c) => el("tr", { "data-component": c.label },
            el("td", {}, c.label), el("td", { class: "num", "data-value": c.local_change }, fmt.num(c.local_change)),
            el("td", { class: "num" }, fmt.num(c.end_to_end_change)), el("td", { class: "num" }, fmt.num(c.dla_a)), el("td", { class: "num" }, fmt.num(c.dla_b))))),
      );
    } catch (err) { showError(out, err); }
    run.disabled = false;
  } }, "Compare");
  put(main, el("h1", {}, "Drift: what changed between two versions of a model"),
    el("div", { class: "row" }, "A", selA, "B", selB), prompts, el("div", { class: "row" }, run), out);
}

// ---- audit -------------------------------------------------------------------------------

async function pageAuditIndex() {
  setNav("nav-audit");
  const [models, registry] = await Promise.all([modelList(), api("/api/registry")]);
  const releases = models.filter((m) => m.release);
  put(main, 
    el("h1", {}, "Audit"),
    el("h2", {}, "Release folders served here"),
    releases.length
      ? el("ul", { id: "audit-releases" }, releases.map((m) => el("li", {}, el("a", { href: `#/audit/model/${m.id}` }, m.path))))
      : el("p", { class: "muted" }, "none (serve a release folder to audit it)"),
    el("h2", {}, `The registry (${registry.length} releases, each audited from its stored sources)`),
    el("table", { id: "registry-table" },
      el("tr", {}, ["model id", "name", "producer", "tier", "weights licence", "checked"].map((h) => el("th", {}, h))),
      registry.map((r) => el("tr", { "data-id": r.id },
        el("td", {}, el("a", { href: `#/audit/registry/${r.id}` }, r.id)), el("td", {}, r.name), el("td", {}, r.producer),
        el("td", {}, r.tier), el("td", {}, r.weights_license || "—"), el("td", {}, r.checked)))),
  );
}

function licenceText(l) {
  if (!l) return "—";
  return `${l.id || l.written}${l.osi_approved ? " (OSI-approved)" : ""}`;
}

async function pageAudit(kind, key) {
  setNav("nav-audit");
  put(main, el("p", { class: "muted" }, "Auditing…"));
  const a = await api(kind === "model" ? `/api/models/${key}/audit` : `/api/registry/${key}`);
  put(main, 
    el("h1", { id: "audit-title" }, `${a.release}${a.version ? ` ${a.version}` : ""}`),
    el("p", {}, "Tier: ", el("strong", { id: "audit-tier" }, a.tier), ` · weights: ${licenceText(a.weights_license)} (${a.weights_terms})`,
      a.mof ? ` · Model Openness Framework class ${a.mof.class ?? "—"}` : ""),
    a.restrictions.length ? el("div", {}, el("h2", {}, "Restrictions"),
      el("ul", { id: "audit-restrictions" }, a.restrictions.map((r) => el("li", {}, el("q", {}, r.description), ` — ${r.source}`)))) : null,
    el("h2", {}, "OSAID requirements"),
    el("table", { id: "audit-osaid" }, a.osaid.map((r) => el("tr", {},
      el("td", {}, r.met ? "✔" : "✘"), el("td", {}, r.requirement), el("td", { class: "muted" }, r.why)))),
    a.missing_for_next_tier.length ? el("div", {}, el("h2", {}, "Missing for the next tier"), el("ul", {}, a.missing_for_next_tier.map((m) => el("li", {}, typeof m === "string" ? m : JSON.stringify(m))))) : null,
    el("h2", {}, `Components (${a.components.length})`),
    el("table", { id: "audit-components" },
      el("tr", {}, ["component", "evidence", "licence", "restrictions"].map((h) => el("th", {}, h))),
      a.components.map((c) => el("tr", { "data-component": c.name },
        el("td", {}, c.name),
        el("td", {}, `${c.evidence.kind}${c.evidence.detail ? `: ${c.evidence.detail}` : ""}`),
        el("td", {}, licenceText(c.license)),
        el("td", {}, c.license && c.license.restrictions.length ? c.license.restrictions.map((r) => el("div", {}, typeof r === "string" ? r : r.description)) : "—")))),
    a.notes.length ? el("div", {}, el("h2", {}, "Notes"), el("ul", {}, a.notes.map((n) => el("li", {}, typeof n === "string" ? n : JSON.stringify(n))))) : null,
    el("p", { class: "muted" }, a.disclaimer),
  );
}

// ---- routing -----------------------------------------------------------------------------

async function route() {
  hideTip();
  const parts = location.hash.replace(/^#\/?/, "").split("/");
  try {
    if (parts[0] === "model" && parts[1] !== undefined) await pageModel(Number(parts[1]));
    else if (parts[0] === "explore") await pageExplore(Number(parts[1] || 0));
    else if (parts[0] === "patch") await pagePatch(Number(parts[1] || 0));
    else if (parts[0] === "diff") await pageDiff(parts[1] === undefined ? undefined : Number(parts[1]), parts[2] === undefined ? undefined : Number(parts[2]));
    else if (parts[0] === "drift") await pageDrift();
    else if (parts[0] === "features") await pageFeatures(Number(parts[1] || 0));
    else if (parts[0] === "audit" && parts[1] === "model") await pageAudit("model", Number(parts[2]));
    else if (parts[0] === "audit" && parts[1] === "registry") await pageAudit("registry", parts.slice(2).join("/"));
    else if (parts[0] === "audit") await pageAuditIndex();
    else await pageModels();
  } catch (err) { showError(main, err); }
}

window.addEventListener("hashchange", route);
route();
