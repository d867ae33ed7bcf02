"""Static parts of the colorize review page (``report.html``, :func:`lcmftn.report.render_html`).

The page is one offline file next to the job's output folders (no CDN, no network). Python
renders the summary and a shot table (``html.escape``) and embeds the data of
:func:`lcmftn.report.review_data` as JSON; this script builds the viewer from it with
``textContent`` / attributes only (never ``innerHTML`` with data), so every string stays inert.

Viewer: shots worst first (left); per shot its keyframes, a flip-book of all its frames (strip
sorted worst first, or in time order), the coloured frame with toggles for the line art
(multiplied over it) and the confidence overlay (red = unsure), and in evaluation mode the truth
and the error map beside it. Keys: ←/→ frame, ↑/↓ shot, Space play (time order), L C T E
toggles, O order, Home/End, ? help. The URL hash (``#shot=<id>&frame=<i>``) links a frame.
"""

CSS = """
:root{--bg:#1d1f23;--panel:#272a30;--fg:#e8e8e8;--dim:#9aa0a6;--bad:#ff5a4e;--key:#4ea3ff;--ok:#5ecb81}
*{box-sizing:border-box}
body{font:14px/1.4 system-ui,sans-serif;margin:0;background:var(--bg);color:var(--fg)}
header{padding:.6em 1em;background:var(--panel);border-bottom:1px solid #000}
h1{font-size:18px;margin:0 0 .2em}h2{font-size:15px;margin:.2em 0}
.meta{margin:.15em 0;color:var(--dim)}.meta b,.meta code{color:var(--fg)}
a{color:#8ab4f8}code{font-size:12px}
details{margin:.5em 1em}summary{cursor:pointer;color:var(--dim)}
.err{color:#ff8a80}.warn{color:#ffd180}
#review{display:flex;gap:1em;padding:.6em 1em;align-items:flex-start}
#shots{flex:0 0 225px;max-height:calc(100vh - 120px);overflow:auto;background:var(--panel);border-radius:6px;padding:.4em}
#shot-list{list-style:none;margin:0;padding:0}
#shot-list li{white-space:nowrap;font-variant-numeric:tabular-nums;padding:.3em .4em;border-radius:4px;cursor:pointer;display:flex;justify-content:space-between;gap:.4em}
#shot-list li:hover{background:#333842}#shot-list li.current{background:#3b4a66}
#shot-list .score{font-variant-numeric:tabular-nums;color:var(--dim)}
#shot-list .nflag{color:var(--bad)}
#shot{flex:1;min-width:0}
#shot-head{display:flex;gap:1em;align-items:baseline;flex-wrap:wrap}
#keys{margin:.3em 0;display:flex;gap:.5em;align-items:center;color:var(--dim)}
#keys img{height:56px;border:2px solid var(--key);border-radius:3px;cursor:pointer}
#toolbar{display:flex;gap:.8em;align-items:center;flex-wrap:wrap;margin:.4em 0}
#toolbar label{cursor:pointer;user-select:none}
kbd{border:1px solid #666;border-bottom-width:2px;border-radius:3px;padding:0 .3em;font-size:12px;color:var(--fg)}
button{background:#3a3f48;color:var(--fg);border:1px solid #555;border-radius:4px;padding:.2em .6em;cursor:pointer}
#panels{display:flex;gap:.6em;flex-wrap:wrap}
figure{margin:0}figcaption{color:var(--dim);font-size:12px}
.stage{position:relative;display:inline-block;background:#000;line-height:0}
.stage img.base{display:block;width:var(--pw,480px);height:auto}
.stage img.pixel{image-rendering:pixelated}
.ov{position:absolute;inset:0;width:100%;height:100%}
#img-lineart{mix-blend-mode:multiply}
#ov-conf{background:#ff2a1a;mix-blend-mode:multiply;opacity:.9}
#ov-conf img{mix-blend-mode:screen;width:100%;height:100%;display:block}
[hidden]{display:none!important}
#frame-info{margin:.4em 0;font-variant-numeric:tabular-nums}
#frame-info .flag{color:var(--bad);font-weight:bold}
#strip{display:flex;gap:4px;overflow-x:auto;padding:.3em 0 .6em}
.thumb{position:relative;flex:0 0 auto;border:2px solid transparent;border-radius:3px;line-height:0}
.thumb img{height:64px;width:auto;display:block}
.thumb.flagged{border-color:var(--bad)}.thumb.key{border-color:var(--key)}
.thumb.current{outline:3px solid #fff;outline-offset:1px}
.thumb .badge{position:absolute;left:0;bottom:0;background:#000a;color:#fff;font-size:10px;line-height:1.2;padding:0 2px}
#help{color:var(--dim);margin:0 1em .6em}
table{border-collapse:collapse;margin:.4em 0}td,th{border:1px solid #444;padding:2px 6px;font-size:12px}
tr.skipped,tr.failed{background:#4a2323}
"""

VIEWER = """
<main id="review" hidden>
<nav id="shots"><h2>Shots <small>(worst first)</small></h2><ol id="shot-list"></ol></nav>
<section id="shot">
 <div id="shot-head"><h2 id="shot-title"></h2><span id="shot-stats" class="meta"></span>
  <a id="shot-video" hidden>see it in the episode</a></div>
 <div id="keys"><span>keyframe(s):</span><span id="key-list"></span></div>
 <div id="toolbar">
  <label><input type="checkbox" id="t-lineart"> <kbd>L</kbd> line art</label>
  <label><input type="checkbox" id="t-conf"> <kbd>C</kbd> confidence (red = unsure)</label>
  <label class="evalonly"><input type="checkbox" id="t-truth" checked> <kbd>T</kbd> truth</label>
  <label class="evalonly"><input type="checkbox" id="t-error" checked> <kbd>E</kbd> error map</label>
  <button id="b-order" type="button"><kbd>O</kbd> order: worst first</button>
  <button id="b-play" type="button"><kbd>Space</kbd> play</button>
 </div>
 <div id="panels">
  <figure id="p-color"><div class="stage"><img id="img-color" class="base" alt="coloured frame">
   <img id="img-lineart" class="ov" alt="" hidden><div id="ov-conf" class="ov" hidden><img id="img-conf" alt=""></div></div>
   <figcaption id="cap-color">coloured</figcaption></figure>
  <figure id="p-truth" class="evalonly"><div class="stage"><img id="img-truth" class="base" alt="truth"></div>
   <figcaption>truth</figcaption></figure>
  <figure id="p-error" class="evalonly"><div class="stage"><img id="img-error" class="base" alt="error map"></div>
   <figcaption id="cap-error">error map</figcaption></figure>
 </div>
 <p id="frame-info"></p>
 <div id="strip"></div>
</section>
</main>
<p id="help" hidden><kbd>←</kbd>/<kbd>→</kbd> frame · <kbd>↑</kbd>/<kbd>↓</kbd> shot · <kbd>Space</kbd>
play/pause (time order) · <kbd>L</kbd> line art · <kbd>C</kbd> confidence · <span class="evalonly"><kbd>T</kbd> truth · <kbd>E</kbd>
error map · </span><kbd>O</kbd> worst first / time order · <kbd>Home</kbd>/<kbd>End</kbd> · <kbd>?</kbd> this help ·
click a thumbnail to see it, open its link for the full PNG</p>
"""

JS = r"""
(function () {
  "use strict";
  const D = JSON.parse(document.getElementById("review-data").textContent);
  const $ = (id) => document.getElementById(id);
  if (!D.shots.length) return;
  $("review").hidden = false; $("help").hidden = false;
  if (D.evaluated) document.body.classList.add("evaluated");
  document.querySelectorAll(".evalonly").forEach((e) => { e.hidden = !D.evaluated; });
  if (!D.lineart) $("t-lineart").parentElement.hidden = true;
  const name = (i) => String(i).padStart(6, "0") + ".png";
  const st = { s: 0, k: 0, order: "worst", timer: null };
  const fmt = (x, d) => (x === null || x === undefined) ? "–" : Number(x).toFixed(d);
  const scoreText = (f) => f.kind === "key" ? "key" : (f.psnr !== null && f.psnr !== undefined)
    ? fmt(f.psnr, 1) + " dB" : "c " + fmt(f.conf, 2);
  const shot = () => D.shots[st.s];
  const frames = () => st.order === "worst" ? shot().frames : shot().timeFrames;
  D.shots.forEach((s) => { s.timeFrames = s.frames.slice().sort((a, b) => a.i - b.i); });

  function el(tag, attrs, text) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function setImg(img, src) {
    if (src) { if (img.getAttribute("src") !== src) img.setAttribute("src", src); img.hidden = false; }
    else { img.removeAttribute("src"); img.hidden = true; }
  }
  const list = $("shot-list");
  D.shots.forEach((s, n) => {
    const li = el("li", { "data-n": String(n), "data-id": s.id });
    li.append(el("span", {}, s.id));
    const right = el("span", { class: "score" },
      D.evaluated && s.psnr !== null ? fmt(s.psnr, 1) + " dB" : "conf " + fmt(s.confidence, 2));
    if (s.flagged) right.append(el("span", { class: "nflag" }, " ⚑" + s.flagged));
    li.append(right);
    li.addEventListener("click", () => { stop(); selectShot(n, 0); });
    list.append(li);
  });

  function selectShot(n, k) {
    st.s = Math.max(0, Math.min(D.shots.length - 1, n)); st.k = k;
    const s = shot();
    list.querySelectorAll("li").forEach((li, m) => li.classList.toggle("current", m === st.s));
    scrollInto(list.parentElement, list.children[st.s], false);
    $("shot-title").textContent = "Shot " + s.id + "  (" + (st.s + 1) + "/" + D.shots.length + ")";
    $("shot-stats").textContent = "frames " + s.start + "–" + (s.end - 1) + " · confidence " + fmt(s.confidence, 3)
      + (D.evaluated ? " · PSNR " + fmt(s.psnr, 2) + " dB · SSIM " + fmt(s.ssim, 3) : "")
      + " · " + s.flagged + " flagged" + (s.borrowed_from !== null && s.borrowed_from !== undefined
        ? " · keyframe borrowed from frame " + s.borrowed_from : "");
    const v = $("shot-video");
    if (D.video) { v.hidden = false; v.setAttribute("href", D.video + "#t=" + (s.start / D.fps).toFixed(3)); }
    const keys = $("key-list"); keys.replaceChildren();
    s.keyframes.forEach((i) => {
      const img = el("img", { src: "frames/" + name(i), alt: "keyframe " + i, title: "keyframe " + i });
      img.addEventListener("click", () => { stop(); gotoFrame(i); });
      keys.append(img);
    });
    if (!s.keyframes.length) keys.append(el("span", {}, "none in this shot"));
    buildStrip(); show();
  }
  function buildStrip() {
    const strip = $("strip"); strip.replaceChildren();
    frames().forEach((f, k) => {
      const a = el("a", { class: "thumb" + (f.flagged ? " flagged" : "") + (f.kind === "key" ? " key" : ""),
        href: "frames/" + name(f.i), "data-k": String(k), "data-i": String(f.i),
        title: "frame " + f.i + " (" + f.kind + ")" });
      a.append(el("img", { src: "frames/" + name(f.i), loading: "lazy", alt: "frame " + f.i }));
      a.append(el("span", { class: "badge" }, f.i + " · " + scoreText(f)));
      a.addEventListener("click", (ev) => { ev.preventDefault(); stop(); st.k = k; show(); });
      strip.append(a);
    });
  }
  function gotoFrame(i) {
    const k = frames().findIndex((f) => f.i === i);
    if (k >= 0) { st.k = k; show(); }
  }
  function show() {
    const fs = frames(); st.k = (st.k + fs.length) % fs.length;
    const f = fs[st.k], s = shot();
    setImg($("img-color"), "frames/" + name(f.i));
    setImg($("img-lineart"), D.lineart && $("t-lineart").checked ? "lineart/" + name(f.i) : null);
    const hasConf = f.kind === "model";
    const conf = hasConf && $("t-conf").checked;
    $("ov-conf").hidden = !conf; setImg($("img-conf"), conf ? "confidence/" + name(f.i) : null);
    const scored = D.evaluated && f.psnr !== null && f.psnr !== undefined;
    $("p-truth").hidden = !(D.evaluated && $("t-truth").checked);
    $("p-error").hidden = !(D.evaluated && $("t-error").checked);
    setImg($("img-truth"), scored && $("t-truth").checked ? "truth/" + name(f.i)
      : (D.evaluated && f.kind === "key" && $("t-truth").checked ? "frames/" + name(f.i) : null));
    setImg($("img-error"), scored && $("t-error").checked ? "error/" + name(f.i) : null);
    $("cap-error").textContent = scored ? "error map (black = exact, yellow ≥ " + D.error_full_scale + " levels)"
      : "no error map (" + f.kind + " frame)";
    $("cap-color").textContent = f.kind === "key" ? "keyframe (given)" : f.kind === "copy"
      ? "hold: copy of frame " + f.ref : "coloured from frame " + f.ref;
    const info = $("frame-info"); info.replaceChildren();
    info.append(el("b", {}, "frame " + f.i));
    info.append(document.createTextNode(" · " + (st.k + 1) + "/" + fs.length + (st.order === "worst"
      ? " worst first" : " in time order") + " · " + f.kind
      + (f.kind !== "key" ? " · confidence " + fmt(f.conf, 3) + " · low " + fmt(100 * (f.low || 0), 1) + "%" : "")
      + (scored ? " · PSNR " + fmt(f.psnr, 2) + " dB · SSIM " + fmt(f.ssim, 3) : "") + " · "));
    if (f.flagged) info.append(el("span", { class: "flag" }, "flagged for review · "));
    info.append(el("a", { href: "frames/" + name(f.i), id: "frame-link" }, "open " + "frames/" + name(f.i)));
    if (hasConf) { info.append(document.createTextNode(" · "));
      info.append(el("a", { href: "confidence/" + name(f.i) }, "confidence map")); }
    document.querySelectorAll("#strip .thumb").forEach((t, k) => t.classList.toggle("current", k === st.k));
    const cur = document.querySelector("#strip .thumb.current");
    if (cur) scrollInto($("strip"), cur, true);
    layout();
    try { history.replaceState(null, "", "#shot=" + encodeURIComponent(s.id) + "&frame=" + f.i); } catch (e) { /* file:// in some browsers */ }
  }
  // Scroll only the container (scrollIntoView would scroll the whole page away from the header).
  function scrollInto(box, item, horizontal) {
    if (horizontal) {
      const l = item.offsetLeft - box.offsetLeft, r = l + item.offsetWidth;
      if (l < box.scrollLeft) box.scrollLeft = l; else if (r > box.scrollLeft + box.clientWidth) box.scrollLeft = r - box.clientWidth;
    } else {
      const t = item.offsetTop - box.offsetTop, b = t + item.offsetHeight;
      if (t < box.scrollTop) box.scrollTop = t; else if (b > box.scrollTop + box.clientHeight) box.scrollTop = b - box.clientHeight;
    }
  }
  // Panels side by side: as wide as the row allows, at most half the window's height tall.
  function layout() {
    const img = $("img-color");
    const aspect = img.naturalWidth && img.naturalHeight ? img.naturalWidth / img.naturalHeight : 4 / 3;
    const n = 1 + (D.evaluated && $("t-truth").checked ? 1 : 0) + (D.evaluated && $("t-error").checked ? 1 : 0);
    const avail = ($("shot").clientWidth - 12 * (n - 1)) / n;
    const pw = Math.max(160, Math.floor(Math.min(avail, window.innerHeight * 0.5 * aspect)));
    $("panels").style.setProperty("--pw", pw + "px");
    document.querySelectorAll(".stage img.base").forEach((b) => b.classList.toggle("pixel", img.naturalWidth * 2 < pw));
  }
  $("img-color").addEventListener("load", layout);
  window.addEventListener("resize", layout);
  function stop() { if (st.timer) { clearInterval(st.timer); st.timer = null; $("b-play").lastChild.textContent = " play"; } }
  function play() {
    if (st.timer) { stop(); return; }
    if (st.order !== "time") { const i = frames()[st.k].i; st.order = "time"; updateOrder(); gotoFrame(i); }
    $("b-play").lastChild.textContent = " pause";
    st.timer = setInterval(() => { st.k = (st.k + 1) % frames().length; show(); }, 1000 / Math.min(D.fps, 30));
  }
  function updateOrder() {
    $("b-order").lastChild.textContent = " order: " + (st.order === "worst" ? "worst first" : "time");
    buildStrip();
  }
  function toggleOrder() {
    const i = frames()[st.k].i; st.order = st.order === "worst" ? "time" : "worst"; updateOrder(); gotoFrame(i);
  }
  for (const id of ["t-lineart", "t-conf", "t-truth", "t-error"]) {
    $(id).addEventListener("change", (ev) => { ev.target.blur(); show(); });
  }
  $("b-order").addEventListener("click", (ev) => { ev.currentTarget.blur(); stop(); toggleOrder(); });
  $("b-play").addEventListener("click", (ev) => { ev.currentTarget.blur(); play(); });
  const toggle = (id) => { const c = $(id); if (!c.parentElement.hidden) { c.checked = !c.checked; show(); } };
  document.addEventListener("keydown", (ev) => {
    if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
    const k = ev.key;
    const act = {
      ArrowRight: () => { stop(); st.k++; show(); }, ArrowLeft: () => { stop(); st.k--; show(); },
      ArrowDown: () => { stop(); selectShot(st.s + 1, 0); }, ArrowUp: () => { stop(); selectShot(st.s - 1, 0); },
      Home: () => { stop(); st.k = 0; show(); }, End: () => { stop(); st.k = frames().length - 1; show(); },
      " ": play, l: () => toggle("t-lineart"), c: () => toggle("t-conf"), t: () => toggle("t-truth"),
      e: () => toggle("t-error"), o: () => { stop(); toggleOrder(); },
      "?": () => { $("help").hidden = !$("help").hidden; },
    }[k.length === 1 ? k.toLowerCase() : k];
    if (act) { ev.preventDefault(); act(); }
  });
  const h = new URLSearchParams(location.hash.slice(1));
  const n0 = Math.max(0, D.shots.findIndex((s) => s.id === h.get("shot")));
  selectShot(n0, 0);
  if (h.get("frame") !== null) gotoFrame(Number(h.get("frame")));
})();
"""
