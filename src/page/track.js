// One delivery, live: /track/{id}?t=TOKEN opens the delivery's status stream with the
// customer's read-only token (an EventSource cannot send an Authorization header).
"use strict";

(() => {
  const id = decodeURIComponent(location.pathname.split("/").pop());
  const token = new URLSearchParams(location.search).get("t");
  const $ = (x) => document.getElementById(x);
  const map = new DD.AreaMap($("map"));
  const STAGES = {
    Created: "Waiting for a drone", Rescheduled: "Rescheduled, waiting for a drone",
    HeadedToPickup: "A drone is on its way to the pickup", HeadedToDropoff: "On its way to you",
    Completed: "Delivered", Cancelled: "Cancelled", Failed: "Could not be delivered",
  };
  let last = null;
  $("delivery-id").textContent = id;

  function problem(text) {
    $("problem").hidden = false;
    $("problem").textContent = text;
  }

  function show(status) {
    last = status;
    $("stage").textContent = STAGES[status.stage] || status.stage;
    $("stage").dataset.stage = status.stage;
    $("drone").textContent = status.droneId ? `Drone ${status.droneId}` : "";
    const toPickup = status.stage === "HeadedToPickup";
    $("eta-label").textContent = toPickup ? "Drone at the pickup" : "Estimated delivery";
    const eta = toPickup ? status.pickupEta : status.deliveryEta;
    $("eta").textContent = status.stage === "Completed" ? "Delivered" : DD.clock(eta);
    $("eta").dataset.eta = eta || "";
    $("eta-in").textContent = DD.until(eta);
    map.fit([status.pickup, status.dropoff, status.lastKnownLocation]);
    map.place("pickup", status.pickup, "place pickup", "Pickup", "places");
    map.place("dropoff", status.dropoff, "place dropoff", "Drop-off", "places");
    if (status.lastKnownLocation) {
      map.place("drone-marker", status.lastKnownLocation, "drone", status.droneId || "", "marks");
      const legs = status.stage === "HeadedToPickup"
        ? [status.lastKnownLocation, status.pickup, status.dropoff]
        : [status.lastKnownLocation, status.dropoff];
      map.route("route", status.stage === "Completed" ? [] : legs);
    }
  }

  function change(entry) {
    const li = document.createElement("li");
    li.textContent = `${DD.clock(entry.occurredAt)} ${entry.type.replace(/([a-z])([A-Z])/g, "$1 $2")}`;
    $("timeline").appendChild(li);
  }

  if (!token) {
    problem("This link has no tracking token; use the link you were sent.");
    return;
  }
  const url = `/api/v1/deliveries/${encodeURIComponent(id)}/status/stream?t=${encodeURIComponent(token)}`;
  const events = new EventSource(url);
  events.addEventListener("status", (e) => {
    const status = JSON.parse(e.data);
    show(status);
    if (["Completed", "Cancelled", "Failed"].includes(status.stage)) events.close();
  });
  events.addEventListener("change", (e) => change(JSON.parse(e.data)));
  events.onerror = () => {
    if (events.readyState === EventSource.CLOSED && !last) {
      problem("This tracking link is not valid or has expired.");
    }
  };
  // The countdown moves between updates too.
  setInterval(() => { if (last) $("eta-in").textContent = DD.until($("eta").dataset.eta); }, 1000);
})();
