"use strict";
// The /classes page: define a region, collect, label, train and deploy (edgecam/web/classes_routes.py).
const $ = (id) => document.getElementById(id);
const CROP = 0.875;  // the model sees the centre square of the crop, CROP of its short side (model/preprocess.py)
const LOSS_WARN = 0.3;
const ENOUGH = 20;  // per class: the training report's "enough?" floor
const selected = new Set();
let box = null;  // [x1, y1, x2, y2], fractions
let order = [];  // sample ids in the order shown
let anchor = null;  // last clicked id (shift-click range)
let focusId = null;
let guesses = {};
let regions = {};  // of the camera: name -> {box, state}
let pollTimer = null;

const where = () => ({ camera: $("camera").value, region: $("region").value.trim() });
function status(text, cls) { $("status").textContent = text; $("status").className = cls || "dim"; }

async function call(method, url, body) {
  const resp = await fetch(url, { method, cache: "no-store", headers: body ? { "Content-Type": "application/json" } : {},
                                  body: body ? JSON.stringify(body) : undefined });
  const data = await resp.json();
  if (!resp.ok) throw new Error(data.error || resp.statusText);
  return data;
}
const guarded = (fn) => async (...args) => { try { await fn(...args); } catch (err) { status(err.message, "bad"); } };

// -- 1. define --------------------------------------------------------------------------------
function centreSquare(b) {
  const img = $("frame");
  const w = (b[2] - b[0]) * img.naturalWidth, h = (b[3] - b[1]) * img.naturalHeight;
  const side = Math.min(w, h) * CROP;
  const cx = (b[0] + b[2]) / 2 * img.naturalWidth, cy = (b[1] + b[3]) / 2 * img.naturalHeight;
  return { x: cx - side / 2, y: cy - side / 2, side, lost: 1 - (side * side) / (w * h) };
}

function drawBox() {
  const img = $("frame"), canvas = $("draw");
  canvas.width = img.naturalWidth || 1; canvas.height = img.naturalHeight || 1;
  const g = canvas.getContext("2d");
  g.clearRect(0, 0, canvas.width, canvas.height);
  g.lineWidth = Math.max(2, canvas.width / 320);
  for (const [name, r] of Object.entries(regions)) {
    if (name === where().region) continue;
    g.strokeStyle = "#888"; g.strokeRect(r.box[0] * canvas.width, r.box[1] * canvas.height,
      (r.box[2] - r.box[0]) * canvas.width, (r.box[3] - r.box[1]) * canvas.height);
  }
  $("save").disabled = !box;
  if (!box) return;
  const [x1, y1, x2, y2] = box;
  g.strokeStyle = "#4fc3f7";
  g.strokeRect(x1 * canvas.width, y1 * canvas.height, (x2 - x1) * canvas.width, (y2 - y1) * canvas.height);
  const sq = centreSquare(box);
  g.setLineDash([8, 6]); g.strokeStyle = "#ffb74d"; g.strokeRect(sq.x, sq.y, sq.side, sq.side); g.setLineDash([]);
  $("box").textContent = "box " + box.map((v) => v.toFixed(3)).join(", ") + " · dashed: the square the model sees";
  const lost = Math.max(0, sq.lost);
  $("cropwarn").textContent = lost > LOSS_WARN
    ? "the model sees only " + Math.round(100 * (1 - lost)) + "% of this box: draw it closer to a square"
    : "the model sees " + Math.round(100 * (1 - lost)) + "% of the box";
  $("cropwarn").className = lost > LOSS_WARN ? "warn" : "ok";
  $("cropwarn").dataset.lost = lost.toFixed(3);
}

function frameFraction(ev) {
  const r = $("draw").getBoundingClientRect();
  return [Math.min(1, Math.max(0, (ev.clientX - r.left) / r.width)), Math.min(1, Math.max(0, (ev.clientY - r.top) / r.height))];
}

let dragFrom = null;
$("draw").addEventListener("pointerdown", (ev) => {
  dragFrom = frameFraction(ev);
  try { $("draw").setPointerCapture(ev.pointerId); } catch (err) { /* a synthetic pointer */ }
});
$("draw").addEventListener("pointermove", (ev) => {
  if (!dragFrom) return;
  const to = frameFraction(ev);
  box = [Math.min(dragFrom[0], to[0]), Math.min(dragFrom[1], to[1]), Math.max(dragFrom[0], to[0]), Math.max(dragFrom[1], to[1])];
  drawBox();
});
$("draw").addEventListener("pointerup", () => {
  dragFrom = null;
  if (box && (box[2] - box[0] < 0.01 || box[3] - box[1] < 0.01)) box = null;
  drawBox();
});

$("save").onclick = guarded(async () => {
  const body = { ...where(), box, trigger: $("trigger").value, confirm: Number($("confirm").value) };
  if (body.trigger === "interval") body.interval_s = Number($("interval").value);
  const reply = await call("POST", "/api/region", body);
  status("saved " + body.region + " (" + (reply.changes.join("; ") || "no change") + ")", "ok");
  await loadCamera();
});

function refreshFrame() {
  const img = new Image();
  img.onload = () => { $("frame").src = img.src; };
  img.src = "/latest.jpg?" + new URLSearchParams({ camera: $("camera").value, t: Date.now() });
}
$("frame").onload = () => { drawBox(); drawLive(); };
$("live").onerror = () => {};

function drawLive() {
  if (!regions[where().region]) return;  // saved regions only: the daemon crops them
  const img = new Image();
  img.onload = () => { $("live").src = img.src; };
  img.src = "/api/crop.jpg?" + new URLSearchParams({ ...where(), t: Date.now() });
}

async function loadCamera() {
  const latest = await call("GET", "/api/latest");
  const cams = Object.keys(latest.cameras || {});
  if ($("camera").options.length !== cams.length) {
    $("camera").replaceChildren(...cams.map((c) => new Option(c, c)));
  }
  regions = (latest.cameras[$("camera").value] || {}).regions || {};
  $("regions").replaceChildren(...Object.keys(regions).map((r) => new Option(r, r)));
}

async function loadRegion() {
  const name = where().region;
  if (!regions[name]) { drawBox(); return; }
  const info = await call("GET", "/api/region?" + new URLSearchParams(where()));
  box = info.box; $("trigger").value = info.trigger; $("confirm").value = info.confirm;
  $("trigger").onchange();
  $("rollback").disabled = !info.previous;
  drawBox();
}

// -- 2. collect -------------------------------------------------------------------------------
$("burst").onclick = guarded(async () => {
  await call("POST", "/api/burst", { ...where(), count: Number($("count").value), seconds: Number($("seconds").value) });
  status("burst started");
  await refreshSamples();
});

function showBurst(b) {
  if (!b) { $("burststate").textContent = ""; return; }
  $("burststate").textContent = (b.running ? "burst running: " : "last burst: ") + b.taken + "/" + b.count +
    " crops taken, " + b.kept + " kept, " + b.similar + " too similar to keep" + (b.error ? " · " + b.error : "");
  $("burststate").dataset.running = b.running ? "1" : "";
}

// -- 3. label ---------------------------------------------------------------------------------
const REASONS = { "low-score": "low score", "state-change": "state change", periodic: "periodic",
                  capture: "command", burst: "command (burst)" };

function caption(s) {  // DOM nodes, not HTML: labels come from model files
  const cap = document.createElement("figcaption");
  cap.title = s.id;
  cap.append(s.time ? s.time.slice(11, 19) : "", document.createElement("br"), REASONS[s.reason] || s.reason || "");
  if (guesses[s.id]) {
    const guess = document.createElement("span");
    guess.className = "guess";
    guess.textContent = " · " + guesses[s.id].label + " " + Math.round(guesses[s.id].score * 100) + "%";
    cap.append(guess);
  }
  return cap;
}

function thumb(s) {
  const fig = document.createElement("figure");
  fig.tabIndex = -1; fig.dataset.id = s.id; fig.className = selected.has(s.id) ? "sel" : "";
  const img = document.createElement("img");
  img.loading = "lazy"; img.alt = s.id;
  img.src = "/api/sample.jpg?" + new URLSearchParams({ ...where(), id: s.id });
  fig.append(img, caption(s));
  fig.onclick = (ev) => { select(s.id, ev.shiftKey); };
  return fig;
}

function select(id, range) {
  if (range && anchor !== null && order.includes(anchor)) {
    const [a, b] = [order.indexOf(anchor), order.indexOf(id)].sort((x, y) => x - y);
    for (const other of order.slice(a, b + 1)) selected.add(other);
  } else if (selected.has(id)) selected.delete(id); else selected.add(id);
  anchor = id; focus(id); paintSelection();
}

function focus(id) {
  focusId = id;
  const fig = document.querySelector('figure[data-id="' + CSS.escape(id) + '"]');
  if (fig) fig.focus();
}

function paintSelection() {
  for (const fig of document.querySelectorAll("figure")) fig.className = selected.has(fig.dataset.id) ? "sel" : "";
  for (const id of ["apply", "delete"]) $(id).disabled = selected.size === 0;
  $("accept").disabled = ![...selected].some((id) => guesses[id]);
  $("selcount").textContent = selected.size + " selected";
}

async function refreshSamples() {
  const data = await call("GET", "/api/samples?" + new URLSearchParams(where()));
  showBurst(data.burst);
  const labels = data.labels;
  $("labels").replaceChildren(...[...new Set([...labels, ...data.model_labels])].map((l) => new Option(l, l)));
  const counts = labels.map((l) => [l, data.samples.filter((s) => s.label === l).length]);
  $("counts").textContent = [...counts.map(([l, n]) => l + ": " + n),
    "inbox: " + data.samples.filter((s) => s.label === "inbox").length].join(" · ");
  const hints = [];
  if (counts.length < 2) hints.push("training needs at least 2 classes");
  for (const [l, n] of counts) if (n < ENOUGH) hints.push(l + " has " + n + " (" + ENOUGH + "+ per class is better)");
  $("hints").textContent = hints.join(" · ");
  const folders = ["inbox", ...labels];
  order = [];
  $("folders").replaceChildren(...folders.map((label) => {
    const samples = data.samples.filter((s) => s.label === label);
    order.push(...samples.map((s) => s.id));
    const section = document.createElement("div");
    const h = document.createElement("h2");
    h.textContent = (label === "inbox" ? "inbox (unlabelled)" : label) + ": " + samples.length;
    const grid = document.createElement("div"); grid.className = "grid"; grid.dataset.label = label;
    grid.append(...samples.map(thumb));
    section.append(h, grid);
    return section;
  }));
  for (const id of [...selected]) if (!order.includes(id)) selected.delete(id);
  paintSelection();
  return data;
}

async function act(body, done) {
  const reply = await call("POST", "/api/samples", { ...where(), ids: [...selected], ...body });
  selected.clear(); status(done(reply)); await refreshSamples();
}
const inbox = () => order.filter((id) => id.startsWith("inbox/"));
$("apply").onclick = guarded(() => act({ label: $("label").value.trim() }, (r) => r.labelled + " labelled"));
$("delete").onclick = guarded(() => act({ delete: true }, (r) => r.deleted + " deleted"));
$("all").onclick = () => { for (const id of inbox()) selected.add(id); paintSelection(); };
$("none").onclick = () => { selected.clear(); paintSelection(); };
$("suggest").onclick = guarded(async () => {
  const ids = inbox().filter((id) => !guesses[id]).slice(0, 500);
  if (!ids.length) { status("nothing new in the inbox to suggest for"); return; }
  for (let at = 0; at < ids.length; at += 50) {  // the server takes 50 at a time
    const reply = await call("POST", "/api/suggest", { ...where(), ids: ids.slice(at, at + 50) });
    guesses = { ...guesses, ...reply.suggestions };
    status("suggestions from " + reply.model + ": " + Math.min(ids.length, at + 50) + "/" + ids.length);
    await refreshSamples();
  }
});
$("accept").onclick = guarded(async () => {
  const byLabel = {};
  for (const id of selected) if (guesses[id]) (byLabel[guesses[id].label] ||= []).push(id);
  let moved = 0;
  for (const [label, ids] of Object.entries(byLabel)) {
    moved += (await call("POST", "/api/samples", { ...where(), ids, label })).labelled;
  }
  selected.clear(); status(moved + " labelled as suggested"); await refreshSamples();
});

document.addEventListener("keydown", (ev) => {
  if (ev.target.tagName === "INPUT" || ev.target.tagName === "SELECT") return;
  const at = order.indexOf(focusId);
  if ((ev.ctrlKey || ev.metaKey) && ev.key === "a") { ev.preventDefault(); $("all").onclick(); }
  else if (ev.key === "ArrowRight" || ev.key === "ArrowDown") { ev.preventDefault(); if (order.length) focus(order[Math.min(order.length - 1, at + 1)]); if (ev.shiftKey) select(focusId, true); }
  else if (ev.key === "ArrowLeft" || ev.key === "ArrowUp") { ev.preventDefault(); if (order.length) focus(order[Math.max(0, at - 1)]); if (ev.shiftKey) select(focusId, true); }
  else if (ev.key === " " && focusId) { ev.preventDefault(); select(focusId, ev.shiftKey); }
  else if (ev.key === "Enter" && selected.size) $("apply").onclick();
  else if (ev.key === "Delete" && selected.size) $("delete").onclick();
  else if (ev.key === "Escape") $("none").onclick();
});

// -- 4. train ---------------------------------------------------------------------------------
function showTrain(job) {
  $("trainstate").dataset.state = job.state;
  $("cancel").disabled = job.state !== "running";
  $("trainbtn").disabled = job.state === "running";
  const p = job.progress;
  if (p && p.event === "epoch") { $("progress").max = p.max_epochs; $("progress").value = p.epoch; }
  else if (p) { $("progress").max = p.total || 1; $("progress").value = p.done || 0; }
  if (job.state === "done") { $("progress").max = 1; $("progress").value = 1; }
  const last = (job.epochs || []).at(-1);
  let text = job.state + (job.phase ? " · " + job.phase : "") + (job.seconds !== undefined ? " · " + job.seconds + " s" : "");
  if (last && last.event === "epoch") text += " · epoch " + last.epoch + " val acc " + Math.round(100 * last.val_accuracy) + "%";
  if (last && last.event === "stopped_early") text += " · stopped early at epoch " + last.epoch + " (best " + last.best_epoch + ")";
  if (job.error) text += " · " + job.error;
  $("trainstate").textContent = text;
  $("trainstate").className = job.state === "failed" ? "bad" : job.state === "done" ? "ok" : "dim";
  if (job.state === "done" && job.report !== undefined) {
    $("report").hidden = false; $("report").textContent = job.report;
    $("confusion").style.display = "block";
    $("confusion").src = "/api/train/confusion.png?" + new URLSearchParams({ ...where(), t: job.finished });
  }
}

async function pollTrain() {
  const job = await call("GET", "/api/train?" + new URLSearchParams(where()));
  showTrain(job);
  if (job.state === "running") pollTimer = setTimeout(guarded(pollTrain), 500);
}
$("trainbtn").onclick = guarded(async () => {
  $("report").hidden = true; $("confusion").style.display = "none";
  showTrain(await call("POST", "/api/train", { ...where(), force: $("force").checked }));
  clearTimeout(pollTimer); await pollTrain();
});
$("cancel").onclick = guarded(async () => { await call("POST", "/api/train/cancel", where()); status("cancelling"); });

// -- 5. deploy --------------------------------------------------------------------------------
$("deploybtn").onclick = guarded(async () => {
  $("deploystate").textContent = "deploying (checked on live frames)…";
  const r = await call("POST", "/api/deploy", where());
  $("deploystate").textContent = r.outcome + ": " + r.name + " (" + r.labels.join(", ") + ")" +
    (r.persisted ? ", kept in the config" : ", NOT kept in the config: " + (r.persist_error || r.persist || "")) +
    (r.previous ? " · previous: " + r.previous : "");
  $("deploystate").className = r.rolled_back ? "bad" : "ok";
  $("deploystate").dataset.outcome = r.outcome;
  $("rollback").disabled = !r.previous || r.rolled_back;
});
$("rollback").onclick = guarded(async () => {
  const r = await call("POST", "/api/rollback", where());
  $("deploystate").textContent = "rolled back to " + r.model; $("deploystate").dataset.outcome = "rolled back";
  await loadRegion();  // enables roll back again when that model replaced an earlier one
});

$("trigger").onchange = () => { $("intervalbox").hidden = $("trigger").value !== "interval"; };

// -- start ------------------------------------------------------------------------------------
$("camera").onchange = guarded(async () => { box = null; await loadCamera(); await loadRegion(); refreshFrame(); await refreshSamples().catch(() => {}); });
$("region").onchange = guarded(async () => { box = null; selected.clear(); guesses = {}; await loadRegion(); await refreshSamples().catch(() => {}); await pollTrain(); });
setInterval(refreshFrame, 1000);
setInterval(() => { if ($("burststate").dataset.running) refreshSamples().catch(() => {}); }, 1000);
window.ready = (async () => {
  await loadCamera();
  const first = Object.keys(regions)[0];
  if (first && !new URLSearchParams(location.search).get("region")) $("region").value = first;
  if (new URLSearchParams(location.search).get("region")) $("region").value = new URLSearchParams(location.search).get("region");
  refreshFrame();
  await loadRegion();
  await refreshSamples().catch(() => {});
  await pollTrain();
})().catch((err) => status(err.message, "bad"));
