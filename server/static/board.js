// Lobby board: polls the collector's JSON API and redraws the table.
// Vanilla JS, no dependencies; all text goes through textContent (never
// innerHTML), so nothing a device publishes can inject markup.
"use strict";

(function () {
  const POLL_MS = 2000;
  const NEAR_FRACTION = 0.8; // the alert policy's default warn_fraction
  // relative to the page (/board/): works behind a reverse proxy with a prefix
  const API = new URL("../api/v1/", document.baseURI);

  const $ = (id) => document.getElementById(id);
  let lastAlertKey = null;
  let lastStatus = null;
  let polls = 0;

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined) continue;
      if (k === "class") node.className = v;
      else node.setAttribute(k, v);
    }
    for (const c of children) {
      if (c === null || c === undefined) continue;
      node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return node;
  }

  function fmtWait(s) {
    if (s === null || s === undefined) return "—";
    const t = Math.round(s);
    if (t < 60) return t + " s";
    const m = Math.floor(t / 60), r = t % 60;
    return m + " min " + String(r).padStart(2, "0") + " s";
  }

  function waitClass(wait, threshold) {
    if (wait === null || wait === undefined || !threshold) return ["wait-none", "—"];
    if (wait >= threshold) return ["wait-over", "over W1"];
    if (wait >= NEAR_FRACTION * threshold) return ["wait-near", "near W1"];
    return ["wait-ok", "ok"];
  }

  async function getJSON(path) {
    const res = await fetch(new URL(path, API), {
      cache: "no-store",
      headers: { Accept: "application/json" },
    });
    if (!res.ok) throw new Error(path + ": HTTP " + res.status);
    return res.json();
  }

  function setStatus(text, isError) {
    const s = $("status");
    // rewrite only on change: an aria-live region re-announces every write
    if (text !== lastStatus) {
      s.textContent = text;
      lastStatus = text;
    }
    s.classList.toggle("error", !!isError);
  }

  function setTime(id, iso) {
    const t = $(id);
    if (!iso) { t.textContent = "—"; t.removeAttribute("datetime"); return; }
    t.setAttribute("datetime", iso);
    t.textContent = new Date(iso).toLocaleTimeString();
  }

  function branchBody(b) {
    const zones = (b.zone_states || []).slice().sort((x, y) =>
      (x.kind !== "waiting") - (y.kind !== "waiting") || x.zone.localeCompare(y.zone));
    const alertsByZone = {};
    for (const a of b.alerts || []) {
      const key = a.zone || a.device || "";
      (alertsByZone[key] = alertsByZone[key] || []).push(a);
    }
    const body = el("tbody", { "data-branch": b.id });
    const devices = b.devices_total
      ? b.devices_up + "/" + b.devices_total + " devices up"
      : "no devices seen";
    const sub = [
      "region " + b.region,
      devices,
      b.people_waiting + " waiting",
      "worst wait " + fmtWait(b.max_predicted_wait_s),
      b.active_alerts ? b.active_alerts + " active alert(s)" : "no alerts",
    ].join(" · ");
    body.append(el("tr", { class: "branch-row" },
      el("th", { scope: "rowgroup", colspan: "7", id: "branch-" + b.id },
        b.id, el("span", { class: "sub" }, sub))));
    const downDevices = new Set((b.devices || []).filter((d) => !d.up).map((d) => d.device));
    for (const z of zones) {
      const est = z.estimate;
      const wait = est ? est.predicted_wait_s : null;
      const [cls, label] = z.kind === "waiting" ? waitClass(wait, z.wait_threshold_s)
                                                : ["wait-none", "—"];
      const alerts = (alertsByZone[z.zone] || []).concat(alertsByZone[z.device] || []);
      const alertCell = el("td", {});
      if (alerts.length) {
        for (const a of alerts) {
          alertCell.append(el("span", { class: "pill sev-" + a.severity },
            a.severity + " " + a.kind.replace("_", " ")), " ");
        }
      } else {
        alertCell.append("—");
      }
      if (downDevices.has(z.device)) {
        alertCell.append(" ", el("span", { class: "down" }, "device down"));
      }
      if (est && est.stale) {
        // the numbers are the last ones the source sent: say so, next to them
        alertCell.append(" ", el("span", { class: "down stale", title: est.stale_reason || "" },
          "stale data"));
      }
      body.append(el("tr", { "data-zone": z.zone, "data-kind": z.kind },
        el("th", { scope: "row", headers: "branch-" + b.id }, z.zone),
        el("td", {}, z.kind.replace(/_/g, " ")),
        el("td", { class: "num people" }, z.people),
        el("td", { class: "num wait" }, z.kind === "waiting" ? fmtWait(wait) : "—"),
        el("td", { class: "num" }, z.wait_threshold_s ? fmtWait(z.wait_threshold_s) : "—"),
        el("td", {}, el("span", { class: "pill " + cls }, label)),
        alertCell));
    }
    if (!zones.length) {
      body.append(el("tr", {}, el("td", { colspan: "7" }, "No zone reported yet.")));
    }
    return body;
  }

  function renderAlerts(details) {
    const all = [];
    for (const b of details) for (const a of b.alerts || []) all.push(a);
    all.sort((x, y) => (y.severity === "critical") - (x.severity === "critical") ||
                       String(x.started_at).localeCompare(String(y.started_at)));
    const key = all.map((a) => a.alert_id + ":" + a.severity + ":" + a.state).join("|");
    if (key === lastAlertKey) return;
    lastAlertKey = key;
    const box = $("alerts");
    box.replaceChildren();
    if (!all.length) { box.append(el("p", {}, "None.")); return; }
    const list = el("ul", {});
    for (const a of all) {
      const where = a.branch + (a.zone ? " / " + a.zone : a.device ? " / device " + a.device : "");
      const since = a.started_at ? " since " + new Date(a.started_at).toLocaleTimeString() : "";
      list.append(el("li", { "data-alert": a.alert_id },
        el("span", { class: "pill sev-" + a.severity }, a.severity), " ",
        where + ": " + (a.summary || a.kind.replace(/_/g, " ")) + since));
    }
    box.append(list);
  }

  function render(details) {
    const table = $("board");
    for (const old of table.querySelectorAll("tbody")) old.remove();
    if (!details.length) {
      table.append(el("tbody", {}, el("tr", {}, el("td", { colspan: "7" }, "No branch known yet."))));
    }
    let newest = null;
    for (const b of details) {
      table.append(branchBody(b));
      for (const z of b.zone_states || []) {
        if (z.observed_at && (!newest || Date.parse(z.observed_at) > Date.parse(newest))) {
          newest = z.observed_at;
        }
      }
    }
    renderAlerts(details);
    setTime("data-time", newest);
    setTime("page-time", new Date().toISOString());
  }

  async function poll() {
    try {
      const list = await getJSON("branches");
      const details = await Promise.all(
        list.map((b) => getJSON("branches/" + encodeURIComponent(b.id))));
      render(details);
      polls += 1;
      document.body.dataset.polls = String(polls);
      setStatus("Live: " + details.length + " branch(es).", false);
    } catch (err) {
      setStatus("Collector unreachable (" + err.message + "); retrying every 2 s.", true);
    } finally {
      setTimeout(poll, POLL_MS);
    }
  }

  poll();
})();
