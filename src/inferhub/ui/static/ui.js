// Inferhub dashboard: charts, live overview, copy buttons, confirmations, playground streaming.
(function () {
  "use strict";
  var csrf = (document.querySelector('meta[name="csrf-token"]') || {}).content || "";

  function readJSON(id) {
    var el = document.getElementById(id);
    return el ? JSON.parse(el.textContent) : null;
  }

  function barChart(canvasId, dataId) {
    var canvas = document.getElementById(canvasId), data = readJSON(dataId);
    if (!canvas || !data || !window.Chart) return;
    canvas.chart = new Chart(canvas, {
      type: "bar",
      data: { labels: data.labels, datasets: [
        { label: "Requests", data: data.requests, backgroundColor: "#2457c5", yAxisID: "y" },
        { label: "Tokens", data: data.tokens, backgroundColor: "#8fb3ff", yAxisID: "y1" }] },
      options: { responsive: true, maintainAspectRatio: false, animation: false,
        scales: { y: { beginAtZero: true, position: "left", title: { display: true, text: "requests" } },
                  y1: { beginAtZero: true, position: "right", grid: { drawOnChartArea: false }, title: { display: true, text: "tokens" } } } }
    });
  }

  function costChart(canvasId, dataId) {
    var canvas = document.getElementById(canvasId), data = readJSON(dataId);
    if (!canvas || !data || !window.Chart) return;
    canvas.chart = new Chart(canvas, {
      type: "bar",
      data: { labels: data.labels, datasets: [{ label: "Cost", data: data.cost, backgroundColor: "#1a7f37" }] },
      options: { responsive: true, maintainAspectRatio: false, animation: false, plugins: { legend: { display: false } },
        scales: { y: { beginAtZero: true, title: { display: true, text: "cost" } } } }
    });
  }

  // One chart per entry; a chart with several series (the percentiles) shows a legend.
  var PERCENTILES = [["p50", "#2457c5"], ["p95", "#d08700"], ["p99", "#c62828"]];
  function percentiles(name) {
    return PERCENTILES.map(function (p) { return { key: name + "_" + p[0] + "_ms", label: p[0], color: p[1] }; });
  }
  var LIVE = [
    { id: "rps", series: [{ key: "rps", label: "requests/s", color: "#2457c5" }] },
    { id: "error_rate", series: [{ key: "error_rate", label: "error rate", color: "#c62828" }] },
    { id: "latency", series: percentiles("latency") },
    { id: "ttft", series: percentiles("ttft") },
    { id: "tokens_per_s", series: [{ key: "tokens_per_s", label: "tokens/s", color: "#2457c5" }] },
    { id: "queue_depth", series: [{ key: "queue_depth", label: "queue depth", color: "#2457c5" }] }];
  function liveCharts(box) {
    var charts = {};
    LIVE.forEach(function (spec) {
      var canvas = document.getElementById("chart-" + spec.id), single = spec.series.length === 1;
      charts[spec.id] = new Chart(canvas, {
        type: "line",
        data: { labels: [], datasets: spec.series.map(function (s) {
          return { label: s.label, data: [], borderColor: s.color, backgroundColor: single ? "rgba(36,87,197,.12)" : s.color,
                   fill: single, tension: .25, pointRadius: 2, pointHoverRadius: 4, spanGaps: true };
        }) },
        options: { responsive: true, maintainAspectRatio: false, animation: false,
          plugins: { legend: { display: !single, position: "top", align: "end", labels: { boxWidth: 12, boxHeight: 2 } } },
          scales: { y: { beginAtZero: true }, x: { ticks: { maxTicksLimit: 6 } } } }
      });
    });
    function poll() {
      fetch(box.dataset.liveUrl, { credentials: "same-origin" }).then(function (r) {
        if (!r.ok) throw new Error("live " + r.status);
        return r.json();
      }).then(function (body) {
        var labels = body.points.map(function (p) { return p.t; });
        LIVE.forEach(function (spec) {
          var chart = charts[spec.id];
          chart.data.labels = labels;
          spec.series.forEach(function (s, i) {
            chart.data.datasets[i].data = body.points.map(function (p) { return p[s.key]; });
          });
          chart.update();
        });
        box.dataset.points = String(body.points.length);
      }).catch(function () { /* the next poll retries */ });
    }
    poll();
    setInterval(poll, 3000);
  }

  function copyButtons() {
    document.querySelectorAll("button.copy").forEach(function (button) {
      button.addEventListener("click", function () {
        var input = document.querySelector(button.dataset.copy);
        input.select();
        var done = function () { button.textContent = "Copied"; };
        if (navigator.clipboard && window.isSecureContext) {
          navigator.clipboard.writeText(input.value).then(done, function () { document.execCommand("copy"); done(); });
        } else { document.execCommand("copy"); done(); }
      });
    });
  }

  function confirmations() {
    document.querySelectorAll("form[data-confirm]").forEach(function (form) {
      form.addEventListener("submit", function (event) {
        if (!window.confirm(form.dataset.confirm)) event.preventDefault();
      });
    });
  }

  function playground(form) {
    var log = document.getElementById("pg-log"), input = document.getElementById("pg-input");
    var status = document.getElementById("pg-status"), send = document.getElementById("pg-send");
    var tenant = document.getElementById("pg-tenant"), collection = document.getElementById("pg-collection");
    var byTenant = readJSON("pg-collections") || {};
    var history = [];
    function fillCollections() {
      collection.innerHTML = '<option value="">none</option>';
      (byTenant[tenant.value] || []).forEach(function (entry) {
        var option = document.createElement("option");  // a name, or {value, label} for a collection without a tenant
        option.value = entry.value || entry; option.textContent = entry.label || entry;
        collection.appendChild(option);
      });
    }
    tenant.addEventListener("change", fillCollections);
    fillCollections();
    function bubble(role, text) {
      var div = document.createElement("div");
      div.className = "msg " + role;
      var label = document.createElement("span");
      label.className = "role"; label.textContent = role;
      var body = document.createElement("span");
      body.className = "content"; body.textContent = text;
      div.appendChild(label); div.appendChild(body);
      log.appendChild(div);
      log.scrollTop = log.scrollHeight;
      return body;
    }
    document.getElementById("pg-clear").addEventListener("click", function () { history = []; log.innerHTML = ""; status.textContent = ""; });
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var text = input.value.trim();
      if (!text) return;
      history.push({ role: "user", content: text });
      bubble("user", text);
      input.value = "";
      var out = bubble("assistant", "");
      out.parentNode.setAttribute("data-streaming", "true");
      send.disabled = true;
      status.textContent = "Streaming…";
      var answer = "", chunks = 0;
      fetch("/ui/playground/chat", {
        method: "POST", credentials: "same-origin",
        headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
        body: JSON.stringify({ tenant_id: tenant.value, model: document.getElementById("pg-model").value,
          collection: collection.value || null, max_tokens: parseInt(document.getElementById("pg-max").value, 10) || 128,
          messages: history })
      }).then(function (response) {
        if (!response.ok) return response.json().then(function (b) { throw new Error((b.error && b.error.message) || response.statusText); });
        var reader = response.body.getReader(), decoder = new TextDecoder(), buffer = "";
        function pump() {
          return reader.read().then(function (part) {
            if (part.done) return;
            buffer += decoder.decode(part.value, { stream: true });
            var events = buffer.split("\n\n");
            buffer = events.pop();
            events.forEach(function (raw) {
              var line = raw.replace(/^data: /, "").trim();
              if (!line || line === "[DONE]") return;
              var data = JSON.parse(line);
              if (data.error) throw new Error(data.error.message);
              if (data.object === "rag.citations") {
                var cite = document.createElement("div");
                cite.className = "citations";
                cite.textContent = "Sources: " + data.citations.map(function (c, i) { return "[" + (i + 1) + "] " + (c.title || c.document_id); }).join("  ");
                out.parentNode.appendChild(cite);
                return;
              }
              (data.choices || []).forEach(function (choice) {
                var piece = (choice.delta && choice.delta.content) || "";
                if (piece) { answer += piece; chunks += 1; out.textContent = answer; out.parentNode.setAttribute("data-chunks", String(chunks)); }
              });
              if (data.usage) status.textContent = data.usage.prompt_tokens + " prompt + " + data.usage.completion_tokens + " completion tokens";
            });
            log.scrollTop = log.scrollHeight;
            return pump();
          });
        }
        return pump();
      }).then(function () {
        history.push({ role: "assistant", content: answer });
        if (status.textContent === "Streaming…") status.textContent = "Done.";
      }).catch(function (error) {
        status.textContent = "Error: " + error.message;
        history.pop();
      }).finally(function () {
        out.parentNode.setAttribute("data-streaming", "false");
        send.disabled = false;
      });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    barChart("usage-chart", "usage-data");
    barChart("tenant-usage-chart", "tenant-usage-data");
    costChart("cost-chart", "usage-data");
    costChart("tenant-cost-chart", "tenant-usage-data");
    var box = document.getElementById("live-charts");
    if (box && window.Chart) liveCharts(box);
    copyButtons();
    confirmations();
    var form = document.getElementById("playground");
    if (form) playground(form);
  });
})();
