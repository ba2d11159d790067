// The per-video browser of the report: decodes the embedded curves and draws them on a canvas
// per run. Written for this page; no library, no network.
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("report-data").textContent);
  var select = document.getElementById("video-select");
  var panels = Array.prototype.slice.call(document.querySelectorAll(".vplot"));
  var SCORE = "#111111", THRESHOLD = "#555555", TRUTH = "rgba(214, 39, 40, 0.16)";

  // uint16 little-endian, base64, value / 1000 (see anomalyclip.report.series)
  function decode(b64) {
    var s = atob(b64), n = s.length >> 1, out = new Float32Array(n);
    for (var i = 0; i < n; i++) out[i] = (s.charCodeAt(2 * i) | (s.charCodeAt(2 * i + 1) << 8)) / 1000;
    return out;
  }

  function niceStep(span, target) {
    var raw = span / target, mag = Math.pow(10, Math.floor(Math.log(raw) / Math.LN10));
    var steps = [1, 2, 5, 10];
    for (var i = 0; i < steps.length; i++) if (steps[i] * mag >= raw) return steps[i] * mag;
    return 10 * mag;
  }

  function line(ctx, values, k, n, sx, sy) {
    ctx.beginPath();
    for (var i = 0; i < values.length; i++) {
      var x = sx(Math.min((i + 0.5) * k, n)), y = sy(values[i]);
      if (i === 0) ctx.moveTo(x, y); else ctx.lineTo(x, y);
    }
    ctx.stroke();
  }

  function legend(panel, items) {
    var box = panel.querySelector(".vlegend");
    box.innerHTML = "";
    items.forEach(function (it) {
      var span = document.createElement("span"), sw = document.createElement("i");
      sw.style.background = it.fill || "transparent";
      if (it.stroke) sw.style.borderTop = (it.dashed ? "2px dashed " : "2px solid ") + it.stroke;
      if (it.stroke && !it.fill) sw.style.height = "0";
      span.appendChild(sw);
      span.appendChild(document.createTextNode(it.label));
      box.appendChild(span);
    });
  }

  function draw(panel, run, name) {
    var canvas = panel.querySelector("canvas"), info = panel.querySelector(".vinfo");
    var v = run.videos[name];
    var ratio = window.devicePixelRatio || 1, w = Math.max(canvas.clientWidth, 300), h = canvas.clientHeight || 260;
    canvas.width = Math.round(w * ratio);
    canvas.height = Math.round(h * ratio);
    var ctx = canvas.getContext("2d");
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.fillStyle = "#ffffff";
    ctx.fillRect(0, 0, w, h);
    panel.setAttribute("data-video", name);
    if (!v) {
      panel.setAttribute("data-points", "0");
      ctx.fillStyle = "#777";
      ctx.font = "13px sans-serif";
      ctx.fillText("not in this run's test list", 20, h / 2);
      legend(panel, []);
      info.textContent = "";
      return;
    }
    var L = 40, R = 10, T = 8, B = 26, pw = w - L - R, ph = h - T - B, n = v.frames;
    var sx = function (f) { return L + pw * f / Math.max(n, 1); };
    var sy = function (p) { return T + ph * (1 - p); };

    ctx.fillStyle = TRUTH;  // ground truth, exact frame runs
    v.spans.forEach(function (s) { ctx.fillRect(sx(s[0]), T, Math.max(sx(s[1]) - sx(s[0]), 1), ph); });

    ctx.strokeStyle = "#e5e5e5"; ctx.lineWidth = 1; ctx.fillStyle = "#555"; ctx.font = "11px sans-serif";
    ctx.textAlign = "right"; ctx.textBaseline = "middle";
    [0, 0.25, 0.5, 0.75, 1].forEach(function (p) {
      ctx.beginPath(); ctx.moveTo(L, sy(p)); ctx.lineTo(L + pw, sy(p)); ctx.stroke();
      ctx.fillText(p.toFixed(2), L - 4, sy(p));
    });
    ctx.textAlign = "center"; ctx.textBaseline = "top";
    var step = niceStep(n, 6);
    for (var f = 0; f <= n; f += step) {
      ctx.beginPath(); ctx.moveTo(sx(f), T + ph); ctx.lineTo(sx(f), T + ph + 4); ctx.strokeStyle = "#999"; ctx.stroke();
      ctx.fillText(String(f), sx(f), T + ph + 6);
    }
    ctx.strokeStyle = "#999"; ctx.strokeRect(L, T, pw, ph);

    var items = [];
    v.classes.forEach(function (c, j) {
      ctx.strokeStyle = data.colours[c]; ctx.lineWidth = 1.2;
      line(ctx, decode(v.probs[j]), v.k, n, sx, sy);
      items.push({ stroke: data.colours[c], label: "P(" + data.class_names[c] + ")" + (c === v.true ? " (true class)" : "") });
    });
    var score = decode(v.score);
    ctx.strokeStyle = SCORE; ctx.lineWidth = 1.8;
    line(ctx, score, v.k, n, sx, sy);

    ctx.setLineDash([6, 4]); ctx.strokeStyle = THRESHOLD; ctx.lineWidth = 1.2;
    ctx.beginPath(); ctx.moveTo(L, sy(run.threshold)); ctx.lineTo(L + pw, sy(run.threshold)); ctx.stroke();
    ctx.setLineDash([]);

    panel.setAttribute("data-points", String(score.length));
    legend(panel, [
      { stroke: SCORE, label: "anomaly score" },
      { stroke: THRESHOLD, dashed: true, label: "threshold " + run.threshold.toFixed(3) },
      { fill: TRUTH, label: "ground truth abnormal" }
    ].concat(items));
    info.textContent = n.toLocaleString("en-US") + " frames; " + score.length + " points, 1 point = max over " + v.k +
      " frame" + (v.k > 1 ? "s" : "") + "; true class: " + (v.true === null ? "normal video" : data.class_names[v.true]);
  }

  function show() {
    var name = data.order[+select.value];
    panels.forEach(function (panel) { draw(panel, data.runs[+panel.getAttribute("data-run")], name); });
  }

  function move(d) {
    var i = Math.min(Math.max(select.selectedIndex + d, 0), select.options.length - 1);
    if (i !== select.selectedIndex) { select.selectedIndex = i; show(); }
  }

  select.addEventListener("change", show);
  document.getElementById("video-prev").addEventListener("click", function () { move(-1); });
  document.getElementById("video-next").addEventListener("click", function () { move(1); });
  window.addEventListener("resize", show);
  show();
})();
