// The chat demo (examples/chat) in a real browser: Debian's chromium, driven by
// puppeteer-core, two users typing into the page as people do.
//
//   node tests/js/chat_browser.js <browser-url> <scenario> <shots-dir> <url> [url-b]
//
// <browser-url> is a headless chromium that the test started (http://127.0.0.1:PORT, its
// remote debugging port): the test owns that process, so it dies with the test whatever
// happens here. A is a desktop-sized page on <url>, B a phone-sized one (390 px wide) on
// [url-b] (default <url>): with two URLs they chat across two processes of a cluster.
// Each user has a browser context of their own (their own storage, as two people have).
//
// The script and the test take turns through stdout, one JSON line per phase:
//   chat:    {"phase": "done", ...}   two users meet in a room, type, chat, and B reloads.
//   restart: {"phase": "ready"}       the test stops the server;
//            {"phase": "down"}        both pages saw it go; the test starts it again;
//            {"phase": "done", ...}   both pages came back by themselves and chat again.
// Every wait is for a condition in the page, bounded; a wait that times out fails the
// script with what it was waiting for.
"use strict";

const path = require("path");
const puppeteer = require("puppeteer-core");

const [browserURL, scenario, shots, urlA, urlB = urlA] = process.argv.slice(2);
const STEP_MS = 15000; // any one step, on a busy machine
const RESTART_MS = 40000; // a server process restarted, and the client's backoff
const TYPING_STOP_MS = 1000; // "X is typing…" gone after X's message (the issue: 3.5 s)
const DESKTOP = { width: 1280, height: 800 };
const PHONE = { width: 390, height: 844, isMobile: true, hasTouch: true, deviceScaleFactor: 1 };

const step = { current: "start" };
setTimeout(() => fail(`the whole scenario took over 180 s, at step: ${step.current}`), 180000);

function fail(message) {
  process.stderr.write(`FAIL: ${message}\n`);
  process.exit(1);
}

function phase(name, extra = {}) {
  process.stdout.write(JSON.stringify({ phase: name, ...extra }) + "\n");
}

// ------------------------------------------------------------------ page helpers

/** Wait until `fn(...args)` is truthy in the page (checked on every DOM change). */
async function until(page, label, fn, { timeout = STEP_MS, polling = "mutation" } = {}, ...args) {
  step.current = `${page.user}: ${label}`;
  try {
    return await (await page.waitForFunction(fn, { timeout, polling }, ...args)).jsonValue();
  } catch (error) {
    throw new Error(`${page.user}: expected ${label} within ${timeout} ms (${error.message})`);
  }
}

/** A new user's page, logged in with `name`: a browser context of its own. */
async function open(browser, name, url, viewport) {
  const context = await browser.createBrowserContext();
  const page = await context.newPage();
  page.user = name;
  page.errors = [];
  page.on("pageerror", (error) => page.errors.push(`${name}: ${error.message}`));
  await page.setViewport(viewport);
  step.current = `${name}: load ${url}`;
  await page.goto(url, { waitUntil: "load", timeout: STEP_MS });
  await page.type("#nick", name);
  await page.click("#login-form button");
  await connected(page);
  return page;
}

const connected = (page, timeout = STEP_MS) =>
  until(page, "connected", () => document.querySelector("#status").textContent.includes("connected")
    && !document.querySelector("#chat").hidden, { timeout });

const upgraded = (page) =>
  until(page, "the websocket transport", () =>
    document.querySelector("#status").classList.contains("websocket"));

const offline = (page, timeout = STEP_MS) =>
  until(page, "the reconnecting status", () =>
    document.querySelector("#status").classList.contains("offline"), { timeout });

/** Wait until the page's "here now" list is `names` (in order); returns it. */
const whoIs = (page, names, timeout = STEP_MS) =>
  until(page, `the who list ${JSON.stringify(names)}`, (want) => {
    const got = [...document.querySelectorAll("#who li")].map((li) => li.textContent);
    return JSON.stringify(got) === JSON.stringify(want) && got;
  }, { timeout }, names);

const inRoom = (page, room) =>
  until(page, `room #${room}`, (want) =>
    document.querySelector("#room-title").textContent === `#${want}` && want, {}, room);

async function switchRoom(page, room) {
  await page.type("#room-input", room);
  await page.click("#room-form button");
  await inRoom(page, room);
}

/** Type `text` into the message box and press Enter; waits for the ack's ✓. */
async function say(page, text) {
  step.current = `${page.user}: type ${JSON.stringify(text)}`;
  await page.type("#text", text);
  await page.keyboard.press("Enter");
  return acked(page, text);
}

/** Wait until our own message `text` shows the ack's ✓; returns the mark and its title. */
const acked = (page, text) =>
  until(page, `the ack of ${JSON.stringify(text)}`, (want) => {
    const mine = [...document.querySelectorAll("#log .msg.mine")]
      .find((item) => item.querySelector(".bubble").textContent === want);
    const tick = mine && mine.querySelector(".tick");
    const delivered = tick && tick.classList.contains("delivered");
    return delivered && { mark: tick.textContent, title: tick.title };
  }, {}, text);

/** Wait until a message `text` is in the log; returns how it is shown (the test checks
 * that it is shown as `from`'s). */
const sees = (page, from, text, timeout = STEP_MS) =>
  until(page, `${from}'s message ${JSON.stringify(text)}`, (want) => {
    const item = [...document.querySelectorAll("#log .msg")]
      .find((msg) => msg.querySelector(".bubble").textContent === want);
    return item && {
      name: item.querySelector(".name").textContent,
      mine: item.classList.contains("mine"),
      text: want,
    };
  }, { timeout }, text);

/** Every message in the log, in order: [shown name, text]. */
const log = (page) =>
  page.evaluate(() => [...document.querySelectorAll("#log .msg")].map((item) =>
    [item.querySelector(".name").textContent, item.querySelector(".bubble").textContent]));

/** Record, in the page, the socket's "typing" and "message" events with their times. */
const record = (page) =>
  page.evaluate(() => {
    window.seen = [];
    socket.on("typing", (t) => seen.push({ event: "typing", ...t, at: performance.now() }));
    socket.on("message", (m) =>
      seen.push({ event: "message", name: m.name, at: performance.now() }));
  });

/** The sizes that make the page usable, from getBoundingClientRect, and a screenshot. */
async function layout(page, file) {
  await page.screenshot({ path: path.join(shots, file) });
  return page.evaluate(() => {
    const box = (selector) => {
      const r = [...document.querySelectorAll(selector)].pop().getBoundingClientRect();
      const { left, top, right, bottom, width, height } = r;
      return { left, top, right, bottom, width, height };
    };
    return {
      viewport: { width: window.innerWidth, height: window.innerHeight },
      scrollWidth: document.documentElement.scrollWidth,
      aside: box("aside"), log: box("#log"), text: box("#text"), send: box("#composer button"),
      roomInput: box("#room-input"), who: box("#who"), typing: box("#typing"),
      lastMessage: box("#log .msg .bubble"), // the last one
    };
  });
}

// ------------------------------------------------------------------ scenarios

async function chat(browser) {
  const out = {};
  const a = await open(browser, "Ada", urlA, DESKTOP);
  const b = await open(browser, "Bob", urlB, PHONE);
  out.pages = [a, b];
  // Presence: each sees both, in the lobby, then in a room of their own choosing.
  out.whoLobby = [await whoIs(a, ["Ada (you)", "Bob"]), await whoIs(b, ["Ada", "Bob (you)"])];
  await switchRoom(a, "den");
  await whoIs(b, ["Bob (you)"]); // Ada left the lobby
  await switchRoom(b, "den");
  out.whoDen = [await whoIs(a, ["Ada (you)", "Bob"]), await whoIs(b, ["Ada", "Bob (you)"])];

  // Bob types: Ada sees it. Bob sends: the indicator goes with the message. The start is
  // volatile (dropped while the transport is busy, as during the upgrade): wait that out.
  await upgraded(b);
  await record(a);
  step.current = "Bob: typing";
  await b.type("#text", "hi Ada, from a phone");
  out.typingShown = await until(a, "Bob is typing", () =>
    document.querySelector("#typing").textContent.includes("Bob is typing") &&
    document.querySelector("#typing").textContent);
  await b.keyboard.press("Enter");
  out.bobAck = await acked(b, "hi Ada, from a phone");
  out.adaSeesBob = await sees(a, "Bob", "hi Ada, from a phone");
  out.typingCleared = await until(a, "no typing indicator after Bob's message",
    () => document.querySelector("#typing").textContent === "", { timeout: TYPING_STOP_MS });
  // The stop itself arrives (a dropped stop is what left the indicator up for 3.5 s).
  out.typingStop = await until(a, "Bob's stop-typing event after his message",
    () => {
      const message = seen.find((e) => e.event === "message" && e.name === "Bob");
      const stop = seen.find((e) => e.event === "typing" && e.name === "Bob" && !e.active);
      return message && stop && { afterMessageMs: stop.at - message.at };
    }, { timeout: TYPING_STOP_MS, polling: 20 });

  out.adaAck = await say(a, "hello Bob");
  out.bobSeesAda = await sees(b, "Ada", "hello Bob");
  out.layout = { phone: await layout(b, "phone.png"), desktop: await layout(a, "desktop.png") };

  // Bob reloads: back in the den without logging in, with what was said before.
  step.current = "Bob: reload";
  const adaSeesLeave = until(a, "Bob left", () =>
    [...document.querySelectorAll("#log .system")].some((li) => li.textContent === "Bob left"));
  await b.reload({ waitUntil: "load", timeout: STEP_MS });
  await connected(b);
  out.reload = {
    loginHidden: await b.$eval("#login", (el) => el.hidden),
    room: await inRoom(b, "den"),
    who: await whoIs(b, ["Ada", "Bob (you)"]),
    history: [await sees(b, "Ada", "hello Bob"), await sees(b, "Bob", "hi Ada, from a phone")],
    log: await log(b),
  };
  await adaSeesLeave;
  out.reload.adaWho = await whoIs(a, ["Ada (you)", "Bob"]);
  out.afterReload = [await say(a, "welcome back"), await sees(b, "Ada", "welcome back")];
  return out;
}

async function restart(browser) {
  const out = {};
  const a = await open(browser, "Ada", urlA, DESKTOP);
  const b = await open(browser, "Bob", urlB, PHONE);
  out.pages = [a, b];
  await switchRoom(a, "den");
  await switchRoom(b, "den");
  await whoIs(a, ["Ada (you)", "Bob"]);
  out.before = [await say(a, "before the restart"), await sees(b, "Ada", "before the restart")];

  phase("ready");
  out.down = [await offline(a, RESTART_MS), await offline(b, RESTART_MS)];
  phase("down");

  await connected(a, RESTART_MS);
  await connected(b, RESTART_MS);
  out.after = {
    rooms: [await inRoom(a, "den"), await inRoom(b, "den")],
    who: [await whoIs(a, ["Ada (you)", "Bob"]), await whoIs(b, ["Ada", "Bob (you)"])],
    ada: [await say(a, "after the restart"), await sees(b, "Ada", "after the restart")],
    bob: [await say(b, "me too"), await sees(a, "Bob", "me too")],
    log: await log(b),
  };
  return out;
}

const SCENARIOS = { chat, restart };

async function main() {
  if (!SCENARIOS[scenario]) {
    fail(`expected a scenario among ${Object.keys(SCENARIOS)}, got ${scenario}`);
  }
  step.current = `connect to the browser at ${browserURL}`;
  const browser = await puppeteer.connect({ browserURL, protocolTimeout: STEP_MS });
  try {
    const out = await SCENARIOS[scenario](browser);
    const pages = out.pages;
    delete out.pages;
    out.pageErrors = pages.flatMap((page) => page.errors);
    return out;
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
