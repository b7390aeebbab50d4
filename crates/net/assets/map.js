// The operator's map (docs/OPERATIONS.md, "Map"). Starts from GET /v1/map, then follows
// GET /v1/map/stream (server-sent events) without reloading; reloads the state only when it
// comes back after being away (the server restarted or the network dropped) or when it lagged.
// Read-only: it calls no route that acts and holds no token.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const W = 1000, H = 700, MARGIN = 60;
const LANE_WINDOW_MS = 60000;
// On a galaxy spread over nodes: how often the page asks again which node runs which system
// (a hand-over moves systems between nodes), and the colours of the nodes, in their names' order.
const OWNERS_REFRESH_MS = 10000;
const NODE_COLOURS = ["#7fb3ff", "#ffb347", "#b39dff", "#7fffd4", "#ff8fab", "#d4e157", "#ffd54f", "#4dd0e1"];
const RECONNECT_MS = 2000;

const map = {
  systems: new Map(),   // slug -> {name, slug, x, y, population, inFlight, dilation, instances, el}
  lanes: new Map(),     // "a|b" (sorted slugs) -> {el, jumps: [ms, ...]}
  shards: [],
  servedHere: new Set(),
  spread: false,
  owners: new Map(),    // slug -> node name (spread galaxies only)
  node: null,           // this node's name (spread galaxies only)
  selected: null,
  source: null,
  awaySince: null,
  wasAway: false,
  messages: 0,
};

function el(name, attrs, parent) {
  const e = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (parent) parent.appendChild(e);
  return e;
}

function laneKey(a, b) { return a < b ? a + "|" + b : b + "|" + a; }

// The two axes of the stars' positions that spread the most, scaled into the view.
function project(systems) {
  const axes = [0, 1, 2].map(i => {
    const v = systems.map(s => s.position_ly[i]);
    const mean = v.reduce((a, b) => a + b, 0) / v.length;
    return { i, spread: v.reduce((a, b) => a + (b - mean) ** 2, 0) };
  }).sort((a, b) => b.spread - a.spread);
  const [ax, ay] = [axes[0].i, axes[1].i];
  const xs = systems.map(s => s.position_ly[ax]), ys = systems.map(s => s.position_ly[ay]);
  const [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
  const scale = Math.min((W - 2 * MARGIN) / ((x1 - x0) || 1), (H - 2 * MARGIN) / ((y1 - y0) || 1));
  return s => [MARGIN + (s.position_ly[ax] - x0) * scale, MARGIN + (s.position_ly[ay] - y0) * scale];
}

function radius(population) { return 6 + 3 * Math.sqrt(population); }

function draw(state) {
  const lanesG = document.getElementById("lanes"), systemsG = document.getElementById("systems");
  lanesG.replaceChildren();
  systemsG.replaceChildren();
  map.systems.clear();
  map.lanes.clear();
  map.servedHere = new Set(state.served_here);
  map.spread = state.spread;
  setOwners(state);
  const at = project(state.systems);
  for (const s of state.systems) {
    const [x, y] = at(s);
    map.systems.set(s.slug, { name: s.name, slug: s.slug, x, y, home: s.home,
      population: s.population, inFlight: s.in_transit_towards, dilation: s.dilation,
      instances: s.instances, lanes: s.lanes.map(l => l.to) });
  }
  const byName = new Map([...map.systems.values()].map(s => [s.name, s]));
  for (const s of map.systems.values()) {
    for (const to of s.lanes) {
      const t = byName.get(to);
      if (!t) continue;
      const key = laneKey(s.slug, t.slug);
      if (map.lanes.has(key)) continue;
      const line = el("line", { x1: s.x, y1: s.y, x2: t.x, y2: t.y, class: "lane", "data-lane": key }, lanesG);
      map.lanes.set(key, { el: line, jumps: [] });
    }
  }
  const now = Date.now();
  for (const l of state.lanes) {
    const lane = map.lanes.get(laneKey(l.from, l.to));
    // Spread over the window: the server counts them, the page only needs their number.
    if (lane) for (let i = 0; i < l.jumps; i++) lane.jumps.push(now - (i % state.lane_window_s) * 1000);
  }
  for (const s of map.systems.values()) {
    const g = el("g", { class: "system" + (s.home ? " home" : "") +
      (map.servedHere.has(s.slug) ? "" : " elsewhere"), "data-slug": s.slug,
      transform: `translate(${s.x},${s.y})` }, systemsG);
    s.circle = el("circle", { r: radius(s.population) }, g);
    const name = el("text", { class: "name", y: -radius(s.population) - 4 }, g);
    name.textContent = s.name;
    s.popText = el("text", { class: "pop", y: 4 }, g);
    s.instText = el("text", { class: "instances", y: radius(s.population) + 12 }, g);
    s.el = g;
    g.addEventListener("click", () => openPanel(s.slug));
    paintSystem(s);
    paintOwner(s);
  }
  setShards(state.shards);
  paintLanes();
}

function paintSystem(s) {
  const r = radius(s.population);
  s.circle.setAttribute("r", r);
  s.el.querySelector("text.name").setAttribute("y", -r - 4);
  s.instText.setAttribute("y", r + 12);
  s.popText.textContent = String(s.population);
  s.el.setAttribute("data-population", String(s.population));
  const extra = (s.instances || []).filter(i => i.instance > 1);
  s.instText.textContent = extra.map(i => `${i.name}: ${i.population}`).join("  ");
}

// Which node runs which system (a spread galaxy): one colour per node, in their names' order.
function setOwners(state) {
  map.owners = new Map(Object.entries(state.owners || {}));
  map.node = state.node || null;
}
function nodeColour(node) {
  const nodes = [...new Set(map.owners.values())].sort();
  const i = nodes.indexOf(node);
  return i < 0 ? null : NODE_COLOURS[i % NODE_COLOURS.length];
}
function paintOwner(s) {
  const node = map.owners.get(s.slug);
  if (node) s.el.setAttribute("data-node", node); else s.el.removeAttribute("data-node");
  const colour = map.spread && node ? nodeColour(node) : null;
  if (colour) s.circle.style.fill = colour; else s.circle.style.removeProperty("fill");
}
async function refreshOwners() {
  if (!map.spread) return;
  try {
    const state = await fetchJson("/v1/map");
    setOwners(state);
    map.servedHere = new Set(state.served_here);
    for (const s of map.systems.values()) paintOwner(s);
    setShards(state.shards);
  } catch (e) { /* away: the stream's reconnection reloads everything */ }
}

// The figures of every shard this node runs: populations, jumps in flight, tick p99, dilation.
function setShards(shards) {
  map.shards = shards;
  const bySystem = new Map();
  for (const f of shards) {
    if (!bySystem.has(f.system)) bySystem.set(f.system, []);
    bySystem.get(f.system).push(f);
  }
  for (const [slug, fs] of bySystem) {
    const s = map.systems.get(slug);
    if (!s) continue;
    s.population = fs.reduce((a, f) => a + f.population, 0);
    s.inFlight = fs.reduce((a, f) => a + f.in_flight, 0);
    s.dilation = Math.min(...fs.map(f => f.dilation));
    s.instances = fs.map(f => ({ instance: f.instance, name: f.name, population: f.population, dilation: f.dilation }));
    paintSystem(s);
  }
  const body = document.querySelector("#shards tbody");
  body.replaceChildren();
  for (const f of shards) {
    const tr = document.createElement("tr");
    tr.setAttribute("data-shard", f.system + "." + f.instance);
    const node = map.spread ? (map.node ? `${map.node} (this node)` : "this node") : "";
    for (const [v, cls] of [[f.name, ""], [f.population, "num"], [(f.tick_p99_us / 1000).toFixed(2) + " ms", "num"],
                            [f.dilation.toFixed(2), "num"], [node, ""]]) {
      const td = document.createElement("td");
      td.textContent = v;
      if (cls) td.className = cls;
      tr.appendChild(td);
    }
    body.appendChild(tr);
  }
  if (map.spread) {
    const elsewhere = [...map.systems.values()].filter(s => !map.servedHere.has(s.slug));
    for (const s of elsewhere) {
      const tr = document.createElement("tr");
      tr.innerHTML = "<td></td><td class=num>-</td><td class=num>-</td><td class=num>-</td><td></td>";
      tr.firstChild.textContent = s.name;
      tr.lastChild.textContent = map.owners.get(s.slug) || "another node (being handed over)";
      body.appendChild(tr);
    }
  }
  paintTotals();
}

function paintTotals() {
  let players = 0, inFlight = 0;
  for (const s of map.systems.values()) { players += s.population; inFlight += s.inFlight; }
  const lit = [...map.lanes.values()].reduce((a, l) => a + l.jumps.length, 0);
  const t = document.getElementById("totals");
  t.replaceChildren();
  for (const [label, value, id] of [["players", players, "total-players"], ["jumps in flight", inFlight, "total-in-flight"],
                                    ["jumps in the last minute", lit, "total-jumps"], ["systems", map.systems.size, "total-systems"]]) {
    const div = document.createElement("div");
    div.innerHTML = `<span class="muted"></span>: <b id="${id}"></b>`;
    div.firstChild.textContent = label;
    div.lastChild.textContent = String(value);
    t.appendChild(div);
  }
  if (map.spread) {
    const div = document.createElement("div");
    div.className = "muted";
    div.textContent = `this node serves ${map.servedHere.size} of ${map.systems.size} systems (grey: no node holds it now)`;
    t.appendChild(div);
    const legend = document.createElement("div");
    legend.id = "nodes";
    const counts = new Map();
    for (const node of map.owners.values()) counts.set(node, (counts.get(node) || 0) + 1);
    for (const node of [...counts.keys()].sort()) {
      const item = document.createElement("span");
      item.className = "node";
      item.setAttribute("data-node", node);
      item.innerHTML = `<i class="swatch"></i> <span></span>`;
      item.firstChild.style.background = nodeColour(node);
      item.lastChild.textContent = `${node}${node === map.node ? " (this node)" : ""}: ${counts.get(node)}`;
      legend.appendChild(item);
    }
    t.appendChild(legend);
  }
}

function paintLanes() {
  const now = Date.now();
  for (const lane of map.lanes.values()) {
    lane.jumps = lane.jumps.filter(t => now - t < LANE_WINDOW_MS);
    const n = lane.jumps.length;
    lane.el.classList.toggle("lit", n > 0);
    lane.el.setAttribute("stroke-width", n > 0 ? String(Math.min(8, 1.5 + Math.log2(1 + n))) : "1");
    lane.el.setAttribute("data-jumps", String(n));
  }
}

async function fetchJson(path) {
  const r = await fetch(path, { cache: "no-store" });
  const body = await r.json().catch(() => null);
  if (!r.ok) throw new Error(body && body.error ? body.error.message : `${path}: ${r.status}`);
  return body;
}

async function load() {
  draw(await fetchJson("/v1/map"));
  if (map.selected) openPanel(map.selected);
}

async function openPanel(slug) {
  map.selected = slug;
  for (const s of map.systems.values()) s.el.classList.toggle("selected", s.slug === slug);
  const panel = document.getElementById("panel");
  panel.hidden = false;
  let p;
  try {
    p = await fetchJson("/v1/map/system?name=" + encodeURIComponent(slug));
  } catch (e) {
    panel.replaceChildren();
    const h = document.createElement("h2");
    h.textContent = map.systems.get(slug) ? map.systems.get(slug).name : slug;
    const m = document.createElement("p");
    m.className = "muted";
    m.textContent = e.message;
    panel.append(h, m);
    return;
  }
  panel.replaceChildren();
  panel.setAttribute("data-slug", p.slug);
  const h = document.createElement("h2");
  h.textContent = `${p.name} (${p.market.economy})`;
  const table = document.createElement("table");
  table.className = "market";
  table.innerHTML = "<thead><tr><th>good</th><th class=num>stock</th><th class=num>buy</th><th class=num>sell</th></tr></thead>";
  const tb = document.createElement("tbody");
  for (const q of p.market.goods) {
    const tr = document.createElement("tr");
    tr.setAttribute("data-good", q.good);
    for (const [v, cls] of [[q.good, ""], [q.stock, "num"], [q.buy_cr ?? "-", "num"], [q.sell_cr ?? "-", "num"]]) {
      const td = document.createElement("td");
      td.textContent = String(v);
      if (cls) td.className = cls;
      tr.appendChild(td);
    }
    tb.appendChild(tr);
  }
  table.appendChild(tb);
  const ph = document.createElement("h2");
  ph.textContent = `Players (${p.players.length}${p.truncated ? "+" : ""})`;
  const players = document.createElement("ul");
  players.className = "players";
  for (const name of p.players) {
    const li = document.createElement("li");
    li.textContent = name;
    players.appendChild(li);
  }
  const eh = document.createElement("h2");
  eh.textContent = "Recent events";
  const events = document.createElement("ul");
  events.className = "events";
  for (const ev of p.events) events.appendChild(eventItem(ev));
  panel.append(h, table, ph, players, eh, events);
}

function eventItem(ev) {
  const li = document.createElement("li");
  const when = new Date(ev.at_ms).toLocaleTimeString();
  const what = { departed: "left for", arrived: "arrived from", joined: "joined", destroyed: "was destroyed by" }[ev.kind] || ev.kind;
  li.textContent = `${when} ${ev.player} ${what}${ev.other ? " " + ev.other : ""}`;
  return li;
}

function onMessage(m) {
  map.messages += 1;
  if (m.type === "jump") {
    const lane = map.lanes.get(laneKey(m.from, m.to));
    if (lane) lane.jumps.push(Date.now());
    paintLanes();
  } else if (m.type === "figures") {
    setShards(m.shards);
  } else if (m.type === "event") {
    const panel = document.getElementById("panel");
    if (map.selected === m.system && !panel.hidden) {
      const list = panel.querySelector("ul.events");
      if (list) list.appendChild(eventItem(m.event));
    }
  }
}

function setConnection(kind, text) {
  const c = document.getElementById("conn");
  c.className = "conn " + kind;
  c.textContent = text;
}

function connect() {
  if (map.source) map.source.close();
  const source = new EventSource("/v1/map/stream");
  map.source = source;
  source.addEventListener("hello", async () => {
    if (map.wasAway) {
      const away = ((Date.now() - map.awaySince) / 1000).toFixed(1);
      document.getElementById("away").textContent =
        `the server was away for ${away} s (since ${new Date(map.awaySince).toLocaleTimeString()}); reloaded`;
      document.body.setAttribute("data-reconnected", String(Number(document.body.getAttribute("data-reconnected") || 0) + 1));
      map.wasAway = false;
      try { await load(); } catch (e) { /* the next message or reconnection tries again */ }
    }
    setConnection("live", "live");
  });
  source.addEventListener("map", e => onMessage(JSON.parse(e.data)));
  source.addEventListener("lagged", () => load().catch(() => {}));
  source.onerror = () => {
    if (!map.wasAway) {
      map.wasAway = true;
      map.awaySince = Date.now();
    }
    document.getElementById("away").textContent =
      `the server is away since ${new Date(map.awaySince).toLocaleTimeString()}; reconnecting`;
    setConnection("away", "away");
    // The browser retries by itself while the stream is CONNECTING; once CLOSED it does not.
    if (source.readyState === EventSource.CLOSED) setTimeout(connect, RECONNECT_MS);
  };
}

document.getElementById("search").addEventListener("submit", async e => {
  e.preventDefault();
  const name = document.getElementById("search-name").value.trim();
  const found = document.getElementById("found");
  for (const s of map.systems.values()) s.el.classList.remove("found");
  if (!name) return;
  try {
    const p = await fetchJson("/v1/map/player?name=" + encodeURIComponent(name));
    const slug = p.system || p.towards;
    const s = map.systems.get(slug);
    if (s) s.el.classList.add("found");
    found.textContent = p.system ? `${p.player} is in ${s ? s.name : slug}` : `${p.player} is jumping to ${s ? s.name : slug}`;
    if (p.system) openPanel(p.system);
  } catch (err) {
    found.textContent = err.message;
  }
});

setInterval(() => { paintLanes(); paintTotals(); }, 1000);
setInterval(refreshOwners, OWNERS_REFRESH_MS);
load().then(connect, e => { setConnection("away", "away"); map.wasAway = true; map.awaySince = Date.now(); connect(); });
