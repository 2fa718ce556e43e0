"""The explorer page (:mod:`latentlab.explorer`): HTML, CSS and plain JavaScript, nothing fetched.

``__TITLE__`` and ``__STATE__`` are replaced by the title and the page's data (JSON, with
``</`` escaped). The script decodes from the program in the state: ``mode: "weights"`` runs the
decoder's layers (linear, conv2d, upsample, gated, activations, the likelihood's mean, the
unscaling) in double precision; ``mode: "grid"`` shows the nearest of the embedded decodes.
"""

PAGE = r"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>latentlab explorer: __TITLE__</title>
<style>
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;margin:18px auto;
  max-width:1200px;padding:0 16px;color:#1d232b;background:#f6f8fa}
h1{font-size:20px;margin:0 0 4px}
.sub{color:#56606b;margin:0 0 14px}
.row{display:flex;flex-wrap:wrap;gap:18px;align-items:flex-start}
.panel{background:#fff;border:1px solid #d9dfe6;border-radius:6px;padding:12px}
#pad{display:block;cursor:crosshair;touch-action:none}
.ctl{margin-top:8px;color:#37414b}
.ctl select{margin:0 8px 0 4px}
#legend span{display:inline-block;margin:2px 10px 2px 0;white-space:nowrap}
#legend i{display:inline-block;width:10px;height:10px;border-radius:50%;margin-right:4px;vertical-align:-1px}
#out{image-rendering:pixelated;image-rendering:crisp-edges;border:1px solid #c9d1d9;background:#000}
#readout{margin:10px 0;font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12.5px;max-width:420px;overflow-wrap:anywhere}
#warn{margin:6px 0;padding:6px 8px;border-radius:4px;background:#fff4e5;color:#8a4b00;display:none;max-width:420px}
.slider{display:grid;grid-template-columns:64px 1fr 70px;align-items:center;gap:8px;margin:3px 0;max-width:420px}
.slider input{width:100%}
.slider output{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12px;text-align:right}
table.vals{border-collapse:collapse;font-size:13px}
table.vals td{padding:2px 8px;border-bottom:1px solid #eef1f4}
table.vals td.v{font-family:ui-monospace,Menlo,Consolas,monospace;text-align:right}
.bar{height:8px;background:#2563eb;border-radius:2px}
.notes{margin-top:16px;color:#37414b;max-width:1000px}
.notes p{margin:6px 0}
h2{font-size:15px;margin:0 0 8px}
</style>
</head>
<body>
<h1>Latent-space explorer: __TITLE__</h1>
<p class="sub" id="sub"></p>
<div class="row">
  <div class="panel">
    <canvas id="pad" width="480" height="480" aria-label="latent pad: drag to move the point"></canvas>
    <div class="ctl" id="axes"></div>
    <div class="ctl">
      <label><input type="checkbox" id="shade" checked> shade where the codes lie</label>
      <label style="margin-left:12px"><input type="checkbox" id="showpts" checked> show the codes</label>
    </div>
    <div class="ctl" id="legend"></div>
  </div>
  <div class="panel" id="right">
    <h2>decoded</h2>
    <div id="output"></div>
    <div id="readout"></div>
    <div id="warn"></div>
    <div id="cond"></div>
    <div id="sliders"></div>
  </div>
</div>
<div class="notes" id="notes"></div>
<script type="application/json" id="state">__STATE__</script>
<script>
"use strict";
(function () {
const S = JSON.parse(document.getElementById("state").textContent);
const K = S.K, P = S.program, lo = S.lo, hi = S.hi, one = K === 1;
const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
  "#17becf", "#393b79", "#e7969c", "#637939", "#8c6d31", "#843c39", "#7b4173", "#3182bd", "#31a354", "#756bb1", "#636363"];

function f32(b64) {
  const s = atob(b64), u = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) u[i] = s.charCodeAt(i);
  return new Float32Array(u.buffer);
}
function sigmoid(x) { return 1 / (1 + Math.exp(-x)); }
function erf(x) {  // Numerical Recipes' erfc by Chebyshev fitting: relative error below 1.2e-7
  const t = 1 / (1 + 0.5 * Math.abs(x));
  const r = t * Math.exp(-x * x - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806 +
    t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))));
  return x >= 0 ? 1 - r : r - 1;
}
const ACT = {
  relu: (o, x) => x > 0 ? x : 0,
  tanh: (o, x) => Math.tanh(x),
  sigmoid: (o, x) => sigmoid(x),
  silu: (o, x) => x * sigmoid(x),
  identity: (o, x) => x,
  elu: (o, x) => x > 0 ? x : o.alpha * Math.expm1(x),
  leaky_relu: (o, x) => x >= 0 ? x : o.slope * x,
  softplus: (o, x) => x * o.beta > o.threshold ? x : Math.log1p(Math.exp(o.beta * x)) / o.beta,
  gelu: (o, x) => o.approximate === "tanh"
    ? 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x * x * x)))
    : 0.5 * x * (1 + erf(x / Math.SQRT2)),
};

function prepare(op) {
  if (op.W !== undefined) { op.Wf = f32(op.W); op.bf = f32(op.b); }
  if (op.inner) prepare(op.inner);
  return op;
}
function linear(op, x) {
  const W = op.Wf, b = op.bf, n = op.in, m = op.out, y = new Float64Array(m);
  for (let o = 0; o < m; o++) {
    let s = b[o];
    const r = o * n;
    for (let i = 0; i < n; i++) s += W[r + i] * x[i];
    y[o] = s;
  }
  return y;
}
function conv2d(op, x) {
  const C = op.in, H = op.hin, Wd = op.win, O = op.out, kh = op.kh, kw = op.kw, ph = op.ph, pw = op.pw;
  const Ho = H + 2 * ph - kh + 1, Wo = Wd + 2 * pw - kw + 1, y = new Float64Array(O * Ho * Wo), W = op.Wf;
  for (let o = 0; o < O; o++) {
    const base = o * Ho * Wo;
    y.fill(op.bf[o], base, base + Ho * Wo);
    for (let i = 0; i < C; i++) {
      for (let ky = 0; ky < kh; ky++) {
        for (let kx = 0; kx < kw; kx++) {
          const w = W[((o * C + i) * kh + ky) * kw + kx];
          for (let yy = 0; yy < Ho; yy++) {
            const sy = yy + ky - ph;
            if (sy < 0 || sy >= H) continue;
            const src = (i * H + sy) * Wd, dst = base + yy * Wo;
            const x0 = Math.max(0, pw - kx), x1 = Math.min(Wo, Wd + pw - kx);
            for (let xx = x0; xx < x1; xx++) y[dst + xx] += w * x[src + xx + kx - pw];
          }
        }
      }
    }
  }
  return y;
}
function upsample(op, x) {
  const n = op.h * op.w, m = op.hin * op.win, y = new Float64Array(op.c * n), idx = op.index;
  for (let ch = 0; ch < op.c; ch++) for (let k = 0; k < n; k++) y[ch * n + k] = x[ch * m + idx[k]];
  return y;
}
function apply(op, x) {
  if (op.op === "linear") return linear(op, x);
  if (op.op === "conv2d") return conv2d(op, x);
  if (op.op === "upsample") return upsample(op, x);
  if (op.op === "reshape") return x;
  if (op.op === "gated") {
    const h = apply(op.inner, x), n = op.half, y = new Float64Array(n);
    for (let k = 0; k < n; k++) y[k] = h[k] * sigmoid(h[n + k]);
    return y;
  }
  const f = ACT[op.op];
  if (!f) throw new Error("unknown layer " + op.op);
  const y = new Float64Array(x.length);
  for (let k = 0; k < x.length; k++) y[k] = f(op, x[k]);
  return y;
}
function cbMean(l) {  // the continuous Bernoulli's mean, as latentlab computes it
  const lam = sigmoid(l), near = Math.abs(lam - 0.5) < 1e-3;
  if (near) { const d = lam - 0.5; return 0.5 + (1 / 3 + (16 / 45) * d * d) * d; }
  return lam / (2 * lam - 1) - 1 / l;
}

let decodeZ;
const zShown = Float64Array.from(S.z0);
if (P.mode === "weights") {
  P.ops.forEach(prepare);
  const off = f32(P.offset), fac = f32(P.factor);
  decodeZ = function (z, c) {
    let x = new Float64Array(K + P.cond_dim);
    x.set(z, 0);
    if (P.cond_dim) x.set(c, K);
    for (const op of P.ops) x = apply(op, x);
    for (let k = 0; k < x.length; k++) {
      const v = P.mean === "sigmoid" ? sigmoid(x[k]) : P.mean === "cb_mean" ? cbMean(x[k]) : x[k];
      x[k] = v * fac[k] + off[k];
    }
    zShown.set(z);
    return x;
  };
} else {
  const V = f32(P.values), n = P.n, F = V.length / (n * n);
  const nearest = (a, v) => { let b = 0; for (let k = 1; k < a.length; k++) if (Math.abs(a[k] - v) < Math.abs(a[b] - v)) b = k; return b; };
  decodeZ = function (z) {
    const q = nearest(P.xs, z[P.dims[0]]), r = nearest(P.ys, z[P.dims[1]]);
    zShown.set(P.base);
    zShown[P.dims[0]] = P.xs[q];
    zShown[P.dims[1]] = P.ys[r];
    return Float64Array.from(V.subarray((r * n + q) * F, (r * n + q + 1) * F));
  };
}

// ------------------------------------------------------------------ state
const z = Float64Array.from(S.z0);
let dims = (P.mode === "grid" ? P.dims : S.dims).slice();
let c = new Float64Array(P.cond_dim || (S.condition ? (S.condition.classes ? S.condition.classes.length : S.condition.lo.length) : 0));
if (S.condition && S.condition.kind === "categorical") c[S.condition.initial] = 1;
else if (S.condition) c.set(S.condition.initial);
const points = S.points ? f32(S.points) : new Float32Array(0);
let decoded = new Float64Array(0), densityHere = null, decodes = 0;

// ------------------------------------------------------------------ the pad
const pad = document.getElementById("pad"), ctx = pad.getContext("2d");
const M = {l: 46, r: 12, t: 12, b: 40};
const PW = pad.width - M.l - M.r, PH = pad.height - M.t - M.b;
const G = 96;
let dens = null;
const toX = (v, d) => M.l + (v - lo[d]) / (hi[d] - lo[d]) * PW;
const toY = (v, d) => M.t + PH - (v - lo[d]) / (hi[d] - lo[d]) * PH;
function jitter(k) { const s = Math.sin(k * 12.9898) * 43758.5453; return s - Math.floor(s); }
function pointY(k) { return one ? lo[0] + (0.1 + 0.8 * jitter(k)) * (hi[0] - lo[0]) : points[k * K + dims[1]]; }

function blur(a, w, h, sx, sy) {  // separable Gaussian blur of a (h rows of w), sigmas in cells
  function kernel(s) { const r = Math.max(1, Math.ceil(3 * s)), k = []; for (let i = -r; i <= r; i++) k.push(Math.exp(-0.5 * i * i / (s * s))); return [k, r]; }
  const [kx, rx] = kernel(Math.max(sx, 0.5)), [ky, ry] = kernel(Math.max(sy, 0.5)), t = new Float64Array(w * h), o = new Float64Array(w * h);
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) { let s = 0; for (let i = -rx; i <= rx; i++) { const xx = x + i; if (xx >= 0 && xx < w) s += a[y * w + xx] * kx[i + rx]; } t[y * w + x] = s; }
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) { let s = 0; for (let i = -ry; i <= ry; i++) { const yy = y + i; if (yy >= 0 && yy < h) s += t[yy * w + x] * ky[i + ry]; } o[y * w + x] = s; }
  return o;
}
function computeDensity() {
  const n = S.n_points;
  if (!n) { dens = null; return; }
  const [a, b] = dims, hist = new Float64Array(G * G);
  const std = (d) => { let m = 0, v = 0; for (let k = 0; k < n; k++) m += points[k * K + d]; m /= n; for (let k = 0; k < n; k++) v += (points[k * K + d] - m) ** 2; return Math.sqrt(v / n) || (hi[d] - lo[d]) / 20; };
  for (let k = 0; k < n; k++) {
    const gx = Math.floor((points[k * K + a] - lo[a]) / (hi[a] - lo[a]) * G);
    const gy = one ? 0 : Math.floor((points[k * K + b] - lo[b]) / (hi[b] - lo[b]) * G);
    if (gx >= 0 && gx < G && gy >= 0 && gy < G) hist[gy * G + gx] += 1;
  }
  const f = Math.pow(n, -1 / 6);  // Scott's rule in two dimensions
  const sx = std(a) * f / ((hi[a] - lo[a]) / G), sy = one ? 0.5 : std(b) * f / ((hi[b] - lo[b]) / G);
  let d = blur(hist, G, G, sx, sy);
  if (one) { const row = d.slice(0, G); d = new Float64Array(G * G); for (let y = 0; y < G; y++) d.set(row, y * G); }
  let peak = 0;
  for (const v of d) peak = Math.max(peak, v);
  for (let k = 0; k < d.length; k++) d[k] /= peak || 1;
  const img = document.createElement("canvas");
  img.width = G; img.height = G;
  const ic = img.getContext("2d"), id = ic.createImageData(G, G);
  for (let y = 0; y < G; y++) for (let x = 0; x < G; x++) {
    const v = d[y * G + x], p = ((G - 1 - y) * G + x) * 4;
    id.data[p] = 37; id.data[p + 1] = 99; id.data[p + 2] = 235; id.data[p + 3] = Math.round(200 * Math.sqrt(v));
  }
  ic.putImageData(id, 0, 0);
  dens = {grid: d, img: img};
}
function densityAt(zv) {
  if (!dens) return null;
  const [a, b] = dims;
  const gx = Math.floor((zv[a] - lo[a]) / (hi[a] - lo[a]) * G), gy = one ? 0 : Math.floor((zv[b] - lo[b]) / (hi[b] - lo[b]) * G);
  if (gx < 0 || gx >= G || gy < 0 || gy >= G) return 0;
  return dens.grid[gy * G + gx];
}
function colour(k) {
  if (!S.labels) return "#4b5563";
  const v = S.labels[k];
  if (S.label_names) return PALETTE[v % PALETTE.length];
  const t = (v - labMin) / ((labMax - labMin) || 1);
  return "hsl(" + Math.round(250 - 210 * t) + ",70%,45%)";
}
let labMin = 0, labMax = 1;
if (S.labels && !S.label_names) { labMin = Math.min(...S.labels); labMax = Math.max(...S.labels); }

function ticks(d) {
  const span = hi[d] - lo[d], step0 = Math.pow(10, Math.floor(Math.log10(span / 4))), steps = [1, 2, 5, 10];
  const step = steps.map(s => s * step0).find(s => span / s <= 6);
  const out = [];
  for (let v = Math.ceil(lo[d] / step) * step; v <= hi[d]; v += step) out.push(Math.abs(v) < step / 1e6 ? 0 : v);
  return out;
}
function drawPad() {
  ctx.clearRect(0, 0, pad.width, pad.height);
  ctx.fillStyle = "#fff"; ctx.fillRect(M.l, M.t, PW, PH);
  const [a, b] = dims;
  if (dens && document.getElementById("shade").checked) {
    ctx.imageSmoothingEnabled = true;
    ctx.drawImage(dens.img, M.l, M.t, PW, PH);
  }
  if (S.prior && !one) {
    ctx.save(); ctx.setLineDash([5, 4]); ctx.strokeStyle = "#6b7280";
    for (const s of [1, 2]) {
      ctx.beginPath();
      ctx.ellipse(toX(S.prior.mean[a], a), toY(S.prior.mean[b], b), s * S.prior.std[a] / (hi[a] - lo[a]) * PW,
        s * S.prior.std[b] / (hi[b] - lo[b]) * PH, 0, 0, 2 * Math.PI);
      ctx.stroke();
    }
    ctx.restore();
  }
  if (document.getElementById("showpts").checked) {
    for (let k = 0; k < S.n_points; k++) {
      ctx.fillStyle = colour(k);
      ctx.globalAlpha = 0.75;
      ctx.beginPath();
      ctx.arc(toX(points[k * K + a], a), one ? toY(pointY(k), 0) : toY(points[k * K + b], b), 2.2, 0, 2 * Math.PI);
      ctx.fill();
    }
    ctx.globalAlpha = 1;
  }
  ctx.strokeStyle = "#9aa4ae"; ctx.strokeRect(M.l, M.t, PW, PH);
  ctx.fillStyle = "#37414b"; ctx.font = "11px system-ui, sans-serif"; ctx.textAlign = "center";
  for (const v of ticks(a)) { const x = toX(v, a); ctx.fillText(+v.toPrecision(3), x, M.t + PH + 14); ctx.fillRect(x, M.t + PH, 1, 4); }
  ctx.fillText(S.names[a], M.l + PW / 2, M.t + PH + 32);
  if (!one) {
    ctx.textAlign = "right";
    for (const v of ticks(b)) { const y = toY(v, b); ctx.fillText(+v.toPrecision(3), M.l - 6, y + 4); ctx.fillRect(M.l - 4, y, 4, 1); }
    ctx.save(); ctx.translate(12, M.t + PH / 2); ctx.rotate(-Math.PI / 2); ctx.textAlign = "center"; ctx.fillText(S.names[b], 0, 0); ctx.restore();
  }
  const px = toX(zShown[a], a), py = one ? M.t + PH / 2 : toY(zShown[b], b);
  ctx.strokeStyle = "#111"; ctx.lineWidth = 2;
  ctx.beginPath(); ctx.arc(px, py, 7, 0, 2 * Math.PI); ctx.stroke();
  ctx.lineWidth = 1; ctx.beginPath(); ctx.moveTo(px - 12, py); ctx.lineTo(px + 12, py);
  if (!one) { ctx.moveTo(px, py - 12); ctx.lineTo(px, py + 12); }
  ctx.stroke();
}

// ------------------------------------------------------------------ the output
const D = S.display, outDiv = document.getElementById("output");
let outCanvas = null, cells = null;
if (D.kind === "image") {
  outCanvas = document.createElement("canvas");
  outCanvas.id = "out"; outCanvas.width = D.w; outCanvas.height = D.h;
  const scale = Math.max(1, Math.floor(300 / Math.max(D.w, D.h)));
  outCanvas.style.width = D.w * scale + "px"; outCanvas.style.height = D.h * scale + "px";
  outDiv.appendChild(outCanvas);
} else {
  const t = document.createElement("table");
  t.className = "vals";
  cells = D.names.map((name) => {
    const tr = t.insertRow(), a = tr.insertCell(), v = tr.insertCell(), b = tr.insertCell();
    a.textContent = name; v.className = "v";
    const bar = document.createElement("div"); bar.className = "bar"; b.style.width = "120px"; b.appendChild(bar);
    return [v, bar];
  });
  outDiv.appendChild(t);
}
function drawOutput(x) {
  if (outCanvas) {
    const g = outCanvas.getContext("2d"), id = g.createImageData(D.w, D.h), n = D.w * D.h;
    for (let p = 0; p < n; p++) {
      for (let ch = 0; ch < 3; ch++) {
        const v = x[(D.channels === 3 ? ch : 0) * n + p];
        id.data[p * 4 + ch] = Math.round(255 * Math.min(1, Math.max(0, (v - D.lo) / (D.hi - D.lo))));
      }
      id.data[p * 4 + 3] = 255;
    }
    g.putImageData(id, 0, 0);
  } else {
    cells.forEach(([v, bar], j) => {
      v.textContent = x[j].toPrecision(4);
      const t = (x[j] - D.lo[j]) / ((D.hi[j] - D.lo[j]) || 1);
      bar.style.width = Math.round(120 * Math.min(1, Math.max(0, t))) + "px";
    });
  }
}

// ------------------------------------------------------------------ controls
const sliderEls = [];
function buildSliders() {
  const box = document.getElementById("sliders");
  box.innerHTML = "<h2 style='margin-top:12px'>latent point</h2>";
  for (let j = 0; j < K; j++) {
    const row = document.createElement("div"), lab = document.createElement("label"), inp = document.createElement("input"), out = document.createElement("output");
    row.className = "slider"; lab.textContent = S.names[j]; lab.htmlFor = inp.id = "z" + j;
    inp.type = "range"; inp.min = lo[j]; inp.max = hi[j]; inp.step = (hi[j] - lo[j]) / 1000; inp.value = z[j];
    inp.disabled = P.mode === "grid" && !P.dims.includes(j);
    inp.addEventListener("input", () => { z[j] = parseFloat(inp.value); update(); });
    row.append(lab, inp, out); box.appendChild(row); sliderEls.push([inp, out]);
  }
}
function buildAxes() {
  if (K <= 2) return;
  const box = document.getElementById("axes");
  for (const [k, name] of [[0, "horizontal"], [1, "vertical"]]) {
    const lab = document.createElement("label"), sel = document.createElement("select");
    lab.textContent = name; sel.id = "dim" + k;
    S.names.forEach((nm, j) => sel.add(new Option(nm, j)));
    sel.value = dims[k]; sel.disabled = P.mode === "grid";
    sel.addEventListener("change", () => { setDims(k === 0 ? +sel.value : dims[0], k === 1 ? +sel.value : dims[1]); });
    lab.appendChild(sel); box.appendChild(lab);
  }
}
function buildCondition() {
  const C = S.condition;
  if (!C) return;
  const box = document.getElementById("cond");
  box.innerHTML = "<h2 style='margin-top:12px'>condition</h2>";
  if (C.kind === "categorical") {
    const sel = document.createElement("select");
    sel.id = "cond-class"; C.classes.forEach((nm, j) => sel.add(new Option(nm, j)));
    sel.value = C.initial; sel.disabled = P.mode === "grid";
    sel.addEventListener("change", () => { c.fill(0); c[+sel.value] = 1; update(); });
    const lab = document.createElement("label"); lab.textContent = "class "; lab.appendChild(sel); box.appendChild(lab);
  } else {
    C.lo.forEach((l, j) => {
      const row = document.createElement("div"), lab = document.createElement("label"), inp = document.createElement("input");
      row.className = "slider"; lab.textContent = "y" + j; inp.type = "range"; inp.id = "cond" + j;
      inp.min = l; inp.max = C.hi[j] > l ? C.hi[j] : l + 1; inp.step = (inp.max - inp.min) / 1000; inp.value = c[j];
      inp.disabled = P.mode === "grid";
      const out = document.createElement("output");
      out.textContent = (+inp.value).toFixed(3);
      inp.addEventListener("input", () => { c[j] = parseFloat(inp.value); out.textContent = c[j].toFixed(3); update(); });
      row.append(lab, inp, out); box.appendChild(row);
    });
  }
}
function buildLegend() {
  const box = document.getElementById("legend");
  if (S.label_names) box.innerHTML = S.label_names.map((nm, j) => "<span><i style='background:" + PALETTE[j % PALETTE.length] + "'></i>" +
    nm.replace(/[&<>]/g, (ch) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;"})[ch]) + "</span>").join("");
  else if (S.labels) box.textContent = "colour: label from " + (+labMin.toPrecision(3)) + " (blue) to " + (+labMax.toPrecision(3)) + " (red)";
}
function notes() {
  const p = [];
  const layers = P.mode === "weights" ? P.ops.map((o) => o.op === "gated" ? "gated " + o.inner.op : o.op).filter((o) => o !== "reshape") : [];
  if (P.mode === "weights") {
    p.push("Decoding runs in this page, in JavaScript, from the decoder's weights embedded in it: " + layers.join(", ") +
      ", then the likelihood's mean (" + P.mean + ") and the data's unscaling" +
      (layers.some((o) => o.indexOf("conv2d") >= 0) ? " (the convolutional decoder's convolutions and nearest upsampling included)" : "") +
      ". The page computes in double precision and the model in float32, so the two agree to float32 rounding.");
  } else {
    p.push("This decoder is shown from a grid: " + P.n + " x " + P.n + " decodes over " + S.names[P.dims[0]] + " and " +
      S.names[P.dims[1]] + " (the other dimensions at the codes' median), computed by latentlab when the page was written " +
      "and embedded in it; the point snaps to the nearest grid point. Why: " + P.reason + ".");
  }
  if (S.n_points) p.push("Points: the codes of " + S.n_points + " rows of " + S.what + ". The shading is a kernel density " +
    "estimate of them (Scott's bandwidth)" + (K > 2 ? ", projected onto the pad's two dimensions: with more than two, the codes' other dimensions are not at the sliders' values" : "") + ".");
  if (S.prior) p.push("Dashed: one and two standard deviations of the model's prior" + (S.prior.standard ? ", N(0, I)" : " (from draws of it)") + ".");
  if (S.no_prior) p.push("This model has no prior: nothing in its training makes the decoder produce data-like output away from " +
    "its codes. Move the point off the shaded region and watch the decodes turn to junk.");
  p.push("Written by latentlab " + S.version + "; no server, nothing fetched.");
  document.getElementById("notes").innerHTML = p.map((t) => "<p></p>").join("");
  document.querySelectorAll("#notes p").forEach((el, k) => { el.textContent = p[k]; });
}

// ------------------------------------------------------------------ update
let pending = false;
function update() {
  decoded = decodeZ(z, c);
  decodes += 1;
  densityHere = densityAt(zShown);
  drawOutput(decoded);
  drawPad();
  sliderEls.forEach(([inp, out], j) => { inp.value = zShown[j]; out.textContent = zShown[j].toFixed(3); });
  document.getElementById("readout").textContent = "z = (" + Array.from(zShown, (v) => v.toFixed(3)).join(", ") + ")" +
    (densityHere === null ? "" : "   codes' density here: " + (100 * densityHere).toFixed(1) + "% of its peak");
  const warn = document.getElementById("warn");
  const off = densityHere !== null && densityHere < 0.02;
  warn.style.display = off ? "block" : "none";
  warn.textContent = off ? "No codes near this point: the decoder was never trained here" + (S.no_prior ? " (an autoencoder has no prior to fill the gaps): expect junk." : ".") : "";
}
function schedule() { if (!pending) { pending = true; requestAnimationFrame(() => { pending = false; update(); }); } }
function fromPointer(ev) {
  const r = pad.getBoundingClientRect();
  const x = (ev.clientX - r.left) * pad.width / r.width, y = (ev.clientY - r.top) * pad.height / r.height;
  const [a, b] = dims;
  z[a] = Math.min(hi[a], Math.max(lo[a], lo[a] + (x - M.l) / PW * (hi[a] - lo[a])));
  if (!one) z[b] = Math.min(hi[b], Math.max(lo[b], lo[b] + (M.t + PH - y) / PH * (hi[b] - lo[b])));
}
let dragging = false;
pad.addEventListener("pointerdown", (ev) => { dragging = true; pad.setPointerCapture(ev.pointerId); fromPointer(ev); update(); });
pad.addEventListener("pointermove", (ev) => { if (dragging) { fromPointer(ev); schedule(); } });
pad.addEventListener("pointerup", (ev) => { dragging = false; fromPointer(ev); update(); });
for (const id of ["shade", "showpts"]) document.getElementById(id).addEventListener("change", drawPad);
function setDims(i, j) {
  if (P.mode === "grid") return;
  dims = [i, one ? i : j];
  computeDensity();
  update();
}

document.getElementById("sub").textContent = S.cls + ", latent size " + K + (S.condition ? ", conditional" : "") +
  ": drag on the pad or move the sliders.";
buildAxes(); buildSliders(); buildCondition(); buildLegend(); notes();
computeDensity();
update();
window.latentlab = {
  get z() { return Array.from(z); },
  get zDecoded() { return Array.from(zShown); },
  get c() { return Array.from(c); },
  get decoded() { return Array.from(decoded); },
  get dims() { return dims.slice(); },
  get density() { return densityHere; },
  get decodes() { return decodes; },
  mode: P.mode,
  pad: {left: M.l, top: M.t, width: PW, height: PH, lo: lo, hi: hi},
  setZ(v) { v.forEach((x, j) => { z[j] = x; }); update(); },
  setDims: setDims,
  setCondition(v) { if (typeof v === "number") { c.fill(0); c[v] = 1; } else v.forEach((x, j) => { c[j] = x; }); update(); },
  ready: true,
};
})();
</script>
</body>
</html>
"""
