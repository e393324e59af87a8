// Transports: which transport a client starts on and ends on, and whether events sent
// before, during and after a polling -> websocket upgrade all arrive, once, in order.
// argv: <url> <mode>
"use strict";

const { ack, args, client, connected, done, main, once, record, step } = require("./lib");

const { url, mode } = args();

main(async () => {
  const socket = client(url, mode);
  const engine = socket.io.engine;
  const upgrades = [];
  engine.on("upgrade", (transport) => upgrades.push(transport.name));
  const opened = once(socket.io, "open").then(() => engine.transport.name);
  const ticks = record(socket, "tick");

  step.current = "connect";
  await connected(socket);
  const sid = socket.id;
  const engineId = engine.id;

  // Batch 1, right after connecting: client -> server events acknowledged in order, and a
  // burst of server -> client events that lands in the upgrade window in default mode.
  const acks = [];
  step.current = "batch 1";
  await Promise.all([
    ...[0, 1, 2, 3, 4].map((i) => ack(socket, "echo_sync", i).then(([v]) => acks.push(v))),
    ack(socket, "burst", "tick", 0, 20),
  ]);

  if (mode === "default" && upgrades.length === 0) {
    step.current = "upgrade";
    await once(engine, "upgrade");
  }

  step.current = "batch 2";
  await Promise.all([
    ...[5, 6, 7, 8, 9].map((i) => ack(socket, "echo_sync", i).then(([v]) => acks.push(v))),
    ack(socket, "burst", "tick", 20, 20),
  ]);

  done(
    {
      opened_on: await opened,
      final: engine.transport.name,
      upgrades,
      acks,
      ticks: ticks.map(([i]) => i),
      same_socket: socket.id === sid && engine.id === engineId,
    },
    socket,
  );
});
