// Shared helpers for the interop scripts: argument parsing, bounded waits, clients in one
// of three transport modes, and a JSON view of values in which binary stays recognisable.
//
// Every script prints exactly one JSON line of observations on stdout and exits 0, or
// prints what went wrong on stderr and exits 1. Nothing waits on a clock for
// synchronisation: every wait is for an event, bounded by a timeout.
"use strict";

const { io, Manager } = require("socket.io-client");

const MODES = {
  // The client's default: long-polling first, then an upgrade to websocket.
  default: {},
  websocket: { transports: ["websocket"] },
  polling: { transports: ["polling"] },
};

/** argv: <url> [mode] [...rest]. Arms the script's overall deadline. */
function args(deadlineMs = 15000, extraModes = []) {
  const [url, mode = "default", ...rest] = process.argv.slice(2);
  if (!url) fail("usage: node <script> <url> [mode] [...]");
  const known = [...Object.keys(MODES), ...extraModes];
  if (!known.includes(mode)) fail(`expected a mode among ${known}, got ${mode}`);
  // Not unref'd: a scenario stuck on a promise with nothing else pending fails here
  // instead of exiting 0 without output.
  setTimeout(() => fail(`timed out after ${deadlineMs} ms at step: ${step.current}`), deadlineMs);
  return { url, mode, rest };
}

/** What the script is doing now, reported if it times out. */
const step = { current: "start" };

function fail(message) {
  process.stderr.write(`FAIL: ${message}\n`);
  process.exit(1);
}

/** Client options for a transport mode; reconnection off unless asked for. */
function options(mode, extra = {}) {
  return { forceNew: true, reconnection: false, timeout: 5000, ...MODES[mode], ...extra };
}

/** A new client (its own Manager, hence its own Engine.IO connection). */
function client(url, mode, extra = {}) {
  return io(url, options(mode, extra));
}

/** A Manager in a transport mode, for several namespaces on one connection. */
function manager(url, mode, extra = {}) {
  const { forceNew, ...rest } = options(mode, extra);
  return new Manager(url, rest);
}

/** Resolve with the arguments of the next `event` on `emitter`; reject after `ms`. */
function once(emitter, event, ms = 5000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      emitter.off(event, handler);
      reject(new Error(`expected event ${event} within ${ms} ms, got none`));
    }, ms);
    function handler(...values) {
      clearTimeout(timer);
      emitter.off(event, handler);
      resolve(values);
    }
    emitter.on(event, handler);
  });
}

/** A promise as `new Promise(executor)` would make, rejected if not settled within `ms`. */
function within(ms, what, executor) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`expected ${what} within ${ms} ms`)), ms);
    executor(
      (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      (err) => {
        clearTimeout(timer);
        reject(err);
      },
    );
  });
}

/** Resolve when the socket connects or is refused, whichever comes first; reject after `ms`. */
function outcome(socket, ms) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      socket.off("connect", onConnect).off("connect_error", onError);
      reject(new Error(`expected connect or connect_error within ${ms} ms, got neither`));
    }, ms);
    function onConnect() {
      clearTimeout(timer);
      socket.off("connect_error", onError);
      resolve({ connected: true });
    }
    function onError(err) {
      clearTimeout(timer);
      socket.off("connect", onConnect);
      resolve({ connected: false, err });
    }
    socket.once("connect", onConnect).once("connect_error", onError);
  });
}

/** Wait until the socket is connected; reject with the connect_error's message. */
async function connected(socket, ms = 5000) {
  if (socket.connected) return socket;
  const result = await outcome(socket, ms);
  if (!result.connected) {
    throw new Error(`expected a connection, got connect_error: ${result.err.message}`);
  }
  return socket;
}

/** The connect_error of a socket expected to be refused: {message, data}. */
async function refused(socket, ms = 5000) {
  const result = await outcome(socket, ms);
  if (result.connected) throw new Error("expected connect_error, got connect");
  return { message: result.err.message, data: view(result.err.data) };
}

/** Emit with an acknowledgement; resolve with *all* the ack's arguments (as an array). */
function ack(socket, event, ...values) {
  return new Promise((resolve, reject) => {
    socket.timeout(5000).emit(event, ...values, (err, ...response) => {
      if (err) reject(new Error(`expected an ack for ${event}, got ${err.message}`));
      else resolve(response);
    });
  });
}

/** Record every occurrence of `event` on `socket` (its arguments, as a JSON view). */
function record(socket, event) {
  const seen = [];
  socket.on(event, (...values) => seen.push(view(values)));
  return seen;
}

/** A JSON view of a value: binary becomes {"$bin": hex, "$type": constructor name}. */
function view(value) {
  if (Buffer.isBuffer(value) || ArrayBuffer.isView(value) || value instanceof ArrayBuffer) {
    const bytes =
      value instanceof ArrayBuffer
        ? Buffer.from(value)
        : Buffer.from(value.buffer, value.byteOffset, value.byteLength);
    return { $bin: bytes.toString("hex"), $type: value.constructor.name };
  }
  if (Array.isArray(value)) return value.map(view);
  if (value && typeof value === "object") {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, view(v)]));
  }
  return value === undefined ? null : value;
}

/** Print the observations, close every socket, exit 0. */
function done(observations, ...sockets) {
  const line = JSON.stringify(observations) + "\n";
  for (const socket of sockets) socket.disconnect();
  process.stdout.write(line, () => process.exit(0));
}

/** Run the scenario; any rejection fails the script with its message. */
function main(scenario) {
  scenario().catch((err) => fail(`${err.message} (at step: ${step.current})`));
}

module.exports = {
  MODES,
  ack,
  args,
  client,
  connected,
  done,
  fail,
  main,
  manager,
  once,
  record,
  refused,
  step,
  view,
  within,
};
