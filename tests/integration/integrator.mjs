// integrator.mjs -- an integrator's view of SmartPark with clients nobody here wrote: the
// official NATS JavaScript client (@nats-io/transport-node, @nats-io/jetstream) logged in
// as the `subscriber` user, decoding with protobufjs from the .proto files the project
// publishes. Run by it_integrator (tests/integration/integrator.c), which posts the events:
//   - prints "ready" once subscribed to sp.slot-status.v1.<clientId>.>;
//   - receives one SlotStatusChanged per change (SP_EXPECT of them), the subject naming
//     the message's client, establishment, lot and slot code;
//   - replays them from the stream SP_SLOT_STATUS (JetStream API prefix $JS.SP.API);
//   - cannot read SP_EVENTS or SP_AUDIT, nor subscribe to the events, the services'
//     requests or their replies.
// Exits 0 when all holds; prints what failed and exits 1 otherwise.
import { connect } from "@nats-io/transport-node";
import { jetstreamManager } from "@nats-io/jetstream";
import protobuf from "protobufjs";

const env = process.env;
const want = Number(env.SP_EXPECT);
const client = env.SP_CLIENT_ID;
const problems = [];

function fail(what) {
  console.error(`integrator: ${what}`);
  process.exit(1);
}

const root = await protobuf.load(`${env.SP_PROTO_DIR}/sp/status/v1/status.proto`);
const Changed = root.lookupType("sp.status.v1.SlotStatusChanged");
const nc = await connect({
  servers: env.SP_NATS_URL,
  user: env.SP_NATS_USER,
  pass: env.SP_NATS_PASSWORD,
});
const sub = nc.subscribe(`sp.slot-status.v1.${client}.>`);
await nc.flush();
console.log("ready");

const timer = setTimeout(() => fail(`timeout: ${seen.size} of ${want} changes`), 30000);
const seen = new Map(); // eventId -> the change (core subscribers de-duplicate by eventId)
for await (const m of sub) {
  const c = Changed.decode(m.data);
  const subject = `sp.slot-status.v1.${c.clientId}.${c.establishmentId}.${c.lotId}.${c.slotCode}`;
  if (m.subject !== subject) problems.push(`subject ${m.subject} for a change of ${subject}`);
  if (c.clientId !== client) problems.push(`a change of another client: ${c.clientId}`);
  if (!["FREE", "OCCUPIED", "UNKNOWN"].includes(c.status)) problems.push(`status ${c.status}`);
  if (!c.eventId) problems.push("a change without eventId");
  seen.set(c.eventId, c);
  if (seen.size === want) break;
}
clearTimeout(timer);

// replay from SP_SLOT_STATUS, as an integrator that was away
const jsm = await jetstreamManager(nc, { apiPrefix: "$JS.SP.API", checkAPI: false });
const si = await jsm.streams.info("SP_SLOT_STATUS");
let replayed = 0;
for (let seq = si.state.first_seq; seq <= si.state.last_seq; seq++) {
  const sm = await jsm.streams.getMessage("SP_SLOT_STATUS", { seq });
  if (sm === null) continue;
  const c = Changed.decode(sm.data);
  if (c.clientId === client && seen.has(c.eventId)) {
    const live = seen.get(c.eventId);
    if (live.status !== c.status || live.slotCode !== c.slotCode)
      problems.push(`replayed ${c.eventId} differs from the live one`);
    replayed++;
  }
}
if (replayed !== want) problems.push(`replayed ${replayed} of ${want} changes from SP_SLOT_STATUS`);

// the limits of the subscriber user
for (const stream of ["SP_EVENTS", "SP_AUDIT"]) {
  const jsm2 = await jetstreamManager(nc, { apiPrefix: "$JS.SP.API", timeout: 2000, checkAPI: false });
  try {
    await jsm2.streams.info(stream);
    problems.push(`read the info of ${stream}`);
  } catch {
    // refused or unanswered: what is wanted
  }
}
for (const subject of ["sp.events.>", "_SP_INBOX.>", "sp.catalog.v1.*", "$JS.API.>"]) {
  const s = nc.subscribe(subject);
  const closed = await Promise.race([
    s.closed,
    new Promise((resolve) => setTimeout(() => resolve("open"), 3000)),
  ]);
  if (!(closed instanceof Error) || !/permission/i.test(closed.message))
    problems.push(`subscribing to ${subject} was not refused (${closed})`);
}

await nc.close();
if (problems.length > 0) fail(problems.join("; "));
console.log(`integrator: ${want} changes live and replayed, limits hold`);
