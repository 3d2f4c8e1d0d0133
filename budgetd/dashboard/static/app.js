// budgetd's dashboard: one page, hash routes, plain DOM and SVG.
// Everything shown comes from /api/v1/ (docs/dashboard.md). Money arrives as
// decimal strings and is only ever rounded for display here (string and
// BigInt arithmetic); floats are used only for the geometry of bars and charts.
"use strict";

(() => {
  const REFRESH_MS = 10000;
  const EVENT_DEBOUNCE_MS = 200;
  const PAGE_SIZE = 50;
  const SVG_NS = "http://www.w3.org/2000/svg";
  const PALETTE = ["#1f6feb", "#d4731c", "#1a7f37", "#a626a4", "#b42318", "#0e7490", "#7a5c00", "#5b5bd6"];
  const OTHER_COLOUR = "#6b7280";
  const colourOf = (series, k) => (series.key === "(other)" ? OTHER_COLOUR : PALETTE[k % PALETTE.length]);

  let session = null;       // GET /api/v1/session
  let view = null;          // {refresh(): Promise} of the page shown
  let viewSeq = 0;          // bumped on every route change; stale answers are dropped
  let events = null;        // EventSource of /api/v1/events
  let debounce = null;
  let clockSkewMs = 0;      // the server's clock minus the browser's (from the Date header)
  let alertFromRefresh = false;

  const fleetState = { kind: "all", q: "", state: "all", sort: "id", order: "asc", page: 1 };
  const spendState = { since: null, until: null, by: "agent" };
  const noticesState = { state: "all" };

  // ---------------------------------------------------------------- DOM helpers

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    setAttrs(node, attrs);
    append(node, children);
    return node;
  }

  function svg(tag, attrs, ...children) {
    const node = document.createElementNS(SVG_NS, tag);
    setAttrs(node, attrs);
    append(node, children);
    return node;
  }

  function setAttrs(node, attrs) {
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "text") node.textContent = value;
      // Through the CSSOM: the dashboard's Content-Security-Policy refuses style attributes.
      else if (key === "style") Object.assign(node.style, value);
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? "" : String(value));
    }
  }

  function append(node, children) {
    for (const child of children.flat(Infinity)) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
  }

  const $ = (sel, root = document) => root.querySelector(sel);

  function fill(node, ...children) {
    node.replaceChildren();
    append(node, children);
  }

  // ---------------------------------------------------------------- money and times

  // A decimal string (maybe with an exponent) as {neg, digits, scale}: value = digits / 10**scale.
  function parseDecimal(text) {
    const m = /^([+-]?)(\d*)(?:\.(\d*))?(?:[eE]([+-]?\d+))?$/.exec(String(text).trim());
    if (!m || (m[2] === "" && (m[3] || "") === "")) return null;
    let digits = (m[2] || "0") + (m[3] || "");
    let scale = (m[3] || "").length - Number(m[4] || 0);
    if (scale < 0) { digits += "0".repeat(-scale); scale = 0; }
    return { neg: m[1] === "-", digits: BigInt(digits), scale };
  }

  // Cents of a decimal string, rounded half away from zero (BigInt), or null.
  function toCents(text) {
    const d = parseDecimal(text);
    if (!d) return null;
    let cents;
    if (d.scale <= 2) cents = d.digits * 10n ** BigInt(2 - d.scale);
    else {
      const div = 10n ** BigInt(d.scale - 2);
      cents = d.digits / div;
      if ((d.digits % div) * 2n >= div) cents += 1n;
    }
    return d.neg ? -cents : cents;
  }

  function centsText(cents) {
    const neg = cents < 0n;
    const s = (neg ? -cents : cents).toString().padStart(3, "0");
    const whole = s.slice(0, -2).replace(/\B(?=(\d{3})+(?!\d))/g, ",");
    return `${neg ? "-" : ""}${currencySymbol()}${whole}.${s.slice(-2)}`;
  }

  function currency() { return (session && session.currency) || "USD"; }
  function currencySymbol() { return currency() === "USD" ? "$" : ""; }

  // Money shown to the cent; the exact amount in the title.
  function money(value, field, nullText = "—") {
    if (value === null || value === undefined) {
      return el("span", { class: "money none", "data-field": field, title: "none", text: nullText });
    }
    const cents = toCents(value);
    return el("span", {
      class: "money", "data-field": field, "data-value": value,
      title: `${value} ${currency()}`, text: cents === null ? String(value) : centsText(cents),
    });
  }

  const count = (n, noun) => `${Number(n).toLocaleString("en-US")} ${noun}${Number(n) === 1 ? "" : "s"}`;

  function num(value) { const f = Number(value); return Number.isFinite(f) ? f : 0; }

  function pct(value, field) {
    if (value === null || value === undefined) return el("span", { class: "none", "data-field": field, text: "—" });
    return el("span", { "data-field": field, title: `${value}%`, text: `${value}%` });
  }

  function fmtTime(iso, withDate = true) {
    if (!iso) return "—";
    const t = new Date(iso);
    if (Number.isNaN(t.getTime())) return String(iso);
    const s = t.toISOString();
    return withDate ? `${s.slice(0, 10)} ${s.slice(11, 19)} UTC` : `${s.slice(11, 16)} UTC`;
  }

  function time(iso, withDate = true) {
    if (!iso) return el("span", { class: "none", text: "—" });
    return el("time", { datetime: iso, title: iso, text: fmtTime(iso, withDate) });
  }

  // A compact time for dense tables (UTC, named in the column header): the
  // time of day when it is today, else the date and minute.
  function shortTime(iso) {
    if (!iso) return el("span", { class: "none", text: "—" });
    const t = new Date(iso);
    if (Number.isNaN(t.getTime())) return el("span", { text: String(iso) });
    const s = t.toISOString();
    const today = new Date(serverNow()).toISOString().slice(0, 10);
    const text = s.slice(0, 10) === today ? s.slice(11, 19) : `${s.slice(0, 10)} ${s.slice(11, 16)}`;
    return el("time", { datetime: iso, title: iso, text });
  }

  function serverNow() { return Date.now() + clockSkewMs; }

  // ---------------------------------------------------------------- messages

  function showError(message, fromRefresh = false) {
    alertFromRefresh = fromRefresh;
    const box = $("#alert");
    box.textContent = message;
    box.classList.add("shown");
  }

  function clearError(onlyRefresh = false) {
    if (onlyRefresh && !alertFromRefresh) return;
    const box = $("#alert");
    box.textContent = "";
    box.classList.remove("shown");
  }

  function showStatus(message) {
    const box = $("#status");
    box.textContent = message;
    box.classList.toggle("shown", Boolean(message));
  }

  // ---------------------------------------------------------------- API

  class ApiError extends Error {
    constructor(message, status) { super(message); this.status = status; }
  }

  async function api(method, path, body) {
    const headers = { Accept: "application/json" };
    const opts = { method, credentials: "same-origin", headers, cache: "no-store" };
    if (method !== "GET") {
      headers["Content-Type"] = "application/json";
      if (session && session.csrf) headers["X-CSRF-Token"] = session.csrf;
      opts.body = JSON.stringify(body === undefined ? {} : body);
    }
    let response;
    try {
      response = await fetch(path, opts);
    } catch (err) {
      throw new ApiError(`budgetd did not answer (${err.message})`, 0);
    }
    const date = Date.parse(response.headers.get("Date") || "");
    if (!Number.isNaN(date)) clockSkewMs = date - Date.now();
    let data = null;
    try { data = await response.json(); } catch { data = null; }
    if (!response.ok) {
      const message = data && data.error ? data.error : `${response.status} ${response.statusText}`;
      throw new ApiError(message, response.status);
    }
    return data;
  }

  function query(params) {
    const q = new URLSearchParams();
    for (const [key, value] of Object.entries(params)) {
      if (value !== null && value !== undefined && value !== "") q.set(key, value);
    }
    const s = q.toString();
    return s ? `?${s}` : "";
  }

  // ---------------------------------------------------------------- session and live updates

  async function loadSession() {
    session = await api("GET", "/api/v1/session");
    const signedIn = session.signed_in;
    $("#nav").hidden = !signedIn;
    $("#sign-out").hidden = !(session.auth && signedIn);
    $("#who").textContent = signedIn && session.who ? `Signed in as ${session.who}` : "";
    if (signedIn) startEvents(); else stopEvents();
    return session;
  }

  function startEvents() {
    if (events || typeof EventSource === "undefined") return;
    const source = new EventSource("/api/v1/events");
    events = source;
    source.addEventListener("notice", () => {
      clearTimeout(debounce);
      debounce = setTimeout(() => refresh(), EVENT_DEBOUNCE_MS);
    });
    source.addEventListener("error", () => {
      // The browser retries a dropped stream by itself, but not one answered
      // with an error status: open it anew a little later.
      if (source.readyState !== EventSource.CLOSED || events !== source) return;
      events = null;
      setTimeout(() => { if (session && session.signed_in) startEvents(); }, 5000);
    });
  }

  function stopEvents() {
    if (events) { events.close(); events = null; }
  }

  // A refresh's answer is dropped when the page changed meanwhile, or when a
  // later refresh's answer was shown already (answers may come out of order).
  let refreshTick = 0;
  let shownTick = 0;
  function stale(token) {
    if (token.seq !== viewSeq || token.tick < shownTick) return true;
    shownTick = token.tick;
    return false;
  }

  async function refresh() {
    if (!view || !view.refresh) return;
    const seq = viewSeq;
    refreshTick += 1;
    try {
      await view.refresh({ seq, tick: refreshTick });
      if (seq === viewSeq) clearError(true);
    } catch (err) {
      if (seq !== viewSeq) return;
      if (session && session.auth && (err.status === 401 || err.status === 403)) {
        await route();  // the session ended (expired, revoked): back to the sign-in form
        return;
      }
      showError(`Could not load this page: ${err.message}`, true);
    }
  }

  async function act(what, method, path, body) {
    clearError();
    showStatus("");
    try {
      const answer = await api(method, path, body);
      showStatus(what);
      await refresh();
      return answer;
    } catch (err) {
      showError(err.message);
      return null;
    }
  }

  // ---------------------------------------------------------------- routing

  function parseRoute() {
    const parts = location.hash.replace(/^#\/?/, "").split("/").map((p) => {
      try { return decodeURIComponent(p); } catch { return p; }
    });
    switch (parts[0]) {
      case "spend": return { name: "spend" };
      case "notices": return { name: "notices" };
      case "reconcile": return { name: "reconcile" };
      case "agent": if (parts.length >= 2 && parts[1]) return { name: "agent", id: parts.slice(1).join("/") }; break;
      case "tag": if (parts.length >= 3) return { name: "tag", key: parts[1], value: parts.slice(2).join("/") }; break;
      default: break;
    }
    return { name: "fleet" };
  }

  const agentHref = (id) => `#/agent/${encodeURIComponent(id)}`;
  const tagHref = (key, value) => `#/tag/${encodeURIComponent(key)}/${encodeURIComponent(value)}`;

  async function route(focus = false) {
    viewSeq += 1;
    const seq = viewSeq;
    view = null;
    const main = $("#main");
    try {
      await loadSession();
    } catch (err) {
      main.replaceChildren(el("h1", { text: "budgetd" }), el("p", { text: "The dashboard could not reach budgetd." }));
      showError(`Could not load the session: ${err.message}`, true);
      return;
    }
    if (seq !== viewSeq) return;
    if (session.auth && !session.signed_in) {
      view = mountSignIn(main);
      markNav(null);
      return;
    }
    const r = parseRoute();
    markNav(r.name);
    const mounts = { fleet: mountFleet, spend: mountSpend, notices: mountNotices, reconcile: mountReconcile,
      agent: mountAgent, tag: mountTag };
    view = mounts[r.name](main, r);
    await refresh();
    if (focus && seq === viewSeq) {
      const heading = $("h1", main);
      if (heading) { heading.setAttribute("tabindex", "-1"); heading.focus({ preventScroll: false }); }
    }
  }

  function markNav(name) {
    for (const link of document.querySelectorAll("#nav a")) {
      if (link.dataset.route === name) link.setAttribute("aria-current", "page");
      else link.removeAttribute("aria-current");
    }
    const titles = { fleet: "Fleet", spend: "Spend over time", notices: "Notices", reconcile: "Reconciliation",
      agent: "Agent", tag: "Tag" };
    document.title = name ? `${titles[name]} · budgetd` : "Sign in · budgetd";
  }

  // ---------------------------------------------------------------- shared pieces

  function windowBar(win, field) {
    const wrap = el("div", { class: "bar" });
    if (!win) return wrap;
    const cap = win.cap_usd === null || win.cap_usd === undefined ? null : num(win.cap_usd);
    const spent = num(win.spent_usd);
    const held = num(win.reserved_usd);
    let label;
    if (cap === null || cap <= 0) {
      wrap.classList.add("uncapped");
      label = `spent ${centsText(toCents(win.spent_usd) ?? 0n)}, no cap`;
    } else {
      const spentW = Math.min(100, (spent / cap) * 100);
      const heldW = Math.max(0, Math.min(100 - spentW, (held / cap) * 100));
      const fill = el("span", { class: "fill spent", style: { width: `${spentW.toFixed(2)}%` } });
      if (spent >= cap) fill.classList.add("over");
      else if (spent / cap >= 0.8) fill.classList.add("warn");
      wrap.append(fill, el("span", { class: "fill held", style: { width: `${heldW.toFixed(2)}%` } }));
      label = `spent ${centsText(toCents(win.spent_usd) ?? 0n)}, held ${centsText(toCents(win.reserved_usd) ?? 0n)}, `
        + `of ${centsText(toCents(win.cap_usd) ?? 0n)}`;
    }
    wrap.setAttribute("role", "img");
    wrap.setAttribute("aria-label", label);
    if (field) wrap.dataset.field = `${field}.bar`;
    return wrap;
  }

  // A window as a table cell's content: bar, spent of cap, left and held.
  function windowCell(win, prefix) {
    if (!win) return el("span", { class: "none", text: "—" });
    if (win.cap_usd === null || win.cap_usd === undefined) {
      return el("div", { class: "win" },
        windowBar(win, prefix),
        el("div", { class: "line" }, money(win.spent_usd, `${prefix}.spent_usd`), " · ",
          el("span", { class: "none", "data-field": `${prefix}.cap_usd`, text: "no cap" })),
        el("div", { class: "line sub" }, money(win.reserved_usd, `${prefix}.reserved_usd`), " held"));
    }
    return el("div", { class: "win" },
      windowBar(win, prefix),
      el("div", { class: "line" },
        money(win.spent_usd, `${prefix}.spent_usd`), " of ", money(win.cap_usd, `${prefix}.cap_usd`, "no cap")),
      el("div", { class: "line sub" },
        money(win.remaining_usd, `${prefix}.remaining_usd`, "—"), " left · ",
        money(win.reserved_usd, `${prefix}.reserved_usd`), " held"));
  }

  function windowCard(win, title) {
    const prefix = win ? win.window : "window";
    const card = el("section", { class: "card window", "data-window": prefix, "aria-label": title },
      el("h3", { text: title }));
    if (!win) { card.append(el("p", { class: "none", text: "No data." })); return card; }
    card.append(
      windowBar(win, prefix),
      el("dl", { class: "facts" },
        el("dt", { text: "Spent" }), el("dd", {}, money(win.spent_usd, `${prefix}.spent_usd`), ` ${currency()}`),
        el("dt", { text: "Reserved" }), el("dd", {}, money(win.reserved_usd, `${prefix}.reserved_usd`), ` ${currency()}`),
        el("dt", { text: "Cap" }), el("dd", {}, money(win.cap_usd, `${prefix}.cap_usd`, "no cap"),
          win.cap_usd === null ? "" : ` ${currency()}`),
        el("dt", { text: "Remaining" }), el("dd", {}, money(win.remaining_usd, `${prefix}.remaining_usd`),
          win.remaining_usd === null ? "" : ` ${currency()}`),
        el("dt", { text: "Used" }), el("dd", {}, pct(win.percent, `${prefix}.percent`)),
        el("dt", { text: "Period" }), el("dd", { text: win.period || "—" }),
        el("dt", { text: "Resets at" }), el("dd", {}, time(win.resets_at))));
    return card;
  }

  function pauseSummary(row) {
    if (!row.paused) return el("span", { class: "state-ok", "data-field": "paused", text: "no" });
    return el("div", { class: "paused", "data-field": "paused" },
      el("span", { class: "badge paused-badge", text: `Paused (${row.pause_kind || "?"})` }),
      row.pause_reason ? el("div", { class: "line", "data-field": "pause_reason", text: row.pause_reason }) : null,
      row.paused_by ? el("div", { class: "line sub", text: `by ${row.paused_by}` }) : null,
      row.paused_since ? el("div", { class: "line sub" }, "since ", shortTime(row.paused_since)) : null,
      row.resumes_at ? el("div", { class: "line sub" }, "resumes ", shortTime(row.resumes_at)) : null);
  }

  function stateBadge(row) {
    return row.paused
      ? el("span", { class: "badge paused-badge", "data-field": "state", text: `Paused (${row.pause_kind || "?"})` })
      : el("span", { class: "badge ok-badge", "data-field": "state", text: "Running" });
  }

  function table(caption, headers, rows, opts = {}) {
    const t = el("table", { class: `grid ${opts.class || ""}`, id: opts.id },
      el("caption", { class: opts.showCaption ? "" : "sr-only", text: caption }),
      el("thead", {}, el("tr", {}, headers.map((h) => el("th", { scope: "col", class: h.num ? "num" : "", text: h.label || h })))),
      el("tbody", {}, rows));
    if (!rows.length) {
      t.tBodies[0].append(el("tr", {}, el("td", { colspan: headers.length, class: "empty", text: opts.empty || "Nothing yet." })));
    }
    return el("div", { class: "table-wrap" }, t);
  }

  const td = (content, cls) => el("td", { class: cls }, content);

  function noticesTable(caption, notices, id) {
    const headers = ["Kind", "Who", "Scope", "Window", "Reason", "State", { label: "Attempts", num: true }, "Last error", "Time"];
    const rows = notices.map((n) => el("tr", { "data-key": n.key, "data-kind": n.kind, "data-state": n.state },
      td(n.kind), td(n.agent_id ? el("a", { href: agentHref(n.agent_id), text: n.agent_id }) : "—"),
      td(n.scope || "—"), td(n.window ? `${n.window} ${n.period || ""}` : "—"),
      td(n.reason || "—", "wrap"), td(el("span", { class: `badge state-${n.state}`, text: n.state })),
      td(String(n.attempts ?? 0), "num"), td(n.last_error || "—", "wrap"), td(time(n.at))));
    return table(caption, headers, rows, { id, empty: "No notices." });
  }

  function section(title, ...children) {
    return el("section", { class: "block", "aria-label": title }, el("h2", { text: title }), children);
  }

  // Cumulative spend through the window against its cap, as SVG.
  function burnChart(burn, win) {
    const W = 1100, H = 240, L = 64, R = 16, T = 14, B = 30;
    const figure = el("figure", { class: "chart burn" });
    if (!burn) { figure.append(el("p", { class: "none", text: "No burn data." })); return figure; }
    const points = (burn.points || []).map((p) => ({ t: Date.parse(p.at), v: num(p.spent_usd), raw: p.spent_usd }))
      .filter((p) => !Number.isNaN(p.t));
    let start = win && win.starts_at ? Date.parse(win.starts_at) : NaN;
    let end = win && win.resets_at ? Date.parse(win.resets_at) : NaN;
    if (Number.isNaN(start)) start = points.length ? points[0].t : serverNow() - 86400000;
    if (Number.isNaN(end)) end = Math.max(start + 3600000, points.length ? points[points.length - 1].t : serverNow());
    const cap = burn.cap_usd === null || burn.cap_usd === undefined ? null : num(burn.cap_usd);
    const last = points.length ? points[points.length - 1] : null;
    const top = Math.max(cap || 0, last ? last.v : 0) * 1.08 || 1;
    const tick = niceStep(top / 4);
    const maxV = tick * Math.ceil(top / tick);
    const x = (t) => L + ((Math.min(Math.max(t, start), end) - start) / (end - start)) * (W - L - R);
    const y = (v) => T + (1 - v / maxV) * (H - T - B);
    const capText = cap === null ? "no cap" : `cap ${centsText(toCents(burn.cap_usd))}`;
    const spentText = last ? centsText(toCents(last.raw)) : centsText(0n);
    const summary = `Spend through ${burn.period || "the period"}: ${spentText} against ${capText}`;
    const chart = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": summary, class: "burn-svg" },
      svg("title", { text: summary }));
    for (let v = 0; v <= maxV + tick / 2; v += tick) {
      chart.append(svg("line", { x1: L, x2: W - R, y1: y(v), y2: y(v), class: "gridline" }),
        svg("text", { x: L - 6, y: y(v) + 4, "text-anchor": "end", class: "tick", text: `$${v.toFixed(tick < 1 ? 2 : 0)}` }));
    }
    const hours = (end - start) / 3600000;
    const stepH = hours <= 26 ? 3 : 24 * Math.ceil(hours / 24 / 8);
    for (let h = 0; h <= hours + 0.01; h += stepH) {
      const t = start + h * 3600000;
      const d = new Date(t).toISOString();
      chart.append(svg("text", { x: x(t), y: H - 10, "text-anchor": "middle", class: "tick",
        text: hours <= 26 ? d.slice(11, 16) : d.slice(5, 10) }));
    }
    if (cap !== null) {
      chart.append(svg("line", { x1: L, x2: W - R, y1: y(cap), y2: y(cap), class: "capline" }),
        svg("text", { x: W - R, y: y(cap) - 5, "text-anchor": "end", class: "caplabel", text: capText }));
    }
    const now = Math.min(end, Math.max(serverNow(), last ? last.t : start));
    let d = `M${x(start).toFixed(1)},${y(0).toFixed(1)}`;
    let prev = 0;
    for (const p of points) {
      d += ` L${x(p.t).toFixed(1)},${y(prev).toFixed(1)} L${x(p.t).toFixed(1)},${y(p.v).toFixed(1)}`;
      prev = p.v;
    }
    d += ` L${x(now).toFixed(1)},${y(prev).toFixed(1)}`;
    chart.append(svg("path", { d, class: "burnline" }));
    figure.append(chart, el("figcaption", { text: summary }));
    return figure;
  }

  // ---------------------------------------------------------------- sign-in

  function mountSignIn(main) {
    const input = el("input", { type: "password", id: "signin-token", name: "token", autocomplete: "current-password",
      required: true, spellcheck: "false" });
    const form = el("form", { class: "card signin", id: "signin-form", "aria-labelledby": "signin-title" },
      el("h1", { id: "signin-title", text: "Sign in" }),
      el("p", { text: "This budgetd requires an admin token to show the fleet." }),
      // For password managers: the token is the only secret; this names what it signs in as.
      el("input", { type: "text", name: "username", autocomplete: "username", value: "budgetd admin", hidden: true }),
      el("label", { for: "signin-token", text: "Admin token" }), input,
      el("button", { type: "submit", class: "primary", text: "Sign in" }));
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      clearError();
      try {
        session = await api("POST", "/api/v1/session", { token: input.value });
        input.value = "";
        showStatus(`Signed in as ${session.who || "admin"}.`);
        await route(true);
      } catch (err) {
        showError(`Sign-in refused: ${err.message}`);
        input.select();
      }
    });
    main.replaceChildren(form);
    input.focus();
    return { refresh: async () => {} };
  }

  async function signOut() {
    clearError();
    try {
      await api("DELETE", "/api/v1/session");
      stopEvents();
      showStatus("Signed out.");
    } catch (err) {
      showError(`Sign-out failed: ${err.message}`);
    }
    await route();
  }

  // ---------------------------------------------------------------- fleet

  const FLEET_COLUMNS = [
    { label: "Kind" },
    { label: "ID", sort: "id" },
    { label: "Today", sort: "daily_spent" },
    { label: "Today %", sort: "daily_percent", num: true },
    { label: "This month", sort: "monthly_spent" },
    { label: "Month %", sort: "monthly_percent", num: true },
    { label: "Resets at (UTC)" },
    { label: "Paused" },
    { label: "Last call (UTC)", sort: "last_call" },
    { label: "Calls today", sort: "calls_today", num: true },
  ];

  function mountFleet(main) {
    const st = fleetState;
    let typing = null;
    const q = el("input", { type: "search", id: "fleet-q", value: st.q, placeholder: "id contains…", autocomplete: "off" });
    q.addEventListener("input", () => {
      clearTimeout(typing);
      typing = setTimeout(() => { st.q = q.value.trim(); st.page = 1; refresh(); }, 300);
    });
    const select = (id, values, current, onChange) => {
      const s = el("select", { id }, values.map(([v, label]) => el("option", { value: v, text: label, selected: v === current })));
      s.addEventListener("change", () => onChange(s.value));
      return s;
    };
    const kind = select("fleet-kind", [["all", "All"], ["agent", "Agents"], ["group", "Groups"], ["tag", "Tag values"]], st.kind,
      (v) => { st.kind = v; st.page = 1; refresh(); });
    const state = select("fleet-state", [["all", "All"], ["paused", "Paused"], ["active", "Active today"]], st.state,
      (v) => { st.state = v; st.page = 1; refresh(); });

    const headRow = el("tr", {});
    for (const col of FLEET_COLUMNS) {
      const th = el("th", { scope: "col", class: col.num ? "num" : "" });
      if (col.sort) {
        th.dataset.sort = col.sort;
        th.append(el("button", { type: "button", class: "sort", "data-sort": col.sort, onclick: () => {
          if (st.sort === col.sort) st.order = st.order === "asc" ? "desc" : "asc";
          else { st.sort = col.sort; st.order = col.sort === "id" ? "asc" : "desc"; }
          st.page = 1;
          refresh();
        } }, col.label, el("span", { class: "arrow", "aria-hidden": "true" })));
      } else th.textContent = col.label;
      headRow.append(th);
    }
    const tbody = el("tbody", {});
    const tableEl = el("table", { class: "grid fleet", id: "fleet-table" },
      el("caption", { class: "sr-only", text: "Agents, groups and tag values with their spend, caps and pauses" }),
      el("thead", {}, headRow), tbody);
    const prev = el("button", { type: "button", id: "fleet-prev", text: "‹ Previous", onclick: () => { st.page -= 1; refresh(); } });
    const next = el("button", { type: "button", id: "fleet-next", text: "Next ›", onclick: () => { st.page += 1; refresh(); } });
    const pageInfo = el("span", { id: "fleet-pageinfo", class: "pageinfo" });
    const asOf = el("span", { class: "asof", id: "fleet-asof" });

    main.replaceChildren(
      el("div", { class: "titlebar" }, el("h1", { text: "Fleet" }), asOf),
      el("form", { class: "filters", role: "search", onsubmit: (e) => { e.preventDefault(); clearTimeout(typing); st.q = q.value.trim(); st.page = 1; refresh(); } },
        el("div", { class: "field" }, el("label", { for: "fleet-q", text: "Filter by id" }), q),
        el("div", { class: "field" }, el("label", { for: "fleet-kind", text: "Kind" }), kind),
        el("div", { class: "field" }, el("label", { for: "fleet-state", text: "State" }), state),
        el("p", { class: "hint", text: `Amounts in ${currency()}; exact values on hover.` })),
      el("div", { class: "table-wrap" }, tableEl),
      el("nav", { class: "pager", "aria-label": "Fleet pages" }, prev, pageInfo, next));

    return {
      async refresh(seq) {
        const data = await api("GET", `/api/v1/fleet${query({ kind: st.kind, q: st.q, state: st.state, sort: st.sort,
          order: st.order, page: st.page, page_size: PAGE_SIZE })}`);
        if (stale(seq)) return;
        if (data.pages && st.page > data.pages) { st.page = data.pages; return this.refresh(seq); }
        for (const th of headRow.children) {
          if (!th.dataset.sort) continue;
          const active = th.dataset.sort === st.sort;
          th.setAttribute("aria-sort", active ? (st.order === "asc" ? "ascending" : "descending") : "none");
          $(".arrow", th).textContent = active ? (st.order === "asc" ? " ▲" : " ▼") : "";
        }
        fill(tbody, ...data.rows.map(fleetRow));
        if (!data.rows.length) tbody.append(el("tr", {}, el("td", { colspan: FLEET_COLUMNS.length, class: "empty", text: "No rows match." })));
        const pages = Math.max(1, data.pages || 1);
        pageInfo.textContent = `Page ${data.page} of ${pages}, ${count(data.total, "row")}`;
        prev.disabled = data.page <= 1;
        next.disabled = data.page >= pages;
        asOf.replaceChildren("as of ", time(data.as_of));
      },
    };
  }

  function fleetRow(row) {
    let idCell;
    if (row.kind === "agent") idCell = el("a", { href: agentHref(row.id), text: row.id });
    else if (row.kind === "tag") {
      const at = row.id.indexOf("=");
      idCell = at > 0 ? el("a", { href: tagHref(row.id.slice(0, at), row.id.slice(at + 1)), text: row.id }) : row.id;
    } else idCell = row.id;
    return el("tr", { "data-kind": row.kind, "data-id": row.id, class: row.paused ? "is-paused" : "" },
      td(el("span", { class: `kind kind-${row.kind}`, text: row.kind })),
      el("th", { scope: "row", class: "id" }, idCell),
      td(windowCell(row.daily, "daily")),
      td(pct(row.daily && row.daily.percent, "daily.percent"), "num"),
      td(windowCell(row.monthly, "monthly")),
      td(pct(row.monthly && row.monthly.percent, "monthly.percent"), "num"),
      td([el("div", { class: "line" }, "day ", shortTime(row.daily && row.daily.resets_at)),
        el("div", { class: "line sub" }, "month ", shortTime(row.monthly && row.monthly.resets_at))]),
      td(pauseSummary(row)),
      td(shortTime(row.last_call_at)),
      td(row.calls_today === null || row.calls_today === undefined ? "—" : String(row.calls_today), "num"));
  }

  // ---------------------------------------------------------------- spend over time

  function addDays(day, n) {
    const t = new Date(`${day}T00:00:00Z`);
    t.setUTCDate(t.getUTCDate() + n);
    return t.toISOString().slice(0, 10);
  }

  function mountSpend(main) {
    const st = spendState;
    const today = session.today || new Date(serverNow()).toISOString().slice(0, 10);
    if (!st.since) { st.since = today; st.until = today; }
    const since = el("input", { type: "date", id: "spend-since", value: st.since, max: today, required: true });
    const until = el("input", { type: "date", id: "spend-until", value: st.until, max: today, required: true });
    const byOptions = [["agent", "Agent"], ["model", "Model"], ["group", "Group"],
      ...(session.budgeted_tags || []).map((t) => [t, `Tag: ${t}`])];
    if (!byOptions.some(([v]) => v === st.by)) st.by = "agent";
    const by = el("select", { id: "spend-by" }, byOptions.map(([v, l]) => el("option", { value: v, text: l, selected: v === st.by })));
    const apply = () => {
      if (!since.value || !until.value) return;
      st.since = since.value; st.until = until.value; st.by = by.value;
      refresh();
    };
    since.addEventListener("change", apply);
    until.addEventListener("change", apply);
    by.addEventListener("change", apply);
    const preset = (label, from) => el("button", { type: "button", class: "preset", text: label, onclick: () => {
      since.value = from(); until.value = today; apply();
    } });
    const chartBox = el("div", { class: "chart-box", id: "spend-chart" });
    const tableBox = el("div", { id: "spend-table" });
    const summary = el("p", { class: "summary", id: "spend-summary" });
    main.replaceChildren(
      el("div", { class: "titlebar" }, el("h1", { text: "Spend over time" })),
      el("form", { class: "filters", onsubmit: (e) => { e.preventDefault(); apply(); } },
        el("div", { class: "field" }, el("label", { for: "spend-since", text: "From (local day)" }), since),
        el("div", { class: "field" }, el("label", { for: "spend-until", text: "To (local day)" }), until),
        el("div", { class: "field" }, el("label", { for: "spend-by", text: "Stack by" }), by),
        el("div", { class: "presets", role: "group", "aria-label": "Ranges" },
          preset("Today", () => today), preset("Last 7 days", () => addDays(today, -6)),
          preset("This month", () => `${today.slice(0, 8)}01`), preset("Last 30 days", () => addDays(today, -29)))),
      summary, chartBox, tableBox);

    return {
      async refresh(seq) {
        const data = await api("GET", `/api/v1/spend${query({ by: st.by, since: st.since, until: st.until, top: 8 })}`);
        if (stale(seq)) return;
        const range = data.since === data.until ? data.since : `${data.since} to ${data.until}`;
        summary.replaceChildren(`${range}, by ${data.by}, ${data.bucket === "hour" ? "hourly" : "daily"}: `,
          money(data.total_usd, "total_usd"), ` ${currency()} in all.`);
        chartBox.replaceChildren(stackedChart(data));
        tableBox.replaceChildren(spendTable(data));
      },
    };
  }

  function bucketLabel(bucket, hourly) {
    const s = String(bucket);
    if (hourly) {
      const m = /T(\d\d:\d\d)/.exec(s) || /^(\d\d:\d\d)/.exec(s) || /^(\d{1,2})$/.exec(s);
      return m ? m[1] : s;
    }
    return /^\d{4}-\d\d-\d\d$/.test(s) ? s.slice(5) : s;
  }

  function stackedChart(data) {
    const W = 1200, H = 300, L = 64, R = 12, T = 12, B = 34;
    const buckets = data.buckets || [];
    const series = data.series || [];
    const hourly = data.bucket === "hour";
    const totals = buckets.map((_, i) => series.reduce((sum, s) => sum + num(s.values[i]), 0));
    const rawMax = Math.max(0, ...totals);
    const step = niceStep(rawMax / 4 || 0.25);
    const maxV = step * Math.max(1, Math.ceil(rawMax / step));
    const plotW = W - L - R, plotH = H - T - B;
    const slot = plotW / Math.max(1, buckets.length);
    const barW = Math.max(2, slot * 0.72);
    const y = (v) => T + (1 - v / maxV) * plotH;
    const desc = `Stacked spend by ${data.by}, ${hourly ? "per hour" : "per day"}, ${series.length} series`;
    const chart = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": desc, class: "stacked-svg" },
      svg("title", { text: desc }));
    for (let v = 0; v <= maxV + step / 2; v += step) {
      chart.append(svg("line", { x1: L, x2: W - R, y1: y(v), y2: y(v), class: "gridline" }),
        svg("text", { x: L - 6, y: y(v) + 4, "text-anchor": "end", class: "tick", text: `$${v.toFixed(step < 1 ? 2 : 0)}` }));
    }
    const every = Math.ceil(buckets.length / (hourly ? 12 : 16));
    buckets.forEach((b, i) => {
      const x0 = L + i * slot + (slot - barW) / 2;
      let acc = 0;
      series.forEach((s, k) => {
        const v = num(s.values[i]);
        if (v <= 0) return;
        const h = (v / maxV) * plotH;
        const rect = svg("rect", { x: x0.toFixed(1), y: (y(acc) - h).toFixed(1), width: barW.toFixed(1),
          height: Math.max(0.5, h).toFixed(1), fill: colourOf(s, k), "data-series": s.key, "data-bucket": b },
        svg("title", { text: `${s.key}, ${b}: ${centsText(toCents(s.values[i]))} (${s.values[i]} ${currency()})` }));
        chart.append(rect);
        acc += v;
      });
      if (i % every === 0) {
        chart.append(svg("text", { x: (L + i * slot + slot / 2).toFixed(1), y: H - 12, "text-anchor": "middle", class: "tick",
          text: bucketLabel(b, hourly) }));
      }
    });
    chart.append(svg("line", { x1: L, x2: W - R, y1: y(0), y2: y(0), class: "axis" }));
    const legend = el("ul", { class: "legend", "aria-label": "Legend" }, series.map((s, k) => el("li", {},
      el("span", { class: "swatch", style: { background: colourOf(s, k) }, "aria-hidden": "true" }), s.key)));
    if (!series.length) legend.append(el("li", { class: "none", text: "No spend in this range." }));
    return el("figure", { class: "chart stacked" }, chart, legend);
  }

  function niceStep(raw) {
    const pow = 10 ** Math.floor(Math.log10(raw));
    const f = raw / pow;
    return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 2.5 ? 2.5 : f <= 5 ? 5 : 10) * pow;
  }

  function spendTable(data) {
    const totalCents = toCents(data.total_usd) || 0n;
    const rows = (data.series || []).map((s, k) => {
      const share = totalCents === 0n ? "—" : `${((num(s.total_usd) / num(data.total_usd)) * 100).toFixed(1)}%`;
      return el("tr", { "data-series": s.key },
        el("th", { scope: "row" }, el("span", { class: "swatch", style: { background: colourOf(s, k) }, "aria-hidden": "true" }), s.key),
        td(money(s.total_usd, "series.total_usd"), "num"), td(share, "num"));
    });
    const report = data.report || {};
    const wrap = table(`Spend by ${data.by}, ${data.since} to ${data.until}`,
      [data.by, { label: `Total (${currency()})`, num: true }, { label: "Share", num: true }], rows,
      { id: "spend-totals", empty: "No spend in this range.", showCaption: true });
    wrap.querySelector("table").append(el("tfoot", {},
      el("tr", {}, el("th", { scope: "row", text: "All series" }), td(money(data.total_usd, "total_usd"), "num"), td("100%", "num")),
      el("tr", {}, el("th", { scope: "row", text: "Report total (budgetctl report)" }),
        td(money(report.total_usd, "report.total_usd"), "num"),
        td(report.rows_in_all === undefined ? "" : count(report.rows_in_all, "row"), "num"))));
    return wrap;
  }

  // ---------------------------------------------------------------- agent and tag detail

  function pauseControls(target, label) {
    const reason = el("input", { type: "text", id: "pause-reason", maxlength: 500, placeholder: "why (shown to callers)", autocomplete: "off" });
    const pause = el("button", { type: "submit", id: "pause-button", class: "danger", text: "Pause" });
    const resume = el("button", { type: "button", id: "resume-button", class: "primary", text: "Resume", onclick: async () => {
      resume.disabled = true;
      await act(`Resumed ${label}.`, "POST", "/api/v1/resume", target);
    } });
    const form = el("form", { class: "actions", "aria-label": `Pause or resume ${label}`, onsubmit: async (e) => {
      e.preventDefault();
      pause.disabled = true;
      const answer = await act(`Paused ${label}.`, "POST", "/api/v1/pause", { ...target, reason: reason.value.trim() });
      if (answer) reason.value = "";
      pause.disabled = false;
    } },
    el("div", { class: "field" }, el("label", { for: "pause-reason", text: "Pause reason" }), reason), pause, resume);
    return {
      form,
      update(row) {
        resume.disabled = !row.paused;
        pause.disabled = false;
      },
    };
  }

  function detailHeader(title, row) {
    return el("div", { class: "titlebar" }, el("h1", { text: title }), stateBadge(row),
      el("span", { class: "asof" }, `${row.scope || ""} · budget ${row.budget_source || "—"}`));
  }

  function pausedBox(row) {
    if (!row.paused) return null;
    return el("div", { class: "card paused-box", id: "pause-info" },
      el("strong", { text: `Paused (${row.pause_kind || "?"})` }),
      row.pause_reason ? [": ", el("span", { "data-field": "pause_reason", text: row.pause_reason })] : null,
      el("div", { class: "line sub" }, row.paused_by ? `by ${row.paused_by}` : "",
        row.paused_since ? [" since ", time(row.paused_since)] : "",
        " · resumes ", row.resumes_at ? time(row.resumes_at) : "when resumed"));
  }

  function callsTable(calls) {
    const headers = ["Time", "Model", { label: "Tokens in", num: true }, { label: "Cached", num: true },
      { label: "Tokens out", num: true }, { label: `Cost (${currency()})`, num: true }, "Source", "Error"];
    const rows = calls.map((c) => el("tr", { "data-request": c.request_id },
      td(time(c.time)), td(c.model || c.model_requested || "—"),
      td(String(c.input_tokens ?? "—"), "num"), td(String(c.cached_input_tokens ?? "—"), "num"),
      td(String(c.output_tokens ?? "—"), "num"), td(money(c.cost_usd, "cost_usd"), "num"),
      td(c.cost_source || "—"), td(c.error_code || "—")));
    return table("Last calls, newest first", headers, rows, { id: "last-calls", empty: "No calls today." });
  }

  function mountAgent(main, r) {
    const target = { agent: r.id };
    const controls = pauseControls(target, `agent ${r.id}`);
    const body = el("div", {});
    main.replaceChildren(el("div", { id: "detail-head" }, el("div", { class: "titlebar" }, el("h1", { text: `Agent ${r.id}` }))),
      controls.form, body);
    return {
      async refresh(seq) {
        const data = await api("GET", `/api/v1/agents/${encodeURIComponent(r.id)}`);
        if (stale(seq)) return;
        const row = data.status;
        controls.update(row);
        $("#detail-head", main).replaceChildren(detailHeader(`Agent ${r.id}`, row));
        const budgeted = new Set(session.budgeted_tags || []);
        const groups = (data.groups || []).map((g) => el("tr", { "data-id": g.id || g.name },
          el("th", { scope: "row", text: g.id || g.name }), td(windowCell(g.daily, "daily")), td(windowCell(g.monthly, "monthly")),
          td(pauseSummary(g))));
        const tags = (data.tags || []).map((t) => el("tr", {},
          td(t.key), el("th", { scope: "row" }, budgeted.has(t.key) ? el("a", { href: tagHref(t.key, t.value), text: t.value }) : t.value),
          td(money(t.cost_usd, "cost_usd"), "num"), td(String(t.calls), "num")));
        fill(body, 
          pausedBox(row),
          el("div", { class: "cards" }, windowCard(row.daily, "Today"), windowCard(row.monthly, "This month")),
          section("Burn today", burnChart(data.burn, row.daily)),
          el("div", { class: "two" },
            section("Groups", table("Groups the agent is in", ["Group", "Today", "This month", "Paused"], groups,
              { id: "agent-groups", empty: "In no group." })),
            section("Tags today", table("Tags the agent spent under today", ["Key", "Value", { label: `Cost (${currency()})`, num: true },
              { label: "Calls", num: true }], tags, { id: "agent-tags", empty: "No tagged spend today." }))),
          section("Last calls", callsTable(data.last_calls || [])),
          section("Pause history", noticesTable("Paused and resumed notices, newest first", data.pause_history || [], "pause-history")),
          section("Notices", noticesTable("Notices about this agent, newest first", data.notices || [], "agent-notices")));
      },
    };
  }

  function mountTag(main, r) {
    const id = `${r.key}=${r.value}`;
    const target = { tag: id };
    const controls = pauseControls(target, `tag ${id}`);
    const body = el("div", {});
    main.replaceChildren(el("div", { id: "detail-head" }, el("div", { class: "titlebar" }, el("h1", { text: `Tag ${id}` }))),
      controls.form, body);
    return {
      async refresh(seq) {
        const data = await api("GET", `/api/v1/tags/${encodeURIComponent(r.key)}/${encodeURIComponent(r.value)}`);
        if (stale(seq)) return;
        const row = data.status;
        controls.update(row);
        $("#detail-head", main).replaceChildren(detailHeader(`Tag ${id}`, row));
        const agents = (data.agents || []).map((a) => el("tr", {},
          el("th", { scope: "row" }, el("a", { href: agentHref(a.agent_id), text: a.agent_id })),
          td(money(a.cost_usd, "cost_usd"), "num"), td(String(a.calls), "num")));
        fill(body, 
          pausedBox(row),
          el("div", { class: "cards" }, windowCard(row.daily, "Today"), windowCard(row.monthly, "This month")),
          section("Burn today", burnChart(data.burn, row.daily)),
          section("Agents spending under it today", table(`Agents that spent under ${id} today`,
            ["Agent", { label: `Cost (${currency()})`, num: true }, { label: "Calls", num: true }], agents,
            { id: "tag-agents", empty: "No spend today." })),
          section("Notices", noticesTable(`Notices about ${id}, newest first`, data.notices || [], "tag-notices")));
      },
    };
  }

  // ---------------------------------------------------------------- notices

  function mountNotices(main) {
    const st = noticesState;
    const state = el("select", { id: "notices-state" }, ["all", "pending", "sent", "failed", "skipped"].map((v) =>
      el("option", { value: v, text: v[0].toUpperCase() + v.slice(1), selected: v === st.state })));
    state.addEventListener("change", () => { st.state = state.value; refresh(); });
    const pending = el("p", { class: "summary", id: "notices-pending" });
    const configBox = el("div", { id: "config-box" });
    const tableBox = el("div", {});
    main.replaceChildren(
      el("div", { class: "titlebar" }, el("h1", { text: "Notices" })),
      el("form", { class: "filters", onsubmit: (e) => e.preventDefault() },
        el("div", { class: "field" }, el("label", { for: "notices-state", text: "State" }), state)),
      pending, configBox, tableBox);
    return {
      async refresh(seq) {
        const data = await api("GET", `/api/v1/notices${query({ state: st.state, limit: 100 })}`);
        if (stale(seq)) return;
        pending.replaceChildren(el("strong", { "data-field": "pending", text: String(data.pending) }),
          data.pending === 1 ? " notice pending delivery." : " notices pending delivery.");
        const c = data.config || {};
        configBox.replaceChildren(c.last_error
          ? el("div", { class: "card config-error", id: "config-last-error" },
            el("h2", { text: "Last rejected config edit" }),
            el("p", { class: "sub" }, time(c.last_error_at), c.source ? ` · ${c.source}` : ""),
            el("pre", { text: c.last_error }))
          : el("p", { class: "sub", id: "config-ok" },
            `Config generation ${c.generation ?? "—"}${c.source ? ` from ${c.source}` : ""}, loaded `, time(c.loaded_at),
            "; no rejected edit."));
        tableBox.replaceChildren(noticesTable("Notices, newest first", data.notices || [], "notices-table"));
      },
    };
  }

  // ---------------------------------------------------------------- reconciliation

  // The ledger against the providers' cost reports: GET /api/v1/reconcile
  // (the JSON budgetctl reconcile --format json prints), the last 7 UTC days.
  function mountReconcile(main) {
    const statusBox = el("div", { id: "reconcile-providers" });
    const tableBox = el("div", {});
    main.replaceChildren(el("div", { class: "titlebar" }, el("h1", { text: "Reconciliation" })),
      el("p", { class: "sub", text: "budgetd's ledger against each provider's own cost report, per UTC day and model." }),
      statusBox, tableBox);
    return {
      async refresh(seq) {
        const since = addDays(new Date(serverNow()).toISOString().slice(0, 10), -7);
        let data;
        try {
          data = await api("GET", `/api/v1/reconcile${query({ since })}`);
        } catch (err) {
          if (err.status !== 400) throw err;
          if (stale(seq)) return;
          statusBox.replaceChildren(el("p", { class: "summary", id: "reconcile-off", text: err.message }));
          tableBox.replaceChildren();
          return;
        }
        if (stale(seq)) return;
        statusBox.replaceChildren(el("ul", { class: "plain" }, (data.providers || []).map((p) =>
          el("li", { "data-provider": p.provider, "data-state": p.state },
            el("span", { class: `badge state-${p.state === "error" || p.state === "drift" ? "failed" : "sent"}`, text: p.state }),
            " ", p.line))));
        const headers = ["Day (UTC)", "Provider", "Model", "Class", { label: "Billed", num: true },
          { label: "budgetd", num: true }, { label: "Difference", num: true }, "Why", "To do"];
        const rows = [];
        for (const day of [...(data.days || [])].reverse()) {
          for (const r of day.rows) {
            rows.push(el("tr", { "data-day": day.day, "data-provider": day.provider, "data-model": r.model,
              "data-classification": r.classification, class: r.past_tolerance ? "past-tolerance" : "" },
            td(day.day), td(day.provider), td(r.model),
            td(el("span", { class: `badge state-${r.past_tolerance ? "failed" : "ok"}`, text: r.classification })),
            td(money(r.provider_cost_usd, "billed"), "num"), td(money(r.ledger_cost_usd, "budgetd"), "num"),
            td(money(r.drift_usd, "difference"), "num"), td(r.explanation || "—", "wrap"), td(r.suggestion || "—", "wrap")));
          }
        }
        tableBox.replaceChildren(table("Reconciled days, newest first", headers, rows,
          { id: "reconcile-table", empty: "Nothing compared in the last 7 days yet." }));
      },
    };
  }

  // ---------------------------------------------------------------- start

  window.addEventListener("hashchange", () => { clearError(); showStatus(""); route(true); });
  document.addEventListener("DOMContentLoaded", () => {
    $("#sign-out").addEventListener("click", signOut);
    setInterval(async () => {
      if (document.hidden) return;
      if (session && session.auth) {
        try {
          const before = session.signed_in;
          await loadSession();
          if (before !== session.signed_in) { await route(); return; }
        } catch { /* shown by the refresh below */ }
      }
      refresh();
    }, REFRESH_MS);
    route();
  });
})();
