// A remote control for real socket.io-client instances, for tests that must act between
// client steps (kill a server, restart Redis, cut a transport).
//
// Reads one JSON command per line on stdin and answers each with one JSON line on stdout:
// {"id": <command id>, "ok": true, "result": ...} or {"id", "ok": false, "error": "..."}.
// Every wait is for an event, bounded by the command's timeout (ms). Commands:
//
//   connect   {name, url, mode?, auth?, options?, answers?}  → {id, transport, recovered}
//             answers: {event: value}, acked from the start
//   call      {name, event, args?, timeout?}        → the ack's arguments
//   emit      {name, event, args?}
//   answer    {name, event, value}                  acks every later `event` with `value`
//   events    {name, count, timeout?}               → the next `count` recorded events
//   drain     {name}                                → every recorded event so far
//   upgraded  {name, timeout?}                      waits for the websocket transport
//   state     {name}                                → {connected, id, recovered, transport}
//   reconnected {name, timeout?}                    → waits for the next connect: state
//   disconnected {name, timeout?}                   waits until the socket is disconnected
//   reconnect {name, url?}                          connects again (to url, if given) → state
//   engine_close {name}                             cuts the transport (the client reconnects)
//   close_socket {name}                             socket.disconnect(), the client kept
//   close     {name}
"use strict";

const readline = require("readline");
const { io } = require("socket.io-client");
const { MODES, within } = require("./lib.js");

const clients = new Map();

function client(name) {
  const entry = clients.get(name);
  if (!entry) throw new Error(`expected a connected client named ${name}, got none`);
  return entry;
}

/** Binary as {"$bin": hex}, so the Python side can recognise it. */
function view(value) {
  if (Buffer.isBuffer(value) || ArrayBuffer.isView(value) || value instanceof ArrayBuffer) {
    const bytes =
      value instanceof ArrayBuffer
        ? Buffer.from(value)
        : Buffer.from(value.buffer, value.byteOffset, value.byteLength);
    return { $bin: bytes.toString("hex") };
  }
  if (Array.isArray(value)) return value.map(view);
  if (value && typeof value === "object") {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, view(v)]));
  }
  return value === undefined ? null : value;
}

function state(entry) {
  const { socket } = entry;
  const engine = socket.io.engine;
  return {
    connected: socket.connected,
    id: socket.id || null,
    recovered: socket.recovered === true,
    transport: engine && engine.transport ? engine.transport.name : null,
  };
}

function record(entry, event, args) {
  entry.events.push({ event, args: view(args) });
  const waiters = entry.waiters;
  entry.waiters = [];
  for (const wake of waiters) wake();
}

function waitFor(entry, ms, what, ready) {
  return within(ms, what, (resolve) => {
    const check = () => {
      const value = ready();
      if (value !== undefined) resolve(value);
      else entry.waiters.push(check);
    };
    check();
  });
}

const handlers = {
  async connect({ name, url, mode = "default", auth, options = {}, answers = {} }) {
    const socket = io(url, {
      forceNew: true,
      reconnection: false,
      timeout: 5000,
      ...MODES[mode],
      ...(auth ? { auth } : {}),
      ...options,
    });
    const entry = { socket, events: [], waiters: [], connects: 0 };
    clients.set(name, entry);
    socket.onAny((event, ...args) => {
      if (typeof args[args.length - 1] === "function") args.pop(); // an ack callback
      record(entry, event, args);
    });
    socket.on("disconnect", (reason) => record(entry, "disconnect", [reason]));
    for (const [event, value] of Object.entries(answers)) {
      // Registered before connecting: events may come with the CONNECT (mail, replays).
      socket.on(event, (...args) => {
        const ack = args[args.length - 1];
        if (typeof ack === "function") ack(value);
      });
    }
    socket.on("connect", () => {
      entry.connects += 1;
      for (const wake of entry.waiters.splice(0)) wake();
    });
    await within(8000, `${name} to connect`, (resolve, reject) => {
      socket.once("connect", resolve);
      socket.once("connect_error", (err) => reject(new Error(`connect_error: ${err.message}`)));
    });
    return state(entry);
  },

  async call({ name, event, args = [], timeout = 5000 }) {
    const { socket } = client(name);
    return within(timeout + 1000, `an ack for ${event}`, (resolve, reject) => {
      socket.timeout(timeout).emit(event, ...args, (err, ...response) => {
        if (err) reject(new Error(`expected an ack for ${event}, got ${err.message}`));
        else resolve(view(response));
      });
    });
  },

  async emit({ name, event, args = [] }) {
    client(name).socket.emit(event, ...args);
    return null;
  },

  async answer({ name, event, value }) {
    client(name).socket.on(event, (...args) => {
      const ack = args[args.length - 1];
      if (typeof ack === "function") ack(value);
    });
    return null;
  },

  async events({ name, count, timeout = 5000 }) {
    const entry = client(name);
    return waitFor(entry, timeout, `${count} event(s) on ${name}`, () =>
      entry.events.length >= count ? entry.events.splice(0, count) : undefined,
    );
  },

  async drain({ name }) {
    return client(name).events.splice(0);
  },

  async upgraded({ name, timeout = 5000 }) {
    const entry = client(name);
    const engine = entry.socket.io.engine;
    if (engine.transport.name === "websocket") return state(entry);
    return within(timeout, `${name} to upgrade to websocket`, (resolve) => {
      engine.once("upgrade", () => resolve(state(entry)));
    });
  },

  async state({ name }) {
    return state(client(name));
  },

  async reconnected({ name, timeout = 10000 }) {
    const entry = client(name);
    const before = entry.connects;
    return waitFor(entry, timeout, `${name} to reconnect`, () =>
      entry.connects > before && entry.socket.connected ? state(entry) : undefined,
    );
  },

  async disconnected({ name, timeout = 10000 }) {
    const entry = client(name);
    if (!entry.socket.connected) return state(entry);
    return within(timeout, `${name} to disconnect`, (resolve) => {
      entry.socket.once("disconnect", () => resolve(state(entry)));
    });
  },

  async reconnect({ name, url, timeout = 10000 }) {
    // A new connection for the same socket (so it may recover), to `url` if given: the
    // same client coming back through another process.
    const entry = client(name);
    if (url) entry.socket.io.uri = url;
    const before = entry.connects;
    entry.socket.connect();
    return waitFor(entry, timeout, `${name} to reconnect`, () =>
      entry.connects > before && entry.socket.connected ? state(entry) : undefined,
    );
  },

  async engine_close({ name }) {
    client(name).socket.io.engine.close();
    return null;
  },

  async close_socket({ name }) {
    // socket.disconnect(), keeping the client (it can reconnect later).
    client(name).socket.disconnect();
    return null;
  },

  async close({ name }) {
    client(name).socket.disconnect();
    clients.delete(name);
    return null;
  },
};

function reply(message) {
  process.stdout.write(JSON.stringify(message) + "\n");
}

const input = readline.createInterface({ input: process.stdin });
input.on("line", (line) => {
  let command;
  try {
    command = JSON.parse(line);
  } catch (err) {
    reply({ id: null, ok: false, error: `expected a JSON command, got ${line.slice(0, 60)}` });
    return;
  }
  const handler = handlers[command.cmd];
  if (!handler) {
    reply({ id: command.id, ok: false, error: `expected a known command, got ${command.cmd}` });
    return;
  }
  handler(command).then(
    (result) => reply({ id: command.id, ok: true, result }),
    (err) => reply({ id: command.id, ok: false, error: err.message }),
  );
});
input.on("close", () => {
  for (const { socket } of clients.values()) socket.disconnect();
  process.exit(0);
});
