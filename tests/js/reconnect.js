// Reconnection after a server restart on the same port.
//
// The test and this script take turns through stdout, one JSON line per phase:
//   {"phase": "connected"}    the test stops the server;
//   {"phase": "disconnected"} the test starts it again on the same port;
//   {"phase": "done", ...}    the observations.
// While the server is down the client emits with an ack: the client buffers the packet
// and must deliver it once it has reconnected.
// argv: <url> <mode>
"use strict";

const { ack, args, client, connected, main, once, step } = require("./lib");

const { url, mode } = args(30000);

function phase(name, extra = {}) {
  process.stdout.write(JSON.stringify({ phase: name, ...extra }) + "\n");
}

main(async () => {
  const socket = client(url, mode, {
    reconnection: true,
    reconnectionDelay: 100,
    reconnectionDelayMax: 300,
    randomizationFactor: 0,
  });
  const attempts = [];
  socket.io.on("reconnect_attempt", (n) => attempts.push(n));

  step.current = "connect";
  await connected(socket);
  const first = { sid: socket.id, echo: await ack(socket, "echo_sync", "before") };
  const disconnect = once(socket, "disconnect", 15000);
  phase("connected", { sid: first.sid });

  step.current = "server stopped";
  const [reason] = await disconnect;
  const reconnect = once(socket.io, "reconnect", 20000);
  const reconnected = once(socket, "connect", 20000);
  // Emitted while disconnected: buffered by the client until it reconnects.
  const whileDown = socket.timeout(20000).emitWithAck("echo_sync", "while down");
  phase("disconnected", { reason, active: socket.active });

  step.current = "reconnect";
  await reconnected;
  const [attempt] = await reconnect;
  const out = {
    phase: "done",
    reason,
    reconnect_attempt: attempt,
    attempts: attempts.length,
    new_sid: socket.id !== first.sid,
    recovered: socket.recovered === true,
    before: first.echo,
    while_down: await whileDown,
    after: await ack(socket, "echo_sync", "after"),
    transport: socket.io.engine.transport.name,
  };
  socket.disconnect();
  process.stdout.write(JSON.stringify(out) + "\n", () => process.exit(0));
});
