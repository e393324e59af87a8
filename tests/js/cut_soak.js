// Connection state recovery through network cuts the server does not notice.
//
//   node tests/js/cut_soak.js <mode> <cycles> <feed-url> <backend-url>[,<backend-url>...] [deadline-ms]
//
// A TCP proxy of this script's own stands between one listening client and the servers; each
// new connection goes to the next backend in turn, so with several processes the client
// comes back to another one. A cut takes the network down the way a failing network looks
// from the server: the client's side of every connection is reset, and so is every new one
// (the CLOSE a long-polling client tries to post on its way out included) until the client
// tries to reconnect; the server's side stays open and silent: no FIN, and whatever the
// server writes is read and thrown away. So the server learns nothing until its heartbeat
// times out (ping interval + ping timeout), while the client is back within milliseconds.
//
// Meanwhile a feeder (connected straight to the first backend) sends numbered ticks, one
// after another, which the server broadcasts to a room the listener is in. Each cycle waits
// for a few ticks to arrive, then cuts. After `cycles` cuts the feeder stops, and the
// listener must have had every tick from the first to the last: once each, in order.
//
// Prints one JSON line:
//   {mode, cycles, recovered, fresh, ticks, lost, duplicated, reordered, seconds, cutsPerSecond}
// and exits 0; exits 1 (with the step it was at) if a wait runs past its bound.
"use strict";

const net = require("net");
const { EventEmitter } = require("events");
const { io } = require("socket.io-client");

const [mode, cyclesArg, feedUrl, backendsArg, deadlineArg] = process.argv.slice(2);
if (!["websocket", "polling"].includes(mode) || !backendsArg) {
  fail("usage: node cut_soak.js <websocket|polling> <cycles> <feed-url> <backend-urls> [deadline-ms]");
}
const cycles = Number(cyclesArg);
const backends = backendsArg.split(",").map((url) => new URL(url));
const step = { current: "start" };
setTimeout(() => fail(`timed out at step: ${step.current}`), Number(deadlineArg || 120000));

function fail(message) {
  process.stderr.write(`FAIL: ${message}\n`);
  process.exit(1);
}

// Anything the waits below depend on announces itself here; a wait re-checks on each.
const changed = new EventEmitter();
changed.setMaxListeners(0);

/** Resolve once `predicate()` holds, re-checked on every change; reject after `ms`. */
function until(predicate, ms, what) {
  return new Promise((resolve, reject) => {
    const check = () => {
      if (!predicate()) return;
      clearTimeout(timer);
      changed.off("change", check);
      resolve();
    };
    const timer = setTimeout(() => {
      changed.off("change", check);
      reject(new Error(`expected ${what} within ${ms} ms`));
    }, ms);
    changed.on("change", check);
    check();
  });
}

// ----------------------------------------------------------------------------- the proxy

function startProxy() {
  let next = 0;
  const live = new Set(); // {client, upstream} pairs carrying traffic
  const silent = new Set(); // server-side sockets of cut connections
  let down = false;
  const server = net.createServer((client) => {
    if (down) {
      client.on("error", () => {});
      client.resetAndDestroy();
      return;
    }
    const backend = backends[next++ % backends.length];
    const upstream = net.connect(Number(backend.port), backend.hostname);
    const pair = { client, upstream, cut: false };
    live.add(pair);
    client.pipe(upstream);
    upstream.pipe(client);
    const done = () => {
      if (pair.cut) return; // the server's side now belongs to `silent`
      live.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on("error", done);
    client.on("close", done);
    upstream.on("error", done);
    upstream.on("close", done);
  });
  return new Promise((resolve) => {
    server.listen(0, "127.0.0.1", () => {
      resolve({
        url: `http://127.0.0.1:${server.address().port}`,
        cut() {
          down = true;
          for (const pair of live) {
            pair.cut = true;
            live.delete(pair);
            const { client, upstream } = pair;
            client.unpipe(upstream);
            upstream.unpipe(client);
            // The server's side: kept open, read and discarded until the server closes it.
            silent.add(upstream);
            upstream.on("data", () => {});
            const forget = () => {
              silent.delete(upstream);
              upstream.destroy();
            };
            upstream.on("end", forget);
            upstream.on("close", forget);
            upstream.on("error", forget);
            client.resetAndDestroy(); // the client's side: an RST, noticed at once
          }
        },
        up() {
          down = false;
        },
        close() {
          server.close();
          for (const pair of live) {
            pair.client.destroy();
            pair.upstream.destroy();
          }
          for (const upstream of silent) upstream.destroy();
        },
      });
    });
  });
}

// ----------------------------------------------------------------------------- the run

async function main() {
  const proxy = await startProxy();
  const started = Date.now();
  const ticks = [];
  let connects = 0;
  let recovered = 0;
  let fresh = 0;

  step.current = "connecting the listener";
  const listener = io(proxy.url, {
    forceNew: true,
    transports: [mode],
    reconnectionDelay: 20,
    reconnectionDelayMax: 20,
    randomizationFactor: 0,
    timeout: 5000,
    auth: { name: "listener", rooms: ["cut"] },
  });
  listener.on("tick", (n) => {
    ticks.push(n);
    changed.emit("change");
  });
  listener.on("connect", () => {
    connects += 1;
    if (connects > 1) {
      if (listener.recovered) recovered += 1;
      else fresh += 1;
    }
    changed.emit("change");
  });
  listener.on("disconnect", () => changed.emit("change"));
  // The network is back when the client tries again (its reconnection delay after noticing).
  listener.io.on("reconnect_attempt", () => proxy.up());
  await until(() => connects === 1, 10000, "the listener to connect");

  step.current = "connecting the feeder";
  const feeder = io(feedUrl, { forceNew: true, transports: ["websocket"], reconnection: false });
  await new Promise((resolve, reject) => {
    feeder.once("connect", resolve);
    feeder.once("connect_error", reject);
  });
  let sent = 0;
  let feeding = true;
  const feedingDone = (async () => {
    while (feeding) {
      await feeder.timeout(10000).emitWithAck("feed", "cut", sent);
      sent += 1;
      // Load, not synchronisation: about 500 ticks a second.
      await new Promise((resolve) => setTimeout(resolve, 2));
    }
  })();

  for (let cycle = 0; cycle < cycles; cycle++) {
    step.current = `cycle ${cycle}: waiting for ticks`;
    const seen = ticks.length;
    await until(() => listener.connected && ticks.length >= seen + 3, 10000, "3 more ticks");
    const before = connects;
    step.current = `cycle ${cycle}: cut`;
    proxy.cut();
    await until(() => connects > before && listener.connected, 10000, "a reconnect");
  }

  step.current = "waiting for ticks after the last reconnect";
  const seen = ticks.length;
  await until(() => ticks.length >= seen + 3, 10000, "3 more ticks");
  step.current = "stopping the feeder";
  feeding = false;
  await feedingDone;
  const last = sent - 1; // sent while connected: it arrives unless something is broken
  step.current = `waiting for the last tick (${last})`;
  await until(() => ticks.includes(last), 20000, `tick ${last}`);

  const counts = new Map();
  for (const n of ticks) counts.set(n, (counts.get(n) || 0) + 1);
  let lost = 0;
  for (let n = 0; n <= last; n++) if (!counts.has(n)) lost += 1;
  let duplicated = 0;
  for (const count of counts.values()) duplicated += count - 1;
  let reordered = 0;
  for (let i = 1; i < ticks.length; i++) if (ticks[i] < ticks[i - 1]) reordered += 1;
  const seconds = (Date.now() - started) / 1000;

  listener.close();
  feeder.close();
  proxy.close();
  process.stdout.write(
    JSON.stringify({
      mode,
      cycles,
      recovered,
      fresh,
      ticks: last + 1,
      lost,
      duplicated,
      reordered,
      seconds,
      cutsPerSecond: cycles / seconds,
    }) + "\n",
  );
  process.exit(0);
}

main().catch((err) => fail(`${step.current}: ${err && err.stack ? err.stack : err}`));
