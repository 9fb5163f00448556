// halluscan's local page. Every piece of user or model text goes in with textContent, or through
// plain() before plotly sees it (plotly reads <b>, <br>, <a> in labels as markup).
"use strict";
const $ = (sel, root = document) => root.querySelector(sel);
let INFO = null;
const SCALE = [[0, "#1a9850"], [0.25, "#a6d96a"], [0.5, "#f7f7f7"], [0.75, "#fdae61"], [1, "#d73027"]];

function plain(s) {
  return String(s).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}
function mix(a, b, t) { return a.map((v, i) => Math.round(v + (b[i] - v) * t)); }
function colour(p) { // p_wrong: green (right) - white - red (wrong), as the figures
  const g = [166, 217, 106], w = [247, 247, 247], r = [215, 48, 39];
  const c = p < 0.5 ? mix(g, w, p / 0.5) : mix(w, r, (p - 0.5) / 0.5);
  return `rgb(${c[0]},${c[1]},${c[2]})`;
}
function sigmoid(z) { return 1 / (1 + Math.exp(-z)); }
function say(el, text, cls) { el.textContent = text; el.className = (el.className.split(" ")[0] || "") + (cls ? " " + cls : ""); }

function drawMap(div, z, tokens, layers, title) {
  const lim = INFO ? INFO.limit : 8;
  Plotly.react(div, [{
    z: z, x: tokens.map((_, i) => i), y: layers, type: "heatmap", colorscale: SCALE,
    zmin: -lim, zmax: lim, colorbar: { title: { text: "log-odds wrong" } },
    hovertemplate: "token %{x}, layer %{y}: %{z:.2f}<extra></extra>",
  }], {
    title: { text: plain(title), font: { size: 13 } }, height: 340, margin: { t: 40, b: 90, l: 50, r: 10 },
    xaxis: { tickvals: tokens.map((_, i) => i), ticktext: tokens.map(plain), tickangle: -60 },
    yaxis: { title: { text: "layer" } },
  }, { displayModeBar: false });
}
function drawAttention(div, att, tokens, layers, title) {
  Plotly.react(div, [{ z: att, x: tokens.map((_, i) => i), y: layers, type: "heatmap", colorscale: "Viridis", zmin: 0, zmax: 1 }], {
    title: { text: plain(title), font: { size: 13 } }, height: 320, margin: { t: 40, b: 90, l: 50, r: 10 },
    xaxis: { tickvals: tokens.map((_, i) => i), ticktext: tokens.map(plain), tickangle: -60 },
    yaxis: { title: { text: "block" } },
  }, { displayModeBar: false });
}
function tokenSpan(text, p) { // p null: before the answer, which the token-level bank does not read
  const s = document.createElement("span");
  s.className = "tok"; s.textContent = text;
  s.style.background = p === null || Number.isNaN(p) ? "#e1e4e8" : colour(p);
  s.title = p === null || Number.isNaN(p) ? "before the answer: not read (the token-level bank reads from the exact answer on)" : `p_wrong ${p.toFixed(2)}`;
  return s;
}
function showVerdict(col, v) {
  const toks = $(".tokens", col); toks.replaceChildren();
  const li = v.activity_layers.indexOf(v.verdict_layer);
  v.tokens.forEach((t, i) => { const z = v.activity[li][i]; toks.appendChild(tokenSpan(t, z === null ? null : sigmoid(z))); });
  drawMap($(".map", col), v.activity, v.tokens, v.activity_layers, "activity: layer x token");
  const where = v.exact_answer === null ? "at the last token (no exact answer found)" : `at “${v.exact_answer}”`;
  say($(".verdict", col), `${v.verdict}: p_wrong ${v.p_wrong.toFixed(3)} (${v.bank}; read ${where})`);
  const btn = $(".attn-btn", col); btn.hidden = v.attention.length === 0;
  btn.onclick = () => showAttention(col, v);
}

function showAttention(col, v) { // the answer's own tokens, then the question's tokens as keys
  const box = $(".attn", col); box.replaceChildren();
  const own = document.createElement("div"), q = document.createElement("div");
  box.append(q, own);
  if (v.question_tokens && v.question_tokens.length)
    drawAttention(q, v.question_attention, v.question_tokens, v.attention_layers, "the answer's attention to the question's tokens");
  drawAttention(own, v.attention, v.tokens, v.attention_layers, "attention each answer token receives");
}

async function readEvents(resp, onEvent) {
  const reader = resp.body.getReader(), dec = new TextDecoder();
  let buf = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buf += dec.decode(value, { stream: true });
    let k;
    while ((k = buf.indexOf("\n\n")) >= 0) {
      const line = buf.slice(0, k); buf = buf.slice(k + 2);
      if (line.startsWith("data: ")) onEvent(JSON.parse(line.slice(6)));
    }
  }
}

async function ask(col) {
  const q = $(".q", col).value, a = $(".a", col).value, status = $(".status", col);
  if (col.abort) col.abort.abort();
  col.abort = new AbortController();
  $(".tokens", col).replaceChildren(); say($(".verdict", col), ""); $(".attn", col).replaceChildren();
  $(".attn-btn", col).hidden = true; say(status, "waiting…", "muted");
  try {
    if (a.trim()) {
      const r = await fetch("/api/score", { method: "POST", headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ question: q, answer: a }), signal: col.abort.signal });
      const v = await r.json();
      if (!r.ok) { say(status, v.error, "error"); return; }
      say(status, "given answer, scored", "muted"); showVerdict(col, v); return;
    }
    const r = await fetch("/api/ask?question=" + encodeURIComponent(q), { signal: col.abort.signal });
    if (!r.ok) { const v = await r.json(); say(status, v.error, "error"); return; }
    let z = null, tokens = [], layers = [];
    await readEvents(r, (e) => {
      if (e.type === "start") {
        layers = e.layers; z = layers.map(() => []);
        say(status, e.ahead ? `started (${e.ahead} were ahead)` : "generating…", "muted");
      } else if (e.type === "token") {
        tokens.push(e.token); e.activity.forEach((v, i) => z[i].push(v));
        $(".tokens", col).appendChild(tokenSpan(e.token, e.p_wrong));
        drawMap($(".map", col), z, tokens, layers, `activity: layer x token (${tokens.length} so far)`);
      } else if (e.type === "verdict") {
        say(status, "done", "muted"); showVerdict(col, e);
      } else if (e.type === "error") {
        say(status, e.message, "error");
      }
    });
  } catch (err) {
    if (err.name !== "AbortError") say(status, String(err), "error");
  }
}

async function loadHeatmap(run) {
  const r = await fetch("/api/heatmap?run=" + encodeURIComponent(run)), h = await r.json();
  $("#cell").replaceChildren(); $("#picked").replaceChildren();
  if (!r.ok) { say($("#cell"), h.error, "error"); return; }
  const div = $("#heatmap");
  Plotly.react(div, [{ z: h.auc, x: h.positions, y: h.layers, type: "heatmap", zmin: 0.5, zmax: 1,
    colorscale: [[0, "#f7fbff"], [0.25, "#c6dbef"], [0.5, "#6baed6"], [0.75, "#2171b5"], [1, "#08306b"]],
    hovertemplate: "%{x} layer %{y}: AUC %{z:.3f}<extra></extra>" }], {
    title: { text: "probe AUC per layer x position (click a cell)", font: { size: 14 } }, height: 520,
    margin: { t: 40, b: 150, l: 50, r: 10 }, xaxis: { tickangle: -50, type: "category" }, yaxis: { title: { text: "layer" } },
  }, { displayModeBar: false });
  div.removeAllListeners && div.removeAllListeners("plotly_click");
  div.on("plotly_click", (ev) => loadCell(run, ev.points[0].x, ev.points[0].y));
}

function answerTable(title, rows, run) {
  const box = document.createElement("div"), h = document.createElement("h3");
  h.textContent = title; box.appendChild(h);
  const t = document.createElement("table"), head = t.insertRow();
  ["p_wrong", "grade", "question", "answer", "exact answer", "gold"].forEach((c) => {
    const th = document.createElement("th"); th.textContent = c; head.appendChild(th);
  });
  rows.forEach((a) => {
    const tr = t.insertRow(); tr.className = "answer";
    [a.p_wrong.toFixed(3), a.grade, a.question, a.response, a.exact_answer ?? "(none)", a.gold].forEach((c) => {
      tr.insertCell().textContent = c;
    });
    tr.onclick = () => loadAnswer(run, a.qid);
  });
  box.appendChild(t); return box;
}

async function loadCell(run, position, layer) {
  const r = await fetch(`/api/cell?run=${encodeURIComponent(run)}&position=${encodeURIComponent(position)}&layer=${layer}`);
  const c = await r.json(), box = $("#cell");
  box.replaceChildren(); $("#picked").replaceChildren();
  if (!r.ok) { say(box, c.error, "error"); return; }
  const p = document.createElement("p");
  const ci = c.ci95 ? ` (95 % ${c.ci95[0].toFixed(3)}–${c.ci95[1].toFixed(3)})` : "";
  const l0 = c.layer0_auc === null ? "" : `; layer 0 at this position (token identity) ${c.layer0_auc.toFixed(3)}`;
  const hc = c.headline_controls ? `; the study's controls were run at its headline cell ${c.headline_controls.cell.join(" layer ")}: strongest ${c.headline_controls.strongest} ${c.headline_controls.strongest_auc.toFixed(3)}` : "";
  p.textContent = `${position} layer ${layer}: AUC ${c.auc === null ? "n/a" : c.auc.toFixed(3)}${ci}${l0}${hc}. Answers ranked by out-of-fold probes at this cell (${c.n} answers).`;
  box.append(p, answerTable("scored most likely wrong", c.most_wrong, run), answerTable("scored least likely wrong", c.least_wrong, run));
}

async function loadAnswer(run, qid) {
  const box = $("#picked"); box.replaceChildren();
  const col = document.createElement("div"); col.className = "col";
  col.innerHTML = '<div class="tokens"></div><div class="map"></div><p class="verdict"></p><button class="attn-btn" hidden>Show the attention heatmap</button><div class="attn"></div>';
  box.appendChild(col); say($(".verdict", col), "scoring…");
  const r = await fetch(`/api/answer?run=${encodeURIComponent(run)}&qid=${encodeURIComponent(qid)}`), v = await r.json();
  if (!r.ok) { say($(".verdict", col), v.error, "error"); return; }
  showVerdict(col, v); showAttention(col, v);
}

async function init() {
  const first = $(".pair .col"), second = first.cloneNode(true); // two answers side by side
  second.dataset.col = "B"; $(".a", second).value = "Sydney."; first.after(second);
  INFO = await (await fetch("/api/info")).json();
  say($("#info"), `model ${INFO.model}; study ${INFO.run}; generated answers: own-answer bank at ${INFO.own_bank}` +
    (INFO.given_bank ? `; typed answers: given-answer bank at ${INFO.given_bank}` : "") +
    `; at most one generation at a time, ${INFO.max_queue} waiting`);
  document.querySelectorAll(".pair .col").forEach((col) => { $(".go", col).onclick = () => ask(col); });
  const sel = $("#runs");
  INFO.runs.filter((r) => r.kind === "study").forEach((r) => {
    const o = document.createElement("option"); o.value = r.name; o.textContent = r.name;
    if (r.name === INFO.run) o.selected = true; sel.appendChild(o);
  });
  INFO.runs.filter((r) => r.kind === "grid").forEach((r) => {
    const a = document.createElement("a"); a.href = `/runs/${encodeURI(r.name)}/grid.html`; a.target = "_blank";
    a.textContent = `grid: ${r.name}`; $("#grids").append(a, " ");
  });
  sel.onchange = () => loadHeatmap(sel.value);
  $("#tab-ask").onclick = () => { $("#ask").hidden = false; $("#explore").hidden = true; $("#tab-ask").classList.add("on"); $("#tab-explore").classList.remove("on"); };
  $("#tab-explore").onclick = () => { $("#ask").hidden = true; $("#explore").hidden = false; $("#tab-explore").classList.add("on"); $("#tab-ask").classList.remove("on"); if (sel.value) loadHeatmap(sel.value); };
}
init();
