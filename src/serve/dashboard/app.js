// SIPAS dashboard: polls the read API with If-None-Match and redraws what changed.
// Plain JavaScript, no dependencies; charts are SVG drawn here.
"use strict";

const LABELS = {
  vi: {
    title: "Chỉ số hài lòng về sự phục vụ hành chính (SIPAS)", window: "Kỳ", ranking: "Xếp hạng các tỉnh, thành phố",
    rank: "Hạng", province: "Tỉnh/thành phố", ci: "KTC 95%", f_access: "Tiếp cận", f_procedure: "Thủ tục", f_staff: "Công chức",
    f_result: "Kết quả", f_feedback: "Góp ý", respondents: "Số phiếu", change: "Thay đổi",
    unranked: "chưa xếp hạng", unranked_note: "* chưa xếp hạng: số phiếu dưới cỡ mẫu tối thiểu",
    factors: "Năm yếu tố", trend: "Diễn biến theo ngày", criteria: "Tiêu chí", criterion: "Tiêu chí", index: "Chỉ số",
    valid: "Hợp lệ", missing: "Bỏ trống", expectations: "Mong đợi", hotline: "Đường dây nóng 1022", category: "Lĩnh vực",
    received: "Tiếp nhận", on_time: "Đúng hạn", satisfaction: "Hài lòng", reopen: "Mở lại", past_due: "Quá hạn chưa xử lý",
    nation: "Cả nước", nation_of: "trung bình của", provinces_ranked: "tỉnh, thành phố được xếp hạng", weighted: "theo số phiếu",
    previous_year: "So cùng kỳ", significant_note: "† thay đổi có ý nghĩa thống kê (95 %)",
    agencies: "Xếp hạng cơ quan, đơn vị trong tỉnh", agency: "Cơ quan, đơn vị",
    as_of: "Số liệu đến ngày", checked: "kiểm tra lúc", changed: "thay đổi", ago: "giây trước", all_provinces: "Tất cả tỉnh, thành phố",
    hotline_of: "Theo lĩnh vực tại", lang: "English", error: "Không tải được dữ liệu", window_start: "từ ngày", no_data: "Chưa có số liệu",
    w_30d: "30 ngày", w_90d: "90 ngày", w_365d: "365 ngày", w_month: "Tháng", w_quarter: "Quý", w_year: "Năm",
  },
  en: {
    title: "Satisfaction with public administrative services (SIPAS)", window: "Window", ranking: "Province ranking",
    rank: "Rank", province: "Province", ci: "95% CI", f_access: "Access", f_procedure: "Procedures", f_staff: "Staff",
    f_result: "Results", f_feedback: "Feedback", respondents: "Respondents", change: "Change",
    unranked: "unranked", unranked_note: "* unranked: fewer respondents than the minimum sample",
    factors: "Five factors", trend: "Daily trend", criteria: "Criteria", criterion: "Criterion", index: "Index",
    valid: "Valid", missing: "Missing", expectations: "Expectations", hotline: "1022 hotline", category: "Category",
    received: "Received", on_time: "On time", satisfaction: "Satisfied", reopen: "Reopened", past_due: "Open past due",
    nation: "Nation", nation_of: "mean of", provinces_ranked: "ranked provinces", weighted: "respondent-weighted",
    previous_year: "vs last year", significant_note: "† significant change (95 %)",
    agencies: "Agencies of the province, ranked", agency: "Agency",
    as_of: "Data as of", checked: "checked at", changed: "changed", ago: "s ago", all_provinces: "All provinces",
    hotline_of: "By category in", lang: "Tiếng Việt", error: "Could not load data", window_start: "from", no_data: "No data yet",
    w_30d: "30 days", w_90d: "90 days", w_365d: "365 days", w_month: "Month", w_quarter: "Quarter", w_year: "Year",
  },
};
const CATEGORIES = {
  vi: { infrastructure: "Hạ tầng", traffic: "Giao thông", urban_order: "Trật tự đô thị", environment: "Môi trường", water: "Cấp thoát nước",
    trees: "Cây xanh", lighting: "Chiếu sáng", electricity: "Điện", telecoms: "Viễn thông", public_transport: "Vận tải công cộng",
    health: "Y tế", tourism: "Du lịch", administrative_procedures: "Thủ tục hành chính", other: "Khác" },
  en: { infrastructure: "Infrastructure", traffic: "Traffic", urban_order: "Urban order", environment: "Environment", water: "Water",
    trees: "Trees", lighting: "Street lighting", electricity: "Electricity", telecoms: "Telecoms", public_transport: "Public transport",
    health: "Health", tourism: "Tourism", administrative_procedures: "Administrative procedures", other: "Other" },
};
const FACTORS = ["access", "procedure", "staff", "result", "feedback"];
const POLL_MS = 5000;

const state = {
  lang: localStorage.getItem("sipas.lang") || "vi",
  window: new URLSearchParams(location.search).get("window") || "30d",
  province: new URLSearchParams(location.search).get("province"),
  rankings: null, unit: null, hotline: null, agencies: null,
  checkedAt: null, changedAt: null,
};
const cache = new Map(); // url -> {etag, data}

function t(key) { return LABELS[state.lang][key] || key; }
function fmt(v, digits = 1) { return v === null || v === undefined ? "–" : Number(v).toFixed(digits); }
function el(tag, attrs = {}, text) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}
function svg(tag, attrs = {}, text) {
  const e = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

// GET with the last ETag; returns {data, changed}. A 304 reuses the cached body.
async function getJSON(url) {
  const previous = cache.get(url);
  const headers = previous ? { "If-None-Match": previous.etag } : {};
  const response = await fetch(url, { headers, cache: "no-store" });
  if (response.status === 304 && previous) return { data: previous.data, changed: false };
  if (!response.ok) {
    let message = response.status + "";
    try { message = (await response.json()).error || message; } catch (_) { /* not JSON */ }
    const error = new Error(message); error.status = response.status; throw error;
  }
  const data = await response.json();
  cache.set(url, { etag: response.headers.get("ETag") || "", data });
  return { data, changed: true };
}

function applyLabels() {
  document.documentElement.lang = state.lang;
  for (const node of document.querySelectorAll("[data-i18n]")) node.textContent = t(node.dataset.i18n);
  document.getElementById("lang").textContent = t("lang");
  for (const option of document.getElementById("window").options) {
    option.textContent = LABELS[state.lang]["w_" + option.value] || option.value;
  }
}

function renderFreshness() {
  const p = document.getElementById("freshness");
  if (!state.rankings) { p.textContent = ""; return; }
  const now = Date.now();
  const parts = [`${t("as_of")}: ${state.rankings.as_of || "–"}`];
  if (state.checkedAt) parts.push(`${t("checked")} ${new Date(state.checkedAt).toLocaleTimeString(state.lang === "vi" ? "vi-VN" : "en-GB")}`);
  if (state.changedAt) parts.push(`${t("changed")} ${Math.round((now - state.changedAt) / 1000)} ${t("ago")}`);
  p.textContent = parts.join(" · ");
}

function renderRanking() {
  const tbody = document.querySelector("#ranking tbody");
  tbody.replaceChildren();
  const rows = state.rankings ? state.rankings.provinces : [];
  for (const r of rows) {
    const tr = el("tr", {
      "data-province": r.province_code, "data-rank": r.rank === null ? "" : String(r.rank),
      "data-sipas": r.sipas === null ? "" : String(r.sipas), "data-respondents": String(r.respondents),
      "data-ranked": String(r.ranked),
    });
    if (!r.ranked) tr.classList.add("unranked");
    if (r.province_code === state.province) tr.classList.add("selected");
    tr.append(el("td", { class: "rank" }, r.rank === null ? "*" : String(r.rank)));
    tr.append(el("td", { class: "name" }, r.ranked ? r.province_name : `${r.province_name} (${t("unranked")})`));
    tr.append(el("td", { class: "sipas" }, fmt(r.sipas, 2)));
    tr.append(el("td", {}, r.ci_low === null ? "–" : `${fmt(r.ci_low)}–${fmt(r.ci_high)}`));
    for (const f of FACTORS) tr.append(el("td", {}, fmt(r.factors[f])));
    tr.append(el("td", { class: "respondents" }, String(r.respondents)));
    tr.append(changeCell(r.change));
    tr.append(changeCell(r.previous_year));
    tr.addEventListener("click", () => selectProvince(r.province_code));
    tbody.append(tr);
  }
  renderBars(rows);
  renderNation();
}

// A change against an earlier period: the delta, † when significant at 95 %.
function changeCell(c) {
  const delta = c ? c.sipas_delta : null;
  const td = el("td", { "data-significant": c && c.significant !== null ? String(c.significant) : "" },
    delta === null ? "–" : (delta > 0 ? "+" : "") + fmt(delta) + (c.significant ? "†" : ""));
  if (delta !== null) td.classList.add(delta >= 0 ? "up" : "down");
  return td;
}

// The nation: the mean of the ranked provinces with its 95 % interval.
function renderNation() {
  const p = document.getElementById("nation");
  const n = state.rankings ? state.rankings.nation : null;
  p.replaceChildren();
  for (const k of ["sipas", "ci-low", "ci-high", "provinces"]) p.removeAttribute("data-" + k);
  if (!n || n.sipas === null) { p.textContent = state.rankings ? `${t("nation")}: –` : ""; return; }
  p.dataset.sipas = String(n.sipas);
  p.dataset.ciLow = n.ci_low === null ? "" : String(n.ci_low);
  p.dataset.ciHigh = n.ci_high === null ? "" : String(n.ci_high);
  p.dataset.provinces = String(n.provinces);
  p.append(el("span", {}, `${t("nation")}: `), el("strong", {}, fmt(n.sipas, 2)));
  const rest = ` (${t("ci")}: ${fmt(n.ci_low)}–${fmt(n.ci_high)}) · ${t("nation_of")} ${n.provinces} ${t("provinces_ranked")}` +
    (n.sipas_respondent_weighted === null ? "" : ` · ${t("weighted")}: ${fmt(n.sipas_respondent_weighted, 2)}`);
  p.append(document.createTextNode(rest));
}

// Horizontal bars of SIPAS with 95 % interval whiskers; unranked provinces in grey; the
// nation's mean as a dashed line over its interval band.
function renderBars(rows) {
  const chart = document.getElementById("bars");
  chart.replaceChildren();
  const barH = 14, gap = 4, left = 150, width = 230, top = 10;
  const height = top + rows.length * (barH + gap) + 20;
  chart.setAttribute("viewBox", `0 0 ${left + width + 40} ${height}`);
  // The axis starts at the decade below the lowest interval so that differences show.
  const lows = rows.filter((r) => r.sipas !== null).map((r) => (r.ci_low === null ? r.sipas : r.ci_low));
  const lo = lows.length ? Math.max(0, Math.floor(Math.min(...lows) / 10) * 10) : 0;
  const x = (v) => left + ((Math.max(lo, Math.min(100, v)) - lo) / (100 - lo)) * width;
  const nation = state.rankings ? state.rankings.nation : null;
  if (nation && nation.sipas !== null && rows.length) {
    const bottom = top + rows.length * (barH + gap);
    if (nation.ci_low !== null) {
      chart.append(svg("rect", { class: "nation-band", x: x(nation.ci_low), y: top, width: Math.max(1, x(nation.ci_high) - x(nation.ci_low)), height: bottom - top }));
    }
    chart.append(svg("line", { class: "nation-line", x1: x(nation.sipas), x2: x(nation.sipas), y1: top, y2: bottom }));
  }
  rows.forEach((r, i) => {
    const y = top + i * (barH + gap);
    chart.append(svg("text", { x: left - 4, y: y + barH - 3, "text-anchor": "end" }, r.province_name));
    if (r.sipas === null) return;
    chart.append(svg("rect", { class: r.ranked ? "bar" : "bar unranked", x: left, y, width: x(r.sipas) - left, height: barH }));
    if (r.ci_low !== null) chart.append(svg("line", { class: "whisker", x1: x(r.ci_low), x2: x(r.ci_high), y1: y + barH / 2, y2: y + barH / 2 }));
    chart.append(svg("text", { x: x(r.sipas) + 4, y: y + barH - 3 }, fmt(r.sipas)));
  });
  for (const tick of [lo, Math.round((lo + 100) / 2), 100]) {
    chart.append(svg("text", { x: x(tick), y: height - 4, "text-anchor": "middle" }, String(tick)));
  }
}

function renderUnit() {
  const section = document.getElementById("unit-section");
  const u = state.unit;
  section.hidden = !u;
  if (!u) return;
  document.getElementById("unit-title").textContent = `${u.province_name || u.unit_id} — SIPAS ${fmt(u.sipas, 2)}`;
  document.getElementById("unit-summary").textContent =
    `${t("ci")}: ${fmt(u.ci_low)}–${fmt(u.ci_high)} · ${t("respondents")}: ${u.respondents} · ${t("window_start")} ${u.window_start} · ${t("as_of")} ${u.as_of}` +
    (u.ranked ? "" : ` · ${t("unranked")} (< ${u.min_sample})`);
  // Factor bars with intervals.
  const chart = document.getElementById("factor-bars");
  chart.replaceChildren();
  const left = 110, width = 300, barH = 16;
  chart.setAttribute("viewBox", `0 0 ${left + width + 50} ${u.factors.length * 22 + 10}`);
  const x = (v) => left + (Math.max(0, Math.min(100, v)) / 100) * width;
  u.factors.forEach((f, i) => {
    const y = 4 + i * 22;
    chart.append(svg("text", { x: left - 4, y: y + 12, "text-anchor": "end" }, t("f_" + f.id)));
    if (f.value === null) return;
    chart.append(svg("rect", { class: "bar", x: left, y, width: x(f.value) - left, height: barH }));
    if (f.ci_low !== null) chart.append(svg("line", { class: "whisker", x1: x(f.ci_low), x2: x(f.ci_high), y1: y + barH / 2, y2: y + barH / 2 }));
    chart.append(svg("text", { x: x(f.value) + 4, y: y + 12 }, fmt(f.value)));
  });
  renderTrend(u.history);
  const tbody = document.querySelector("#criteria tbody");
  tbody.replaceChildren();
  for (const f of u.factors) {
    for (const c of f.criteria) {
      const tr = el("tr", { "data-criterion": c.id });
      tr.append(el("td", { title: c.text }, `${c.id} ${c.text}`));
      tr.append(el("td", {}, fmt(c.value)));
      tr.append(el("td", {}, c.ci_low === null ? "–" : `${fmt(c.ci_low)}–${fmt(c.ci_high)}`));
      tr.append(el("td", {}, String(c.valid)));
      tr.append(el("td", {}, String(c.missing)));
      tbody.append(tr);
    }
  }
  const list = document.getElementById("expectations");
  list.replaceChildren();
  for (const e of u.expectations) list.append(el("li", {}, `${e.text}: ${fmt(e.share)} %`));
}

// Daily SIPAS line with its 95 % interval as a band.
function renderTrend(history) {
  const chart = document.getElementById("trend");
  chart.replaceChildren();
  const W = 440, H = 160, pad = 30;
  chart.setAttribute("viewBox", `0 0 ${W} ${H}`);
  const points = history.filter((h) => h.sipas !== null);
  if (points.length === 0) { chart.append(svg("text", { x: pad, y: H / 2 }, t("no_data"))); return; }
  const lows = points.map((p) => (p.ci_low === null ? p.sipas : p.ci_low));
  const highs = points.map((p) => (p.ci_high === null ? p.sipas : p.ci_high));
  const min = Math.max(0, Math.floor(Math.min(...lows) / 10) * 10), max = Math.min(100, Math.ceil(Math.max(...highs) / 10) * 10) || 100;
  const x = (i) => pad + (points.length === 1 ? (W - 2 * pad) / 2 : (i / (points.length - 1)) * (W - 2 * pad));
  const y = (v) => H - pad + 10 - ((v - min) / Math.max(1, max - min)) * (H - pad - 10);
  const band = points.map((p, i) => `${x(i)},${y(highs[i])}`).concat(points.map((p, i) => `${x(i)},${y(lows[i])}`).reverse());
  chart.append(svg("polygon", { class: "band", points: band.join(" ") }));
  chart.append(svg("polyline", { class: "line", points: points.map((p, i) => `${x(i)},${y(p.sipas)}`).join(" ") }));
  chart.append(svg("line", { class: "axis", x1: pad, x2: W - pad, y1: H - pad + 10, y2: H - pad + 10 }));
  chart.append(svg("text", { x: 2, y: y(max) + 4 }, String(max)));
  chart.append(svg("text", { x: 2, y: y(min) + 4 }, String(min)));
  chart.append(svg("text", { x: pad, y: H - 2 }, points[0].as_of));
  chart.append(svg("text", { x: W - pad, y: H - 2, "text-anchor": "end" }, points[points.length - 1].as_of));
}

// The selected province's agencies, ranked among those with enough respondents.
function renderAgencies() {
  const tbody = document.querySelector("#agencies tbody");
  tbody.replaceChildren();
  const a = state.agencies;
  if (!a) return;
  for (const r of a.agencies) {
    const tr = el("tr", { "data-agency": r.agency_id, "data-rank": r.rank === null ? "" : String(r.rank), "data-respondents": String(r.respondents) });
    if (!r.ranked) tr.classList.add("unranked");
    tr.append(el("td", { class: "rank" }, r.rank === null ? "*" : String(r.rank)));
    tr.append(el("td", {}, r.agency_id));
    tr.append(el("td", {}, fmt(r.sipas, 2)));
    tr.append(el("td", {}, r.ci_low === null ? "–" : `${fmt(r.ci_low)}–${fmt(r.ci_high)}`));
    tr.append(el("td", {}, String(r.respondents)));
    tbody.append(tr);
  }
}

function renderHotline() {
  const tbody = document.querySelector("#hotline tbody");
  tbody.replaceChildren();
  const k = state.hotline;
  const name = state.rankings && state.province ? (state.rankings.provinces.find((p) => p.province_code === state.province) || {}).province_name : null;
  document.getElementById("hotline-scope").textContent = state.province ? `${t("hotline_of")} ${name || state.province}` : t("all_provinces");
  document.getElementById("hotline-unit").textContent = state.province ? t("category") : t("province");
  if (!k) return;
  for (const u of k.units) {
    const tr = el("tr", { "data-unit": u.unit_id });
    tr.append(el("td", {}, u.category ? (CATEGORIES[state.lang][u.category] || u.category) : (u.province_name || u.unit_id)));
    tr.append(el("td", {}, String(u.received)));
    tr.append(el("td", {}, u.on_time_rate === null ? "–" : `${fmt(u.on_time_rate)} %`));
    tr.append(el("td", {}, u.satisfaction_rate === null ? "–" : `${fmt(u.satisfaction_rate)} %`));
    tr.append(el("td", {}, u.reopen_rate === null ? "–" : `${fmt(u.reopen_rate)} %`));
    tr.append(el("td", {}, String(u.open_past_due)));
    tbody.append(tr);
  }
}

function showError(error) {
  const p = document.getElementById("error");
  p.hidden = !error;
  p.textContent = error ? `${t("error")}: ${error.message}` : "";
}

async function refresh() {
  const w = encodeURIComponent(state.window);
  try {
    const ranking = await getJSON(`/api/v1/rankings?window=${w}`);
    state.checkedAt = Date.now();
    if (ranking.changed) { state.rankings = ranking.data; state.changedAt = Date.now(); renderRanking(); }
    if (state.province) {
      try {
        const unit = await getJSON(`/api/v1/units/${encodeURIComponent(state.province)}?window=${w}&days=90`);
        if (unit.changed) { state.unit = unit.data; renderUnit(); }
        const agencies = await getJSON(`/api/v1/provinces/${encodeURIComponent(state.province)}/agencies?window=${w}`);
        if (agencies.changed) { state.agencies = agencies.data; renderAgencies(); }
      } catch (error) {
        if (error.status !== 404) throw error;
        state.unit = null; renderUnit();
      }
    }
    const scope = state.province ? `province=${encodeURIComponent(state.province)}&by=category` : "by=province";
    const hotline = await getJSON(`/api/v1/hotline/kpis?${scope}&window=${w}`);
    if (hotline.changed) { state.hotline = hotline.data; renderHotline(); }
    showError(null);
    document.body.dataset.ready = "true";
  } catch (error) {
    showError(error);
  }
  renderFreshness();
}

function selectProvince(code) {
  state.province = code;
  state.unit = null;
  state.agencies = null;
  state.hotline = null;
  const params = new URLSearchParams(location.search);
  params.set("province", code);
  history.replaceState(null, "", "?" + params.toString());
  renderRanking();
  renderUnit();
  renderAgencies();
  refresh();
}

function redrawAll() {
  applyLabels();
  renderRanking();
  renderUnit();
  renderAgencies();
  renderHotline();
  renderFreshness();
}

// Any rolling window the API takes (`?window=45d`) is offered beside the six.
if (![...document.getElementById("window").options].some((o) => o.value === state.window)) {
  document.getElementById("window").append(el("option", { value: state.window }, state.window));
}
document.getElementById("window").value = state.window;
document.getElementById("window").addEventListener("change", (event) => {
  state.window = event.target.value;
  state.rankings = null; state.unit = null; state.hotline = null; state.agencies = null;
  const params = new URLSearchParams(location.search);
  params.set("window", state.window);
  history.replaceState(null, "", "?" + params.toString());
  redrawAll();
  refresh();
});
document.getElementById("lang").addEventListener("click", () => {
  state.lang = state.lang === "vi" ? "en" : "vi";
  localStorage.setItem("sipas.lang", state.lang);
  redrawAll();
});
const langParam = new URLSearchParams(location.search).get("lang");
if (langParam === "en" || langParam === "vi") state.lang = langParam;
applyLabels();
refresh();
setInterval(refresh, POLL_MS);
setInterval(renderFreshness, 1000);
