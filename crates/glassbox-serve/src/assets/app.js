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
  // As the CLI prints sizes (inspect's human_bytes): decimal units, two decimals.
  bytes: (n) => {
    for (const [scale, unit] of [[1e12, "TB"], [1e9, "GB"], [1e6, "MB"], [1e3, "KB"]]) {
      if (n >= scale) return `${(n / scale).toFixed(2)} ${unit}`;
    }
    return `${n} B`;
  },
  num: (x, d = 4) => x === null || x === undefined ? "—" : Number(x).toPrecision(d),
  // Values from the model: null in JSON where they are NaN or infinite (a broken weight).
  fixed: (x, d) => Number.isFinite(x) ? x.toFixed(d) : "—",
  prob: (p) => Number.isFinite(p) ? `${(100 * p).toFixed(2)}%` : "—",
  tok: (t) => JSON.stringify(t),
  // A grid value as the CLI's terminal prints it (render::terminal::format_value).
  value: (v) => {
    if (!Number.isFinite(v)) return "—";
    const a = Math.abs(v);
    if (a !== 0 && (a < 1e-3 || a >= 1e5)) return v.toExponential(1).replace("e+", "e");
    return v.toFixed(a >= 100 ? 0 : a >= 10 ? 1 : 3);
  },
};

// A token as a label, as the CLI writes one (render::token_label): whitespace made visible,
// control characters escaped; `i:token` for a position (render::position_labels).
function tokenLabel(t) {
  let out = "";
  for (const c of String(t)) {
    if (c === " " || c === "Ġ") out += "␣";
    else if (c === "\n") out += "↵";
    else if (c === "\t") out += "⇥";
    else if (/\p{Cc}/u.test(c)) out += `\\x${c.codePointAt(0).toString(16).padStart(2, "0")}`;
    else out += c;
  }
  return out;
}
const positionLabel = (i, t) => `${i}:${tokenLabel(t)}`;

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
// The tooltip under an element (shown when it takes the keyboard focus).
function tipAt(node, text) {
  const r = node.getBoundingClientRect();
  showTip({ clientX: r.left - 12, clientY: r.bottom - 8 }, text);
}

// What an element shows on hover, shown on keyboard focus too (and read as its description).
function hover(node, text) {
  const get = () => typeof text === "function" ? text() : text;
  node.addEventListener("mousemove", (e) => showTip(e, get()));
  node.addEventListener("mouseleave", hideTip);
  node.addEventListener("focus", () => tipAt(node, get()));
  node.addEventListener("blur", hideTip);
  node.setAttribute("aria-describedby", "tooltip");
  return node;
}

// A click-only element made a button for the keyboard too: reachable by Tab, pressed by
// Enter or Space; `pressed` (true / false) makes it a toggle.
function pressable(node, pressed) {
  node.tabIndex = 0;
  node.setAttribute("role", "button");
  if (pressed !== undefined) node.setAttribute("aria-pressed", String(pressed));
  node.addEventListener("keydown", (e) => {
    if (e.target !== node || (e.key !== "Enter" && e.key !== " ")) return;
    e.preventDefault();
    node.click();
  });
  return node;
}
// Marks one of a set of toggles pressed (its `selected` class and aria-pressed).
function markSelected(nodes, isSelected) {
  for (const n of nodes) {
    const on = !!isSelected(n);
    n.classList.toggle("selected", on);
    n.setAttribute("aria-pressed", String(on));
  }
}

// A table of coloured cells: one Tab stop (its first cell), the arrow keys move between cells,
// each cell's tooltip shown on focus.
function keyGrid(table, label) {
  table.setAttribute("role", "grid");
  if (label) table.setAttribute("aria-label", label);
  const cells = [...table.querySelectorAll("td")];
  cells.forEach((td, i) => { td.tabIndex = i === 0 ? 0 : -1; });
  const moves = { ArrowLeft: [0, -1], ArrowRight: [0, 1], ArrowUp: [-1, 0], ArrowDown: [1, 0] };
  table.addEventListener("keydown", (e) => {
    const td = e.target.closest && e.target.closest("td");
    const m = moves[e.key];
    if (!td || !m) return;
    const rows = [...table.rows];
    const next = rows[rows.indexOf(td.parentElement) + m[0]]?.cells[td.cellIndex + m[1]];
    if (!next || next.tagName !== "TD") return;
    e.preventDefault();
    td.tabIndex = -1; next.tabIndex = 0; next.focus();
  });
  return table;
}

// A row of items (a context's tokens): one Tab stop, the arrow keys move between them.
function keyRow(container, selector, label) {
  container.setAttribute("role", "group");
  if (label) container.setAttribute("aria-label", label);
  const items = [...container.querySelectorAll(selector)];
  items.forEach((n, i) => { n.tabIndex = i === 0 ? 0 : -1; });
  container.addEventListener("keydown", (e) => {
    const i = items.indexOf(e.target);
    const step = { ArrowLeft: -1, ArrowRight: 1 }[e.key];
    if (i < 0 || !step || !items[i + step]) return;
    e.preventDefault();
    items[i].tabIndex = -1; items[i + step].tabIndex = 0; items[i + step].focus();
  });
  return container;
}

// ---- colours -----------------------------------------------------------------------------

const css = ([r, g, b]) => `rgb(${r},${g},${b})`;

// WCAG relative luminance of an sRGB colour.
function luminance([r, g, b]) {
  const lin = (c) => { c /= 255; return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4; };
  return 0.2126 * lin(r) + 0.7152 * lin(g) + 0.0722 * lin(b);
}
// Black or white text, whichever contrasts more with the background: at least 4.58:1 on any
// colour (WCAG AA asks 4.5:1).
function textOn(rgb) {
  const l = luminance(rgb);
  return (l + 0.05) / 0.05 >= 1.05 / (l + 0.05) ? "#000" : "#fff";
}
// Colours a cell: its background and a text colour readable on it. Every coloured cell.
function paint(node, rgb) {
  node.style.background = css(rgb);
  node.style.color = textOn(rgb);
  return node;
}

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
      el("td", {}, el("button", { type: "button", class: "tensor-link linklike", onclick: () => tensorDetail(id, t.name, detail) }, t.name)),
      el("td", {}, t.shape.join(" × ")), el("td", {}, t.dtype),
      el("td", { class: "num" }, fmt.bytes(t.bytes)), el("td", {}, t.component))));
  };
  // Each header sorts by its column (again: the other way); its button takes the keyboard.
  const head = el("tr", {}, columns.map(([name, , numeric], i) => el("th", {
    class: `sortable${numeric ? " num" : ""}`, "data-column": name, "aria-sort": "none",
    onclick: () => { ascending = sortBy === i ? !ascending : true; sortBy = i; render(); },
  }, el("button", { type: "button", class: "linklike sort", title: `sort by ${name}` }, name))));
  const marks = () => [...head.children].forEach((th, i) => {
    th.firstChild.textContent = columns[i][0] + (i === sortBy ? (ascending ? " ▲" : " ▼") : "");
    th.setAttribute("aria-sort", i === sortBy ? (ascending ? "ascending" : "descending") : "none");
  });
  const search = el("input", { type: "search", id: "tensor-search", placeholder: "search tensors", "aria-label": "search tensors by name",
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
    hover(r, `[${fmt.num(h.edges[i])}, ${fmt.num(h.edges[i + 1])}): ${fmt.int(c)}`);
    svg.append(r);
  });
  for (const [x, v] of [[pad, h.edges[0]], [W - pad, h.edges[h.edges.length - 1]]]) {
    const t = document.createElementNS(ns, "text");
    t.setAttribute("x", x); t.setAttribute("y", H + 14); t.setAttribute("text-anchor", "middle");
    t.textContent = fmt.num(v);
    svg.append(t);
  }
  return keyRow(svg, "rect", "histogram of the values: the arrow keys move between bins");
}

// ---- defaults ----------------------------------------------------------------------------

// What the pages offer until the user types their own: the served model's card examples (the
// Hub's `widget` list: a prompt, and for patching the first two whose shown outputs differ),
// else those of another served model with the same tokenizer (a checkpoint of a carded model:
// see sameTokenizer), else the indirect-object task, which GPT-2-style vocabularies know.
const IOI = {
  clean: "When Mary and John went to the store, John gave a drink to",
  corrupt: "When Mary and John went to the store, Mary gave a drink to",
  answer: " Mary", wrong: " John",
};
// Whether two served models tokenize alike, as far as the model list tells: the tokenizer's
// fingerprint where the list gives one (`tokenizer`), else the same vocabulary size, family
// and architecture classes.
function sameTokenizer(a, b) {
  if (a.tokenizer !== undefined && b.tokenizer !== undefined) return a.tokenizer !== null && a.tokenizer === b.tokenizer;
  const x = a.architecture, y = b.architecture;
  return !!(x && y && x.vocab && x.vocab === y.vocab && x.family === y.family
    && (x.classes || []).join() === (y.classes || []).join());
}
const textExamples = (m) => (m?.examples || []).filter((x) => x.text);
// The examples offered for a model: its own, else a same-tokenizer model's (`from`).
function examplesFor(model, models) {
  const own = textExamples(model);
  if (own.length || !model) return { examples: own, from: null };
  const donor = (models || modelsCache || []).find((m) => m.id !== model.id && m.weights && textExamples(m).length && sameTokenizer(m, model));
  return donor ? { examples: textExamples(donor), from: donor } : { examples: [], from: null };
}
function defaultsFor(model, models) {
  const { examples, from } = examplesFor(model, models);
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
    // Where the examples come from when they are another model's (null: the model's own or IOI).
    from: from ? from.name : null,
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
  const defaults = defaultsFor(models.find((m) => m.id === id), models);
  const fallback = defaults.prompt;
  const prompt = el("textarea", { id: "prompt", rows: 3, "aria-label": "prompt" });
  prompt.value = explorer.prompt ?? fallback;
  const target = el("input", { type: "text", id: "target", placeholder: "lens target (token or #id; default: the model's prediction)", size: 44,
    "aria-label": "logit lens target: a token or #id (default: the model's prediction)" });
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
    el("div", { class: "row" }, el("label", {}, "Model ", select)),
    prompt,
    defaults.from ? el("p", { class: "muted", id: "prompt-from" }, `The example prompt is ${defaults.from}'s (the same vocabulary; this model's card has none).`) : null,
    el("div", { class: "row" }, target, run),
    results,
  );
}

// The note on a prompt with tokens the tokenizer does not know (the predictions document's
// `unknown_tokens`: how many; `unknown_token`: the tokenizer's text for them, if given).
function unknownNote(pred) {
  const n = pred.unknown_tokens;
  if (!Number.isInteger(n) || n <= 0) return null;
  const unk = pred.unknown_token ?? "<unk>";
  const at = pred.positions.filter((p) => p.token === unk).map((p) => p.position);
  return el("p", { class: "warning", id: "unknown-tokens", "data-count": n },
    `${n} token${n === 1 ? " of this prompt is" : "s of this prompt are"} unknown to the tokenizer (${unk})`,
    at.length ? `: position${at.length === 1 ? "" : "s"} ${at.join(", ")}` : "",
    ". The model reads each as that one placeholder token, so its predictions there say little; try words in the model's vocabulary.");
}

async function explore(id, prompt, target, where) {
  put(where, el("p", { class: "spinner" }, "Running…"));
  try {
    // Each view stands on its own: attention's shorter token limit (or any one failure) must
    // not blank the predictions and lens that succeeded.
    const [predicted, attn, lens] = await Promise.allSettled([
      api(`/api/models/${id}/predictions`, { prompt, top_k: 10 }),
      api(`/api/models/${id}/attention`, { prompt }),
      api(`/api/models/${id}/lens`, { prompt, top_k: 5, ...(target ? { target } : {}) }),
    ]);
    if (predicted.status === "rejected") throw predicted.reason;
    const pred = predicted.value;
    const shown = (settled, view) => settled.status === "fulfilled" ? view(settled.value)
      : el("p", { class: "error" }, String(settled.reason?.message || settled.reason));
    const predBox = el("div", { id: "predictions" });
    const tokens = el("div", { class: "tokens", id: "tokens", role: "group", "aria-label": "prompt tokens: press one for its next-token predictions" });
    const select = (p) => {
      markSelected(tokens.children, (t) => Number(t.dataset.position) === p);
      put(predBox, predictionTable(pred.positions[p]));
    };
    const note = unknownNote(pred);
    const unk = note ? pred.unknown_token ?? "<unk>" : null;
    pred.positions.forEach((p) => tokens.append(pressable(el("span", {
      class: `tok${p.token === unk ? " unknown" : ""}`, "data-position": p.position,
      "aria-label": `position ${p.position} ${fmt.tok(p.token)}${p.token === unk ? " (unknown to the tokenizer)" : ""}`,
      onclick: () => select(p.position),
    }, p.token), false)));
    select(pred.positions.length - 1);
    put(where, 
      el("h2", {}, `Tokens (${pred.input_ids.length}) — click one for its next-token predictions`),
      note, tokens, predBox,
      el("h2", {}, "Attention patterns — click a head for the large view"),
      shown(attn, attentionGrid),
      shown(lens, (l) => lensPanel(l.report)),
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

// White → blue: the colour of a weight v in [0, 1] (attention, routing, head scores, and
// probabilities placed on the lens's log scale).
// A value that is not a number (a NaN weight, null in JSON) is grey, never zero's white.
function heat(v) {
  if (!Number.isFinite(v)) return [221, 221, 221];
  const t = Math.max(0, Math.min(1, v));
  return [Math.round(255 - 219 * t), Math.round(255 - 170 * t), Math.round(255 - 60 * t)];
}

// The CLI's diverging colours (render::Scale::Diverging, ColorBrewer RdBu reversed): positive
// values red, negative blue, (near) white at zero, ±extent the ends.
const DIVERGING = [
  [5, 48, 97], [33, 102, 172], [67, 147, 195], [146, 197, 222], [209, 229, 240], [247, 247, 247],
  [253, 219, 199], [244, 165, 130], [214, 96, 77], [178, 24, 43], [103, 0, 31],
];
function colormap(anchors, t) {
  const x = Math.max(0, Math.min(1, t)) * (anchors.length - 1);
  const i = Math.min(Math.floor(x), anchors.length - 2), f = x - i;
  return anchors[i].map((a, j) => Math.round(a + (anchors[i + 1][j] - a) * f));
}
function diverging(v, extent) {
  if (!Number.isFinite(v)) return [221, 221, 221];
  return colormap(DIVERGING, 0.5 + 0.5 * Math.max(-1, Math.min(1, v / extent)));
}

// A colour scale's key: `lo`, a bar of the colours from 0 to 1, `hi`, and what they mean.
function legend(colour, lo, hi, ...text) {
  const bar = el("span", { class: "legend-bar", "aria-hidden": "true" });
  bar.style.background = `linear-gradient(to right, ${Array.from({ length: 11 }, (_, i) => `${css(colour(i / 10))} ${10 * i}%`).join(", ")})`;
  return el("div", { class: "legend" }, el("span", { class: "legend-scale" }, lo, bar, hi), el("span", {}, ...text));
}
// The key of a signed grid: what red (positive) and blue (negative) mean there.
function signedLegend(extent, red, blue) {
  // No finite value other than 0 (a broken model): no scale to give.
  const end = (v) => extent > 1e-9 ? fmt.value(v) : "—";
  return legend((t) => diverging(2 * t - 1, 1), end(-extent), end(extent),
    el("span", { class: "swatch-red" }, "red"), `: ${red}; `, el("span", { class: "swatch-blue" }, "blue"), `: ${blue}; white: 0.`);
}

function drawPattern(canvas, pattern, cell) {
  const n = pattern.length;
  canvas.width = n * cell; canvas.height = n * cell;
  const ctx = canvas.getContext("2d");
  for (let q = 0; q < n; q++) for (let k = 0; k < n; k++) {
    ctx.fillStyle = css(heat(pattern[q][k]));
    ctx.fillRect(k * cell, q * cell, cell, cell);
  }
}

function attentionGrid(attn) {
  const large = el("div", { class: "large", id: "large-view" });
  const grid = el("div", { class: "grid", id: "attention-grid", role: "group", "aria-label": "attention patterns: press a head for the large view" });
  const n = attn.input_ids.length;
  const cell = Math.max(1, Math.floor(72 / n));
  grid.style.gridTemplateColumns = `repeat(${attn.n_heads + 1}, max-content)`;
  attn.patterns.forEach((layer, l) => {
    grid.append(el("div", { class: "muted" }, `L${l}`));
    if (!layer) { for (let h = 0; h < attn.n_heads; h++) grid.append(el("div", { class: "muted" }, "—")); return; }
    layer.forEach((pattern, h) => {
      const canvas = el("canvas", { "aria-hidden": "true" });
      drawPattern(canvas, pattern, cell);
      const mini = pressable(el("div", { class: "mini", "data-layer": l, "data-head": h, "aria-label": `layer ${l}, head ${h}`, onclick: () => {
        markSelected(grid.querySelectorAll(".mini"), (m) => m === mini);
        showLarge(large, attn, l, h);
      } }, canvas, `L${l}H${h}`), false);
      grid.append(mini);
    });
  });
  return el("div", {}, grid,
    legend(heat, "0", "1", "attention weight (rows: query, columns: key)"), large);
}

function showLarge(where, attn, l, h) {
  const pattern = attn.patterns[l][h];
  const tokens = attn.tokens;
  const n = tokens.length;
  const cell = Math.max(8, Math.min(28, Math.floor(560 / n)));
  const label = 110;
  const canvas = el("canvas", { id: "large-canvas", tabindex: "0", role: "img", "aria-describedby": "tooltip",
    "aria-label": `attention of layer ${l}, head ${h}: the arrow keys move over the cells, each read in the tooltip` });
  canvas.width = label + n * cell; canvas.height = label + n * cell;
  const ctx = canvas.getContext("2d");
  // The cell the keyboard is on ([query, key]), outlined; null without the focus.
  let cursor = null;
  const draw = () => {
    ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, canvas.width, canvas.height);
    for (let q = 0; q < n; q++) for (let k = 0; k < n; k++) {
      ctx.fillStyle = css(heat(pattern[q][k]));
      ctx.fillRect(label + k * cell, label + q * cell, cell, cell);
    }
    ctx.fillStyle = "#374151"; ctx.font = `${Math.min(12, cell)}px ui-monospace, monospace`;
    ctx.textAlign = "right"; ctx.textBaseline = "middle";
    tokens.forEach((t, i) => ctx.fillText(fmt.tok(t).slice(0, 14), label - 4, label + i * cell + cell / 2));
    tokens.forEach((t, i) => {
      ctx.save(); ctx.translate(label + i * cell + cell / 2, label - 4); ctx.rotate(-Math.PI / 2);
      ctx.textAlign = "left"; ctx.fillText(fmt.tok(t).slice(0, 14), 0, 0); ctx.restore();
    });
    if (cursor) {
      const [q, k] = cursor;
      ctx.lineWidth = 2; ctx.strokeStyle = "#000";
      ctx.strokeRect(label + k * cell + 1, label + q * cell + 1, cell - 2, cell - 2);
      ctx.lineWidth = 1; ctx.strokeStyle = "#fff";
      ctx.strokeRect(label + k * cell + 2.5, label + q * cell + 2.5, cell - 5, cell - 5);
    }
  };
  draw();
  const tipText = (q, k) => `${fmt.tok(tokens[q])} → ${fmt.tok(tokens[k])}: ${fmt.fixed(pattern[q][k], 4)}`;
  const keyTip = () => {
    const r = canvas.getBoundingClientRect();
    const [q, k] = cursor;
    showTip({ clientX: r.left + label + (k + 1) * cell, clientY: r.top + label + (q + 1) * cell }, tipText(q, k));
  };
  canvas.addEventListener("mousemove", (e) => {
    const r = canvas.getBoundingClientRect();
    const k = Math.floor((e.clientX - r.left - label) / cell), q = Math.floor((e.clientY - r.top - label) / cell);
    if (q >= 0 && k >= 0 && q < n && k < n) showTip(e, tipText(q, k));
    else hideTip();
  });
  canvas.addEventListener("mouseleave", hideTip);
  canvas.addEventListener("focus", () => { cursor = cursor || [n - 1, 0]; draw(); keyTip(); });
  canvas.addEventListener("blur", () => { cursor = null; draw(); hideTip(); });
  canvas.addEventListener("keydown", (e) => {
    const m = { ArrowLeft: [0, -1], ArrowRight: [0, 1], ArrowUp: [-1, 0], ArrowDown: [1, 0] }[e.key];
    if (!m || !cursor) return;
    e.preventDefault();
    cursor = [Math.max(0, Math.min(n - 1, cursor[0] + m[0])), Math.max(0, Math.min(n - 1, cursor[1] + m[1]))];
    draw(); keyTip();
  });
  put(where, el("h2", { id: "large-title", "data-layer": l, "data-head": h }, `Layer ${l}, head ${h} (rows: query, columns: key)`), canvas);
}

// The CLI's lens marks a cell `≈` where the runner-up has at least this share of the top
// token's probability (cmd/lens.rs NEAR_TIE).
const NEAR_TIE = 0.8;
// Where a probability falls on the lens's colour scale: log10 from 1e-4 (and below) to 1, as
// the CLI's render::Scale::Probability.
const probScale = (p) => Number.isFinite(p) ? (Math.log10(Math.min(1, Math.max(p, 1e-4))) + 4) / 4 : NaN;
const probColour = (p) => Number.isFinite(p) ? heat(probScale(p)) : [221, 221, 221];
const probLegend = (what) => legend(heat, "1e-4", "1", `cell colour: ${what} on a log scale (1e-4, 1e-3, 0.01, 0.1, 1 evenly spaced; 1e-4 and below alike)`);

function lensPanel(report) {
  const n = report.prompt_tokens.length;
  const columns = report.prompt_tokens.map((t, i) => positionLabel(i, t));
  const header = () => el("tr", {}, el("th", {}, "layer"), columns.map((c) => el("th", {}, c)));
  const top = keyGrid(el("table", { class: "lens", id: "lens-grid" }, header(),
    report.layers.map((name, l) => el("tr", {}, el("th", {}, name),
      Array.from({ length: n }, (_, p) => {
        const cands = report.top[l][p];
        const best = cands[0];
        const tie = cands.length > 1 && Number.isFinite(best.prob) && Number.isFinite(cands[1].prob) && cands[1].prob >= NEAR_TIE * best.prob;
        // The `≈` of a near tie is drawn by the style sheet: the cell's text stays the token.
        const td = el("td", { "data-layer": l, "data-position": p, ...(tie ? { class: "near-tie", "data-near-tie": "" } : {}) }, fmt.tok(best.token));
        paint(td, probColour(best.prob));
        const target = report.target ? report.target.scores[l][p] : null;
        return hover(td, `${name} ${columns[p]}${tie ? " (near tie)" : ""}\n`
          + cands.map((c) => `${fmt.tok(c.token)} ${fmt.prob(c.prob)}`).join("\n")
          + (target ? `\ntarget ${fmt.tok(report.target.token)}: ${fmt.prob(target.prob)}, rank ${target.rank}` : ""));
      })))), "logit lens: the top token per layer and position");
  const t = report.target;
  const targetGrid = t ? keyGrid(el("table", { class: "lens", id: "lens-target" }, header(),
    report.layers.map((name, l) => el("tr", {}, el("th", {}, name),
      Array.from({ length: n }, (_, p) => {
        const s = t.scores[l][p];
        const td = el("td", { "data-layer": l, "data-position": p, "data-prob": s.prob, "data-rank": s.rank }, `${fmt.value(s.prob)} #${s.rank ?? "—"}`);
        paint(td, probColour(s.prob));
        return hover(td, `${name} ${columns[p]}: ${fmt.tok(t.token)} probability ${fmt.num(s.prob, 4)}, logit ${fmt.fixed(s.logit, 4)}, rank ${s.rank} (#0 = top)`);
      })))), `the target ${fmt.tok(t.token)}: probability and rank per layer and position`) : null;
  return [
    el("h2", {}, "Logit lens: the top token at each layer (rows) and position (columns)"),
    el("div", { class: "scroll" }, top),
    probLegend("the top token's probability"),
    el("p", { class: "muted legend" }, "≈ after a token: the runner-up has at least 80 % of the top token's probability (a near tie)."),
    t ? el("h2", { id: "lens-target-title" }, `Target ${fmt.tok(t.token)}: probability and rank (#0 = top) per layer and position`) : null,
    t ? el("div", { class: "scroll" }, targetGrid) : null,
    t ? probLegend(`the probability of ${fmt.tok(t.token)}`) : null,
  ];
}

function signedGrid(id, rows, rowLabel, colLabel, values, tip, extent) {
  return keyGrid(el("table", { class: "lens", id },
    el("tr", {}, el("th", {}, ""), values[0].map((_, c) => el("th", {}, colLabel(c)))),
    values.map((row, r) => el("tr", {}, el("th", {}, rowLabel(r)), row.map((v, c) => {
      const td = el("td", { "data-row": r, "data-col": c, "data-value": v }, fmt.fixed(v, 3));
      paint(td, diverging(v, extent));
      return hover(td, tip(r, c, v));
    })))), id);
}
const extentOf = (values) => Math.max(1e-9, ...values.flat().filter(Number.isFinite).map(Math.abs));

function attributionPanel(id, prompt, best) {
  const target = el("input", { type: "text", id: "dla-target", size: 12 });
  target.value = `#${best.id}`;
  const versus = el("input", { type: "text", id: "dla-versus", size: 12, placeholder: "optional" });
  const out = el("div", { id: "dla-results" });
  const go = async () => {
    put(out, el("p", { class: "spinner" }, "Attributing…"));
    try {
      const doc = await api(`/api/models/${id}/attribute`, { prompt, target: target.value, ...(versus.value ? { versus: versus.value } : {}) });
      const extent = extentOf(doc.heads);
      put(out, 
        el("p", { id: "dla-metric" }, `${doc.metric} at position ${doc.position}: ${fmt.fixed(doc.total, 4)} (sum of parts ${fmt.fixed(doc.sum_of_parts, 4)})`),
        signedGrid("dla-heads", doc.heads.length, (l) => `L${l}`, (h) => `H${h}`, doc.heads, (l, h, v) => `L${l}H${h}: ${v}`, extent),
        signedLegend(extent, `the head raises ${doc.metric}`, "it lowers it"),
        el("table", { id: "dla-parts" }, doc.parts.filter((p) => !p.label.match(/^L\d+H\d+$/)).map((p) =>
          el("tr", {}, el("td", {}, p.label), el("td", { class: "num", "data-value": p.value }, fmt.fixed(p.value, 4))))),
      );
    } catch (err) { showError(out, err); }
  };
  const run = el("button", { id: "dla-run", onclick: go }, "Attribute");
  go();
  return el("div", {}, el("div", { class: "row" },
    el("label", {}, "target ", target), el("label", {}, "versus ", versus), run), out);
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
              return paint(td, heat(w));
            })))));
      })), legend(heat, "0", "1", "cell colour: the expert's routing weight for the token (blank: not chosen)"));
    } catch (err) { showError(out, err); }
  })();
  return out;
}

// The roles as the CLI titles them (cmd/heads.rs).
const ROLE_TITLES = {
  previous_token: "previous-token (attention to q−1)",
  duplicate_token: "duplicate-token (attention to the earlier copy of the token)",
  induction: "induction (attention to the token after the earlier copy)",
  first_token: "first-token (attention to position 0)",
};

const headCache = new Map();
function headRoles(id) {
  const out = el("div", { id: "head-roles" }, el("p", { class: "spinner" }, "Scoring heads…"));
  (async () => {
    try {
      if (!headCache.has(id)) {
        // `top` every head: the document then says of each whether it beats chance.
        const a = (modelsCache || []).find((m) => m.id === id)?.architecture;
        const every = a && a.layers && a.heads ? a.layers * a.heads : 100000;
        headCache.set(id, await api(`/api/models/${id}/heads`, { top: every }));
      }
      const doc = headCache.get(id);
      const s = doc.scores;
      const label = (l, h) => `L${l}H${h}`;
      put(out,
        (doc.warnings || []).map((w) => el("p", { class: "warning" }, `⚠ ${w}`)),
        el("div", { class: "row top" }, ["previous_token", "duplicate_token", "induction", "first_token"].map((role) => {
          const chance = doc.chance ? doc.chance[role] : null;
          const errors = s.standard_error ? s.standard_error[role] : null;
          // Per head, the document's verdict: its score exceeds twice chance by more than two
          // standard errors (heads.rs RankedHead::beats_chance).
          const ranked = (doc.top && doc.top[role]) || [];
          const verdict = new Map(ranked.map((r) => [label(r.layer, r.head), r]));
          const above = ranked.filter((r) => r.beats_chance);
          const table = keyGrid(el("table", { class: "lens", "data-role": role },
            el("tr", {}, el("th", {}, ""), Array.from({ length: s.n_heads }, (_, h) => el("th", {}, `H${h}`))),
            s[role].map((row, i) => el("tr", {}, el("th", {}, `L${s.layers[i]}`), row.map((v, h) => {
              const l = s.layers[i];
              const r = verdict.get(label(l, h));
              const se = errors ? errors[i][h] : null;
              const tip = `${label(l, h)} ${role.replace("_", "-")}: ${fmt.fixed(v, 3)} ± ${fmt.fixed(se, 3)} (standard error)`
                + (r ? (r.beats_chance ? "\nclearly above chance" : "\nnot clearly above chance") : "")
                + (Number.isFinite(chance) ? ` [chance ${fmt.fixed(chance, 3)}]` : "");
              const td = el("td", { "data-layer": l, "data-head": h, "data-value": v, title: tip,
                ...(Number.isFinite(se) ? { "data-standard-error": se } : {}),
                ...(r ? { "data-beats-chance": String(r.beats_chance) } : {}),
                ...(r && r.beats_chance ? { class: "beats-chance" } : {}) }, fmt.fixed(v, 2));
              paint(td, heat(v));
              return hover(td, tip);
            })))), `${role.replace("_", "-")} scores`);
          const shown = above.slice(0, 8).map((r) => `${label(r.layer, r.head)} ${fmt.fixed(r.score, 3)} ± ${fmt.fixed(r.standard_error, 3)}`);
          return el("div", { class: "role", "data-role": role },
            el("div", { class: "muted" }, ROLE_TITLES[role]),
            table,
            el("div", { class: "chance", "data-chance": chance ?? "" },
              Number.isFinite(chance) ? `chance ${fmt.fixed(chance, 3)}` : "",
              ranked.length ? (above.length
                ? ` · clearly above it: ${shown.join(", ")}${above.length > shown.length ? ` and ${above.length - shown.length} more` : ""}`
                : " — no head clearly above it") : ""));
        })),
        legend(heat, "0", "1", "cell colour: mean attention weight. ",
          el("span", { class: "beats-chance-key" }, "Bold, outlined"),
          ": clearly above chance (score − 2 standard errors > 2 × chance); the rest are not clearly above chance. Hover or focus a cell for its standard error."),
      );
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
  const reference = el("input", { type: "text", id: "ablate-reference", size: 40, placeholder: "reference prompts for mean / resample, separated by |", "aria-label": "reference prompts for mean or resample ablation, separated by |" });
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
    baseline: r.baseline_loss, ablated: r.ablated_loss,
    // a loss that is not a number (null in JSON) has no difference: not `x - null`, which is x
    delta: Number.isFinite(r.ablated_loss) && Number.isFinite(r.baseline_loss) ? r.ablated_loss - r.baseline_loss : NaN,
  }));
  const extent = Math.max(1e-9, ...rows.map((r) => Math.abs(r.delta)).filter(Number.isFinite));
  // One head at a time over every head: the layer × head grid of the loss change too.
  const heads = doc.each && doc.results.every((r) => r.targets.length === 1 && r.targets[0].kind === "head")
    ? doc.results.map((r) => r.targets[0]) : null;
  let grid = null;
  if (heads) {
    const layers = Math.max(...heads.map((t) => t.layer)) + 1, perLayer = Math.max(...heads.map((t) => t.head)) + 1;
    const values = Array.from({ length: layers }, () => new Array(perLayer).fill(NaN));
    heads.forEach((t, i) => { values[t.layer][t.head] = rows[i].delta; });
    grid = el("div", {}, el("p", { class: "muted" }, "Δ loss when each head is ablated (red: the loss rises without it; blue: it falls)"),
      signedGrid("ablate-grid", layers, (l) => `L${l}`, (h) => `H${h}`, values, (l, h, v) => `L${l}H${h}: Δ loss ${v}`, extent),
      signedLegend(extent, "the loss rises when the head is ablated (the model needs it here)", "the loss falls without it"));
  }
  return el("div", {}, grid, el("table", { id: "ablate-table" },
    el("tr", {}, ["targets", "baseline loss", "ablated loss", "Δ loss"].map((h) => el("th", {}, h))),
    rows.map((r, i) => {
      const td = el("td", { class: "num", "data-index": i, "data-value": r.delta }, fmt.fixed(r.delta, 4));
      paint(td, diverging(r.delta, extent));
      return el("tr", {}, el("td", {}, r.label), el("td", { class: "num" }, fmt.fixed(r.baseline, 4)), el("td", { class: "num" }, fmt.fixed(r.ablated, 4)), td);
    })),
    grid ? null : signedLegend(extent, "the loss rises when the target is ablated", "it falls"));
}

async function pagePatch(id) {
  setNav("nav-patch");
  const models = (await modelList()).filter((m) => m.weights);
  const defaults = defaultsFor(models.find((m) => m.id === id), models);
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
    done: (doc) => patchResults(id, doc),
  };
  streamedRunner(`/api/models/${id}/patch`, () => ({
    ...patchForm, ...Object.fromEntries(Object.entries(inputs).map(([k, i]) => [k, i.value])),
  }), parts);
  put(main, 
    el("h1", {}, "Activation patching"),
    el("div", { class: "row" }, el("label", {}, "Model ", el("select", { id: "model-select", onchange: (e) => { location.hash = `#/patch/${e.target.value}`; } },
      models.map((m) => el("option", { value: m.id, ...(m.id === id ? { selected: "" } : {}) }, m.name))))),
    defaults.from ? el("p", { class: "muted", id: "prompt-from" }, `The example pair and text are ${defaults.from}'s (the same vocabulary; this model's card has none).`) : null,
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

// The patching grids' column labels as the CLI's: `i:token`, and `i:clean/corrupt` where the
// two prompts' tokens differ. The tokens are the document's (`clean_tokens`, `corrupt_tokens`)
// where it has them, else the predictions document's for each prompt (used only where its ids
// are the patched ones).
async function patchColumns(id, doc) {
  let clean = doc.clean_tokens, corrupt = doc.corrupt_tokens;
  if (!Array.isArray(clean) || !Array.isArray(corrupt)) {
    const tokens = async (prompt, ids) => {
      const p = await api(`/api/models/${id}/predictions`, { prompt, top_k: 1 });
      return p.input_ids.length === ids.length && p.input_ids.every((x, i) => x === ids[i]) ? p.positions.map((x) => x.token) : null;
    };
    [clean, corrupt] = await Promise.all([tokens(doc.clean, doc.clean_ids), tokens(doc.corrupt, doc.corrupt_ids)]);
  }
  if (!clean || !corrupt || clean.length !== corrupt.length) return null;
  return clean.map((c, i) => c === corrupt[i] ? positionLabel(i, c) : `${i}:${tokenLabel(c)}/${tokenLabel(corrupt[i])}`);
}

function patchResults(id, doc) {
  const cleanTokens = doc.clean_ids.length;
  const extent = Math.max(1, ...doc.results.flatMap((r) => r.normalized.flat().filter(Number.isFinite).map(Math.abs)));
  // Position columns: numbered until their tokens are known.
  const positionHeads = [];
  let labels = null;
  const posLabel = (c) => labels ? labels[c] : `position ${c}`;
  const out = el("div", {},
    el("p", {}, `metric: logit[${doc.answer_token}] − logit[${doc.wrong_token}] at the last position; gap ${fmt.fixed(doc.gap, 4)}`),
    doc.warnings.map((w) => el("p", { class: "error" }, `⚠ ${w}`)),
    doc.results.map((r) => {
      const cols = r.normalized[0].length;
      const heads = r.what === "heads";
      const table = keyGrid(el("table", { class: "lens patch-grid", "data-method": r.method },
        el("tr", {}, el("th", {}, "layer"), Array.from({ length: cols }, (_, c) => {
          const th = el("th", {}, heads ? `H${c}` : String(c));
          if (!heads) positionHeads.push([th, c]);
          return th;
        })),
        r.normalized.map((row, l) => el("tr", {}, el("th", {}, `L${l}`), row.map((v, c) => {
          const td = el("td", { "data-layer": l, "data-col": c, "data-value": v }, fmt.fixed(v, 2));
          paint(td, diverging(v, extent));
          return hover(td, () => `L${l} ${heads ? `H${c}` : posLabel(c)}: normalised ${v}, metric ${r.raw[l][c]}`);
        })))), `${r.method} patching of ${r.what}`);
      return el("div", {}, el("h2", {}, `${r.method} patching of ${r.what} (0 = corrupted, 1 = clean; ${cleanTokens} tokens)`),
        el("div", { class: "scroll" }, table));
    }),
    signedLegend(extent, "patching the clean run's activation in restores the clean answer (1: fully)",
      "it moves the metric further toward the corrupted run's answer (below 0)"),
  );
  if (positionHeads.length) {
    patchColumns(id, doc).then((l) => {
      if (!l) return;
      labels = l;
      for (const [th, c] of positionHeads) th.textContent = l[c] ?? th.textContent;
    }).catch(() => {});
  }
  return out;
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
  const ids = el("input", { type: "text", id: "feature-ids", size: 24, placeholder: "feature ids, e.g. 3,17 (empty: the most frequent)", "aria-label": "feature ids, comma-separated (empty: the most frequent)" });
  const show = el("button", { id: "feature-show", onclick: () => loadDashboards(id, ids.value, dash) }, "Show");
  const prompt = el("textarea", { id: "feature-prompt", rows: 2, "aria-label": "prompt to encode" });
  prompt.value = explorer.prompt ?? (await modelDefaults(id)).prompt;
  const activeOut = el("div", { id: "active-features" });
  const run = el("button", { id: "feature-run", onclick: async () => {
    put(activeOut, el("p", { class: "spinner" }, "Encoding…"));
    try {
      const doc = await api(`/api/models/${id}/features/active`, { prompt: prompt.value, top_k: 5 });
      const list = el("div", { id: "active-list" });
      const tokens = el("div", { class: "tokens", role: "group", "aria-label": "prompt tokens: press one for its most active features" }, doc.tokens.map((t, p) => pressable(el("span", { class: "tok", "data-position": p, "aria-label": `position ${p} ${fmt.tok(t)}`, onclick: () => {
        markSelected(tokens.children, (c) => Number(c.dataset.position) === p);
        put(list, el("table", { id: "active-table", "data-position": p },
          el("tr", {}, el("th", {}, "feature"), el("th", { class: "num" }, "activation")),
          doc.active[p].map((f) => el("tr", {}, el("td", {}, el("button", { type: "button", class: "linklike", "data-feature": f.feature,
            onclick: () => { ids.value = String(f.feature); loadDashboards(id, ids.value, dash); } }, `feature ${f.feature}`)),
            el("td", { class: "num", "data-value": f.activation }, fmt.fixed(f.activation, 4))))));
      } }, t), false)));
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
        el("div", { class: "contexts" }, f.top_contexts.map((c) => keyRow(el("div", { class: "tokens", "data-activation": c.activation },
          el("span", { class: "muted" }, fmt.fixed(c.activation, 3)),
          c.tokens.map((t, i) => {
            const span = el("span", { class: `tok${i === c.marked ? " selected" : ""}` }, text(t));
            paint(span, heat(f.max_activation > 0 ? c.activations[i] / f.max_activation : 0));
            return hover(span, `${fmt.tok(text(t))}: ${c.activations[i]}`);
          })), ".tok", `a context with activation ${fmt.fixed(c.activation, 3)}`))),
        legend(heat, "0", fmt.fixed(f.max_activation, 3), "token colour: the feature's activation, from 0 to its max activation (outlined: the context's marked token)"),
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
  put(main, el("h1", {}, "Diff of two checkpoints"), el("div", { class: "row" }, el("label", {}, "A ", selA), el("label", {}, "B ", selB), run), out);
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
  const prompts = el("textarea", { id: "drift-prompts", rows: 4, "aria-label": "prompts, one per line" });
  prompts.value = driftForm.prompts ?? defaultsFor(models[0], models).drift;
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
    el("div", { class: "row" }, el("label", {}, "A ", selA), el("label", {}, "B ", selB)), prompts, el("div", { class: "row" }, run), out);
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
