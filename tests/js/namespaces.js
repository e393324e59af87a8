// Namespaces: a middleware that refuses, an unknown namespace, dynamic namespaces, and
// several namespaces multiplexed on one Engine.IO connection.
// argv: <url> <mode>
"use strict";

const { ack, args, client, connected, done, main, manager, once, refused, step } = require("./lib");

const { url, mode } = args();

main(async () => {
  const out = {};
  const sockets = [];
  const open = (nsp, extra) => {
    const socket = client(url + nsp, mode, extra);
    sockets.push(socket);
    return socket;
  };

  step.current = "admin without token";
  const noToken = open("/admin");
  out.admin_without_token = await refused(noToken);
  out.admin_without_token.active = noToken.active;

  step.current = "admin with a wrong token";
  out.admin_wrong_token = await refused(open("/admin", { auth: { token: "guess" } }));

  step.current = "admin with token";
  const admin = await connected(open("/admin", { auth: { token: "s3cret" } }));
  out.admin_echo = await ack(admin, "echo", "hi");

  step.current = "unknown namespace";
  const unknown = open("/nope");
  out.unknown = await refused(unknown);
  out.unknown.active = unknown.active;

  step.current = "dynamic namespaces";
  const dyn42 = await connected(open("/dyn-42"));
  const dyn7 = await connected(open("/dyn-7"));
  out.dyn_where = [(await ack(dyn42, "where"))[0], (await ack(dyn7, "where"))[0]];
  out.dyn_not_matching = await refused(open("/dyn-x"));

  step.current = "multiplexed";
  const shared = manager(url, mode);
  const root = shared.socket("/");
  const sharedAdmin = shared.socket("/admin", { auth: { token: "s3cret" } });
  // Listen at once: the refusal may arrive before the other two are connected.
  const sharedRefused = refused(shared.socket("/nope"));
  sockets.push(root, sharedAdmin);
  await Promise.all([connected(root), connected(sharedAdmin)]);
  out.multiplexed = {
    main_echo: await ack(root, "echo_sync", "m"),
    admin_echo: await ack(sharedAdmin, "echo", "a"),
    distinct_ids: root.id !== sharedAdmin.id,
  };
  // Refusing one namespace on a shared connection leaves the others connected.
  out.multiplexed.refused = await sharedRefused;
  out.multiplexed.main_after_refusal = await ack(root, "echo_sync", "still here");
  out.multiplexed.admin_after_refusal = await ack(sharedAdmin, "echo", "still here");

  step.current = "namespace disconnects on a shared connection";
  const engineId = shared.engine.id;
  const adminSid = sharedAdmin.id;
  // The client leaves /admin and comes back: DISCONNECT then CONNECT on the same session.
  sharedAdmin.disconnect();
  sharedAdmin.connect();
  await connected(sharedAdmin);
  out.rejoined = {
    new_sid: sharedAdmin.id !== adminSid,
    echo: await ack(sharedAdmin, "echo", "back"),
  };
  // The server disconnects "/" ("bye"): /admin stays connected on the same session.
  const mainGone = once(root, "disconnect");
  root.emit("bye");
  out.server_disconnected_main = {
    reason: (await mainGone)[0],
    admin_echo: await ack(sharedAdmin, "echo", "alone"),
  };
  root.connect();
  await connected(root);
  out.main_reconnected = await ack(root, "echo_sync", "again");
  out.one_session_throughout = shared.engine.id === engineId;

  done(out, ...sockets);
});
