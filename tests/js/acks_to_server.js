// Client -> server acknowledgements: the handler's return value comes back as the ack's
// arguments (a tuple as several arguments, None as none).
// argv: <url> <mode>
"use strict";

const { ack, args, client, connected, done, main, step } = require("./lib");

const { url, mode } = args();

main(async () => {
  const socket = client(url, mode);
  step.current = "connect";
  await connected(socket);

  step.current = "acks";
  const out = {
    echo_many: await ack(socket, "echo", 1, "two", { three: [3, 3.5] }, null, true),
    echo_none: await ack(socket, "echo"),
    echo_one: await ack(socket, "echo", "solo"),
    echo_sync: await ack(socket, "echo_sync", { nested: { list: [1, { deep: "é ✓ 🎉" }] } }),
    with_promise: await socket.timeout(5000).emitWithAck("echo_sync", [1, 2]),
    catch_all: await ack(socket, "no_such_event", 1, { b: 2 }),
  };
  done(out, socket);
});
