// Shared by the board and the branch page: the message catalogue (served by the
// collector from the same gettext catalogues as notifications and reports) and
// locale-aware formats from the browser's Intl (CLDR data, like Babel server-side).
"use strict";

window.LW = (function () {
  let messages = {};
  let locale = "en";

  function pickLang() {
    const q = new URLSearchParams(location.search).get("lang");
    if (q) return q;
    return (navigator.languages && navigator.languages[0]) || navigator.language || "en";
  }

  async function load() {
    const lang = pickLang();
    const url = new URL("i18n/" + encodeURIComponent(lang) + ".json", document.baseURI);
    try {
      const res = await fetch(url, { cache: "no-cache" });
      if (res.ok) {
        const cat = await res.json();
        messages = cat.messages || {};
        locale = cat.locale || "en";
      }
    } catch (err) {
      // the English source texts stay in place
    }
    document.documentElement.lang = locale;
    for (const node of document.querySelectorAll("[data-i18n]")) {
      node.textContent = t(node.dataset.i18n);
    }
    for (const node of document.querySelectorAll("[data-i18n-placeholder]")) {
      node.setAttribute("placeholder", t(node.dataset.i18nPlaceholder));
    }
    for (const node of document.querySelectorAll("[data-i18n-label]")) {
      node.setAttribute("aria-label", t(node.dataset.i18nLabel));
    }
    return locale;
  }

  function t(msgid, params) {
    const text = messages[msgid] || msgid;
    if (!params) return text;
    return text.replace(/\{(\w+)\}/g, (m, k) => (k in params ? String(params[k]) : m));
  }

  function num(n, digits) {
    return new Intl.NumberFormat(locale, {
      minimumFractionDigits: digits || 0, maximumFractionDigits: digits || 0,
    }).format(n);
  }

  function wait(s) {
    if (s === null || s === undefined) return "—";
    const total = Math.max(0, Math.round(s));
    const m = Math.floor(total / 60), r = total % 60;
    if (m === 0) return t("{s} s", { s: r });
    return t("{m} min {s} s", { m: num(m), s: String(r).padStart(2, "0") });
  }

  function duration(s) {
    const m = Math.round(s / 60);
    if (m < 60) return t("{n} min", { n: num(m) });
    const h = Math.floor(m / 60);
    return t("{h} h {m} min", { h: num(h), m: num(m % 60) });
  }

  function dayKey(d, tz) {
    return new Intl.DateTimeFormat("en-CA", { timeZone: tz, year: "numeric", month: "2-digit", day: "2-digit" }).format(d);
  }

  // wall time at the branch, with its zone name, and the date when not today there
  function time(iso, tz) {
    if (!iso) return "—";
    const d = new Date(iso);
    const opts = { timeZone: tz, hour: "2-digit", minute: "2-digit", hour12: false, timeZoneName: "short" };
    if (dayKey(d, tz) !== dayKey(new Date(), tz)) {
      opts.month = "short";
      opts.day = "numeric";
    }
    return new Intl.DateTimeFormat(locale, opts).format(d);
  }

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

  return { load, t, num, wait, duration, time, el, get locale() { return locale; } };
})();
