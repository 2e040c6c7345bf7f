// Checks tests/vectors/*.json from the spec text (docs/design.md) in JavaScript:
// JOSE by panva's `jose`, JCS by `canonicalize`, HKDF / SHA-256 / P-256 by node:crypto.
// Deep mode (the tool-source digest) is Python-only by the spec and is not checked here.
//
//   node check_vectors.mjs <tests/vectors directory>
//
// Run by tests/interop/test_spec_node.py from a cache directory where `npm ci` installed
// this folder's package-lock.json. Prints one line per check; exits 1 if any disagree.

import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";

import canonicalize from "canonicalize";
import * as jose from "jose";

const dir = process.argv[2];
const load = (name) => JSON.parse(fs.readFileSync(path.join(dir, name), "utf8"));
const failures = [];
let agreed = 0;

function expectEqual(actual, expected, what) {
  // Compared as JCS text: key order is not a difference.
  const a = canonicalize(actual);
  const e = canonicalize(expected);
  if (a === e) agreed += 1;
  else failures.push(`${what}: got ${a}, expected ${e}`);
}

// ------------------------------------------------------------------ §3 encodings

const jcs = (value) => Buffer.from(canonicalize(value), "utf8");
const digest = (bytes) => "sha256:" + crypto.createHash("sha256").update(bytes).digest("hex");
const b64url = (bytes) => Buffer.from(bytes).toString("base64url");
const sha256b64url = (bytes) => b64url(crypto.createHash("sha256").update(bytes).digest());
// §3: strings sort by code point, i.e. by their UTF-8 bytes (not JS's UTF-16 default).
const byCodePoint = (a, b) => Buffer.compare(Buffer.from(a, "utf8"), Buffer.from(b, "utf8"));
const sortCP = (items) => [...items].sort(byCodePoint);

// §3 normalise: CRLF, then lone CR -> LF; strip \p{White_Space} (not trim()); drop empties.
const EDGE_SPACE = /^\p{White_Space}+|\p{White_Space}+$/gu;
const normalise = (template) =>
  template
    .replace(/\r\n/g, "\n")
    .replace(/\r/g, "\n")
    .split("\n")
    .map((line) => line.replace(EDGE_SPACE, ""))
    .filter((line) => line !== "")
    .join("\n");

function canonicalManifest(m) {
  const tools = (m.tools ?? []).map((t) => ({
    name: t.name,
    description: t.description ?? "",
    parameters: t.parameters ?? {},
    source: t.source ?? null,
  }));
  tools.sort((a, b) => byCodePoint(a.name, b.name));
  return {
    v: m.v ?? 1,
    agent_id: m.agent_id,
    prompt: {
      template: normalise(m.prompt.template),
      variables: sortCP(new Set(m.prompt.variables ?? [])),
    },
    tools,
    config: m.config ?? {},
  };
}

// §3 templates: {name} is a placeholder, {{ and }} are literal braces.
function render(template, values) {
  const used = {};
  const text = template.replace(/\{\{|\}\}|\{([^{}]*)\}/g, (piece, name) => {
    if (name === undefined) return piece[0];
    used[name] = values[name];
    return values[name];
  });
  return { text, used };
}

function checkChecksums(v) {
  for (const c of v.cases) {
    const canonical = canonicalManifest(c.manifest);
    expectEqual(canonical, c.canonical, `checksums ${c.name}: canonical`);
    expectEqual(jcs(canonical).toString("utf8"), c.canonical_json, `checksums ${c.name}: JCS`);
    expectEqual(digest(jcs(canonical)), c.checksum, `checksums ${c.name}: checksum`);
  }
  const whiteSpace = [];
  for (let cp = 0; cp < 0x110000; cp++) {
    if (cp >= 0xd800 && cp < 0xe000) continue;
    if (/^\p{White_Space}$/u.test(String.fromCodePoint(cp))) {
      whiteSpace.push("U+" + cp.toString(16).toUpperCase().padStart(4, "0"));
    }
  }
  expectEqual(whiteSpace, v.prompt_whitespace, "prompt whitespace set");
  for (const c of v.prompt_normalisation) {
    expectEqual(normalise(c.input), c.normalised, `normalise ${c.name}`);
  }
  const d = v.input_digest;
  const { text, used } = render(d.template, d.values);
  expectEqual(text, d.rendered, "input_digest rendered");
  expectEqual(used, d.used, "input_digest used variables");
  expectEqual(digest(jcs(used)), d.input_digest, "input_digest");
}

// ---------------------------------------------------------------------------- §4 keys

const P256_ORDER = BigInt("0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551");
const ED25519_PKCS8 = Buffer.from("302e020100300506032b657004220420", "hex");
const p256Scalar = (okm) =>
  ((BigInt("0x" + okm.toString("hex")) % (P256_ORDER - 1n)) + 1n).toString(16).padStart(64, "0");

function publicJwk(okm, alg) {
  if (alg === "ES256") {
    const ecdh = crypto.createECDH("prime256v1");
    ecdh.setPrivateKey(Buffer.from(p256Scalar(okm), "hex"));
    const point = ecdh.getPublicKey();
    return { crv: "P-256", kty: "EC", x: b64url(point.subarray(1, 33)), y: b64url(point.subarray(33)) };
  }
  const key = crypto.createPrivateKey({
    key: Buffer.concat([ED25519_PKCS8, okm]),
    format: "der",
    type: "pkcs8",
  });
  const { crv, kty, x } = crypto.createPublicKey(key).export({ format: "jwk" });
  return { crv, kty, x };
}

async function checkKeys(v) {
  const example = v.rfc7638_example;
  expectEqual(await jose.calculateJwkThumbprint(example.jwk), example.thumbprint, "RFC 7638 example");
  const master = Buffer.from(v.master_secret_hex, "hex");
  for (const c of v.derived) {
    const name = `${c.alg} ${c.agent_id} epoch ${c.epoch}`;
    const salt = Buffer.from(c.checksum.slice("sha256:".length), "hex");
    const info = Buffer.from(`ajwt/pop/v1|${c.agent_id}|${c.epoch}`, "utf8");
    const okm = Buffer.from(crypto.hkdfSync("sha256", master, salt, info, c.alg === "ES256" ? 48 : 32));
    expectEqual(okm.toString("hex"), c.okm_hex, `keys ${name}: okm`);
    if (c.alg === "ES256") expectEqual(p256Scalar(okm), c.private_scalar_hex, `keys ${name}: d`);
    const jwk = publicJwk(okm, c.alg);
    expectEqual(jwk, c.public_jwk, `keys ${name}: public jwk`);
    expectEqual(await jose.calculateJwkThumbprint(jwk), c.jkt, `keys ${name}: jkt`);
  }
  for (const c of v.p256_reduction) {
    expectEqual(p256Scalar(Buffer.from(c.okm_hex, "hex")), c.private_scalar_hex, `reduce ${c.okm_hex}`);
  }
}

// ------------------------------------------------------------- §5, §7, §12 JWS checks

const ALGORITHMS = ["ES256", "EdDSA"];
const KEY_CARRYING = ["jku", "x5u", "jwk", "x5c", "x5t", "x5t#S256", "crit"];
const PRIVATE_MEMBERS = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];
const KEY_TYPE = { ES256: ["EC", "P-256"], EdDSA: ["OKP", "Ed25519"] };

class Refused extends Error {}
const refuse = (reason) => {
  throw new Refused(reason);
};
async function outcome(check) {
  try {
    await check();
    return "valid";
  } catch (error) {
    if (error instanceof Refused) return error.message;
    throw error;
  }
}

const mediaType = (typ) => (typeof typ === "string" ? typ.toLowerCase().replace(/^application\//, "") : null);

function readHeader(token, typ, maxBytes, forbidden) {
  if (token.length > maxBytes) refuse("token_too_large");
  if (!/^[\x00-\x7f]*$/.test(token) || token.split(".").length !== 3) refuse("malformed_token");
  let header;
  try {
    header = jose.decodeProtectedHeader(token);
  } catch {
    refuse("malformed_token");
  }
  if (mediaType(header.typ) !== typ) refuse("wrong_type");
  if (!ALGORITHMS.includes(header.alg)) refuse("alg_not_allowed");
  if (forbidden.some((name) => Object.hasOwn(header, name))) refuse("forbidden_header");
  return header;
}

async function verifySignature(token, jwk, alg) {
  let result;
  try {
    result = await jose.compactVerify(token, await jose.importJWK(jwk, alg), { algorithms: [alg] });
  } catch (error) {
    if (error.code === "ERR_JWS_SIGNATURE_VERIFICATION_FAILED") refuse("bad_signature");
    refuse("malformed_token");
  }
  return JSON.parse(new TextDecoder().decode(result.payload));
}

function checkTimes(claims, now, leeway, maxLifetime) {
  const nbf = claims.nbf ?? claims.iat;
  if (claims.exp <= now - leeway) refuse("token_expired");
  if (nbf > now + leeway) refuse("token_not_yet_valid");
  if (claims.iat > now + leeway) refuse("issued_in_future");
  if (claims.exp - Math.min(claims.iat, nbf) > maxLifetime) refuse("lifetime_too_long");
}

function actChain(act) {
  const chain = [];
  for (let a = act; a; a = a.act) chain.push(String(a.sub).replace(/^agent:/, ""));
  return chain.reverse();
}

const REQUIRED = ["iss", "aud", "sub", "client_id", "scope", "iat", "nbf", "exp", "jti", "cnf", "act", "agent", "intent"];

async function verifyIntentToken(token, jwks, { issuer, audience, now, leeway = 60, maxLifetime = 300 }) {
  // §5.1: an RFC 9068 access token; its required claims tell it from the issuer's other at+jwt.
  const header = readHeader(token, "at+jwt", 8192, KEY_CARRYING);
  const key = jwks.keys.find((k) => k.kid === header.kid);
  if (!key) refuse("unknown_kid");
  if (key.alg !== header.alg) refuse("alg_not_allowed");
  const claims = await verifySignature(token, key, header.alg);
  if (REQUIRED.some((name) => !Object.hasOwn(claims, name))) refuse("missing_claim");
  if (claims.iss !== issuer) refuse("wrong_issuer");
  if (audience !== null && claims.aud !== audience) refuse("wrong_audience");
  checkTimes(claims, now, leeway, maxLifetime);
  const chain = actChain(claims.act);
  if (chain.length > 16) refuse("chain_too_deep");
  if (chain.at(-1) !== claims.agent.id) refuse("invalid_claim");
  return claims;
}

// jose's own validation of an RFC 9068 access token (typ at+jwt, its required claims), as a
// verifier that knows nothing of A-JWT: every intent token must pass it (§5.1).
const JOSE_CLAIM_REASON = { typ: "wrong_type", iss: "wrong_issuer", aud: "wrong_audience", nbf: "token_not_yet_valid" };
const RFC9068_REQUIRED = ["iss", "exp", "aud", "sub", "client_id", "iat", "jti"];
// A-JWT rules beyond RFC 9068 that a generic verifier does not apply (§7, §12 Tokens).
const AJWT_ONLY = new Set(["forbidden_header", "issued_in_future", "lifetime_too_long", "invalid_claim"]);

async function joseOpinion(token, v) {
  try {
    await jose.jwtVerify(token, jose.createLocalJWKSet(v.jwks), {
      issuer: v.issuer,
      audience: v.audience,
      typ: "at+jwt",
      requiredClaims: RFC9068_REQUIRED,
      algorithms: ALGORITHMS,
      currentDate: new Date(v.now * 1000),
      clockTolerance: v.leeway,
    });
    return "valid";
  } catch (error) {
    if (error.code === "ERR_JWT_CLAIM_VALIDATION_FAILED" && error.reason === "missing") return "missing_claim";
    if (error.code === "ERR_JWT_CLAIM_VALIDATION_FAILED") return JOSE_CLAIM_REASON[error.claim] ?? error.claim;
    return {
      ERR_JWT_EXPIRED: "token_expired",
      ERR_JWS_SIGNATURE_VERIFICATION_FAILED: "bad_signature",
      ERR_JOSE_ALG_NOT_ALLOWED: "alg_not_allowed",
      ERR_JWKS_NO_MATCHING_KEY: "unknown_kid",
    }[error.code] ?? error.code;
  }
}

async function checkTokens(v) {
  const options = { issuer: v.issuer, audience: v.audience, now: v.now, leeway: v.leeway, maxLifetime: v.max_lifetime };
  for (const c of v.cases) {
    expectEqual(await outcome(() => verifyIntentToken(c.token, v.jwks, options)), c.expect, `token ${c.name}`);
    const expected = AJWT_ONLY.has(c.expect) ? "valid" : c.expect;
    expectEqual(await joseOpinion(c.token, v), expected, `token ${c.name} (jose.jwtVerify)`);
  }
  const valid = await verifyIntentToken(v.cases[0].token, v.jwks, options);
  expectEqual(valid, v.valid_claims, "token claims");
  expectEqual(actChain(valid.act), v.valid_chain, "token chain");
  for (const key of v.jwks.keys) expectEqual(await jose.calculateJwkThumbprint(key), key.kid, "IdP kid");
}

// -------------------------------------------------------------------- §5.3 proofs

// §5.3 htu: scheme and host lower-cased, default port dropped, path as is, no query/fragment.
function htu(url) {
  const m = /^([A-Za-z][A-Za-z0-9+.-]*):\/\/([^/?#]*)([^?#]*)/.exec(url);
  const scheme = m[1].toLowerCase();
  const authority = m[2].slice(m[2].lastIndexOf("@") + 1);
  const [, host, port] = /^(\[[^\]]*\]|[^:]*)(?::(\d*))?$/.exec(authority);
  const defaultPort = { http: "80", https: "443" }[scheme];
  const keepPort = port && Number(port) !== Number(defaultPort) ? `:${Number(port)}` : "";
  return `${scheme}://${host.toLowerCase()}${keepPort}${m[3] || "/"}`;
}

async function verifyProof(proof, { method, url, token, body, expectedJkt, now, maxAge, futureLeeway, bodyBinding }) {
  const header = readHeader(proof, "dpop+jwt", 4096, KEY_CARRYING.filter((h) => h !== "jwk"));
  const jwk = header.jwk;
  if (typeof jwk !== "object" || jwk === null) refuse("malformed_proof");
  if (PRIVATE_MEMBERS.some((m) => Object.hasOwn(jwk, m))) refuse("private_key_in_proof");
  if (jwk.kty !== KEY_TYPE[header.alg][0] || jwk.crv !== KEY_TYPE[header.alg][1]) refuse("invalid_key");
  let claims;
  try {
    // jose.EmbeddedJWK: the key is the proof's own header jwk (RFC 9449 §4.3).
    claims = JSON.parse(new TextDecoder().decode((await jose.compactVerify(proof, jose.EmbeddedJWK)).payload));
  } catch (error) {
    if (error.code === "ERR_JWS_SIGNATURE_VERIFICATION_FAILED") refuse("bad_signature");
    throw error;
  }
  if (!["jti", "htm", "htu"].every((c) => typeof claims[c] === "string")) refuse("malformed_proof");
  if (claims.htm !== method) refuse("method_mismatch");
  if (htu(claims.htu) !== htu(url)) refuse("url_mismatch");
  if (claims.iat < now - maxAge) refuse("proof_expired");
  if (claims.iat > now + futureLeeway) refuse("proof_from_future");
  if (claims.ath !== sha256b64url(Buffer.from(token, "ascii"))) refuse("ath_mismatch");
  // §5.3: a present bh is checked; a missing one is refused when the binding is
  // "required", or "if_body" (the default) and the request has a body.
  if (claims.bh === undefined) {
    if (bodyBinding === "required" || (bodyBinding === "if_body" && body.length)) refuse("bh_missing");
  } else if (claims.bh !== sha256b64url(body)) refuse("bh_mismatch");
  if ((await jose.calculateJwkThumbprint(jwk)) !== expectedJkt) refuse("jkt_mismatch");
}

async function checkProofs(v) {
  expectEqual(sha256b64url(Buffer.from(v.access_token, "ascii")), v.ath, "proof ath");
  for (const c of v.cases) {
    const body = Buffer.from(c.request.body_b64, "base64");
    if (body.length) expectEqual(sha256b64url(body), v.bh, `proof ${c.name}: bh`);
    const result = await outcome(() =>
      verifyProof(c.proof, {
        method: c.request.method,
        url: c.request.url,
        token: v.access_token,
        body,
        expectedJkt: v.expected_jkt,
        now: v.now,
        maxAge: v.max_age,
        futureLeeway: v.future_leeway,
        bodyBinding: c.request.body_binding ?? "if_body",
      }),
    );
    expectEqual(result, c.expect, `proof ${c.name}`);
  }
}

// ----------------------------------------------------------------- §5.2 delegation

const tokenHash = (token) => digest(Buffer.from(token, "ascii"));

async function checkDelegationCase(v, c) {
  const parent = await verifyIntentToken(c.parent_token, v.jwks, { issuer: v.issuer, audience: null, now: v.now });
  if (parent.cnf.jkt !== (await jose.calculateJwkThumbprint(v.delegator_jwk))) refuse("parent_token_mismatch");
  const header = readHeader(c.assertion, "delegation+jwt", 8192, KEY_CARRYING);
  if (header.alg !== { EC: "ES256", OKP: "EdDSA" }[v.delegator_jwk.kty]) refuse("alg_not_allowed");
  const claims = await verifySignature(c.assertion, v.delegator_jwk, header.alg);
  if (claims.aud !== v.issuer) refuse("wrong_audience");
  checkTimes(claims, v.now, v.leeway, v.max_lifetime);
  if (claims.parent !== tokenHash(c.parent_token)) refuse("parent_token_mismatch");
  const intent = parent.intent;
  if (
    claims.run_id !== intent.run_id ||
    claims.intent_id !== intent.id ||
    claims.from_step !== intent.step ||
    claims.iss !== "agent:" + parent.agent.id
  ) {
    refuse("invalid_delegation");
  }
}

async function checkDelegation(v) {
  for (const c of v.cases) {
    expectEqual(tokenHash(c.parent_token), c.parent_hash, `delegation ${c.name}: parent hash`);
    expectEqual(tokenHash(c.assertion), c.assertion_hash, `delegation ${c.name}: assertion hash`);
    expectEqual(await outcome(() => checkDelegationCase(v, c)), c.expect, `delegation ${c.name}`);
  }
}

// ----------------------------------------------------------------------- §8 ledger

const GENESIS = "sha256:" + "0".repeat(64);
const body = (e) => ({ run_id: e.run_id, seq: e.seq, kind: e.kind, at: e.at, data: e.data });
const entryHash = (prev, e) => digest(Buffer.concat([Buffer.from(prev, "ascii"), jcs(body(e))]));

function verifyLedger(entries) {
  let head = GENESIS;
  for (const [position, e] of entries.entries()) {
    if (e.run_id !== entries[0].run_id || e.seq !== position || e.prev_hash !== head || entryHash(head, e) !== e.entry_hash) {
      return { firstBad: position, head };
    }
    head = e.entry_hash;
  }
  return { firstBad: null, head };
}

function checkLedger(v) {
  expectEqual(GENESIS, v.genesis, "ledger genesis");
  v.ledger.entries.forEach((e, i) => {
    const step = v.steps[i];
    expectEqual(jcs(body(e)).toString("utf8"), step.body_jcs, `ledger ${i}: body JCS`);
    expectEqual(Buffer.concat([Buffer.from(e.prev_hash, "ascii"), jcs(body(e))]).toString("hex"), step.hash_input_hex, `ledger ${i}: hash input`);
    expectEqual(entryHash(e.prev_hash, e), e.entry_hash, `ledger ${i}: entry hash`);
  });
  expectEqual(verifyLedger(v.ledger.entries), { firstBad: null, head: v.head }, "ledger chain");
  for (const c of v.tampered) expectEqual(verifyLedger(c.ledger.entries).firstBad, c.first_bad_seq, `ledger ${c.name}`);
}

// --------------------------------------------------------------------- §6.3 workflow

function canonicalWorkflow(definition) {
  let steps = definition.steps;
  if (Array.isArray(steps)) {
    steps = Object.fromEntries(steps.map(({ id, ...step }) => [id, step]));
  }
  const canonical = {};
  for (const [id, s] of Object.entries(steps)) {
    canonical[id] = {
      agent: s.agent,
      tools: sortCP(s.tools),
      scopes: sortCP(s.scopes ?? []),
      after: sortCP(s.after ?? []),
      required: s.required ?? true,
      approval: s.approval ?? false,
    };
  }
  return { id: definition.id, version: definition.version, steps: canonical };
}

function checkWorkflow(v) {
  for (const c of v.cases) {
    const canonical = canonicalWorkflow(c.definition);
    expectEqual(jcs(canonical).toString("utf8"), c.canonical_json, `workflow ${c.name}: JCS`);
    expectEqual(digest(jcs(canonical)), c.workflow_hash, `workflow ${c.name}: hash`);
  }
}

// ------------------------------------------------------------------------------ run

const checks = [
  ["checksums", () => checkChecksums(load("checksums.json"))],
  ["keys", () => checkKeys(load("keys.json"))],
  ["tokens", () => checkTokens(load("tokens.json"))],
  ["proofs", () => checkProofs(load("proofs.json"))],
  ["delegation", () => checkDelegation(load("delegation.json"))],
  ["ledger", () => checkLedger(load("ledger.json"))],
  ["workflow", () => checkWorkflow(load("workflow.json"))],
];
for (const [name, check] of checks) {
  const before = agreed;
  const failedBefore = failures.length;
  try {
    await check();
  } catch (error) {
    failures.push(`${name}: ${error.stack}`);
  }
  console.log(`${name}: ${agreed - before} values agree, ${failures.length - failedBefore} disagree`);
}
console.log(`node ${process.version}, jose and canonicalize: ${agreed} values agree, ${failures.length} disagree`);
for (const failure of failures) console.log(`DISAGREES ${failure}`);
process.exit(failures.length ? 1 : 0);
