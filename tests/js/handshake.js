// Handshake details the server sees: auth, query parameters, headers, address; and auth
// used by the app's connect handler (auth.room joins that room).
// argv: <url> <mode>
"use strict";

const { ack, args, client, connected, done, main, step } = require("./lib");

const { url, mode } = args();

main(async () => {
  const auth = { user: "ada", n: 1, nested: { ok: true }, room: "from-auth" };
  const socket = client(url, mode, {
    auth,
    query: { lang: "fr", flag: "1" },
    extraHeaders: { "x-test-header": "hello from node" },
  });
  step.current = "connect";
  await connected(socket);
  step.current = "whoami";
  const [who] = await ack(socket, "whoami");
  const [rooms] = await ack(socket, "join", "extra");
  done(
    {
      whoami: who,
      sid_matches: who.sid === socket.id,
      rooms: rooms.map((r) => (r === socket.id ? "<sid>" : r)),
    },
    socket,
  );
});
