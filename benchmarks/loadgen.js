#!/usr/bin/env node
// Load generator for benchmarks/run.py: one Node process of bare websocket clients speaking
// the smallest useful subset of Engine.IO v4 / Socket.IO v5 over the websocket transport:
//
//   server -> `0{"sid":..,...}`  client -> `40`  server -> `40{"sid":..}`
//   server ping `2` -> client pong `3`; events `42<id>[...]`, acks `43<id>[...]`.
//
// It is deliberately much cheaper than socket.io-client: no JSON parse on the hot path
// (receivers count frames and slice the sender timestamp out of the raw bytes), no
// permessage-deflate, no UTF-8 validation, and by default not even the `ws` package (see
// "clients" below; --client ws switches to it). It reports its own CPU use so a run can show
// it was not the bottleneck.
//
// Usage: node loadgen.js --scenario fanout|echo|connect --port N [--client raw|ws] [options]
// (fanout also takes --ports A,B: members spread over several servers, e.g. behind a broker)
// Output: one JSON object per line on stdout ({"event": ...}); the last one is "result" (or
// "error"). The connect scenario pauses twice ("baseline", "idle") until a line on stdin, so
// the runner can read the server's RSS. Every run is bounded by --timeout seconds.
'use strict';

const crypto = require('node:crypto');
const net = require('node:net');
const { performance } = require('node:perf_hooks');

let WebSocket = null; // the `ws` package, loaded only for --client ws

// ---------------------------------------------------------------------------- options

const DEFAULTS = {
  scenario: 'fanout',
  host: '127.0.0.1',
  port: 0,
  ports: '', // fanout across processes: members spread over these ports, the sender on the first
  members: 1000, // fanout: receivers in the room
  window: 0, // fanout: messages in flight (0: about 4,000 deliveries, at least 2)
  clients: 100, // echo: closed-loop clients; connect: connections to open
  event: 'echo', // echo: the event each client emits (echo_sync: the servers' sync handler)
  concurrency: 200, // connects in flight
  warmup: 1, // seconds of load before measuring
  duration: 5, // seconds measured
  drain: 5, // fanout: seconds allowed for in-flight deliveries after the window
  timeout: 120, // hard limit for the whole process, seconds
  payload: 64, // bytes of padding in each event payload
  room: 'bench',
  client: 'raw', // websocket transport: raw (node:net) or ws (the ws package)
};

function parseArgs(argv) {
  const opts = { ...DEFAULTS };
  for (let i = 0; i < argv.length; i += 2) {
    const key = argv[i].replace(/^--/, '');
    if (!(key in DEFAULTS) || i + 1 >= argv.length) throw new Error(`bad option ${argv[i]}`);
    const value = argv[i + 1];
    opts[key] = typeof DEFAULTS[key] === 'number' ? Number(value) : value;
    if (Number.isNaN(opts[key])) throw new Error(`expected a number for ${argv[i]}, got ${value}`);
  }
  if (!opts.port && !opts.ports) throw new Error('expected --port or --ports');
  return opts;
}

function emit(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n'); // synchronous for pipes on Linux
}

function fail(message, code = 1) {
  emit({ event: 'error', message });
  process.exit(code);
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// ---------------------------------------------------------------------------- latency

// 10 us buckets below 100 ms, 1 ms buckets below 100 s: bounded memory, ~1% precision.
class Histogram {
  constructor() {
    this.fine = new Uint32Array(10000);
    this.coarse = new Uint32Array(100000);
    this.over = 0;
    this.count = 0;
    this.sum = 0;
    this.max = 0;
  }

  record(ms) {
    if (!(ms > 0)) ms = 0;
    this.count++;
    this.sum += ms;
    if (ms > this.max) this.max = ms;
    if (ms < 100) this.fine[(ms * 100) | 0]++;
    else if (ms < 100000) this.coarse[ms | 0]++;
    else this.over++;
  }

  percentile(p) {
    if (this.count === 0) return null;
    const target = Math.max(1, Math.ceil((this.count * p) / 100));
    let acc = 0;
    for (let i = 0; i < this.fine.length; i++) {
      acc += this.fine[i];
      if (acc >= target) return (i + 0.5) / 100;
    }
    for (let i = 100; i < this.coarse.length; i++) {
      acc += this.coarse[i];
      if (acc >= target) return i + 0.5;
    }
    return this.max;
  }

  summary() {
    const round = (v) => (v === null ? null : Math.round(v * 1000) / 1000);
    return {
      count: this.count,
      mean_ms: this.count ? round(this.sum / this.count) : null,
      p50_ms: round(this.percentile(50)),
      p90_ms: round(this.percentile(90)),
      p99_ms: round(this.percentile(99)),
      max_ms: round(this.max),
    };
  }
}

// ---------------------------------------------------------------------------- resources

class Meter {
  start() {
    this.t0 = performance.now();
    this.cpu0 = process.cpuUsage();
    this.elu0 = performance.eventLoopUtilization();
  }

  stop() {
    const elapsedMs = performance.now() - this.t0;
    const cpu = process.cpuUsage(this.cpu0);
    const elu = performance.eventLoopUtilization(this.elu0);
    return {
      elapsed_s: elapsedMs / 1000,
      cpu_pct: ((cpu.user + cpu.system) / 1000 / elapsedMs) * 100,
      user_pct: (cpu.user / 1000 / elapsedMs) * 100,
      system_pct: (cpu.system / 1000 / elapsedMs) * 100,
      event_loop_utilization: elu.utilization,
    };
  }
}

// ---------------------------------------------------------------------------- clients

// Two interchangeable websocket transports; a connection is { send(text), terminate(),
// isOpen() } and hands every text frame to onFrame(buffer, start, end) without copying.
//
// * "raw" (default): a minimal RFC 6455 client on node:net with the `onread` option, so
//   bytes land in one shared buffer and are framed right there: no Readable stream, no
//   per-frame Buffer or event. At ~90k deliveries/s this costs about half the CPU of `ws`.
//   Client frames use an all-zero masking key (valid framing; the key's unpredictability
//   only matters for proxies, and this runs on 127.0.0.1 only).
// * "ws": the `ws` package (no permessage-deflate, no UTF-8 validation), to cross-check.

const WS_OPTIONS = {
  perMessageDeflate: false,
  skipUTF8Validation: true,
  maxPayload: 64 * 1024 * 1024,
  handshakeTimeout: 30000,
};
const PING = 0x32; // '2'
const C4 = 0x34; // '4'
const C2 = 0x32; // '2'
const C3 = 0x33; // '3'

let target = { host: '127.0.0.1', ports: [0], path: '/socket.io/?EIO=4&transport=websocket' };
let transport = 'raw';
let closing = false;
let unexpectedCloses = 0;
let established = 0; // connections through the whole handshake, in this process
const connections = new Set();

function wsTransport(port, handlers) {
  WebSocket ??= require('ws');
  const ws = new WebSocket(`ws://${target.host}:${port}${target.path}`, WS_OPTIONS);
  const conn = {
    send: (text) => ws.send(text),
    terminate: () => ws.terminate(),
    isOpen: () => ws.readyState === WebSocket.OPEN,
  };
  ws.on('message', (data) => handlers.frame(data, 0, data.length));
  ws.on('error', (err) => handlers.error(err));
  ws.on('close', () => handlers.close());
  return conn;
}

const READ_BUFFER = Buffer.allocUnsafe(1 << 20); // shared: every read is framed synchronously
const CRLF2 = Buffer.from('\r\n\r\n');
const MAX_FRAME = 64 * 1024 * 1024;

function rawTransport(port, handlers) {
  let pending = null; // bytes of an incomplete frame (or HTTP response), copied
  let upgraded = false;
  let open = false;
  const socket = net.connect({
    host: target.host,
    port,
    noDelay: true,
    onread: { buffer: READ_BUFFER, callback: onread },
  });
  socket.on('connect', () => {
    const key = crypto.randomBytes(16).toString('base64');
    socket.write(
      `GET ${target.path} HTTP/1.1\r\nHost: ${target.host}:${port}\r\n` +
        `Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\n` +
        'Sec-WebSocket-Version: 13\r\n\r\n',
    );
  });
  socket.on('error', (err) => handlers.error(err));
  socket.on('close', () => {
    open = false;
    handlers.close();
  });

  function control(opcode, payload) {
    const frame = Buffer.alloc(6 + payload.length); // zero mask: payload goes as is
    frame[0] = 0x80 | opcode;
    frame[1] = 0x80 | payload.length;
    payload.copy(frame, 6);
    socket.write(frame);
  }

  function onread(nread, chunk) {
    let buf = chunk;
    let pos = 0;
    let end = nread;
    if (pending !== null) {
      buf = Buffer.concat([pending, chunk.subarray(0, nread)]);
      end = buf.length;
      pending = null;
    }
    if (!upgraded) {
      const head = buf.indexOf(CRLF2);
      if (head < 0 || head >= end) {
        pending = Buffer.from(buf.subarray(0, end));
        return;
      }
      const status = buf.toString('latin1', 0, Math.min(head, 64));
      if (!/^HTTP\/1\.1 101/.test(status)) {
        handlers.error(new Error(`upgrade refused: ${status.split('\r\n')[0]}`));
        socket.destroy();
        return;
      }
      upgraded = open = true;
      pos = head + 4;
    }
    while (end - pos >= 2) {
      const b0 = buf[pos];
      const b1 = buf[pos + 1];
      let len = b1 & 0x7f;
      let header = 2;
      if (len === 126) {
        if (end - pos < 4) break;
        len = buf.readUInt16BE(pos + 2);
        header = 4;
      } else if (len === 127) {
        if (end - pos < 10) break;
        len = buf.readUInt32BE(pos + 2) * 2 ** 32 + buf.readUInt32BE(pos + 6);
        header = 10;
      }
      if (b1 & 0x80 || len > MAX_FRAME || (b0 & 0x80) === 0) {
        handlers.error(new Error('expected unmasked, unfragmented frames from the server'));
        socket.destroy();
        return;
      }
      const start = pos + header;
      const stop = start + len;
      if (stop > end) break;
      const opcode = b0 & 0x0f;
      if (opcode === 1 || opcode === 2) handlers.frame(buf, start, stop);
      else if (opcode === 9) control(0xa, buf.subarray(start, stop)); // ping -> pong
      else if (opcode === 8) {
        control(0x8, Buffer.alloc(0));
        socket.end();
        open = false;
        return;
      }
      pos = stop;
    }
    if (pos < end) pending = Buffer.from(buf.subarray(pos, end));
  }

  return {
    send(text) {
      const len = Buffer.byteLength(text);
      const header = len < 126 ? 6 : len < 65536 ? 8 : 14;
      const frame = Buffer.allocUnsafe(header + len);
      frame[0] = 0x81;
      if (len < 126) frame[1] = 0x80 | len;
      else if (len < 65536) {
        frame[1] = 0x80 | 126;
        frame.writeUInt16BE(len, 2);
      } else {
        frame[1] = 0x80 | 127;
        frame.writeUInt32BE(Math.floor(len / 2 ** 32), 2);
        frame.writeUInt32BE(len >>> 0, 6);
      }
      frame.writeUInt32BE(0, header - 4); // the masking key
      frame.write(text, header);
      socket.write(frame);
    },
    terminate: () => socket.destroy(),
    isOpen: () => open && !socket.destroyed,
  };
}

// Opens a connection (to the first server unless told) and completes the Engine.IO open +
// Socket.IO CONNECT handshake. Afterwards every frame but a ping goes to
// onFrame(buffer, start, end); pings are answered here.
function openClient(onFrame, port = target.ports[0]) {
  return new Promise((resolve, reject) => {
    let stage = 0; // 0: waiting for `0{...}`, 1: waiting for `40{...}`, 2: connected
    let conn = null;
    const timer = setTimeout(() => {
      conn.terminate();
      reject(new Error('handshake timed out'));
    }, 30000);
    const handlers = {
      frame(buf, start, end) {
        if (stage === 2) {
          if (end - start === 1 && buf[start] === PING) conn.send('3');
          else onFrame(buf, start, end);
          return;
        }
        const text = buf.toString('utf8', start, end);
        if (stage === 0 && text[0] === '0') {
          stage = 1;
          conn.send('40');
        } else if (stage === 1 && text.startsWith('40')) {
          stage = 2;
          established++;
          clearTimeout(timer);
          resolve(conn);
        } else if (text === '2') {
          conn.send('3');
        } else {
          clearTimeout(timer);
          conn.terminate();
          reject(new Error(`unexpected handshake frame ${JSON.stringify(text.slice(0, 80))}`));
        }
      },
      error(err) {
        clearTimeout(timer);
        reject(err);
      },
      close() {
        connections.delete(conn);
        clearTimeout(timer);
        if (stage < 2) {
          const waiting = stage === 0 ? 'the Engine.IO open packet' : 'the Socket.IO CONNECT';
          reject(new Error(`closed while waiting for ${waiting} (${established} connected)`));
        }
        else if (stage === 2 && !closing) unexpectedCloses++;
      },
    };
    conn = transport === 'ws' ? wsTransport(port, handlers) : rawTransport(port, handlers);
    const terminate = conn.terminate;
    conn.terminate = () => {
      stage = 3; // closed by us: not an unexpected close
      terminate();
    };
    connections.add(conn);
  });
}

// Runs make(i) for i in [0, n) with at most `concurrency` in flight.
async function bounded(n, concurrency, make) {
  const out = new Array(n);
  let next = 0;
  async function worker() {
    while (next < n) {
      const i = next++;
      out[i] = await make(i);
    }
  }
  await Promise.all(Array.from({ length: Math.min(concurrency, n) }, worker));
  return out;
}

function closeAll() {
  closing = true;
  for (const conn of connections) conn.terminate();
  connections.clear();
}

function padding(n) {
  return 'x'.repeat(Math.max(0, n));
}

// ---------------------------------------------------------------------------- fan-out

// Members join the room; one extra client emits `fanout` with a bounded number of messages
// in flight (a message is in flight until it is acked AND every member received it).
// Receivers count `42` frames and take the sender's timestamp from the raw bytes.
async function fanout(opts) {
  const N = opts.members;
  const window = opts.window > 0 ? opts.window : Math.max(2, Math.ceil(4000 / N));
  const pad = padding(opts.payload);
  const TS_KEY = Buffer.from('"t":');
  const hist = new Histogram();
  let measuring = false;
  let delivered = 0;
  let unexpected = 0;
  let sending = false;
  let sent = 0;
  let acked = 0;
  let pump = () => {};

  const setupStart = performance.now();
  await bounded(N, opts.concurrency, async (index) => {
    let joined = null;
    const conn = await openClient((buf, start, end) => {
      if (buf[start] === C4 && buf[start + 1] === C2) {
        delivered++;
        if (measuring) {
          const i = buf.indexOf(TS_KEY, start + 8);
          if (i > 0 && i < end) {
            const ts = parseFloat(buf.toString('latin1', i + 4, Math.min(i + 32, end)));
            hist.record(performance.now() - ts);
          }
        }
        pump();
      } else if (buf[start] === C4 && buf[start + 1] === C3 && joined) {
        joined();
      } else {
        unexpected++;
      }
    }, target.ports[index % target.ports.length]);
    const joinAck = new Promise((resolve) => (joined = resolve));
    conn.send(`420["join",${JSON.stringify(opts.room)}]`);
    await joinAck;
    joined = null;
  });
  const setupSeconds = (performance.now() - setupStart) / 1000;

  let ackId = 0;
  const prefix = `","${opts.room}",{"t":`;
  const sender = await openClient((buf, start) => {
    if (buf[start] === C4 && buf[start + 1] === C3) {
      acked++;
      pump();
    } else {
      unexpected++;
    }
  });
  pump = () => {
    while (sending) {
      const undelivered = Math.ceil((sent * N - delivered) / N);
      if (sent - acked >= window || undelivered >= window) return;
      sent++;
      ackId++;
      sender.send(`42${ackId}["fanout${prefix}${performance.now().toFixed(3)},"s":${sent},"p":"${pad}"}]`);
    }
  };

  sending = true;
  pump();
  await sleep(opts.warmup * 1000);
  const meter = new Meter();
  emit({ event: 'measure_start' });
  meter.start();
  const delivered0 = delivered;
  const sent0 = sent;
  measuring = true;
  await sleep(opts.duration * 1000);
  measuring = false;
  const deliveredInWindow = delivered - delivered0;
  const sentInWindow = sent - sent0;
  const resources = meter.stop();
  emit({ event: 'measure_end' });
  sending = false;

  const drainEnd = performance.now() + opts.drain * 1000;
  while ((delivered < sent * N || acked < sent) && performance.now() < drainEnd) await sleep(20);
  const result = {
    scenario: 'fanout',
    members: N,
    window,
    setup_s: setupSeconds,
    deliveries_per_s: deliveredInWindow / resources.elapsed_s,
    messages_per_s: sentInWindow / resources.elapsed_s,
    latency: hist.summary(),
    sent,
    acked,
    expected_deliveries: sent * N,
    delivered,
    lost: sent * N - delivered,
    unexpected_frames: unexpected,
    unexpected_closes: unexpectedCloses,
    generator: resources,
  };
  closeAll();
  return result;
}

// ---------------------------------------------------------------------------- echo

// Each client, in a closed loop, emits `42<id>["echo",{...}]` and waits for `43<id>[...]`.
async function echo(opts) {
  const C = opts.clients;
  const pad = padding(opts.payload);
  const hist = new Histogram();
  let measuring = false;
  let running = false;
  let acks = 0;
  let unexpected = 0;
  const clients = [];

  const setupStart = performance.now();
  await bounded(C, opts.concurrency, async (index) => {
    const state = { ws: null, id: 0, sentAt: 0 };
    const send = () => {
      state.id++;
      state.sentAt = performance.now();
      state.ws.send(`42${state.id}["${opts.event}",{"i":${index},"p":"${pad}"}]`);
    };
    state.ws = await openClient((buf, start) => {
      if (buf[start] === C4 && buf[start + 1] === C3) {
        acks++;
        if (measuring) hist.record(performance.now() - state.sentAt);
        if (running) send();
      } else {
        unexpected++;
      }
    });
    state.send = send;
    clients.push(state);
  });
  const setupSeconds = (performance.now() - setupStart) / 1000;

  running = true;
  for (const client of clients) client.send();
  await sleep(opts.warmup * 1000);
  const meter = new Meter();
  emit({ event: 'measure_start' });
  meter.start();
  const acks0 = acks;
  measuring = true;
  await sleep(opts.duration * 1000);
  measuring = false;
  const acksInWindow = acks - acks0;
  const resources = meter.stop();
  emit({ event: 'measure_end' });
  running = false;
  const result = {
    scenario: 'echo',
    clients: C,
    setup_s: setupSeconds,
    acks_per_s: acksInWindow / resources.elapsed_s,
    latency: hist.summary(),
    unexpected_frames: unexpected,
    unexpected_closes: unexpectedCloses,
    generator: resources,
  };
  closeAll();
  return result;
}

// ---------------------------------------------------------------------------- connect storm

function stdinLines() {
  const waiting = [];
  const lines = [];
  let buffer = '';
  process.stdin.setEncoding('utf8');
  process.stdin.on('data', (chunk) => {
    buffer += chunk;
    let i;
    while ((i = buffer.indexOf('\n')) >= 0) {
      const line = buffer.slice(0, i);
      buffer = buffer.slice(i + 1);
      if (waiting.length) waiting.shift()(line);
      else lines.push(line);
    }
  });
  process.stdin.on('end', () => fail('stdin closed by the runner'));
  return () => (lines.length ? Promise.resolve(lines.shift()) : new Promise((r) => waiting.push(r)));
}

// `clients` connections through the Engine.IO handshake and Socket.IO CONNECT, at most
// `concurrency` in flight; then all of them stay idle while the runner reads the server RSS.
async function connectStorm(opts) {
  const nextLine = stdinLines();
  const N = opts.clients;
  const noop = () => {};

  // Warm the server's code paths, then let the runner take its baseline RSS.
  const warm = await bounded(10, 10, () => openClient(noop));
  for (const conn of warm) conn.terminate();
  await sleep(300);
  emit({ event: 'baseline' });
  await nextLine();

  const hist = new Histogram();
  const meter = new Meter();
  let errors = 0;
  let firstError = null;
  emit({ event: 'measure_start' });
  meter.start();
  const t0 = performance.now();
  const made = await bounded(N, opts.concurrency, async () => {
    const start = performance.now();
    try {
      const conn = await openClient(noop);
      hist.record(performance.now() - start);
      return conn;
    } catch (err) {
      errors++;
      if (firstError === null) firstError = String(err && err.message ? err.message : err);
      return null;
    }
  });
  const elapsed = (performance.now() - t0) / 1000;
  const resources = meter.stop();
  emit({ event: 'measure_end' });
  const connected = made.filter((conn) => conn !== null).length;
  emit({ event: 'idle', connected });
  await nextLine();
  const stillOpen = made.filter((conn) => conn !== null && conn.isOpen()).length;
  const result = {
    scenario: 'connect',
    clients: N,
    concurrency: opts.concurrency,
    connected,
    errors,
    first_error: firstError,
    still_open_when_idle: stillOpen,
    elapsed_s: elapsed,
    connections_per_s: connected / elapsed,
    latency: hist.summary(),
    unexpected_closes: unexpectedCloses,
    generator: resources,
  };
  closeAll();
  return result;
}

// ---------------------------------------------------------------------------- main

async function main() {
  let opts;
  try {
    opts = parseArgs(process.argv.slice(2));
  } catch (err) {
    fail(err.message, 2);
  }
  const ports = opts.ports ? opts.ports.split(',').map(Number) : [opts.port];
  if (ports.some((p) => !(p > 0))) fail(`bad --ports ${opts.ports}`, 2);
  target = { ...target, host: opts.host, ports };
  if (opts.client !== 'raw' && opts.client !== 'ws') fail(`unknown client ${opts.client}`, 2);
  transport = opts.client;
  setTimeout(() => fail(`hard timeout after ${opts.timeout}s`, 3), opts.timeout * 1000);
  const scenarios = { fanout, echo, connect: connectStorm };
  const run = scenarios[opts.scenario];
  if (!run) fail(`unknown scenario ${opts.scenario}`, 2);
  emit({ event: 'start', scenario: opts.scenario, client: transport, pid: process.pid });
  const result = await run(opts);
  emit({ event: 'result', ...result });
  process.exit(0);
}

main().catch((err) => fail(String(err && err.stack ? err.stack : err)));
