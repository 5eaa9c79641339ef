// The tracking pages in a real browser (Debian's chromium through playwright-core),
// against a running server: a customer's /track/{id}?t=TOKEN during a flight (the marker
// moves, the ETA changes, the stage follows), and the operator's fleet page at /.
//   node tests/page/track.mjs BASE_URL OPERATOR_KEY SCREENSHOT_DIR
import { chromium } from "playwright-core";
import assert from "node:assert/strict";

const [base, operatorKey, shots] = process.argv.slice(2);
const api = `${base}/api/v1`;
const operator = { Authorization: `Bearer ${operatorKey}`, "content-type": "application/json" };

async function call(method, path, headers, body) {
  const answer = await fetch(`${api}${path}`, { method, headers, body: body && JSON.stringify(body) });
  const text = await answer.text();
  assert.ok(answer.ok, `${method} ${path}: ${answer.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

const at = (lat, lon, alt) => ({ latitude: lat, longitude: lon, altitude: alt });
const account = await call("POST", "/accounts", operator, { name: "Page test", email: "page@example.com" });
const tenant = { Authorization: `Bearer ${account.apiKey}`, "content-type": "application/json" };
await call("PUT", "/drones/page-drone", operator, {
  model: "X8", payloadKg: 5, rangeKm: 40, speedMps: 15, home: at(47.60, -122.30, 0),
});
const scheduled = await call("POST", "/deliveries", tenant, {
  ownerId: account.accountId, pickup: at(47.61, -122.33, 0), dropoff: at(47.65, -122.30, 0),
  expedited: false, confirmationRequired: "None", packageInfo: { size: "small", weight: 1.2 },
});
assert.match(scheduled.trackingUrl, /^\/track\/.+\?t=/);

// Markers glide to their new place; a screenshot waits for them to arrive.
const settle = (page) => page.waitForTimeout(1000);

const report = (lat, lon, battery) => call("POST", "/drones/page-drone/telemetry", operator, {
  position: at(lat, lon, 60), batteryPct: battery, at: new Date().toISOString(),
});

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox"],
});
const offline = [];
try {
  const context = await browser.newContext({ viewport: { width: 1200, height: 800 } });
  const page = await context.newPage();
  // Works offline: every request stays on the server under test.
  page.on("request", (r) => { if (!r.url().startsWith(base)) offline.push(r.url()); });
  page.on("pageerror", (e) => console.error("page error:", e.message));
  await page.goto(`${base}${scheduled.trackingUrl}`);
  const stage = page.locator("#stage");
  // The workflow assigns the drone by itself.
  await page.waitForFunction(() => document.querySelector("#stage").dataset.stage === "HeadedToPickup", null, { timeout: 15000 });
  await report(47.605, -122.31, 95);
  const marker = page.locator("#drone-marker");
  await page.waitForFunction(() => document.querySelector("#drone-marker")?.dataset.longitude === "-122.31", null, { timeout: 5000 });
  const firstPlace = await marker.getAttribute("transform");
  const firstEta = await page.locator("#eta").getAttribute("data-eta");
  await report(47.607, -122.32, 93);
  await page.waitForFunction(() => document.querySelector("#drone-marker")?.dataset.longitude === "-122.32", null, { timeout: 5000 });
  const secondPlace = await marker.getAttribute("transform");
  const secondEta = await page.locator("#eta").getAttribute("data-eta");
  assert.notEqual(secondPlace, firstPlace, "the marker moves with the reports");
  assert.notEqual(secondEta, firstEta, "the ETA moves with the reports");
  await settle(page);
  await page.screenshot({ path: `${shots}/track-headed-to-pickup.png` });
  // At the pickup it is picked up; the page says so and shows the delivery ETA.
  await report(47.61, -122.33, 90);
  await page.waitForFunction(() => document.querySelector("#stage").dataset.stage === "HeadedToDropoff", null, { timeout: 10000 });
  assert.match(await page.locator("#eta-label").textContent(), /delivery/i);
  await report(47.63, -122.315, 85);
  await page.waitForFunction(() => document.querySelector("#drone-marker")?.dataset.latitude === "47.63", null, { timeout: 5000 });
  await settle(page);
  await page.screenshot({ path: `${shots}/track-headed-to-dropoff.png` });
  await report(47.65, -122.30, 80);
  await page.waitForFunction(() => document.querySelector("#stage").dataset.stage === "Completed", null, { timeout: 10000 });
  assert.equal(await stage.textContent(), "Delivered");
  assert.ok((await page.locator("#timeline li").count()) >= 2, "the timeline lists the changes");
  await settle(page);
  await page.screenshot({ path: `${shots}/track-completed.png` });

  // A forged token shows a problem, not data.
  const forged = await context.newPage();
  await forged.goto(`${base}/track/${scheduled.deliveryId}?t=1.${"0".repeat(64)}.fleet`);
  await forged.waitForSelector("#problem:not([hidden])", { timeout: 5000 });

  // The operator's fleet page: a key once, then the fleet moves on the map.
  const fleet = await context.newPage();
  await fleet.goto(`${base}/`);
  await fleet.fill("#key", operatorKey);
  await fleet.click("button[type=submit]");
  await fleet.waitForSelector("#drone-page-drone", { timeout: 5000 });
  const before = await fleet.locator("#drone-page-drone").getAttribute("transform");
  await report(47.62, -122.305, 78);
  await fleet.waitForFunction(() => document.querySelector("#drone-page-drone")?.dataset.latitude === "47.62", null, { timeout: 5000 });
  assert.notEqual(await fleet.locator("#drone-page-drone").getAttribute("transform"), before);
  assert.match(await fleet.locator("#drones").textContent(), /page-drone/);
  await settle(fleet);
  await fleet.screenshot({ path: `${shots}/fleet.png` });
} finally {
  await browser.close();
}
assert.deepEqual(offline, [], "the pages fetch nothing from elsewhere");
console.log("page test passed");
