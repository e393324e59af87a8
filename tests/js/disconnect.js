// Disconnections, seen from both ends. W watches: it is in the "disconnect-watchers" room
// where the server announces ("gone", sid, reason) every socket that leaves.
//   A asks the server to disconnect it ("bye");
//   B disconnects itself (Socket.IO DISCONNECT packet);
//   E closes its whole Engine.IO connection;
//   F, asked for an ack by a room broadcast, disconnects instead of answering.
// Each `server_reason` is the list of every announcement for that socket: exactly one.
// B was in a room: once it is gone, a broadcast with acks to that room expects nobody.
// argv: <url> <mode>
"use strict";

const { ack, args, client, connected, done, main, once, step } = require("./lib");

const { url, mode } = args();

main(async () => {
  const [w, a, b, e, f] = [0, 1, 2, 3, 4].map(() => client(url, mode));
  const gone = {};
  w.on("gone", (sid, reason) => {
    gone[sid] = gone[sid] || [];
    gone[sid].push(reason);
  });
  const goneOf = (socket) => {
    const sid = socket.id;
    return new Promise((resolve) => {
      const check = () => (gone[sid] ? resolve(gone[sid]) : w.once("gone", check));
      check();
    });
  };

  step.current = "connect";
  await Promise.all([w, a, b, e, f].map((s) => connected(s)));
  await ack(w, "join", "disconnect-watchers");
  const room = `room-${b.id}`;
  await ack(b, "join", room);
  const out = {};

  step.current = "server disconnects A";
  const aGone = goneOf(a);
  const aDisconnect = once(a, "disconnect");
  a.emit("bye");
  const [aReason] = await aDisconnect;
  out.a = { client_reason: aReason, server_reason: await aGone, active: a.active };

  step.current = "B disconnects";
  const bGone = goneOf(b);
  const bDisconnect = once(b, "disconnect");
  b.disconnect();
  const [bReason] = await bDisconnect;
  out.b = { client_reason: bReason, server_reason: await bGone };

  step.current = "E closes its connection";
  const eGone = goneOf(e);
  const eDisconnect = once(e, "disconnect");
  e.io.engine.close();
  const [eReason] = await eDisconnect;
  out.e = { client_reason: eReason, server_reason: await eGone };

  step.current = "F leaves instead of answering a broadcast";
  // The server's ack wait (5 s) equals the client's: the answer must come before either,
  // without F's, as soon as F is gone.
  const pollRoom = `poll-${f.id}`;
  w.on("poll", (_room, callback) => callback("W"));
  f.on("poll", () => f.disconnect());
  await ack(w, "join", pollRoom);
  await ack(f, "join", pollRoom);
  out.ask_room_with_departure = (await ack(w, "ask_room", pollRoom))[0];

  step.current = "the others keep working";
  out.watcher_echo = await ack(w, "echo_sync", "still here");
  out.ask_room_of_departed = (await ack(w, "ask_room", room))[0];

  done(out, w);
});
