// Lobby board: one request per refresh (/api/v1/board), branches by risk.
// All text goes through textContent (never innerHTML), so nothing a device
// publishes can inject markup; texts come from the catalogue (LW.t).
"use strict";

(function () {
  const POLL_MS = 5000;
  const API = new URL("../api/v1/", document.baseURI);
  const { t, el, wait, time, duration, num } = window.LW;
  const $ = (id) => document.getElementById(id);
  let lastAlertKey = null;
  let lastStatus = null;
  let polls = 0;
  let page = 1;
  let timer = null;
  const opened = new Set(); // branches whose service points are shown

  const N_ = (s) => s; // marks a text for the catalogue; translated where shown
  const TRUST = {
    measured: N_("measured"),
    fallback: N_("fallback: configured counters"),
    stale: N_("stale since {time}"),
    offline: N_("offline since {time}"),
    none: N_("no estimate yet"),
  };
  // why a zone over its threshold shows no alert
  const NO_ALERT = {
    closed: N_("no alert: outside business hours"),
    disabled: N_("no alert: alerts are off for this zone"),
    stale: N_("no alert: the figure is not fresh"),
    waiting: N_("no alert yet: the rule waits for the wait to stay over the threshold"),
  };
  const ARROW = { up: "↑", down: "↓", flat: "→" };
  const TREND = { up: N_("rising"), down: N_("falling"), flat: N_("steady") };
  const SEVERITY = { warning: N_("warning"), critical: N_("critical") };
  const KIND = {
    cash_counter: N_("cash counter"),
    non_cash_counter: N_("non-cash counter"),
    wealth_desk: N_("wealth desk"),
    self_service: N_("self-service"),
    consultation: N_("consultation"),
    entrance: N_("entrance"),
  };

  function setStatus(text, isError) {
    const s = $("status");
    if (text !== lastStatus) { s.textContent = text; lastStatus = text; }
    s.classList.toggle("error", !!isError);
  }

  function forecastCell(z, tz) {
    const td = el("td", { class: "forecast" });
    if (!z.trend) {
      td.append(el("span", { title: t("no forecast from this collector yet") }, "—"));
      return td;
    }
    td.append(el("span", { class: "trend trend-" + z.trend, "aria-label": t(TREND[z.trend]) }, ARROW[z.trend]),
      " ", wait(z.forecast_wait_s));
    if (z.expected_breach_at) {
      td.append(el("span", { class: "breach" }, " " + t("breach at {time}", { time: time(z.expected_breach_at, tz) })));
    }
    return td;
  }

  function zoneRow(b, z, alertsById) {
    const label = z.name ? z.name + " (" + z.zone + ")" : z.zone;
    const trust = t(TRUST[z.trust] || z.trust, { time: time(z.since, b.timezone) });
    const counters = z.counters_open === null || z.counters_open === undefined
      ? "—" : num(z.counters_open) + (z.counters_source === "configured" ? " *" : "");
    const alertCell = el("td", {});
    for (const id of z.alerts) {
      const a = alertsById[id];
      const sev = a ? a.severity : "warning";
      alertCell.append(el("span", { class: "pill sev-" + sev }, t(SEVERITY[sev] || sev)), " ");
    }
    if (!z.alerts.length) {
      alertCell.append(z.no_alert_reason
        ? el("span", { class: "no-alert", "data-reason": z.no_alert_reason }, t(NO_ALERT[z.no_alert_reason]))
        : "—");
    }
    return el("tr", { "data-zone": z.zone, "data-kind": "waiting", "data-level": z.level, "data-trust": z.trust },
      el("th", { scope: "row", headers: "branch-" + b.id }, label),
      el("td", { class: "num people" }, num(z.people)),
      el("td", { class: "num wait" },
        el("span", { class: "pill wait-" + z.level }, wait(z.predicted_wait_s)),
        " / " + wait(z.threshold_s),
        z.ordinary_wait_s === null || z.ordinary_wait_s === undefined ? null
          : el("span", { class: "ordinary" }, " " + t("ordinary customers {wait}", { wait: wait(z.ordinary_wait_s) }))),
      forecastCell(z, b.timezone),
      el("td", { class: "num oldest" }, wait(z.oldest_wait_s)),
      el("td", { class: "num counters", title: z.counters_source === "configured" ? t("* configured, not measured") : null }, counters),
      el("td", { class: "num walkouts", title: z.walkouts_today === null ? t("not measured by this collector yet") : null },
        z.walkouts_today === null || z.walkouts_today === undefined ? "—" : num(z.walkouts_today)),
      el("td", { class: "trust trust-" + z.trust }, trust),
      alertCell);
  }

  function branchBody(b, alertsById) {
    const body = el("tbody", { "data-branch": b.id, "data-level": b.level, "data-stale": String(b.stale) });
    const sub = [
      t("region {region}", { region: b.region }),
      t("{n} waiting", { n: num(b.people_waiting) }),
      t("{up}/{total} cameras up", { up: b.devices_up, total: b.devices_total }),
      b.active_alerts ? t("{n} open alerts", { n: b.active_alerts }) : t("no alerts"),
    ];
    if (b.stale) sub.push(b.stale_since ? t("no fresh data since {time}", { time: time(b.stale_since, b.timezone) }) : t("no fresh data"));
    const link = el("a", { href: "branch?id=" + encodeURIComponent(b.id) }, b.name ? b.name + " · " + b.id : b.id);
    body.append(el("tr", { class: "branch-row" },
      el("th", { scope: "rowgroup", colspan: "9", id: "branch-" + b.id },
        link, el("span", { class: "sub" }, sub.join(" · ")))));
    for (const z of b.waiting) body.append(zoneRow(b, z, alertsById));
    if (!b.waiting.length) {
      body.append(el("tr", {}, el("td", { colspan: "9" }, t("No waiting zone reported yet."))));
    }
    const sp = b.service_points;
    if (sp.zones) {
      const btn = el("button", { type: "button", class: "toggle", "aria-expanded": String(opened.has(b.id)) },
        t("{n} service points, {people} people", { n: sp.zones, people: num(sp.people) }));
      const row = el("tr", { class: "service-points" }, el("td", { colspan: "9" }, btn));
      const details = sp.list.map((o) => el("tr", { class: "service-point", "data-zone": o.zone, "data-kind": o.kind, hidden: opened.has(b.id) ? null : "" },
        el("th", { scope: "row" }, o.name || o.zone),
        el("td", { class: "num" }, num(o.people)),
        el("td", { colspan: "7" }, t(KIND[o.kind] || o.kind))));
      btn.addEventListener("click", () => {
        const open = !opened.has(b.id);
        if (open) opened.add(b.id); else opened.delete(b.id);
        btn.setAttribute("aria-expanded", String(open));
        for (const d of details) d.hidden = !open;
      });
      body.append(row, ...details);
    }
    return body;
  }

  function renderAlerts(alerts, tzOf) {
    const key = alerts.map((a) => a.alert_id + ":" + a.severity).join("|") + "|" + Math.floor(Date.now() / 60000);
    if (key === lastAlertKey) return;
    lastAlertKey = key;
    const box = $("alerts");
    box.replaceChildren();
    if (!alerts.length) { box.append(el("p", {}, t("None."))); return; }
    const list = el("ul", {});
    for (const a of alerts) {
      list.append(el("li", { "data-alert": a.alert_id, "data-branch": a.branch },
        el("span", { class: "pill sev-" + a.severity }, t(SEVERITY[a.severity] || a.severity)), " ",
        el("strong", {}, a.title), " ",
        el("span", { class: "open-for" }, t("open for {duration}, since {time}", {
          duration: duration(a.open_s), time: time(a.started_at, tzOf[a.branch] || "UTC") })),
        el("br", {}),
        el("span", { class: "said" }, a.lines.join(window.LW.locale.startsWith("zh") ? "" : " "))));
    }
    box.append(list);
  }

  function renderPager(data) {
    const pages = Math.max(1, Math.ceil(data.total / data.per_page));
    const box = $("pager");
    box.replaceChildren();
    const prev = el("button", { type: "button", disabled: page <= 1 ? "" : null }, t("Previous"));
    const next = el("button", { type: "button", disabled: page >= pages ? "" : null }, t("Next"));
    prev.addEventListener("click", () => { page -= 1; refresh(); });
    next.addEventListener("click", () => { page += 1; refresh(); });
    box.append(prev, " ", t("page {page} of {pages}", { page, pages }), " ", next);
  }

  function renderRegions(regions) {
    const sel = $("region");
    const have = [...sel.options].map((o) => o.value);
    for (const r of regions) if (!have.includes(r)) sel.append(el("option", { value: r }, r));
  }

  function render(data) {
    const table = $("board");
    for (const old of table.querySelectorAll("tbody")) old.remove();
    const alertsById = {};
    const tzOf = {};
    for (const a of data.alerts) alertsById[a.alert_id] = a;
    for (const b of data.branches) tzOf[b.id] = b.timezone;
    if (!data.branches.length) {
      table.append(el("tbody", {}, el("tr", {}, el("td", { colspan: "9" }, t("No branch matches.")))));
    }
    for (const b of data.branches) table.append(branchBody(b, alertsById));
    renderAlerts(data.alerts, tzOf);
    renderRegions(data.regions);
    renderPager(data);
    const dt = $("data-time");
    if (data.data_time) {
      dt.setAttribute("datetime", data.data_time);
      dt.textContent = new Date(data.data_time).toLocaleString(window.LW.locale, { timeZone: "UTC", timeZoneName: "short" });
    }
    const c = data.counts;
    $("counts").textContent = t("{branches} branches: {over} over W1, {near} near W1, {alerts} open alerts, {stale} without fresh data", c);
  }

  function query() {
    const p = new URLSearchParams({ page: String(page), per_page: "50", lang: window.LW.locale });
    const region = $("region").value;
    const q = $("search").value.trim();
    if (region) p.set("region", region);
    if (q) p.set("q", q);
    return "board?" + p.toString();
  }

  async function refresh() {
    clearTimeout(timer);
    try {
      const res = await fetch(new URL(query(), API), { cache: "no-store", headers: { Accept: "application/json" } });
      if (!res.ok) throw new Error("HTTP " + res.status);
      const data = await res.json();
      const pages = Math.max(1, Math.ceil(data.total / data.per_page));
      if (page > pages) { page = pages; }
      render(data);
      polls += 1;
      document.body.dataset.polls = String(polls);
      setStatus(t("Live: {n} branches, updated {time}.", { n: num(data.total), time: new Date().toLocaleTimeString(window.LW.locale, { timeZone: "UTC", timeZoneName: "short" }) }), false);
    } catch (err) {
      setStatus(t("Collector unreachable ({error}); retrying.", { error: err.message }), true);
    } finally {
      timer = setTimeout(refresh, POLL_MS);
    }
  }

  window.LW.load().then(() => {
    $("region").addEventListener("change", () => { page = 1; refresh(); });
    $("search").addEventListener("input", () => { page = 1; refresh(); });
    $("filters").addEventListener("submit", (e) => { e.preventDefault(); page = 1; refresh(); });
    refresh();
  });
})();
