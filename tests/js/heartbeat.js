// Heartbeat. H answers pings (the client does so by itself) and must stay connected for
// `pings` ping intervals. M is muted: it stops answering pings, so the server must drop it
// with reason "ping timeout" (H is in "disconnect-watchers" and hears why M left).
// argv: <url> <mode> [pings=4]
"use strict";

const { ack, args, client, connected, done, main, once, step } = require("./lib");

const { url, mode, rest } = args();
const pings = Number(rest[0] || 4);

main(async () => {
  const h = client(url, mode);
  const m = client(url, mode);
  const handshake = once(h.io.engine, "handshake");
  const mute = m.io.engine;
  const sendPacket = mute._sendPacket.bind(mute); // engine.io-client 4.x internals
  mute._sendPacket = (type, ...rest) => (type === "pong" ? undefined : sendPacket(type, ...rest));

  const pingTimes = [];
  const disconnects = [];
  h.on("disconnect", (reason) => disconnects.push(reason));

  step.current = "connect";
  await Promise.all([connected(h), connected(m)]);
  const [config] = await handshake;
  const sid = h.id;
  const engineId = h.io.engine.id;
  const mSid = m.id;
  const mGone = new Promise((resolve) =>
    h.on("gone", (who, reason) => who === mSid && resolve(reason)),
  );
  const mDisconnect = once(m, "disconnect", 10000);
  await ack(h, "join", "disconnect-watchers");

  step.current = `${pings} pings`;
  const start = Date.now();
  await new Promise((resolve) => {
    h.io.engine.on("ping", () => {
      pingTimes.push(Date.now() - start);
      if (pingTimes.length === pings) resolve();
    });
  });
  const echo = await ack(h, "echo_sync", "alive");

  step.current = "muted client dropped";
  const mServerReason = await mGone;
  const [mClientReason] = await mDisconnect;

  done(
    {
      ping_interval: config.pingInterval,
      ping_timeout: config.pingTimeout,
      pings: pingTimes.length,
      gaps_ms: pingTimes.slice(1).map((t, i) => t - pingTimes[i]),
      connected: h.connected,
      same_session: h.id === sid && h.io.engine.id === engineId,
      disconnects,
      echo,
      muted: { server_reason: mServerReason, client_reason: mClientReason },
    },
    h,
  );
});
