// The dashboard's Analytics tab: counts and percentages of the sends of a range of days, a chart
// per day, a device filter and a live refresh that pauses while the page is hidden. Uses `api`
// from app.js and `showError` from common.js.
"use strict";

(() => {
  const REFRESH_MS = 5000;
  const panel = document.getElementById("tab-analytics");
  const deviceSelect = document.getElementById("analytics-device");
  const customForm = document.getElementById("analytics-custom");
  const live = document.getElementById("analytics-live");
  const rangeText = document.getElementById("analytics-range");
  const chart = document.getElementById("analytics-chart");
  const svgNs = "http://www.w3.org/2000/svg";
  const lines = ["sent", "delivered", "read", "replied"];

  // What is shown: `{ days }` or `{ start, end }`, and the device filter ("" = all).
  let range = { days: 7 };
  let loading = false;

  function path() {
    const device = deviceSelect.value;
    if (range.days) {
      return `/api/analytics/${range.days}` + (device ? `?device=${encodeURIComponent(device)}` : "");
    }
    const query = new URLSearchParams({ start: range.start, end: range.end });
    if (device) query.set("device", device);
    return `/api/analytics/custom?${query}`;
  }

  function setCard(name, count, pct) {
    const card = panel.querySelector(`.stat[data-stat="${name}"]`);
    card.querySelector(".count").textContent = String(count);
    card.querySelector(".pct").textContent = pct === undefined ? "" : `${pct}%`;
  }

  function showFigures(data) {
    const t = data.totals;
    const p = data.percent;
    setCard("sent", t.sent);
    setCard("delivered", t.delivered, p.delivered);
    setCard("not_delivered", t.not_delivered, p.not_delivered);
    setCard("read", t.read, p.read);
    setCard("not_read", t.not_read, p.not_read);
    setCard("replied", t.replied, p.replied);
    setCard("failed", t.failed, p.failed);
    setCard("active", data.devices.active);
    setCard("inactive", data.devices.inactive);
    const asOf = data.updated_at ? `, as of ${new Date(data.updated_at).toLocaleTimeString()}` : "";
    rangeText.textContent = data.start === data.end
      ? `${data.start} (UTC)${asOf}`
      : `${data.start} to ${data.end} (UTC)${asOf}`;
    drawChart(data.series);
  }

  function svg(tag, attrs) {
    const el = document.createElementNS(svgNs, tag);
    for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
    return el;
  }

  /** A line per figure over the days, scaled to the largest count. */
  function drawChart(series) {
    const width = 800, height = 220, left = 40, right = 10, top = 10, bottom = 24;
    const max = Math.max(1, ...series.map((d) => d.counts.sent));
    const x = (i) => left + (series.length === 1 ? (width - left - right) / 2
      : (i * (width - left - right)) / (series.length - 1));
    const y = (n) => top + (height - top - bottom) * (1 - n / max);
    const root = svg("svg", { viewBox: `0 0 ${width} ${height}`, preserveAspectRatio: "none" });
    root.append(svg("line", { x1: left, y1: y(0), x2: width - right, y2: y(0), stroke: "#dde3e0" }));
    const label = (text, attrs) => {
      const el = svg("text", { "font-size": 12, fill: "#5f6b66", ...attrs });
      el.textContent = text;
      root.append(el);
    };
    label(String(max), { x: 4, y: top + 10 });
    label("0", { x: 4, y: y(0) });
    if (series.length) {
      label(series[0].date, { x: left, y: height - 6 });
      if (series.length > 1) label(series[series.length - 1].date, { x: width - right, y: height - 6, "text-anchor": "end" });
    }
    for (const name of lines) {
      const points = series.map((d, i) => `${x(i)},${y(d.counts[name])}`).join(" ");
      root.append(svg("polyline", { points, fill: "none", "stroke-width": 2, class: `line-${name}`, "data-line": name }));
      if (series.length === 1) {
        root.append(svg("circle", { cx: x(0), cy: y(series[0].counts[name]), r: 4, class: `line-${name}`, fill: "currentColor" }));
      }
    }
    chart.replaceChildren(root);
  }

  async function load() {
    if (loading) return;
    loading = true;
    try {
      showFigures(await api("GET", path()));
      // A refresh leaves an earlier error shown: only the next action of the user replaces it.
    } catch (err) {
      showError(err);
    } finally {
      loading = false;
    }
  }

  async function loadDeviceChoices() {
    const devices = await api("GET", "/api/devices");
    const chosen = deviceSelect.value;
    deviceSelect.replaceChildren(new Option("All devices", ""));
    for (const device of devices) deviceSelect.append(new Option(device.name, String(device.id)));
    deviceSelect.value = devices.some((d) => String(d.id) === chosen) ? chosen : "";
  }

  function pressRange(days) {
    for (const button of panel.querySelectorAll("[data-days]")) {
      button.setAttribute("aria-pressed", String(Number(button.dataset.days) === days));
    }
  }

  for (const button of panel.querySelectorAll("[data-days]")) {
    button.addEventListener("click", () => {
      range = { days: Number(button.dataset.days) };
      pressRange(range.days);
      load();
    });
  }
  customForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const form = new FormData(customForm);
    range = { start: form.get("start"), end: form.get("end") };
    pressRange(0);
    load();
  });
  deviceSelect.addEventListener("change", load);

  // Live: refresh every few seconds while the tab is open, live is on and the page is visible.
  const visible = () => live.checked && !panel.hidden && !document.hidden;
  setInterval(() => {
    if (visible()) load();
  }, REFRESH_MS);
  document.addEventListener("visibilitychange", () => {
    if (visible()) load();
  });
  live.addEventListener("change", () => {
    if (visible()) load();
  });

  window.analyticsTab = {
    async show() {
      await loadDeviceChoices();
      await load();
    },
  };
})();
