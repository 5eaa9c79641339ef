// The fleet, live: asks for an operator's (or analyst's) key once, mints short-lived
// read-only stream tokens with it and opens the fleet stream with them.
"use strict";

(() => {
  const $ = (x) => document.getElementById(x);
  const map = new DD.AreaMap($("map"));
  const drones = new Map();
  let events = null;
  let renew = null;

  function problem(text) {
    $("problem").hidden = !text;
    $("problem").textContent = text || "";
  }

  async function token(key) {
    const answer = await fetch("/api/v1/stream-tokens", {
      method: "POST", headers: { Authorization: `Bearer ${key}` },
    });
    if (!answer.ok) {
      const body = await answer.json().catch(() => ({}));
      throw new Error(body.detail || `the key was refused (${answer.status})`);
    }
    return answer.json();
  }

  function draw() {
    const all = [...drones.values()];
    map.fit(all.flatMap((d) => [d.position || d.home, d.home]));
    for (const d of all) {
      map.place(`home-${d.droneId}`, d.home, "place home", "", "places");
      const cls = `drone ${d.status}`;
      map.place(`drone-${d.droneId}`, d.position || d.home, cls, d.droneId, "marks");
    }
    const rows = all.sort((a, b) => a.droneId.localeCompare(b.droneId)).map((d) => {
      const tr = document.createElement("tr");
      for (const text of [d.droneId, d.status, d.batteryPct == null ? "—" : `${Math.round(d.batteryPct)} %`]) {
        const td = document.createElement("td");
        td.textContent = text;
        tr.appendChild(td);
      }
      return tr;
    });
    $("drones").replaceChildren(...rows);
    const flying = all.filter((d) => !["idle", "charging", "grounded"].includes(d.status)).length;
    $("summary").textContent = `${all.length} drones, ${flying} flying`;
  }

  async function watch(key) {
    let minted;
    try {
      minted = await token(key);
    } catch (e) {
      problem(e.message);
      sessionStorage.removeItem("dd-key");
      $("login").hidden = false;
      return;
    }
    problem("");
    sessionStorage.setItem("dd-key", key);
    $("login").hidden = true;
    if (events) events.close();
    events = new EventSource(`/api/v1/drones/stream?t=${encodeURIComponent(minted.token)}`);
    events.addEventListener("drone", (e) => {
      const d = JSON.parse(e.data);
      drones.set(d.droneId, { ...drones.get(d.droneId), ...d });
      draw();
    });
    events.addEventListener("position", (e) => {
      const r = JSON.parse(e.data);
      const d = drones.get(r.droneId);
      if (!d || (d.positionAt && d.positionAt > r.at)) return;
      Object.assign(d, { position: r.position, batteryPct: r.batteryPct, positionAt: r.at });
      draw();
    });
    // A token lasts minutes: the next one is minted before it ends, or when the
    // stream breaks (an expired token is refused, so the browser would stop retrying).
    events.onerror = () => {
      if (events.readyState === EventSource.CLOSED) watch(key);
    };
    clearTimeout(renew);
    const left = Date.parse(minted.expiresAt) - Date.now();
    renew = setTimeout(() => watch(key), Math.max(left - 30000, 5000));
  }

  $("key-form").addEventListener("submit", (e) => {
    e.preventDefault();
    watch($("key").value.trim());
  });
  const saved = sessionStorage.getItem("dd-key");
  if (saved) watch(saved);
})();
