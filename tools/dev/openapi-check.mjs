#!/usr/bin/env node
// openapi-check.mjs -- validates docs/openapi.json (or the file named on the command line):
// the document against the OpenAPI 3.1 schema (@seriousme/openapi-schema-validator), every
// $ref resolved, every component schema compiled as JSON Schema 2020-12 in strict mode (a
// misspelt keyword such as "maxlength" fails), and the house rules of api.md: operationIds
// unique, every /v1 operation answers X-Request-Id and its errors use the Error schema.
// Exits 0 when valid, 1 with the problems on stderr otherwise.
import { readFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { Validator } from "@seriousme/openapi-schema-validator";
import Ajv2020 from "ajv/dist/2020.js";
import addFormats from "ajv-formats";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");
const file = resolve(process.argv[2] ?? `${root}/docs/openapi.json`);
const problems = [];

let doc;
try {
  doc = JSON.parse(readFileSync(file, "utf8"));
} catch (e) {
  console.error(`openapi-check: ${file}: ${e.message}`);
  process.exit(1);
}

// 1. The OpenAPI 3.1 schema.
const validator = new Validator();
const res = await validator.validate(structuredClone(doc));
if (doc.openapi !== "3.1.0") problems.push(`openapi is ${JSON.stringify(doc.openapi)}, want "3.1.0"`);
if (!res.valid) {
  for (const e of [].concat(res.errors ?? [])) problems.push(`schema: ${JSON.stringify(e)}`);
} else {
  // 2. Every $ref points at something (resolveRefs throws on a dangling one).
  try {
    validator.resolveRefs();
  } catch (e) {
    problems.push(`$ref: ${e.message}`);
  }
}

// A local $ref ("#/a/b") to the object it names, or undefined.
function deref(ref) {
  if (typeof ref !== "string" || !ref.startsWith("#/")) return undefined;
  let o = doc;
  for (const part of ref.slice(2).split("/")) {
    if (o == null) return undefined;
    o = o[part.replace(/~1/g, "/").replace(/~0/g, "~")];
  }
  return o;
}
function walkRefs(node, where) {
  if (Array.isArray(node)) node.forEach((n, i) => walkRefs(n, `${where}[${i}]`));
  else if (node && typeof node === "object") {
    if (typeof node.$ref === "string" && deref(node.$ref) === undefined)
      problems.push(`${where}: $ref ${node.$ref} names nothing`);
    for (const [k, v] of Object.entries(node)) walkRefs(v, `${where}.${k}`);
  }
}
walkRefs(doc, "$");

// 3. Component schemas are strict JSON Schema 2020-12.
const ajv = new Ajv2020({ strict: true, allErrors: true });
addFormats(ajv);
ajv.addKeyword("components"); // the container of the schemas, so that "#/components/..." resolves
try {
  ajv.addSchema({ $id: "openapi:doc", components: { schemas: doc.components?.schemas ?? {} } });
  for (const name of Object.keys(doc.components?.schemas ?? {})) {
    try {
      ajv.compile({ $ref: `openapi:doc#/components/schemas/${name}` });
    } catch (e) {
      problems.push(`components.schemas.${name}: ${e.message}`);
    }
  }
} catch (e) {
  problems.push(`components.schemas: ${e.message}`);
}

// 4. House rules.
const methods = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];
const opIds = new Map();
for (const [path, item] of Object.entries(doc.paths ?? {})) {
  for (const m of methods) {
    const op = item[m];
    if (!op) continue;
    const where = `${m.toUpperCase()} ${path}`;
    if (!op.operationId) problems.push(`${where}: no operationId`);
    else if (opIds.has(op.operationId))
      problems.push(`${where}: operationId ${op.operationId} also used by ${opIds.get(op.operationId)}`);
    else opIds.set(op.operationId, where);
    if (!op.summary) problems.push(`${where}: no summary`);
    if (!path.startsWith("/v1/") && path !== "/docs") continue; // probes: answered by spadmin
    for (const [status, r0] of Object.entries(op.responses ?? {})) {
      const r = r0.$ref ? deref(r0.$ref) : r0;
      if (!r) continue;
      if (!r.headers?.["X-Request-Id"]) problems.push(`${where} ${status}: no X-Request-Id header`);
      if (Number(status) >= 400) {
        const s = r.content?.["application/json"]?.schema;
        if (s?.$ref !== "#/components/schemas/Error")
          problems.push(`${where} ${status}: error answer without the Error schema`);
      }
    }
    const body = op.requestBody?.content?.["application/json"]?.schema;
    const bs = body?.$ref ? deref(body.$ref) : body;
    // api.md: unknown fields are refused on write endpoints, cameras' payloads aside (ingest)
    if (bs && bs.additionalProperties !== false && !(op.tags ?? []).includes("ingest"))
      problems.push(`${where}: request body schema allows unknown fields`);
  }
}

if (problems.length > 0) {
  console.error(`openapi-check: ${file}: ${problems.length} problem(s)`);
  for (const p of problems) console.error(`  ${p}`);
  process.exit(1);
}
console.log(`openapi-check: ${file}: valid OpenAPI ${doc.openapi}, ${opIds.size} operations`);
