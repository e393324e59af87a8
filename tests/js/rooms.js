// Rooms with three clients, A and B in the room, C outside it. In mode "mixed", A uses
// websocket only, B polling only and C the default, so one broadcast, encoded once, is
// delivered over both transports.
//
// Absence is observed without waiting on a clock: after an action, A "shout"s a fence
// that the server sends to everyone; a client's events arrive in order, so once every
// client has the fence, every delivery the action caused has already arrived.
// argv: <url> <mode>
"use strict";

const { ack, args, client, connected, done, main, once, record, step } = require("./lib");

const { url, mode } = args(15000, ["mixed"]);
const modes = mode === "mixed" ? ["websocket", "polling", "default"] : [mode, mode, mode];

main(async () => {
  const names = ["A", "B", "C"];
  const sockets = names.map((_, i) => client(url, modes[i]));
  const [a, b, c] = sockets;
  const said = sockets.map((s) => record(s, "said"));
  const fromHttp = sockets.map((s) => record(s, "from_http"));
  const polled = sockets.map((s, i) => {
    const seen = [];
    s.on("poll", (room, callback) => {
      seen.push(room);
      callback(names[i]);
    });
    return seen;
  });

  step.current = "connect";
  await Promise.all(sockets.map((s) => connected(s)));
  const room = `room-${a.id}`;
  const ids = Object.fromEntries(sockets.map((s, i) => [s.id, names[i]]));
  const name = (id) => ids[id] || (id === room ? "<room>" : id);

  let fences = 0;
  async function fence() {
    const text = `fence-${++fences}`;
    const heard = sockets.map((s) => once(s, "shouted"));
    await ack(a, "shout", text);
    for (const [received] of await Promise.all(heard)) {
      if (received !== text) throw new Error(`expected shout ${text}, got ${received}`);
    }
  }
  function snapshot() {
    return {
      said: said.map((list) => list.map(([id, text]) => [name(id), text])),
      from_http: fromHttp.map((list) => list.map(([text]) => text)),
      polled: polled.map((list) => list.length),
    };
  }

  const out = {};
  step.current = "join";
  out.join_a = (await ack(a, "join", room))[0].map(name);
  out.join_b = (await ack(b, "join", room))[0].map(name);

  step.current = "say";
  out.say_ack = (await ack(a, "say", room, "hello"))[0];
  await ack(b, "say", room, "hi A");
  await fence();
  out.after_say = snapshot();

  step.current = "ask_room";
  out.ask_room = (await ack(c, "ask_room", room))[0];

  step.current = "http";
  const response = await fetch(`${url}/emit?room=${encodeURIComponent(room)}&text=via-http`);
  out.http_status = response.status;
  await fence();
  out.after_http = snapshot();

  step.current = "binary";
  // C is not in the room but may send to it; binary reaches both members.
  await ack(c, "say", room, Buffer.from([0, 1, 255]));
  await fence();
  out.after_binary = snapshot();

  step.current = "leave";
  out.leave_b = (await ack(b, "leave", room))[0].map(name);
  await ack(a, "say", room, "after leave");
  await fence();
  out.after_leave = snapshot();
  out.ask_room_after_leave = (await ack(c, "ask_room", room))[0];

  done(out, ...sockets);
});
