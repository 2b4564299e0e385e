// The steerdns operator dashboard: plain JavaScript, no libraries, no build step.
//
// The token is asked for once, kept in sessionStorage (this tab only) and sent as an
// Authorization header to /api/v1/dashboard…; it is never put in a URL. Every POLL_MS the page
// asks for the overview (names, health, events after the last one it has) and for the selected
// name's view (map, exceptions, regions, heat map). Data is inserted as text, never as HTML.
"use strict";

const POLL_MS = 3000;
const KEEP_EVENTS = 500;
const TOKEN_KEY = "steerdns-dashboard-token";
// Distinct on white and on the pale map background; a policy's targets take them in order.
const PALETTE = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#b07aa1", "#76b7b2", "#edc948",
  "#ff9da7", "#9c755f", "#bab0ac"];
const NONE = "#c9ced6";

const $ = (id) => document.getElementById(id);
const state = { world: null, lastSeq: 0, events: [], name: null, names: [], timer: null, busy: false };

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") e.className = v;
    else e.setAttribute(k, v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function svg(tag, attrs) {
  const e = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  return e;
}

function token() { return sessionStorage.getItem(TOKEN_KEY); }

async function api(path) {
  const response = await fetch(path, {
    headers: { Authorization: `Bearer ${token()}` },
    cache: "no-store",
    credentials: "omit",
  });
  if (response.status === 401 || response.status === 403) {
    const body = await response.json().catch(() => ({}));
    throw Object.assign(new Error(body.error || `HTTP ${response.status}`), { auth: true });
  }
  if (!response.ok) {
    const body = await response.json().catch(() => ({}));
    throw new Error(body.error || `HTTP ${response.status}`);
  }
  return response.json();
}

function showLogin(message) {
  clearTimeout(state.timer);
  $("main").hidden = true;
  $("forget").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = message || "";
  $("status").textContent = "not connected";
  $("token").focus();
}

function showMain() {
  $("login").hidden = true;
  $("main").hidden = false;
  $("forget").hidden = false;
}

function time(ms) {
  if (!ms) return "";
  const d = new Date(ms);
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

function pct(x) { return `${Math.round(x * 1000) / 10}%`; }

function colours(view) {
  const map = new Map();
  view.targets.forEach((t, i) => map.set(t.id, PALETTE[i % PALETTE.length]));
  return map;
}

function chip(target, colourOf) {
  return el("span", { class: "chip" },
    el("span", { class: "swatch", "data-colour": target }), target);
}

// Swatch colours are set through the CSSOM (allowed by the page's CSP, unlike style attributes).
function paintSwatches(root, colourOf) {
  for (const s of root.querySelectorAll(".swatch[data-colour]")) {
    s.style.background = colourOf.get(s.dataset.colour) || NONE;
  }
}

function drawMap(view, colourOf) {
  const map = $("map");
  const world = state.world;
  if (!world) return;
  if (!map.dataset.drawn) {
    map.setAttribute("viewBox", `0 0 ${world.width} ${world.height}`);
    for (const [cc, , name, d] of world.countries) {
      const path = svg("path", { d, "data-cc": cc, "data-name": name });
      path.append(svg("title", {}));
      map.append(path);
    }
    map.dataset.drawn = "1";
  }
  const byCountry = new Map(view.countries.map((c) => [c.country, c]));
  for (const path of map.querySelectorAll("path")) {
    const c = byCountry.get(path.dataset.cc);
    const name = path.dataset.name;
    const title = path.querySelector("title");
    if (!c) {
      path.setAttribute("fill", NONE);
      path.removeAttribute("data-target");
      title.textContent = `${name}: no ISO country code`;
      continue;
    }
    path.setAttribute("fill", colourOf.get(c.target) || NONE);
    path.dataset.target = c.target;
    path.classList.toggle("absent", !c.in_geoip);
    path.classList.toggle("varies", c.varies);
    const why = c.rule || c.reason.replace(/_/g, " ");
    const down = c.down.length ? `; down: ${c.down.join(", ")}` : "";
    const absent = c.in_geoip ? "" : " (not in the GeoIP data)";
    title.textContent = `${name} (${c.country}) → ${c.target}: ${why}${down}${absent}`;
  }
  const legend = $("legend");
  legend.replaceChildren(...view.targets.map((t) => {
    const n = view.countries.filter((c) => c.target === t.id).length;
    return el("span", { class: "chip", "data-target": t.id },
      el("span", { class: "swatch", "data-colour": t.id }),
      `${t.id} (${n} ${n === 1 ? "country" : "countries"})`,
      t.state === "down" ? el("span", { class: "state down" }, " down") : null);
  }));
  paintSwatches(legend, colourOf);
}

function shares(list) {
  return list.map(([t, s]) => `${t} ${pct(s)}`).join(", ");
}

function stateCell(s) { return el("span", { class: `state ${s}` }, s); }

function drawTables(view, colourOf) {
  $("map-name").textContent = view.name;
  const exceptions = view.exceptions.map((e) => el("tr", { "data-network": e.network },
    el("td", {}, `${e.kind.toUpperCase()} ${e.network}`),
    el("td", {}, e.rule),
    el("td", {}, e.targets.join(" → ")),
    el("td", {}, chip(e.target, colourOf), e.down.length ? ` (down: ${e.down.join(", ")})` : "")));
  $("exceptions").tBodies[0].replaceChildren(...(exceptions.length ? exceptions :
    [el("tr", {}, el("td", { colspan: 4, class: "muted" }, "no ASN or CIDR rules"))]));

  $("targets").tBodies[0].replaceChildren(...view.targets.map((t) => el("tr", { "data-target": t.id },
    el("td", {}, chip(t.id, colourOf)), el("td", {}, t.answer), el("td", {}, stateCell(t.state)))));

  $("regions").tBodies[0].replaceChildren(...view.regions.map((r) => el("tr", { "data-region": r.region },
    el("td", {}, r.region),
    el("td", {}, chip(r.target, colourOf)),
    el("td", {}, shares(r.shares)),
    el("td", {}, r.reason.replace(/_/g, " "), r.down.length ? ` (down: ${r.down.join(", ")})` : ""),
    el("td", { class: "countries" }, r.countries.join(" ")))));

  const heat = $("heat");
  const targets = view.heat.targets;
  heat.tHead.replaceChildren(el("tr", {}, el("th", {}, "region"), ...targets.map((t) => el("th", {}, chip(t, colourOf)))));
  const values = [];
  for (const row of view.heat.rows) {
    for (const t of targets) {
      const c = row.cells[t];
      const v = c && (c.rum_p50_ms ?? c.probe_mean_ms);
      if (v !== undefined && v !== null) values.push(v);
    }
  }
  const lo = Math.min(...values);
  const hi = Math.max(...values);
  const rows = view.heat.rows.map((row) => el("tr", {}, el("td", {}, row.region), ...targets.map((t) => {
    const c = row.cells[t];
    if (!c) return el("td", { class: "cell muted" }, "–");
    const v = c.rum_p50_ms ?? c.probe_mean_ms;
    const parts = [];
    if (c.rum_p50_ms !== null && c.rum_p50_ms !== undefined) parts.push(`RUM p50 ${Math.round(c.rum_p50_ms)} ms, n=${c.rum_samples}`);
    if (c.rum_failure_rate) parts.push(`RUM failures ${pct(c.rum_failure_rate)}`);
    if (c.probe_mean_ms !== null && c.probe_mean_ms !== undefined) parts.push(`probes ${Math.round(c.probe_mean_ms)} ms, n=${c.probe_samples}`);
    if (c.probe_availability !== null && c.probe_availability !== undefined && c.probe_availability < 1) parts.push(`probe availability ${pct(c.probe_availability)}`);
    const td = el("td", { class: "cell", "data-target": t, title: parts.join("; ") },
      v === null || v === undefined ? "–" : `${Math.round(v)} ms`,
      el("span", { class: "sub" }, c.rum_p50_ms != null ? "RUM" : "probes"));
    if (v !== null && v !== undefined) {
      // Green (fast) to red (slow), relative to what this table shows.
      const x = hi > lo ? (v - lo) / (hi - lo) : 0;
      td.style.background = `hsl(${Math.round(120 * (1 - x))}, 65%, 82%)`;
    }
    return td;
  })));
  heat.tBodies[0].replaceChildren(...(rows.length ? rows :
    [el("tr", {}, el("td", { colspan: targets.length + 1, class: "muted" },
      "no measurements yet: probes and the RUM beacon fill this in"))]));
  paintSwatches(document, colourOf);
}

function drawHealth(health) {
  $("health").tBodies[0].replaceChildren(...(health.length ? health.map((h) => el("tr", { "data-target": h.target, "data-state": h.state },
    el("td", {}, h.target),
    el("td", {}, stateCell(h.state), h.forced ? " (operator override)" : ""),
    el("td", {}, time(h.since_unix_ms)),
    el("td", {}, h.locations.length ? h.locations.map((l) => el("span", { class: `loc ${l.state}`, title: l.reason || l.state, "data-agent": l.agent },
      `${l.agent}: ${l.state}`)) : el("span", { class: "muted" }, "no probe reports"))))
    : [el("tr", {}, el("td", { colspan: 4, class: "muted" }, "no health reported yet"))]));
}

function drawTimeline() {
  const items = state.events.slice().reverse().map((e) => el("li", { "data-kind": e.kind, "data-seq": e.seq },
    el("span", { class: "muted" }, time(e.at_unix_ms)),
    el("span", { class: `kind ${e.kind}` }, e.kind),
    el("strong", {}, e.subject),
    el("span", {}, e.message, e.reason ? el("span", { class: "reason" }, e.reason) : null)));
  $("timeline").replaceChildren(...(items.length ? items :
    [el("li", { class: "muted" }, "nothing has changed since this server started")]));
}

function drawNames(names) {
  const select = $("name");
  const wanted = decodeURIComponent(location.hash.replace(/^#name=/, "")) || state.name;
  const list = names.map((n) => n.name);
  if (list.join() !== state.names.join()) {
    select.replaceChildren(...list.map((n) => el("option", { value: n }, n)));
    state.names = list;
  }
  state.name = list.includes(wanted) ? wanted : (list.includes(state.name) ? state.name : list[0]);
  if (state.name) select.value = state.name;
}

async function poll() {
  if (state.busy) return;
  state.busy = true;
  try {
    const overview = await api(`/api/v1/dashboard?since=${state.lastSeq}`);
    showMain();
    drawNames(overview.names);
    if (overview.last_seq < state.lastSeq) state.events = []; // the server restarted
    state.events.push(...overview.events.filter((e) => e.seq > state.lastSeq));
    state.events = state.events.slice(-KEEP_EVENTS);
    state.lastSeq = overview.last_seq;
    drawHealth(overview.health);
    drawTimeline();
    if (state.name) {
      const view = await api(`/api/v1/dashboard/names/${encodeURIComponent(state.name)}`);
      const colourOf = colours(view);
      drawMap(view, colourOf);
      drawTables(view, colourOf);
    }
    $("status").textContent = `generation ${overview.generation} · ${overview.geoip} · updated ${time(Date.now()).slice(11)}`;
    document.body.dataset.generation = overview.generation;
  } catch (e) {
    if (e.auth) {
      sessionStorage.removeItem(TOKEN_KEY);
      showLogin(`The server refused the token: ${e.message}`);
      return;
    }
    $("status").textContent = `error: ${e.message} (retrying)`;
  } finally {
    state.busy = false;
  }
  clearTimeout(state.timer);
  state.timer = setTimeout(poll, POLL_MS);
}

async function start() {
  $("login-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $("token").value.trim());
    $("token").value = "";
    poll();
  });
  $("forget").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    showLogin("Token forgotten.");
  });
  $("name").addEventListener("change", () => {
    state.name = $("name").value;
    history.replaceState(null, "", `#name=${encodeURIComponent(state.name)}`);
    poll();
  });
  try {
    const response = await fetch("/dashboard/world.json");
    state.world = await response.json();
  } catch (e) {
    $("status").textContent = `cannot load the map outlines: ${e.message}`;
  }
  if (token()) poll(); else showLogin();
}

start();
