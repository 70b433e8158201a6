// Branch page: today's minute history of each waiting zone as server-drawn
// charts (SVG from the collector), with titles and units in the reader's language.
"use strict";

(function () {
  const { t, el, num } = window.LW;
  const API = new URL("../api/v1/", document.baseURI);
  const $ = (id) => document.getElementById(id);
  const N_ = (s) => s;
  const CHARTS = [
    ["queue", "queue_length_avg", N_("Queue length (people)")],
    ["wait", "predicted_wait_s_avg", N_("Predicted and realised wait (min) against the W1 threshold")],
    ["service", "served_within_threshold_ratio", N_("Served within the W1 threshold (%)")],
    ["walkouts", "walk_outs", N_("Walk-outs")],
    ["counters", "counters_open", N_("Counters open")],
  ];

  function points(series, key) {
    const v = series[key];
    return v ? v.filter((x) => x !== null && x !== undefined).length : 0;
  }

  async function main() {
    await window.LW.load();
    const params = new URLSearchParams(location.search);
    const id = params.get("id");
    if (!id) { $("status").textContent = t("No branch given."); return; }
    const date = params.get("date");
    $("report-link").href = "report?branch=" + encodeURIComponent(id) + "&lang=" + encodeURIComponent(window.LW.locale);
    const q = date ? "?date=" + encodeURIComponent(date) : "";
    const res = await fetch(new URL("branches/" + encodeURIComponent(id) + "/day" + q, API), { cache: "no-store" });
    if (!res.ok) {
      $("status").textContent = t("Cannot load this branch (HTTP {status}).", { status: res.status });
      return;
    }
    const day = await res.json();
    $("title").textContent = day.name ? day.name + " · " + day.branch : day.branch;
    $("subtitle").textContent = t("{date}, times in {tz}", { date: day.date, tz: day.timezone });
    const main = $("zones");
    const zones = Object.keys(day.zones).sort();
    if (!zones.length) {
      $("status").textContent = t("No minute history for this day yet.");
      return;
    }
    for (const z of zones) {
      const s = day.zones[z];
      const sec = el("section", { "data-zone": z, class: "zone-day" },
        el("h2", {}, t("Waiting zone {zone}", { zone: z })),
        el("p", { class: "meta" }, t("{n} minutes recorded", { n: num(s.points) })));
      for (const [chart, key, title] of CHARTS) {
        const n = points(s, key);
        const fig = el("figure", { class: "chart", "data-chart": chart, "data-points": String(n) },
          el("figcaption", {}, t(title)));
        if (n) {
          fig.append(el("img", {
            src: "charts/" + encodeURIComponent(id) + "/" + encodeURIComponent(z) + "/" + chart + ".svg?date=" + day.date,
            alt: t(title), width: "640", height: "220",
          }));
        } else {
          fig.append(el("p", { class: "meta" }, "— " + t("not recorded by this collector yet")));
        }
        sec.append(fig);
      }
      main.append(sec);
    }
    $("status").textContent = t("Today in charts; hours on the branch's clock.");
    document.body.dataset.ready = "1";
  }

  main().catch((err) => { $("status").textContent = String(err); });
})();
