// Drives examples/chat/app.py with two socket.io-client users, A and B, and prints what
// happened as one JSON object for tests/test_examples.py to check.
//
//   node tests/js/chat_demo.js http://127.0.0.1:PORT [http://127.0.0.1:OTHER_PORT]
//
// With a second URL, B connects there: A and B then chat across two processes of a cluster.
// Every wait is bounded; a step that times out fails the run with a message naming it.
"use strict";
const { io } = require("socket.io-client");
const { applyDiff, fromState } = require("../../examples/presence.js");

const url = process.argv[2];
const urlB = process.argv[3] || url;
const STEP_MS = 5000;

// Resolve with the first `event` on `socket` whose payload satisfies `match`. The
// listener is attached at once, so start waiting *before* causing the event.
function next(socket, event, match = () => true, label = event) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      socket.off(event, listener);
      reject(new Error(`timed out waiting for ${label}`));
    }, STEP_MS);
    function listener(...args) {
      if (!match(...args)) return;
      clearTimeout(timer);
      socket.off(event, listener);
      resolve(args.length === 1 ? args[0] : args);
    }
    socket.on(event, listener);
  });
}

function call(socket, event, ...args) {
  return socket.timeout(STEP_MS).emitWithAck(event, ...args);
}

// Each user keeps the presence list of every room it is subscribed to, as the page does
// (examples/presence.js); `waiters` are checked after every change.
function user(name, at = url) {
  const socket = io(at, { auth: { name }, reconnection: false, forceNew: true });
  const lists = new Map();
  const waiters = new Set();
  const changed = () => { for (const check of [...waiters]) check(); };
  socket.on("presence_state", ({ topic, state }) => { lists.set(topic, fromState(state)); changed(); });
  socket.on("presence_diff", (diff) => {
    const list = lists.get(diff.topic);
    if (list) { applyDiff(list, diff); changed(); }
  });
  socket.presence = { lists, waiters };
  return socket;
}

const namesIn = (socket, room) => Object.keys(socket.presence.lists.get(room) || {}).sort();

// Resolve with {room, who} once `socket`'s list of `room` holds exactly `names` (now or
// after a later change): start waiting *before* causing the change.
function whoIs(socket, room, names, label) {
  return new Promise((resolve, reject) => {
    const { waiters } = socket.presence;
    const timer = setTimeout(() => {
      waiters.delete(check);
      reject(new Error(`timed out waiting for ${label}: got ${namesIn(socket, room)}`));
    }, STEP_MS);
    function check() {
      const who = namesIn(socket, room);
      if (JSON.stringify(who) !== JSON.stringify(names)) return;
      clearTimeout(timer);
      waiters.delete(check);
      resolve({ room, who });
    }
    waiters.add(check);
    check();
  });
}

async function main() {
  const out = {};
  const a = user("A");
  await next(a, "connect");
  out.aJoin = await call(a, "join", "lobby");
  out.aWho = await whoIs(a, "lobby", ["A"], "A's who-list with A alone");

  const aSeesB = whoIs(a, "lobby", ["A", "B"], "A's who-list to show B");
  const aSeesBJoined = next(a, "system", (m) => m.text === "B joined");
  const b = user("B", urlB);
  await next(b, "connect");
  out.bJoin = await call(b, "join", "lobby");
  out.bWho = await whoIs(b, "lobby", ["A", "B"], "B's who-list with A and B");
  out.aWhoAfterB = await aSeesB;
  out.aSystem = await aSeesBJoined;

  // A message reaches B; A gets the ack.
  const bGetsMessage = next(b, "message");
  out.messageAck = await call(a, "message", "hello from A");
  out.bMessage = await bGetsMessage;

  // Typing indicator (volatile, but nothing is dropped on an idle connection).
  const bSeesTyping = next(b, "typing");
  a.emit("typing", true);
  out.bTyping = await bSeesTyping;

  // A switches room: B's who-list loses A.
  const bSeesALeave = whoIs(b, "lobby", ["B"], "B's who-list without A");
  out.aSwitch = await call(a, "join", "den");
  out.bWhoAfterSwitch = await bSeesALeave;

  // B follows into the den: A's who-list gains B.
  const aSeesBArrive = whoIs(a, "den", ["A", "B"], "A's who-list with B in den");
  out.bSwitch = await call(b, "join", "den");
  out.aWhoInDen = await aSeesBArrive;

  // POST /announce reaches both.
  const announced = Promise.all([next(a, "announce"), next(b, "announce")]);
  const response = await fetch(`${url}/announce`, {
    method: "POST",
    body: "maintenance at noon",
    signal: AbortSignal.timeout(STEP_MS),
  });
  out.announceStatus = response.status;
  out.announceReply = await response.json();
  out.announced = await announced;

  // B disconnects: A's who-list updates.
  const aSeesBGone = whoIs(a, "den", ["A"], "A's who-list after B left");
  b.disconnect();
  out.aWhoAfterDisconnect = await aSeesBGone;

  // No nickname: the server refuses the connection.
  const nameless = user("   ");
  out.refused = (await next(nameless, "connect_error")).message;
  nameless.close();

  // Engine.IO upgraded A from polling to websocket (default transports).
  const engine = a.io.engine;
  if (engine.transport.name !== "websocket") await next(engine, "upgrade", () => true, "upgrade");
  out.aTransport = engine.transport.name;
  a.disconnect();
  return out;
}

main().then(
  (out) => {
    process.stdout.write(JSON.stringify(out) + "\n");
    process.exit(0);
  },
  (error) => {
    process.stderr.write(`chat_demo failed: ${error.stack || error}\n`);
    process.exit(1);
  },
);
