// The Socket.IO Admin UI (npm @socket.io/admin-ui 0.5.1, its built ui/dist) in a real
// browser against a rooms cluster: Debian's chromium, driven by puppeteer-core.
//
//   node tests/js/admin_ui.js <browser-url> <ui-url> <server-url> <username> <password>
//                             <ids> <victim> <shots-dir> [servers]
//
// <browser-url> is a headless chromium the test started (its remote debugging endpoint);
// <ui-url> the UI as a process serves it (…/admin-ui/), <server-url> the origin the UI
// connects to. <ids> (comma-separated) are socket ids of "/" that the Sockets page must
// list, <victim> the one to disconnect with the row's button; [servers] (default 3) how
// many processes the Servers page must show. Screenshots go to <shots-dir>:
// admin-ui-dashboard.png and admin-ui-sockets.png.
//
// Only 127.0.0.1 is reached: the page's Google Fonts and jsDelivr (icon font) stylesheets
// are aborted, unless ROOMS_MDI_FONT names a local @mdi/font folder (css/ and fonts/),
// served in their place for screenshots worth showing.
//
// One JSON line on stdout: {"phase": "done", ...} with what the pages showed. Every wait is
// for a condition in the page, bounded; one that times out fails the script (exit 1) with
// what it waited for.
"use strict";

const fs = require("fs");
const path = require("path");
const puppeteer = require("puppeteer-core");

const [browserURL, uiURL, serverURL, username, password, idList, victim, shots, servers = "3"] =
  process.argv.slice(2);
const ids = idList.split(",");
const STEP_MS = 20000; // any one step, on a busy machine
const VIEWPORT = { width: 1400, height: 900 }; // the navigation drawer shows from 1264 px
const MDI = process.env.ROOMS_MDI_FONT || "";

const step = { current: "start" };
setTimeout(() => fail(`the whole scenario took over 150 s, at step: ${step.current}`), 150000);

function fail(message) {
  process.stderr.write(`FAIL: ${message}\n`);
  process.exit(1);
}

/** Wait until `fn(...args)` is truthy in the page; its value. */
async function until(page, label, fn, ...args) {
  step.current = label;
  try {
    const handle = await page.waitForFunction(fn, { timeout: STEP_MS, polling: 100 }, ...args);
    return await handle.jsonValue();
  } catch (error) {
    throw new Error(`expected ${label} within ${STEP_MS} ms (${error.message})`);
  }
}

/** Local requests go on; the two external stylesheets are aborted, or served locally. */
async function onlyLocal(page) {
  await page.setRequestInterception(true);
  page.on("request", (request) => {
    const url = new URL(request.url());
    if (url.hostname === "127.0.0.1" || url.protocol === "data:") {
      request.continue();
      return;
    }
    const mdi = MDI && url.hostname === "cdn.jsdelivr.net" && url.pathname.match(/\/(css|fonts)\/([^/]+)$/);
    if (mdi) {
      const file = path.join(MDI, mdi[1], mdi[2]);
      if (fs.existsSync(file)) {
        const type = { ".css": "text/css", ".woff2": "font/woff2", ".woff": "font/woff",
          ".ttf": "font/ttf" }[path.extname(file)] || "application/octet-stream";
        // A font from another origin than the page's is used only with CORS.
        const headers = { "Access-Control-Allow-Origin": "*" };
        request.respond({ status: 200, contentType: type, headers, body: fs.readFileSync(file) });
        return;
      }
    }
    request.abort();
  });
}

/** The login form's input labelled `text` (Vuetify generates the ids). */
const byLabel = (page, text) =>
  page.evaluateHandle((t) => {
    const label = [...document.querySelectorAll(".v-dialog label")]
      .find((l) => l.textContent.trim() === t);
    return label && document.getElementById(label.getAttribute("for"));
  }, text);

async function typeInto(page, label, value) {
  step.current = `type into ${label}`;
  const input = await byLabel(page, label);
  await input.click({ clickCount: 3 }); // select what is there: typing replaces it
  await page.keyboard.press("Backspace");
  await input.type(value);
}

/** Wait until the page holds still (its charts drawn, its text set): for screenshots. */
async function settled(page, label) {
  await page.evaluate(() => { window.lastLook = null; });
  await until(page, label, () => {
    const look = [...document.querySelectorAll("canvas")].map((c) => c.toDataURL()).join()
      + document.querySelector("main").innerText;
    const still = look === window.lastLook;
    window.lastLook = look;
    return still;
  });
}

async function submit(page) {
  await page.click('.v-dialog form button[type="submit"]');
}


async function main() {
  step.current = `connect to the browser at ${browserURL}`;
  const browser = await puppeteer.connect({ browserURL, protocolTimeout: STEP_MS });
  const out = {};
  let page = null;
  try {
    const context = await browser.createBrowserContext(); // a fresh profile: no saved login
    page = await context.newPage();
    const errors = [];
    page.on("pageerror", (error) => errors.push(error.message));
    await page.setViewport(VIEWPORT);
    await onlyLocal(page);
    step.current = `load ${uiURL}`;
    await page.goto(uiURL, { waitUntil: "load", timeout: STEP_MS });
    // No CSS transitions: what the page shows is what it will show.
    await page.addStyleTag({ content: "*, *::before, *::after { transition: none !important; "
      + "animation: none !important; }" });
    await until(page, "the connection form", () => document.querySelector(".v-dialog form"));

    // Wrong credentials: the server's refusal, as the UI words it.
    await typeInto(page, "Server URL", serverURL);
    await typeInto(page, "Username", username);
    await typeInto(page, "Password", `${password}-wrong`);
    await submit(page);
    out.refused = await until(page, "the refusal under the form", () => {
      const error = document.querySelector(".v-dialog .red--text");
      return error && error.textContent.trim();
    });

    // The right ones: connected, the form gone.
    await typeInto(page, "Password", password);
    await submit(page);
    out.header = await until(page, "the connected status", () => {
      const header = document.querySelector("header");
      return !document.querySelector(".v-dialog--active") && header &&
        header.innerText.includes("CONNECTED") && header.innerText;
    });

    // Every process reports: the Servers page lists each, healthy.
    await page.evaluate(() => { location.hash = "#/servers"; });
    out.servers = await until(page, `${servers} healthy servers`, (want) => {
      const found = [...document.querySelectorAll(".v-data-table tbody tr")]
        .map((tr) => [...tr.cells].map((td) => td.innerText.trim()));
      const healthy = found.filter((cells) => cells.some((c) => c.toUpperCase() === "HEALTHY"));
      return healthy.length === want && found;
    }, Number(servers));

    // The Dashboard, once it counts the clients of every process.
    await page.evaluate(() => { location.hash = "#/"; });
    await until(page, "the dashboard", () => document.querySelector("canvas"));
    await settled(page, "the dashboard drawn");
    out.dashboard = await page.evaluate(() => document.querySelector("main").innerText);
    await page.screenshot({ path: path.join(shots, "admin-ui-dashboard.png") });

    // The Sockets page lists the sockets of every process.
    await page.evaluate(() => { location.hash = "#/sockets"; });
    out.listed = await until(page, `the sockets ${ids}`, (want) => {
      const listed = [...document.querySelectorAll(".v-data-table tbody tr")]
        .filter((tr) => tr.cells.length > 1).map((tr) => tr.cells[0].textContent.trim());
      return want.every((id) => listed.includes(id)) && listed;
    }, ids);
    out.transports = await page.evaluate(() =>
      Object.fromEntries([...document.querySelectorAll(".v-data-table tbody tr")]
        .filter((tr) => tr.cells.length > 2)
        .map((tr) => [tr.cells[0].textContent.trim(), tr.cells[2].textContent.trim()])));
    await settled(page, "the sockets page drawn");
    await page.screenshot({ path: path.join(shots, "admin-ui-sockets.png") });

    // Its row's button disconnects the victim (the click also opens the socket's page).
    step.current = `click the disconnect button of ${victim}`;
    await page.evaluate((id) => {
      const row = [...document.querySelectorAll(".v-data-table tbody tr")]
        .find((tr) => tr.cells.length > 1 && tr.cells[0].textContent.trim() === id);
      row.querySelector("button").click();
    }, victim);
    out.socketPage = await until(page, "the socket's page, disconnected", (id) =>
      location.hash.includes(id) && document.querySelector("main").innerText.includes("DISCONNECTED")
      && location.hash, victim);
    await page.evaluate(() => { location.hash = "#/sockets"; });
    out.after = await until(page, `the sockets without ${victim}`, (gone, want) => {
      const listed = [...document.querySelectorAll(".v-data-table tbody tr")]
        .filter((tr) => tr.cells.length > 1).map((tr) => tr.cells[0].textContent.trim());
      return !listed.includes(gone) && want.every((id) => id === gone || listed.includes(id))
        && listed;
    }, victim, ids);
    out.pageErrors = errors;
    return out;
  } catch (error) {
    if (page) {
      const shot = path.join(shots, "admin-ui-failure.png");
      await page.screenshot({ path: shot }).catch(() => {});
      error.message += ` (the page then: ${shot})`;
    }
    throw error;
  } finally {
    await browser.disconnect(); // the test stops the browser itself
  }
}

main().then(
  (out) => {
    const line = JSON.stringify({ phase: "done", ...out }) + "\n";
    process.stdout.write(line, () => process.exit(0));
  },
  (error) => fail(`${error.message} (at step: ${step.current})`),
);
