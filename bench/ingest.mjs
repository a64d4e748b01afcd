// ingest.mjs -- the cameras of `make bench`'s ingest figures (bench/ingest.sh): CAMERAS
// camera clients of the demo client, each with its own lot of SLOTS slots, its own API key
// and camera, made through the gateway as the admin; then
//   1. throughput: every camera posts batches of BATCH events (each slot of its lot once,
//      each flipping it, so every event is a change) as fast as the answers come, for
//      DURATION_S; counted are the SlotStatusChanged a NATS subscriber receives for those
//      events (committed by the projection and published from its outbox), from the first
//      POST to the last change received;
//   2. latency: a steady RATE events/s (each camera a batch of RATE_BATCH every
//      CAMERAS * RATE_BATCH / RATE s), for LAT_DURATION_S; each event's time from the start
//      of its POST to its SlotStatusChanged at the subscriber (the first 2 s left out).
// Prints one JSON object of the figures on stdout; progress on stderr.
// environment: SP_BASE_URL, SP_NATS_URL, SP_NATS_USER, SP_NATS_PASSWORD, SP_ADMIN_EMAIL,
//   SP_ADMIN_PASSWORD, SP_ESTABLISHMENT_ID, SP_CLIENT_ID, SP_PROTO_DIR, BENCH_CAMERAS (16),
//   BENCH_BATCH (100), BENCH_INGEST_S (30), BENCH_RATE (2000), BENCH_RATE_BATCH (10),
//   BENCH_LATENCY_S (20), BENCH_DRAIN_S (600: the longest wait for the projection to catch up).
import { connect } from "@nats-io/transport-node";
import protobuf from "protobufjs";
import { randomUUID } from "node:crypto";

const env = process.env;
const BASE = env.SP_BASE_URL;
const CAMERAS = Number(env.BENCH_CAMERAS || 16);
const BATCH = Number(env.BENCH_BATCH || 100);
const SLOTS = BATCH;
const DURATION_S = Number(env.BENCH_INGEST_S || 30);
const RATE = Number(env.BENCH_RATE || 2000);
const RATE_BATCH = Number(env.BENCH_RATE_BATCH || 10);
const LAT_DURATION_S = Number(env.BENCH_LATENCY_S || 20);

const log = (m) => process.stderr.write(`bench-ingest: ${m}\n`);
const now = () => performance.timeOrigin + performance.now(); // ms, sub-ms precision
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function call(method, path, token, body, tries = 20) {
  const r = await fetch(BASE + path, {
    method,
    headers: {
      "Content-Type": "application/json",
      ...(token ? { Authorization: `Bearer ${token}` } : {}),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await r.text();
  if (r.status === 503 && tries > 1) {
    // a service still connecting (the stack just started): as a client would, retry
    await sleep(500);
    return call(method, path, token, body, tries - 1);
  }
  if (r.status >= 300) throw new Error(`${method} ${path}: ${r.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

// ---- the cameras' world ------------------------------------------------------------------
const login = await call("POST", "/v1/auth/login", null, {
  email: env.SP_ADMIN_EMAIL,
  password: env.SP_ADMIN_PASSWORD,
});
const admin = login.accessToken;
const run = Date.now().toString(36);
const cams = [];
for (let i = 0; i < CAMERAS; i++) {
  const slots = [];
  for (let k = 0; k < SLOTS; k++) slots.push({ slotCode: `S${k}`, slotType: "regular" });
  const lot = await call("POST", `/v1/establishments/${env.SP_ESTABLISHMENT_ID}/lots`, admin, {
    lotCode: `B${run}${i}`.slice(0, 20),
    name: `Bench ${i}`,
    slots,
  });
  const key = await call("POST", "/v1/api-keys", admin, {
    name: `bench ${run} ${i}`,
    clientId: env.SP_CLIENT_ID,
  });
  const code = `BENCH-${run}-${i}`;
  await call("POST", "/v1/cameras", admin, {
    cameraCode: code,
    apiKeyId: key.id,
    lotId: lot.id,
    clientId: env.SP_CLIENT_ID,
  });
  cams.push({ lot: lot.id, apiKey: key.apiKey, code, occupied: new Array(SLOTS).fill(false), lastMs: 0 });
}
log(`${CAMERAS} cameras, each with a lot of ${SLOTS} slots`);

// ---- the subscriber ----------------------------------------------------------------------
const root = await protobuf.load(`${env.SP_PROTO_DIR}/sp/status/v1/status.proto`);
const Changed = root.lookupType("sp.status.v1.SlotStatusChanged");
const nc = await connect({
  servers: env.SP_NATS_URL,
  user: env.SP_NATS_USER,
  pass: env.SP_NATS_PASSWORD,
});
const sent = new Map(); // eventId -> when its POST started (ms)
const latencies = [];
const postLat = []; // the POSTs' own answer time (202)
const toApplied = []; // POST to the projection's transaction (recordedAt): the rest is its commit and outbox
const clockSkew = now() - Date.now(); // now() (monotonic since start) against the wall clock
let received = 0;
let lastReceived = 0;
let measureFrom = Infinity;
const sub = nc.subscribe(`sp.slot-status.v1.${env.SP_CLIENT_ID}.>`);
(async () => {
  for await (const m of sub) {
    const t = now();
    const c = Changed.decode(m.data);
    const at = sent.get(c.eventId);
    if (at === undefined) continue; // not ours (the demo camera), or a repeat
    sent.delete(c.eventId);
    received++;
    lastReceived = t;
    if (at >= measureFrom) {
      latencies.push(t - at);
      const rec = Number(c.recordedAt) / 1000; // us -> ms: when the projection applied it
      toApplied.push(rec - (at - clockSkew)); // on the wall clock, as recordedAt
    }
  }
})();
await nc.flush();

// One batch of n events of camera c: slots from 'first', each to its other status, at a
// time after the camera's last one (events of one slot apply in time order).
function batchOf(c, first, n) {
  const ms = Math.max(Date.now(), c.lastMs + 1);
  c.lastMs = ms;
  const at = new Date(ms).toISOString();
  const items = [];
  const ids = [];
  for (let k = 0; k < n; k++) {
    const eventId = randomUUID();
    const slot = (first + k) % SLOTS;
    const occupied = (c.occupied[slot] = !c.occupied[slot]);
    ids.push(eventId);
    items.push({
      slotCode: `S${slot}`,
      status: occupied ? "OCCUPIED" : "FREE",
      vehicle: occupied ? "car" : "none",
      occurredAt: at,
      eventId,
    });
  }
  return { ids, body: JSON.stringify({ hardwareCode: c.code, lotId: c.lot, items }) };
}

let posted = 0;
let refused = 0;
async function post(c, b) {
  const t0 = now();
  for (const id of b.ids) sent.set(id, t0);
  const r = await fetch(BASE + "/v1/events/slot-status", {
    method: "POST",
    headers: { "Content-Type": "application/json", "X-API-Key": c.apiKey },
    body: b.body,
  });
  const text = await r.text();
  if (r.status !== 202) {
    refused++;
    for (const id of b.ids) sent.delete(id);
    if (refused <= 3) log(`POST answered ${r.status}: ${text.slice(0, 200)}`);
    return;
  }
  posted += b.ids.length;
  if (t0 >= measureFrom) postLat.push(now() - t0);
}

// Waits until no change has arrived for 2 s (at most DRAIN_S): the projection has caught
// up with what ingest accepted (faster than the projection applies it: SP_EVENTS holds the
// difference).
const DRAIN_S = Number(env.BENCH_DRAIN_S || 600);
async function drain() {
  const until = now() + DRAIN_S * 1000;
  let last = -1;
  while (now() < until) {
    await sleep(500);
    if (received === last && now() - lastReceived > 2000) return;
    last = received;
  }
}

// ---- 1. throughput -------------------------------------------------------------------------
log(`throughput: ${CAMERAS} cameras posting batches of ${BATCH} for ${DURATION_S} s`);
const start = now();
const stopAt = start + DURATION_S * 1000;
await Promise.all(
  cams.map(async (c) => {
    while (now() < stopAt) await post(c, batchOf(c, 0, BATCH));
  }),
);
const postedEnd = now();
const tpPosted = posted;
await drain();
const tp = {
  cameras: CAMERAS,
  batch: BATCH,
  seconds: DURATION_S,
  posted: tpPosted,
  refused_batches: refused,
  changes_received: received,
  post_rate: Math.round(tpPosted / ((postedEnd - start) / 1000)),
  events_per_s: Math.round(received / ((lastReceived - start) / 1000)),
  caught_up_after_s: Number(((lastReceived - postedEnd) / 1000).toFixed(2)),
};
log(`throughput: ${JSON.stringify(tp)}`);

// ---- 2. latency at a steady rate ---------------------------------------------------------
received = 0;
posted = 0;
refused = 0;
sent.clear();
const period = (CAMERAS * RATE_BATCH * 1000) / RATE; // ms between one camera's batches
log(`latency: ${RATE} events/s (batches of ${RATE_BATCH} every ${period.toFixed(1)} ms per camera) for ${LAT_DURATION_S} s`);
const lstart = now();
measureFrom = lstart + 2000;
const lstop = lstart + LAT_DURATION_S * 1000;
const inflight = [];
await Promise.all(
  cams.map(async (c, i) => {
    let next = lstart + (period * i) / CAMERAS; // spread over the period
    let slot = 0;
    while (next < lstop) {
      const wait = next - now();
      if (wait > 0) await sleep(wait);
      inflight.push(post(c, batchOf(c, slot, RATE_BATCH)));
      slot = (slot + RATE_BATCH) % SLOTS;
      next += period;
    }
  }),
);
await Promise.all(inflight);
await drain();
latencies.sort((a, b) => a - b);
if (latencies.length === 0) throw new Error("no change of the latency phase arrived");
const q = (p) => Number(latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))].toFixed(2));
const lat = {
  rate: RATE,
  batch: RATE_BATCH,
  seconds: LAT_DURATION_S,
  posted,
  refused_batches: refused,
  changes_received: received,
  achieved_rate: Math.round(posted / (LAT_DURATION_S)),
  measured: latencies.length,
  p50_ms: q(0.5),
  p90_ms: q(0.9),
  p99_ms: q(0.99),
  max_ms: Number(latencies[latencies.length - 1].toFixed(2)),
  post_p50_ms: Number(postLat.sort((a, b) => a - b)[Math.floor(0.5 * postLat.length)].toFixed(2)),
  post_p99_ms: Number(postLat[Math.floor(0.99 * postLat.length)].toFixed(2)),
  applied_p50_ms: Number(toApplied.sort((a, b) => a - b)[Math.floor(0.5 * toApplied.length)].toFixed(2)),
  applied_p99_ms: Number(toApplied[Math.floor(0.99 * toApplied.length)].toFixed(2)),
  lost: sent.size,
};
log(`latency: ${JSON.stringify(lat)}`);
await nc.drain();
console.log(JSON.stringify({ throughput: tp, latency: lat }));
