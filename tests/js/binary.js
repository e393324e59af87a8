// Binary both ways, at the top level and nested in objects and arrays, in events and acks.
// Every value received is reported as a JSON view where binary is {"$bin": hex, "$type"}.
// argv: <url> <mode>
"use strict";

const crypto = require("crypto");
const { ack, args, client, connected, done, main, once, step, view } = require("./lib");

const { url, mode } = args();

const small = Buffer.from([0, 1, 2, 253, 254, 255]);
const empty = Buffer.alloc(0);
const large = crypto.createHash("sha256").update("rooms").digest(); // seed for 64 KiB
const big = Buffer.concat(Array.from({ length: 2048 }, () => large));
const typed = new Uint8Array([7, 8, 9]);

main(async () => {
  const socket = client(url, mode);
  socket.on("question", (question, callback) => {
    // Answer binary with binary: the bytes reversed, nested in an object.
    callback({ reversed: Buffer.from(question.bytes).reverse(), list: [question.bytes] });
  });

  step.current = "connect";
  await connected(socket);

  const out = {};
  step.current = "acks";
  out.top_level = view(await ack(socket, "echo", small));
  out.nested = view(
    await ack(socket, "echo", { file: small, meta: { parts: [small, "x", empty] } }, [small, 1]),
  );
  out.typed_array = view(await ack(socket, "echo", typed));
  out.big_sha256 = crypto
    .createHash("sha256")
    .update((await ack(socket, "echo_sync", big))[0])
    .digest("hex");

  step.current = "server event";
  const event = once(socket, "blob");
  await ack(socket, "emit_back", "blob", small, { inner: [small] }, "text");
  out.event = view(await event);

  step.current = "server ack";
  out.ask = view(await ack(socket, "ask", { bytes: small }));

  done(out, socket);
});
