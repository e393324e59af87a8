// The reference servers for tests/differential: Node's own engine.io and socket.io, set up
// like the rooms app they are compared with (tests/apps/differential.py), on one port.
//
//   node reference_server.js <port>
//
// Serves, as the rooms app does:
//   /engine.io/    bare Engine.IO: echo; ping 250 ms / timeout 400 ms; maxPayload 1000;
//                  CORS for http://allowed.example; "refuse=1" in the query and foreign
//                  origins are refused at the handshake (rooms' on_connect and origin check)
//   /engine-slow/  bare Engine.IO with a heartbeat too slow to interleave (30 s / 30 s)
//   /socket.io/    Socket.IO: "/" with an "echo" event, "/admin" behind a middleware that
//                  refuses without auth.token "s3cret" (ping 500 ms / timeout 1000 ms)
//   /health        "ok"
//   /state?engine=fast|slow&sid=S  {"open": session open, "polling": a GET is pending,
//                                   "upgrading": a websocket is taking the session over}
//   /close?engine=fast|slow&sid=S  the server closes that session ("forced close")
// and prints "ready <port>" once it listens. Only 127.0.0.1.
"use strict";

const http = require("http");
const { Server: EngineServer } = require("engine.io");
const { Server: IOServer } = require("socket.io");

const port = Number(process.argv[2]);
if (!Number.isInteger(port) || port <= 0) {
  process.stderr.write("usage: node reference_server.js <port>\n");
  process.exit(2);
}

const ALLOWED_ORIGIN = "http://allowed.example";

/** rooms' origin policy: same origin always; others only when listed. */
function originAllowed(req, allowed) {
  const origin = req.headers.origin;
  if (origin === undefined) return true;
  try {
    if (new URL(origin).host === req.headers.host) return true;
  } catch (e) {
    return false;
  }
  return allowed.includes(origin);
}

/** rooms' bare-engine app refuses "refuse=1" in on_connect, and foreign origins. */
function allowRequest(allowed) {
  return (req, callback) => {
    const refused = /(^|&)refuse=1(&|$)/.test(req.url.split("?")[1] || "");
    callback(null, !refused && originAllowed(req, allowed));
  };
}

function echo(socket) {
  socket.on("message", (data) => socket.send(data));
}

const fast = new EngineServer({
  pingInterval: 250,
  pingTimeout: 400,
  maxHttpBufferSize: 1000,
  cors: { origin: [ALLOWED_ORIGIN], credentials: true },
  allowRequest: allowRequest([ALLOWED_ORIGIN]),
});
fast.on("connection", echo);

const slow = new EngineServer({
  pingInterval: 30000,
  pingTimeout: 30000,
  allowRequest: allowRequest([]),
});
slow.on("connection", echo);

const engines = { fast, slow };

function route(req, res) {
  const url = new URL(req.url, "http://localhost");
  const json = (value) => {
    const body = JSON.stringify(value);
    res.writeHead(200, { "Content-Type": "application/json" });
    res.end(body);
  };
  if (url.pathname === "/health") {
    res.writeHead(200, { "Content-Type": "text/plain" });
    res.end("ok");
    return;
  }
  const engine = engines[url.searchParams.get("engine") || "fast"];
  const session = engine && engine.clients[url.searchParams.get("sid")];
  if (url.pathname === "/state") {
    json({
      open: session !== undefined && session.readyState === "open",
      polling:
        session !== undefined &&
        session.readyState === "open" &&
        session.transport.name === "polling" &&
        session.transport.writable,
      posting: session !== undefined && session.transport.name === "polling" && !!session.transport.dataReq,
      upgrading: session !== undefined && session.upgrading,
    });
  } else if (url.pathname === "/close") {
    if (session !== undefined) session.close();
    json({ closed: session !== undefined });
  } else {
    res.writeHead(404);
    res.end();
  }
}

// Each server attached keeps the request listeners already there and calls them for paths
// not its own: the routes first, then Socket.IO, then the two bare engines.
const server = http.createServer();
server.on("request", route);
const io = new IOServer(server, {
  pingInterval: 500,
  pingTimeout: 1000,
  cors: { origin: "*" },
  destroyUpgrade: false,
});
io.on("connection", (socket) => {
  socket.on("echo", (...args) => {
    const ack = typeof args[args.length - 1] === "function" ? args.pop() : null;
    if (ack) ack(...args);
  });
});
io.of("/admin").use((socket, next) => {
  if (socket.handshake.auth && socket.handshake.auth.token === "s3cret") return next();
  const error = new Error("unauthorized");
  error.data = { hint: "send auth.token" };
  next(error);
});

fast.attach(server, { path: "/engine.io/", destroyUpgrade: false });
slow.attach(server, { path: "/engine-slow/", destroyUpgrade: false });

server.listen(port, "127.0.0.1", () => {
  process.stdout.write(`ready ${port}\n`);
});

process.on("SIGTERM", () => process.exit(0));
