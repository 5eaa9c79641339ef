// The map both pages draw: an SVG of the area around the points given, with a
// graticule, a scale bar and markers placed by latitude and longitude. Nothing is
// fetched from elsewhere.
"use strict";

const DD = (() => {
  const NS = "http://www.w3.org/2000/svg";
  const W = 1000, H = 700, PAD = 60;

  function el(name, attrs, parent) {
    const node = document.createElementNS(NS, name);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    if (parent) parent.appendChild(node);
    return node;
  }

  function niceStep(span) {
    const raw = span / 6;
    const p = Math.pow(10, Math.floor(Math.log10(raw)));
    return [1, 2, 5, 10].map((m) => m * p).find((s) => s >= raw) || raw;
  }

  class AreaMap {
    constructor(svg) {
      this.svg = svg;
      svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
      this.base = el("g", {}, svg);
      this.routes = el("g", {}, svg);
      this.places = el("g", {}, svg);
      this.marks = el("g", {}, svg);
      this.nodes = new Map();
      this.lines = new Map();
      this.view = null;
    }

    // Frames the map on `points` ([{latitude, longitude}]); redraws the graticule.
    fit(points) {
      const ok = points.filter((p) => p && isFinite(p.latitude) && isFinite(p.longitude));
      if (!ok.length) return false;
      let lat0 = Math.min(...ok.map((p) => p.latitude)), lat1 = Math.max(...ok.map((p) => p.latitude));
      let lon0 = Math.min(...ok.map((p) => p.longitude)), lon1 = Math.max(...ok.map((p) => p.longitude));
      const k = Math.cos(((lat0 + lat1) / 2) * Math.PI / 180);
      // At least ~2 km across, and the page's aspect ratio.
      let dy = Math.max(lat1 - lat0, 0.02), dx = Math.max((lon1 - lon0) * k, 0.02);
      if (dx / dy > (W - 2 * PAD) / (H - 2 * PAD)) dy = dx * (H - 2 * PAD) / (W - 2 * PAD);
      else dx = dy * (W - 2 * PAD) / (H - 2 * PAD);
      const cy = (lat0 + lat1) / 2, cx = (lon0 + lon1) / 2;
      const next = { k, lat: cy, lon: cx, dy, dx, scale: (H - 2 * PAD) / dy };
      const v = this.view;
      // Keep the frame while everything stays well inside it (no jumping about).
      if (v && ok.every((p) => { const [x, y] = this.xy(p); return x > PAD / 2 && x < W - PAD / 2 && y > PAD / 2 && y < H - PAD / 2; })) return false;
      this.view = next;
      this.drawBase();
      for (const node of this.nodes.values()) if (node.loc) this.move(node, node.loc);
      return true;
    }

    xy(p) {
      const v = this.view;
      return [W / 2 + (p.longitude - v.lon) * v.k * v.scale, H / 2 - (p.latitude - v.lat) * v.scale];
    }

    drawBase() {
      this.base.replaceChildren();
      const v = this.view;
      const latSpan = (H / v.scale), lonSpan = (W / v.scale) / v.k;
      const latStep = niceStep(latSpan), lonStep = niceStep(lonSpan);
      const latMin = v.lat - latSpan / 2, lonMin = v.lon - lonSpan / 2;
      const digits = (s) => Math.max(0, -Math.floor(Math.log10(s)));
      for (let lat = Math.ceil(latMin / latStep) * latStep; lat < latMin + latSpan; lat += latStep) {
        const [, y] = this.xy({ latitude: lat, longitude: v.lon });
        el("line", { class: "grid", x1: 0, x2: W, y1: y, y2: y }, this.base);
        el("text", { class: "grid-label", x: 4, y: y - 3 }, this.base).textContent = lat.toFixed(digits(latStep)) + "°";
      }
      for (let lon = Math.ceil(lonMin / lonStep) * lonStep; lon < lonMin + lonSpan; lon += lonStep) {
        const [x] = this.xy({ latitude: v.lat, longitude: lon });
        el("line", { class: "grid", x1: x, x2: x, y1: 0, y2: H }, this.base);
        el("text", { class: "grid-label", x: x + 3, y: H - 4 }, this.base).textContent = lon.toFixed(digits(lonStep)) + "°";
      }
      // A scale bar: degrees of latitude are ~111.2 km.
      const km = niceStep(latSpan * 111.2 / 2);
      const px = (km / 111.2) * v.scale;
      el("line", { class: "scale", x1: W - 20 - px, x2: W - 20, y1: 24, y2: 24 }, this.base);
      el("text", { class: "scale-label", x: W - 20 - px, y: 18 }, this.base).textContent = `${km} km`;
    }

    move(node, loc) {
      node.loc = loc;
      if (!this.view) return;
      const [x, y] = this.xy(loc);
      node.g.setAttribute("transform", `translate(${x.toFixed(1)},${y.toFixed(1)})`);
      node.g.dataset.latitude = loc.latitude;
      node.g.dataset.longitude = loc.longitude;
    }

    // Puts (or moves) marker `id` at `loc`; `kind` is its class, `label` its text.
    place(id, loc, kind, label, layer) {
      let node = this.nodes.get(id);
      if (!node) {
        const g = el("g", { id }, layer === "places" ? this.places : this.marks);
        el("circle", { r: kind.includes("drone") ? 9 : 7 }, g);
        const text = el("text", { x: 12, y: 4 }, g);
        node = { g, text, loc: null };
        this.nodes.set(id, node);
      }
      node.g.setAttribute("class", kind);
      node.text.textContent = label || "";
      if (loc) this.move(node, loc);
      return node.g;
    }

    // A polyline through `locs`.
    route(id, locs) {
      let line = this.lines.get(id);
      if (!line) {
        line = el("polyline", { id, class: "route" }, this.routes);
        this.lines.set(id, line);
      }
      if (!this.view) return;
      line.setAttribute("points", locs.filter(Boolean).map((l) => this.xy(l).map((n) => n.toFixed(1)).join(",")).join(" "));
    }
  }

  // "in 4 min" / "in 40 s" / "now"
  function until(iso) {
    if (!iso) return "";
    const s = Math.round((Date.parse(iso) - Date.now()) / 1000);
    if (s <= 0) return "now";
    return s < 90 ? `in ${s} s` : `in ${Math.round(s / 60)} min`;
  }

  function clock(iso) {
    return iso ? new Date(iso).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }) : "—";
  }

  return { AreaMap, until, clock };
})();
