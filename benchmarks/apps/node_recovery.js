// Node's own socket.io server with connection state recovery, serving what
// tests/apps/recovery.py serves to tests/js/cut_soak.js: sockets join the rooms their auth
// names (unless recovered), and "feed" broadcasts one tick to a room and acknowledges it.
// Default heartbeat (ping 25 s / timeout 20 s), as the rooms app has.
//
//   node benchmarks/apps/node_recovery.js <port>     prints "ready <port>" once it listens
"use strict";

const http = require("http");
const { Server } = require("socket.io");

const port = Number(process.argv[2]);
const httpServer = http.createServer((req, res) => {
  res.writeHead(req.url === "/health" ? 200 : 404).end("ok");
});
const io = new Server(httpServer, {
  connectionStateRecovery: { maxDisconnectionDuration: 30000, skipMiddlewares: true },
});
io.on("connection", (socket) => {
  if (!socket.recovered) {
    for (const room of socket.handshake.auth.rooms || []) socket.join(String(room));
  }
  socket.on("feed", (room, n, ack) => {
    io.to(room).emit("tick", n);
    ack(true);
  });
});
httpServer.listen(port, "127.0.0.1", () => process.stdout.write(`ready ${port}\n`));
