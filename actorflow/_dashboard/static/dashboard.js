// actorflow dashboard: draws the laid-out graph (api/layout) as SVG once, then updates
// it from the snapshots the server sends (events, server-sent). No framework, no CDN.
"use strict";

(function () {
  const NS = "http://www.w3.org/2000/svg";
  const COLOURS = ["#1c7ed6", "#f08c00", "#2b8a3e", "#ae3ec9", "#e8590c", "#0c8599"];
  const nodes = new Map();
  const edges = new Map();
  const processColour = new Map();
  let layout = null;
  let snapshot = null;
  let selected = null;
  let redrawing = false;
  const ENDED = new Set(["done", "failed", "cancelled"]);
  const RETRY_MS = 2000;
  const ANSWER_MS = 5000; // a question the server has not answered by then: no answer
  const ENDED_ACTOR = new Set(["terminated", "invalid"]);

  function svg(tag, attributes, parent) {
    const element = document.createElementNS(NS, tag);
    for (const [key, value] of Object.entries(attributes || {})) {
      element.setAttribute(key, String(value));
    }
    if (parent) parent.appendChild(element);
    return element;
  }

  function html(tag, className, text, parent) {
    const element = document.createElement(tag);
    if (className) element.className = className;
    if (text !== undefined && text !== null) element.textContent = String(text);
    if (parent) parent.appendChild(element);
    return element;
  }

  function count(value) {
    return typeof value === "number" ? value.toLocaleString("en-US") : "–";
  }

  function rate(value) {
    if (typeof value !== "number") return "–";
    for (const [limit, suffix] of [[1e9, "G"], [1e6, "M"], [1e3, "k"]]) {
      if (value >= limit) return (value / limit).toFixed(1) + suffix + "/s";
    }
    return value.toFixed(1) + "/s";
  }

  function clock(seconds) {
    const s = Math.max(0, Math.floor(seconds));
    const h = Math.floor(s / 3600);
    const m = Math.floor((s % 3600) / 60);
    const rest = String(s % 60).padStart(2, "0");
    return h ? `${h}:${String(m).padStart(2, "0")}:${rest}` : `${m}:${rest}`;
  }

  function progressText(progress) {
    if (!Array.isArray(progress)) return null;
    const [done, total] = progress;
    if (typeof total === "number" && total > 0) {
      return { fraction: Math.min(1, done / total), text: `${Math.round((100 * done) / total)}%` };
    }
    return { fraction: null, text: count(done) };
  }

  function blockedOn(actor) {
    // "input", or "output:<port>": what a blocked actor waits for; then, for a fused
    // actor, whose task runs it.
    const on = actor.blocked_on;
    const fused = actor.fused_into ? `  ·  in ${actor.fused_into}'s task` : "";
    if (!on) return fused;
    return (on.startsWith("output:") ? ` on output ${on.slice(7)}` : ` on ${on}`) + fused;
  }

  // A module may be named "constructor" or "__proto__": a snapshot's maps are read
  // through this, never by indexing (which would find Object.prototype's members).
  function own(object, key) {
    return object && Object.hasOwn(object, key) ? object[key] : undefined;
  }

  function cut(text, length) {
    return text.length > length ? text.slice(0, length - 1) + "…" : text;
  }

  function colourOf(process) {
    if (!processColour.has(process)) {
      processColour.set(process, COLOURS[processColour.size % COLOURS.length]);
    }
    return processColour.get(process);
  }

  // -- drawing the graph once -------------------------------------------------------

  function ellipsize(text, full, width) {
    // The longest start of ``full`` (with "…") that fits ``width`` pixels as drawn: a
    // count of characters cannot tell wide letters (W, 日本, emoji) from narrow ones.
    text.textContent = cut(full, 40);
    if (text.getComputedTextLength() <= width) return;
    let low = 0;
    let high = Math.min(full.length, 40);
    while (low < high) {
      const middle = Math.ceil((low + high) / 2);
      text.textContent = `${full.slice(0, middle)}…`;
      if (text.getComputedTextLength() <= width) low = middle;
      else high = middle - 1;
    }
    text.textContent = `${full.slice(0, low)}…`;
  }

  function drawNode(canvas, module) {
    const { x, y, w, h } = module;
    const g = svg("g", { class: "node", "data-actor": module.name, tabindex: 0 }, canvas);
    svg("title", {}, g).textContent = module.name;
    svg("rect", { class: "card", x, y, width: w, height: h, rx: 9 }, g);
    const stripe = svg("rect", { x: x + 1, y: y + 8, width: 4, height: h - 16, rx: 2, fill: "none" }, g);
    const name = svg("text", { class: "name", x: x + 14, y: y + 22 }, g);
    ellipsize(name, module.name, w - 86 - 14 - 8); // ends before the state badge
    const cls = svg("text", { class: "cls", x: x + 14, y: y + 38 }, g);
    cls.textContent = cut(module.class + (module.kind ? ` · ${module.kind}` : ""), 40);
    const pill = svg("rect", { class: "pill unknown", x: x + w - 86, y: y + 9, width: 76, height: 18 }, g);
    const pillText = svg("text", { class: "pill-text", x: x + w - 48, y: y + 22, "text-anchor": "middle" }, g);
    const line1 = svg("text", { class: "line", x: x + 14, y: y + 58 }, g);
    const line2 = svg("text", { class: "line", x: x + 14, y: y + 75 }, g);
    const barBg = svg("rect", { class: "bar-bg", x: x + 14, y: y + 86, width: w - 72, height: 6, rx: 3 }, g);
    const bar = svg("rect", { class: "bar", x: x + 14, y: y + 86, width: 0, height: 6, rx: 3 }, g);
    const barText = svg("text", { class: "line", x: x + w - 12, y: y + 93, "text-anchor": "end" }, g);
    const error = svg("text", { class: "error", x: x + 14, y: y + 93 }, g);
    const where = svg("text", { class: "where", x: x + 14, y: y + h - 10 }, g);
    g.addEventListener("click", () => select(module.name));
    g.addEventListener("keydown", (event) => {
      if (event.key === "Enter" || event.key === " ") select(module.name);
    });
    nodes.set(module.name, { module, g, stripe, pill, pillText, line1, line2, barBg, bar, barText, error, where });
  }

  function curve(link, boxes, bottom) {
    const a = boxes.get(link.source);
    const b = boxes.get(link.target);
    if (!a || !b) return null;
    if (a === b) {
      // A module fed back to itself: a loop at its lower right corner, out of its right
      // side and back in at its bottom (within the gaps between layers and rows).
      const p0 = [a.x + a.w, a.y + a.h - 40];
      const p3 = [a.x + a.w - 50, a.y + a.h];
      return [p0, [a.x + a.w + 64, p0[1]], [p3[0], a.y + a.h + 28], p3];
    }
    if (b.x === a.x) {
      // Back to a module of the same layer: an arc out to the right of both.
      const p0 = [a.x + a.w, a.y + a.h / 2];
      const p3 = [b.x + b.w, b.y + b.h / 2];
      const out = a.x + a.w + 50 + Math.min(120, Math.abs(p3[1] - p0[1]) / 6);
      return [p0, [out, p0[1]], [out, p3[1]], p3];
    }
    if (link.feedback || b.x < a.x) {
      const p0 = [a.x + a.w / 2, a.y + a.h];
      const p3 = [b.x + b.w / 2, b.y + b.h];
      return [p0, [p0[0], bottom], [p3[0], bottom], p3];
    }
    const p0 = [a.x + a.w, a.y + a.h / 2];
    const p3 = [b.x, b.y + b.h / 2];
    const dx = Math.max(30, (p3[0] - p0[0]) / 2);
    return [p0, [p0[0] + dx, p0[1]], [p3[0] - dx, p3[1]], p3];
  }

  function arrowHead(from, to) {
    // A head at ``to`` pointing the way the curve arrives (from its last control point).
    const angle = Math.atan2(to[1] - from[1], to[0] - from[0]);
    const at = (turn) => [
      to[0] - 9 * Math.cos(angle + turn),
      to[1] - 9 * Math.sin(angle + turn),
    ];
    return [to, at(0.5), at(-0.5)].map((p) => `${p[0].toFixed(1)},${p[1].toFixed(1)}`).join(" ");
  }

  function drawEdge(canvas, link, boxes, bottom) {
    const points = curve(link, boxes, bottom);
    if (!points) return;
    const [p0, p1, p2, p3] = points;
    const kinds = ["edge", link.remote ? "remote" : "", link.feedback ? "feedback" : ""];
    const g = svg("g", { class: kinds.join(" ").trim(), "data-link": link.name }, canvas);
    svg("title", {}, g).textContent =
      `${link.name}${link.remote ? " (remote" + (link.url ? ": " + link.url : "") + ")" : ""}`;
    svg("path", { d: `M${p0} C${p1} ${p2} ${p3}` }, g);
    svg("polygon", { class: "arrow", points: arrowHead(p2, p3) }, g);
    // The fill is drawn at the curve's middle (beside a module's loop to itself).
    const aside = link.source === link.target ? 34 : 0;
    const mx = (p0[0] + 3 * p1[0] + 3 * p2[0] + p3[0]) / 8 + aside;
    const my = (p0[1] + 3 * p1[1] + 3 * p2[1] + p3[1]) / 8;
    svg("rect", { class: "fill-bg", x: mx - 20, y: my - 5, width: 40, height: 10, rx: 2 }, g);
    const bar = svg("rect", { class: "fill-bar", x: mx - 19, y: my - 4, width: 0, height: 8 }, g);
    const label = svg("text", { class: "label", x: mx, y: my + 17, "text-anchor": "middle" }, g);
    if (link.remote) {
      const tag = svg("text", { class: "tag", x: mx, y: my - 9, "text-anchor": "middle" }, g);
      tag.textContent = "redis";
    }
    edges.set(link.name, { link, bar, label });
  }

  function draw(data) {
    document.getElementById("graph-name").textContent = data.graph;
    document.title = `${data.graph} · actorflow`;
    const world = document.getElementById("world");
    world.replaceChildren();
    nodes.clear();
    edges.clear();
    const boxes = new Map(data.modules.map((m) => [m.name, m]));
    const lowest = Math.max(0, ...data.modules.map((m) => m.y + m.h));
    const bottom = lowest + 50;
    const under = svg("g", { class: "edges" }, world);
    for (const link of data.links) drawEdge(under, link, boxes, bottom);
    const over = svg("g", { class: "nodes" }, world);
    for (const module of data.modules) drawNode(over, module);
    if (!view.placed) fit(data.modules);
  }

  // -- pan and zoom -------------------------------------------------------------------------

  // The drawing is moved and scaled as a whole: wheel to zoom (about the pointer), drag
  // to pan, "fit" to see it all, but never smaller than MIN_FIT, where a module's text
  // is still read: a large graph is then seen in part, and panned.
  const MIN_FIT = 0.6;
  const MIN_ZOOM = 0.1;
  const MAX_ZOOM = 4;
  const view = { x: 0, y: 0, k: 1, placed: false };

  function place(x, y, k) {
    view.k = Math.min(MAX_ZOOM, Math.max(MIN_ZOOM, k));
    view.x = x;
    view.y = y;
    view.placed = true;
    const world = document.getElementById("world");
    world.setAttribute("transform", `translate(${view.x.toFixed(1)},${view.y.toFixed(1)}) scale(${view.k.toFixed(4)})`);
    document.getElementById("zoom-level").textContent = `${Math.round(view.k * 100)}%`;
  }

  function fit(modules = layout ? layout.modules : []) {
    const canvas = document.getElementById("canvas");
    const box = document.getElementById("world").getBBox();
    const width = canvas.clientWidth;
    const height = canvas.clientHeight;
    if (!box.width || !width || !height) return;
    const pad = 16;
    const k = Math.max(MIN_FIT, Math.min(1, (width - 2 * pad) / box.width, (height - 2 * pad) / box.height));
    // Centred where it fits; where it does not, from its first layer (left), and with
    // that layer's middle in view (a source fanning out to 500 sinks sits halfway down
    // its column: the top of the drawing would not show it).
    const x = k * box.width <= width - 2 * pad ? (width - k * box.width) / 2 : pad;
    let y = (height - k * box.height) / 2 - k * box.y;
    if (k * box.height > height - 2 * pad) {
      const left = Math.min(...modules.map((m) => m.x));
      const first = modules.filter((m) => m.x === left);
      const top = first.length ? Math.min(...first.map((m) => m.y)) : box.y;
      const bottom = first.length ? Math.max(...first.map((m) => m.y + m.h)) : box.y;
      const middle = Math.min((top + bottom) / 2, top + (height - 2 * pad) / (2 * k));
      y = Math.min(pad - k * box.y, Math.max(height - pad - k * (box.y + box.height), height / 2 - k * middle));
    }
    place(x - k * box.x, y, k);
  }

  function zoomAt(px, py, factor) {
    const k = Math.min(MAX_ZOOM, Math.max(MIN_ZOOM, view.k * factor));
    const scale = k / view.k;
    place(px - (px - view.x) * scale, py - (py - view.y) * scale, k);
  }

  function panAndZoom() {
    const canvas = document.getElementById("canvas");
    canvas.addEventListener("wheel", (event) => {
      event.preventDefault();
      const at = canvas.getBoundingClientRect();
      zoomAt(event.clientX - at.left, event.clientY - at.top, Math.exp(-event.deltaY / 500));
    }, { passive: false });
    let drag = null;
    canvas.addEventListener("pointerdown", (event) => {
      if (event.button !== 0) return;
      drag = { x: event.clientX, y: event.clientY, vx: view.x, vy: view.y, moved: false };
    });
    canvas.addEventListener("pointermove", (event) => {
      if (!drag) return;
      const dx = event.clientX - drag.x;
      const dy = event.clientY - drag.y;
      if (!drag.moved && Math.hypot(dx, dy) < 4) return;
      if (!drag.moved) canvas.setPointerCapture(event.pointerId);
      drag.moved = true;
      canvas.classList.add("panning");
      place(drag.vx + dx, drag.vy + dy, view.k);
    });
    const end = () => {
      if (drag && drag.moved) {
        // The click that ends a drag selects nothing.
        canvas.addEventListener("click", (e) => e.stopPropagation(), { capture: true, once: true });
      }
      drag = null;
      canvas.classList.remove("panning");
    };
    canvas.addEventListener("pointerup", end);
    canvas.addEventListener("pointercancel", end);
    const middle = () => [canvas.clientWidth / 2, canvas.clientHeight / 2];
    document.getElementById("zoom-in").addEventListener("click", () => zoomAt(...middle(), 1.25));
    document.getElementById("zoom-out").addEventListener("click", () => zoomAt(...middle(), 0.8));
    document.getElementById("zoom-fit").addEventListener("click", () => fit());
  }

  // -- updating it from each snapshot -------------------------------------------------

  function updateNode(view, actor) {
    const state = actor ? actor.state : "unknown";
    // Red once its module has failed: the error stays shown, restarted or not.
    const failed = !!actor && (state === "invalid" || (actor.errors > 0 && !!actor.error));
    view.g.classList.toggle("failed", failed);
    view.g.classList.toggle("elsewhere", !actor);
    // Its process has stopped reporting (killed, cut off): what it said last is greyed.
    const stale = !!actor && !!actor.stale;
    view.g.classList.toggle("stale", stale);
    view.g.dataset.state = state;
    // Blocked on input is a module with nothing to do; on output, one held back.
    const waiting = actor && actor.blocked_on === "input" ? " waiting" : "";
    view.pill.setAttribute("class", stale ? "pill stale" : `pill ${state}${waiting}`);
    view.pillText.textContent = stale ? "silent" : state;
    if (!actor) {
      view.line1.textContent = "runs in another process";
      view.line2.textContent = "";
      view.where.textContent = "not reported here";
      view.stripe.setAttribute("fill", "none");
      setBar(view, null);
      view.error.textContent = "";
      return;
    }
    const blocked = blockedOn(actor);
    const taken = actor.kind === "source" ? "" : `  ·  in ${count(actor.received)}`;
    // A sink emits nothing: "out 0" would read as something lost.
    const given = actor.kind === "sink" ? "" : `  ·  out ${count(actor.emitted)}`;
    const pace = stale ? "no report" : rate(actor.rate);
    view.line1.textContent = `${pace}${taken}${given}${blocked}`;
    view.line2.textContent =
      `mailbox ${count(actor.depth)}  ·  restarts ${actor.restarts}  ·  errors ${actor.errors}  ·  dead ${actor.dead}`;
    view.error.textContent = failed && actor.error ? cut(actor.error, 44) : "";
    setBar(view, failed ? null : progressText(actor.progress));
    const here = snapshot && actor.process === snapshot.process;
    const instances = Array.isArray(actor.instances) ? actor.instances.length : 1;
    view.where.textContent = instances > 1
      ? `shared: ${instances} processes`
      : Object.keys(snapshot.processes).length > 1 ? `${here ? "here" : "process"} ${actor.process}` : "";
    view.stripe.setAttribute("fill", Object.keys(snapshot.processes).length > 1 ? colourOf(actor.process) : "none");
  }

  function setBar(view, progress) {
    const full = Number(view.barBg.getAttribute("width"));
    const shown = progress !== null;
    view.barBg.style.visibility = shown ? "visible" : "hidden";
    view.bar.style.visibility = shown && progress.fraction !== null ? "visible" : "hidden";
    view.bar.setAttribute("width", shown && progress.fraction !== null ? full * progress.fraction : 0);
    view.barText.textContent = shown ? progress.text : "";
  }

  function updateEdge(view, link) {
    if (!link) {
      view.bar.setAttribute("width", 0);
      view.label.textContent = "";
      return;
    }
    const fill = Math.max(0, Math.min(1, link.fill));
    view.bar.setAttribute("width", 38 * fill);
    view.bar.setAttribute("class", `fill-bar${fill >= 0.95 ? " full" : fill >= 0.6 ? " high" : ""}`);
    view.label.textContent = `${count(link.depth)}/${count(link.capacity)}`;
  }

  function updateHeader(data) {
    const state = document.getElementById("system-state");
    state.textContent = data.state;
    state.className = `badge ${data.state}`;
    document.getElementById("elapsed").textContent = clock(data.time - data.started_at);
    document.getElementById("dropped").textContent = count(data.dropped);
    const list = document.getElementById("processes");
    list.replaceChildren();
    const names = Object.keys(data.processes);
    if (names.length < 2) return;
    for (const name of names) {
      const process = own(data.processes, name);
      const chip = html("span", `process${process.gone ? " gone" : ""}`, null, list);
      const swatch = html("i", null, null, chip);
      swatch.style.background = colourOf(name);
      chip.append(`${process.local ? "here: " : ""}${name} · ${process.state || "?"}`);
      chip.title = `modules: ${(process.here || []).join(", ")}`;
    }
  }

  async function redraw() {
    // A link was added or removed, or the server is another run: lay it out again.
    redrawing = true;
    const fresh = await fetched("api/layout");
    redrawing = false;
    if (!fresh) return; // the server went meanwhile: the next status it sends tries again
    draw(fresh);
    layout = fresh;
    if (selected && !nodes.has(selected)) selected = null;
    // (A status of another run than the layout's waits for the next status.)
    if (snapshot && isDrawn(snapshot)) update(snapshot);
  }

  function isDrawn(data) {
    return layout && data.run === layout.run && data.drawing === layout.drawing;
  }

  function update(data) {
    // Another drawing of this run (a link added), or another run on the same port (the
    // server was restarted, with another graph perhaps): lay it out again.
    if (!isDrawn(data) && !redrawing) redraw();
    snapshot = data;
    updateHeader(data);
    for (const [name, view] of nodes) updateNode(view, own(data.actors, name));
    for (const [name, view] of edges) updateEdge(view, own(data.links, name));
    if (selected && nodes.has(selected)) select(selected);
  }

  // -- the selected actor -----------------------------------------------------------------

  function select(name) {
    selected = name;
    for (const [other, view] of nodes) view.g.classList.toggle("selected", other === name);
    showDetail(name);
  }

  function row(table, label, value) {
    const tr = html("tr", null, null, table);
    html("td", null, label, tr);
    html("td", null, value, tr);
  }

  function showDetail(name) {
    const panel = document.getElementById("detail");
    const module = nodes.get(name).module;
    const actor = snapshot ? own(snapshot.actors, name) : undefined;
    panel.replaceChildren();
    html("h2", null, name, panel);
    html("div", "sub", `${module.class}${actor ? " · " + actor.process : ""}`, panel);
    const state = actor ? actor.state : "unknown";
    const waiting = actor && actor.blocked_on === "input" ? " waiting" : "";
    html("span", `badge ${state}${waiting}`, state + (actor ? blockedOn(actor) : ""), panel);
    if (actor && actor.stale) {
      html("p", "empty", "Its process has stopped reporting: these are the last numbers it sent.", panel);
    }
    if (!actor) {
      html("p", "empty", "This module runs in another process that does not report here.", panel);
      return;
    }
    if (actor.error) {
      html("h3", null, "last error", panel);
      html("div", "error-box", actor.error, panel);
    }
    const table = html("table", null, null, panel);
    const progress = progressText(actor.progress);
    row(table, "rate", rate(actor.rate));
    row(table, "received", count(actor.received));
    row(table, "emitted", count(actor.emitted));
    row(table, "mailbox", count(actor.depth));
    row(table, "progress", progress ? progress.text : "–");
    row(table, "restarts", count(actor.restarts));
    row(table, "errors", count(actor.errors));
    row(table, "dead letters", count(actor.dead));
    row(table, "dropped", count(actor.dropped));
    if (Array.isArray(actor.instances) && actor.instances.length > 1) {
      for (const instance of actor.instances) {
        const pace = instance.stale ? "silent" : rate(instance.rate);
        row(table, `in ${instance.process}`,
          `${instance.state} · ${pace} · in ${count(instance.received)} · out ${count(instance.emitted)}`);
      }
    }
    if (actor.reason && ENDED_ACTOR.has(actor.state)) row(table, "ended", actor.reason);
    for (const [key, value] of Object.entries(actor.info || {})) row(table, key, JSON.stringify(value));
    html("h3", null, "recent events", panel);
    const list = html("ol", "events", null, panel);
    list.id = "events";
    for (const event of [...actor.events].reverse()) {
      const item = html("li", event.level, null, list);
      const time = html("time", null, new Date(event.time * 1000).toLocaleTimeString("en-GB"), item);
      time.dateTime = new Date(event.time * 1000).toISOString();
      item.append(event.text);
    }
    if (!actor.events.length) html("li", null, "none yet", list);
  }

  // -- the connection ---------------------------------------------------------------------

  function connection(live) {
    const element = document.getElementById("connection");
    if (live === null) {
      element.textContent = "the run has ended";
      element.className = "connection";
      return;
    }
    element.textContent = live ? "live" : "disconnected (retrying)";
    element.className = `connection ${live ? "live" : "lost"}`;
  }

  async function fetched(path) {
    // The server's answer, or null when there is none to read: the server went between
    // the page and this question, or is not serving yet (something else answers).
    try {
      return await (await fetch(path, { signal: AbortSignal.timeout(ANSWER_MS) })).json();
    } catch {
      return null;
    }
  }

  async function start() {
    try {
      panAndZoom();
      const first = await fetched("api/layout");
      if (first) {
        draw(first);
        layout = first; // only once drawn: a layout that failed to draw is asked again
      }
      // Without a layout, the first status the event stream brings lays the run out.
      const status = await fetched("api/status");
      if (status) update(status);
      else connection(false);
    } finally {
      listen(); // also if drawing failed (its error is in the console)
    }
  }

  function listen() {
    const events = new EventSource("events");
    events.addEventListener("status", (event) => {
      const data = JSON.parse(event.data);
      update(data);
      if (ENDED.has(data.state)) {
        // The run is over and its server about to go: keep its last picture.
        events.close();
        connection(null);
      }
    });
    events.addEventListener("open", () => connection(true));
    events.addEventListener("error", () => {
      connection(false);
      // The browser retries a lost connection by itself, but gives up for good on an
      // answer that is not an event stream (a server on this port still starting, or
      // another program's): then listen again, as the browser would have.
      if (events.readyState === EventSource.CLOSED) setTimeout(listen, RETRY_MS);
    });
  }

  start();
})();
