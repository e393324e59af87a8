// A drain, seen by N real socket.io clients behind a load balancer.
//
// argv: <count> <backend A> <backend B> <deadline ms>. A proxy of this script's own stands
// for the load balancer: it sends every new TCP connection to A, until A is taken out of
// service (as a readiness probe would), then to B. The clients connect through it to A
// (websocket, reconnection with a short fixed delay, so that their reconnects follow the
// server's closes and not a client-side random backoff); then A is drained. Prints
// {closed, disconnects: [ms], reconnects: [ms]}: when each client lost A and when it was
// connected again (to B), in ms since the drain was asked for.
"use strict";

const net = require("node:net");
const http = require("node:http");
const { io } = require("socket.io-client");

const [count, backendA, backendB, deadline] = process.argv.slice(2);
const step = { current: "start" };
setTimeout(() => fail(`timed out at step: ${step.current}`), Number(deadline));

function fail(message) {
  process.stderr.write(`FAIL: ${message}\n`);
  process.exit(1);
}

function hostPort(url) {
  const { hostname, port } = new URL(url);
  return { host: hostname, port: Number(port) };
}

let target = hostPort(backendA);
const proxy = net.createServer((inbound) => {
  const outbound = net.connect(target);
  inbound.pipe(outbound).pipe(inbound);
  const drop = () => {
    inbound.destroy();
    outbound.destroy();
  };
  inbound.on("error", drop).on("close", drop);
  outbound.on("error", drop).on("close", drop);
});

function post(url) {
  return new Promise((resolve, reject) => {
    const request = http.request(url, { method: "POST" }, (response) => {
      let body = "";
      response.on("data", (chunk) => (body += chunk));
      response.on("end", () => resolve(JSON.parse(body)));
    });
    request.on("error", reject);
    request.end();
  });
}

async function main() {
  await new Promise((resolve) => proxy.listen(0, "127.0.0.1", resolve));
  const url = `http://127.0.0.1:${proxy.address().port}`;
  const n = Number(count);
  const sockets = [];
  step.current = `connecting ${n} clients`;
  await new Promise((resolve, reject) => {
    let connected = 0;
    for (let i = 0; i < n; i++) {
      const socket = io(url, {
        forceNew: true,
        transports: ["websocket"],
        reconnectionDelay: 50,
        randomizationFactor: 0,
      });
      socket.once("connect", () => {
        connected += 1;
        if (connected === n) resolve();
      });
      socket.once("connect_error", (error) => reject(new Error(`connect_error: ${error}`)));
      sockets.push(socket);
    }
  });
  step.current = "draining";
  const disconnects = [];
  const reconnects = [];
  let start = 0;
  const back = new Promise((resolve) => {
    for (const socket of sockets) {
      socket.once("disconnect", () => {
        disconnects.push(performance.now() - start);
        socket.once("connect", () => {
          reconnects.push(performance.now() - start);
          if (reconnects.length === n) resolve();
        });
      });
    }
  });
  target = hostPort(backendB); // the load balancer has heard that A is not ready
  start = performance.now();
  const answer = await post(`${backendA}/drain`);
  step.current = `waiting for reconnects (${reconnects.length} of ${n})`;
  await back;
  for (const socket of sockets) socket.close();
  proxy.close();
  process.stdout.write(`${JSON.stringify({ closed: answer.closed, disconnects, reconnects })}\n`);
  process.exit(0);
}

main().catch((error) => fail(error.stack || String(error)));
