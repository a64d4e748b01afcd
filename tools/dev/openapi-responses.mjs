#!/usr/bin/env node
// openapi-responses.mjs <document> <dir> -- checks the answers the integration suites
// received (tests/harness: <dir>/*.jsonl, one {"method","path","status","contentType",
// "body","bodyIsJson"} per line) against the OpenAPI document: each answer of a documented
// operation has a status the operation declares, the content type it declares, and a body
// valid against its schema (JSON Schema 2020-12, formats checked); an answer of a path or
// method the document does not have is an Error. Prints one summary line, the operations
// no suite exercised, and every problem; exits 1 on a problem or when nothing was recorded.
import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import Ajv2020 from "ajv/dist/2020.js";
import addFormats from "ajv-formats";

const [docFile, dir] = process.argv.slice(2);
if (!docFile || !dir) {
  console.error("usage: openapi-responses.mjs <openapi.json> <dir>");
  process.exit(2);
}
const doc = JSON.parse(readFileSync(docFile, "utf8"));

const ajv = new Ajv2020({ strict: false, allErrors: true });
addFormats(ajv);
ajv.addSchema({ $id: "openapi:doc", components: doc.components ?? {}, paths: doc.paths ?? {} });
const validators = new Map();
function validatorFor(ref) {
  if (!validators.has(ref)) validators.set(ref, ajv.compile({ $ref: `openapi:doc${ref}` }));
  return validators.get(ref);
}
// A local "#/a/b" to the object it names.
function deref(ref) {
  let o = doc;
  for (const part of ref.slice(2).split("/")) o = o?.[part.replace(/~1/g, "/").replace(/~0/g, "~")];
  return o;
}
// A JSON pointer ("#/...") to the schema of a response, for the validator.
function pointer(...parts) {
  return "#/" + parts.map((p) => String(p).replace(/~/g, "~0").replace(/\//g, "~1")).join("/");
}

// Path templates, literal segments first ("/v1/me" before "/v1/{id}").
const templates = Object.keys(doc.paths ?? {})
  .map((t) => ({
    t,
    re: new RegExp("^" + t.replace(/[.*+?^$()|[\]\\]/g, "\\$&").replace(/\{[^}]+\}/g, "[^/]+") + "$"),
    params: (t.match(/\{/g) ?? []).length,
  }))
  .sort((a, b) => a.params - b.params);

const problems = [];
const seen = new Map(); // "METHOD template" -> count
let checked = 0;
let files = 0;
for (const f of readdirSync(dir).filter((f) => f.endsWith(".jsonl"))) {
  files++;
  for (const line of readFileSync(join(dir, f), "utf8").split("\n")) {
    if (!line) continue;
    const r = JSON.parse(line);
    checked++;
    check(r);
  }
}

function problem(r, what) {
  const body = JSON.stringify(r.body);
  problems.push(`${r.method} ${r.path} -> ${r.status}: ${what} (body ${body?.slice(0, 300)})`);
}

function validate(r, ref, what) {
  const v = validatorFor(ref);
  if (!v(r.body)) problem(r, `${what}: ${ajv.errorsText(v.errors, { dataVar: "body" })}`);
}

function check(r) {
  const path = r.path.split("?")[0];
  const json = (r.contentType ?? "").startsWith("application/json");
  const tpl = templates.find((x) => x.re.test(path));
  const method = r.method === "HEAD" ? "get" : r.method.toLowerCase();
  const op = tpl ? doc.paths[tpl.t][method] : undefined;
  if (!op) {
    // not documented (an unknown path, a method not allowed): the answer is an Error
    if (json && r.body !== null) validate(r, "#/components/schemas/Error", "not an Error");
    else if (r.status >= 400 && r.method !== "HEAD" && r.path.startsWith("/v1/"))
      problem(r, `an error answer that is not JSON (${r.contentType || "no content type"})`);
    return;
  }
  const key = `${r.method === "HEAD" ? "GET" : r.method} ${tpl.t}`;
  seen.set(key, (seen.get(key) ?? 0) + 1);
  const status = String(r.status);
  let resp = op.responses?.[status];
  let where = ["paths", tpl.t, method, "responses", status];
  if (!resp && op.responses?.default) {
    resp = op.responses.default;
    where = ["paths", tpl.t, method, "responses", "default"];
  }
  if (!resp) {
    problem(r, `status not declared by ${key} (declared: ${Object.keys(op.responses ?? {}).join(", ")})`);
    return;
  }
  if (resp.$ref) {
    const name = resp.$ref;
    resp = deref(name);
    where = name.slice(2).split("/");
  }
  const media = (t) => t.split(";")[0].trim().toLowerCase();
  const types = Object.keys(resp?.content ?? {});
  if (r.method === "HEAD") return; // no body
  if (types.length === 0) {
    if (r.body !== null || !r.bodyIsJson) problem(r, "a body where the document declares none");
    return;
  }
  const declared = types.find((t) => media(t) === media(r.contentType ?? ""));
  if (declared === undefined) {
    problem(r, `content type ${r.contentType || "(none)"} not declared (${types.join(", ")})`);
    return;
  }
  if (media(declared) !== "application/json") return;
  if (resp.content[declared].schema) {
    const schemaRef = pointer(...where, "content", declared, "schema");
    validate(r, schemaRef, "body does not match the document");
  }
}

const ops = [];
for (const [t, item] of Object.entries(doc.paths ?? {}))
  for (const m of ["get", "put", "post", "delete", "patch"]) if (item[m]) ops.push(`${m.toUpperCase()} ${t}`);
const unexercised = ops.filter((k) => !seen.has(k));
console.log(
  `openapi-responses: ${checked} answers from ${files} suite processes checked against ${docFile}: ` +
    `${ops.length - unexercised.length} of ${ops.length} operations exercised, ${problems.length} problem(s)`
);
if (unexercised.length > 0) console.log(`  not exercised: ${unexercised.join("; ")}`);
if (checked === 0) {
  console.error("openapi-responses: nothing recorded (SP_TEST_RESPONSES not set for the suites?)");
  process.exit(1);
}
for (const p of problems.slice(0, 50)) console.error(`  ${p}`);
if (problems.length > 50) console.error(`  ... and ${problems.length - 50} more`);
process.exit(problems.length > 0 ? 1 : 0);
