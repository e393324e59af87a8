// Real socket.io-client sockets that use presence (rooms.presence), driven by
// tests/cluster/test_presence_processes.py while it starts and kills server processes.
//
// Reads one JSON command per line on stdin and answers each with one JSON line on stdout:
// {"id": <command id>, "ok": true, "result": ...} or {"id", "ok": false, "error": "..."}.
// Besides the answers it reports, as they happen, what each socket receives:
//
//   {"report": "event", "name", "event", "payload"}   every presence_state / presence_diff,
//                                                     as it came
//   {"report": "synced", "name", "topic", "list"}     then the {key: [meta]} list that
//                                                     examples/presence.js keeps from them
//   {"report": "disconnect", "name", "reason"}
//
// Every wait is for an event, bounded by a timeout. Commands:
//
//   connect {name, url, mode?}            → {id, transport}
//   enter   {name, topic, user, tab?}     → the entry's ref (the app tracks the socket under
//                                           `user` with meta {name: tab} and subscribes it)
//   watch   {name, topic}                 → true (subscribes only)
//   leave   {name, topic}                 → how many entries ended
//   close   {name}                        socket.disconnect()
"use strict";

const path = require("path");
const readline = require("readline");
const { io } = require("socket.io-client");
const { MODES, within } = require("./lib.js");
const { syncPresence } = require(path.join(__dirname, "..", "..", "examples", "presence.js"));

const PRESENCE_EVENTS = new Set(["presence_state", "presence_diff"]);

const sockets = new Map(); // name → {socket, synced: Set of topics}

function report(message) {
  process.stdout.write(JSON.stringify(message) + "\n");
}

function entry(name) {
  const found = sockets.get(name);
  if (!found) throw new Error(`expected a connected socket named ${name}, got none`);
  return found;
}

function ack(socket, event, ...args) {
  return within(6000, `an ack for ${event}`, (resolve, reject) => {
    socket.timeout(5000).emit(event, ...args, (err, response) => {
      if (err) reject(new Error(`expected an ack for ${event}, got ${err.message}`));
      else resolve(response === undefined ? null : response);
    });
  });
}

/** Keep the synced list of `topic` (once per socket), registered before the state can come. */
function sync(name, topic) {
  const { socket, synced } = entry(name);
  if (synced.has(topic)) return;
  synced.add(topic);
  syncPresence(socket, topic, (list) => report({ report: "synced", name, topic, list }));
}

const handlers = {
  async connect({ name, url, mode = "websocket" }) {
    if (!MODES[mode]) throw new Error(`expected a mode among ${Object.keys(MODES)}, got ${mode}`);
    const socket = io(url, { forceNew: true, reconnection: false, timeout: 5000, ...MODES[mode] });
    sockets.set(name, { socket, synced: new Set() });
    // onAny runs before the listeners syncPresence adds: the event is reported, then the
    // list it made.
    socket.onAny((event, payload) => {
      if (PRESENCE_EVENTS.has(event)) report({ report: "event", name, event, payload });
    });
    socket.on("disconnect", (reason) => report({ report: "disconnect", name, reason }));
    await within(8000, `${name} to connect to ${url}`, (resolve, reject) => {
      socket.once("connect", resolve);
      socket.once("connect_error", (err) => reject(new Error(`connect_error: ${err.message}`)));
    });
    return { id: socket.id, transport: socket.io.engine.transport.name };
  },

  async enter({ name, topic, user, tab }) {
    sync(name, topic);
    return ack(entry(name).socket, "enter", topic, user, tab || user);
  },

  async watch({ name, topic }) {
    sync(name, topic);
    return ack(entry(name).socket, "watch", topic);
  },

  async leave({ name, topic }) {
    return ack(entry(name).socket, "leave", topic);
  },

  async close({ name }) {
    entry(name).socket.disconnect();
    return null;
  },
};

const input = readline.createInterface({ input: process.stdin });
input.on("line", (line) => {
  let command;
  try {
    command = JSON.parse(line);
  } catch (err) {
    report({ id: null, ok: false, error: `expected a JSON command, got ${line.slice(0, 60)}` });
    return;
  }
  const handler = handlers[command.cmd];
  if (!handler) {
    report({ id: command.id, ok: false, error: `expected a known command, got ${command.cmd}` });
    return;
  }
  Promise.resolve()
    .then(() => handler(command))
    .then(
      (result) => report({ id: command.id, ok: true, result }),
      (err) => report({ id: command.id, ok: false, error: err.message }),
    );
});
input.on("close", () => {
  for (const { socket } of sockets.values()) socket.disconnect();
  process.exit(0);
});
