// framelink's browser camera: this page is a framelink client. It speaks the
// protocol of protocol.md (version 2) over a WebSocket to /ws/camera, the
// bytes in binary messages whose boundaries mean nothing. A frame is taken
// from the camera and encoded only when the server holds out a ticket; its
// age counts from the capture instant, and a ticket's hold from its arrival,
// both on this page's clock (performance.now), as the protocol asks.
"use strict";

const VERSION = 2;
const MAGIC = [0x46, 0x4c, 0x4e, 0x4b]; // "FLNK"
const KIND = { HELLO: 1, WELCOME: 2, TICKET: 3, FRAME: 4, VERDICT: 5, GOODBYE: 6, RESULT: 7, CHALLENGE: 8 };
const RESULTS = 1; // the capability bit
const MAX_RESULT = 16 * 1024 * 1024;
// What the server may send, and each body's largest length (protocol.md, Limits).
const LIMIT = { 8: 32, 2: 47, 3: 12, 5: 27 + MAX_RESULT, 6: 1028, 7: 22 + MAX_RESULT };
const CHUNK = 64 * 1024; // the largest WebSocket message the server takes
const GOODBYE = { 1: "ShuttingDown", 2: "ServerFull", 3: "UnsupportedVersion", 4: "ProtocolError", 5: "Timeout", 6: "TooLarge", 7: "Unauthorized" };
const REASON = { 1: "not a whole JPEG", 2: "unsupported encoding", 3: "wrong size", 4: "broken JPEG headers", 5: "too many pixels", 6: "ticket hold too long", 7: "frame id not increasing" };
const IO_TIMEOUT_MS = 10000;
const MAX_BACKOFF_MS = 2000;
const REFUSED_BACKOFF_MS = 5000;

const $ = (id) => document.getElementById(id);
const video = $("video");
const overlay = $("overlay");
const text = new TextEncoder();

// Settings live in the page's storage (the token too: never in an address).
const store = {
  get(key, fallback) { try { return localStorage.getItem("framelink-" + key) ?? fallback; } catch { return fallback; } },
  set(key, value) { try { localStorage.setItem("framelink-" + key, value); } catch { /* private mode */ } },
};
const params = new URLSearchParams(location.search);
const settings = {
  name: params.get("name") || store.get("name", "browser-camera"),
  facing: store.get("facing", "environment"),
  size: params.get("size") || store.get("size", "640x480"),
  quality: Number(params.get("quality") || store.get("quality", "0.8")),
  token: store.get("token", ""),
};

// What the page shows, also read by tests: window.framelinkCamera.
const figures = {
  state: "starting", sent: 0, accepted: 0, stale: 0, rejected: 0, results: 0,
  lastAgeMs: null, lastResult: null, boxes: 0, goodbye: null, connections: 0,
};
window.framelinkCamera = figures;

function setState(state, words) {
  figures.state = state;
  $("state").dataset.state = state;
  $("state").textContent = words;
}

// ---- bytes ----

function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) { out.set(p, at); at += p.length; }
  return out;
}

/** A message: kind, body_len (u32, big-endian), body. */
function message(kind, body) {
  const out = new Uint8Array(5 + body.length);
  const v = new DataView(out.buffer);
  v.setUint8(0, kind);
  v.setUint32(1, body.length);
  out.set(body, 5);
  return out;
}

function preface() { return new Uint8Array([...MAGIC, VERSION >> 8, VERSION & 0xff]); }

/** A name HELLO carries: 1..=64 bytes of UTF-8, no control characters. */
function helloName(name) {
  let n = [...name.replace(/[\u0000-\u001f\u007f]/g, "")].join("") || "browser-camera";
  while (text.encode(n).length > 64) n = [...n].slice(0, -1).join("");
  return text.encode(n);
}

async function hmac(token, ...parts) {
  const key = await crypto.subtle.importKey("raw", text.encode(token), { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  return new Uint8Array(await crypto.subtle.sign("HMAC", key, concat(...parts)));
}

function sameBytes(a, b) {
  if (a.length !== b.length) return false;
  let d = 0;
  for (let i = 0; i < a.length; i++) d |= a[i] ^ b[i];
  return d === 0;
}

const us = (ms) => Math.min(0xffffffff, Math.max(0, Math.round(ms * 1000)));

// ---- the camera ----

let media = null;
// The newest camera frame not yet sent: set by each new video frame.
let fresh = null;

async function openCamera() {
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    throw new Error("this browser gives the camera only to https pages (or localhost): start the server with --self-signed, or --tls-cert and --tls-key, and open https://…/camera");
  }
  const [width, height] = settings.size.split("x").map(Number);
  media = await navigator.mediaDevices.getUserMedia({
    audio: false,
    video: { facingMode: { ideal: settings.facing }, width: { ideal: width }, height: { ideal: height } },
  });
  video.srcObject = media;
  await video.play();
  watchFrames(media);
}

function closeCamera() {
  if (media) media.getTracks().forEach((t) => t.stop());
  media = null;
  fresh = null;
  video.srcObject = null;
}

/** Notes each new video frame and its capture instant (page clock). */
function watchFrames(stream) {
  const noted = (now, meta) => {
    if (media !== stream) return;
    const t = meta && meta.captureTime;
    // The camera's capture instant when the browser gives it, else when the frame was shown.
    const captured = t && t <= performance.now() && now - t < 10000 ? t : now;
    fresh = { captured };
    if (link) link.pump();
  };
  if ("requestVideoFrameCallback" in HTMLVideoElement.prototype) {
    const each = (now, meta) => { noted(now, meta); if (media === stream) video.requestVideoFrameCallback(each); };
    video.requestVideoFrameCallback(each);
  } else {
    const each = () => { noted(performance.now(), null); if (media === stream) setTimeout(each, 33); };
    each();
  }
}

const canvas = document.createElement("canvas");
const ctx = canvas.getContext("2d");

/** The video's current picture, at most the chosen size, as JPEG bytes. */
async function encode() {
  const [maxW, maxH] = settings.size.split("x").map(Number);
  const scale = Math.min(1, maxW / video.videoWidth, maxH / video.videoHeight);
  const w = Math.max(1, Math.round(video.videoWidth * scale));
  const h = Math.max(1, Math.round(video.videoHeight * scale));
  if (canvas.width !== w || canvas.height !== h) { canvas.width = w; canvas.height = h; }
  ctx.drawImage(video, 0, 0, w, h);
  const blob = await new Promise((done) => canvas.toBlob(done, "image/jpeg", settings.quality));
  if (!blob) throw new Error("the browser could not encode a JPEG");
  return { jpeg: new Uint8Array(await blob.arrayBuffer()), w, h };
}

// ---- one connection ----

let link = null;
let backoff = 100;
let retry = null;

class Link {
  constructor() {
    this.ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws/camera");
    this.ws.binaryType = "arraybuffer";
    this.buf = new Uint8Array(0);
    this.marks = []; // [end offset in buf, arrival instant] of each received piece
    this.prefaced = false;
    this.busy = false; // a message being handled (the proofs are async)
    this.tickets = [];
    this.welcome = null;
    this.sending = false;
    this.owed = 0; // verdicts owed
    this.heard = performance.now();
    this.frameId = 0;
    this.sizes = new Map(); // frame_id → [w, h, captured], for results
    this.over = false;
    this.ws.onopen = () => { setState("handshake", "connected: handshake…"); this.ws.send(preface()); };
    this.ws.onmessage = (e) => this.received(new Uint8Array(e.data), performance.now());
    this.ws.onclose = () => this.ended();
    this.watchdog = setInterval(() => {
      if (this.owed > 0 && performance.now() - this.heard > IO_TIMEOUT_MS) {
        this.fail("the server stopped answering");
      }
    }, 1000);
  }

  received(bytes, at) {
    this.heard = at;
    this.buf = concat(this.buf, bytes);
    this.marks.push([this.buf.length, at]);
    this.drain();
  }

  /** When the bytes up to `end` had all arrived. */
  arrival(end) {
    for (const [e, t] of this.marks) if (e >= end) return t;
    return performance.now();
  }

  consume(n) {
    this.buf = this.buf.slice(n);
    this.marks = this.marks.map(([e, t]) => [e - n, t]).filter(([e]) => e > 0);
  }

  async drain() {
    if (this.busy) return;
    this.busy = true;
    try {
      while (!this.over) {
        if (!this.prefaced) {
          if (this.buf.length < 6) break;
          const b = this.buf;
          if (!MAGIC.every((m, i) => b[i] === m)) return this.fail("the server did not answer as a framelink server");
          const version = (b[4] << 8) | b[5];
          if (version !== VERSION) {
            this.stopRetrying = true;
            return this.fail("the server speaks framelink version " + version + ", this page " + VERSION + ": reload the page from that server");
          }
          this.prefaced = true;
          this.consume(6);
          continue;
        }
        if (this.buf.length < 5) break;
        const v = new DataView(this.buf.buffer, this.buf.byteOffset);
        const kind = v.getUint8(0), len = v.getUint32(1);
        if (!(kind in LIMIT)) return this.fail("the server sent a message of unknown kind " + kind);
        if (len > LIMIT[kind]) return this.fail("the server sent a message over its limit (kind " + kind + ", " + len + " bytes)");
        if (this.buf.length < 5 + len) break;
        const at = this.arrival(5 + len);
        const body = this.buf.slice(5, 5 + len);
        this.consume(5 + len);
        await this.handle(kind, body, at);
      }
    } finally {
      this.busy = false;
    }
  }

  async handle(kind, body, at) {
    const v = new DataView(body.buffer, body.byteOffset, body.byteLength);
    switch (kind) {
      case KIND.CHALLENGE: {
        this.nonce = body;
        this.clientNonce = crypto.getRandomValues(new Uint8Array(32));
        const proof = settings.token ? await hmac(settings.token, text.encode("framelink hello"), this.nonce, this.clientNonce) : new Uint8Array(0);
        const name = helloName(settings.name);
        const caps = new Uint8Array(4);
        new DataView(caps.buffer).setUint32(0, RESULTS);
        this.send(message(KIND.HELLO, concat(caps, [name.length], name, this.clientNonce, [proof.length], proof)));
        break;
      }
      case KIND.WELCOME: {
        const proofLen = v.getUint8(14);
        const proof = body.slice(15, 15 + proofLen);
        if (settings.token) {
          const want = await hmac(settings.token, text.encode("framelink welcome"), this.clientNonce, this.nonce);
          if (proofLen === 0) return this.refuse("the server has no token, but this page has one: clear the token field");
          if (!sameBytes(proof, want)) return this.refuse("the server could not prove it knows this token: it is not the server you meant");
        }
        this.welcome = { caps: v.getUint32(0), maxAgeMs: v.getUint32(4) / 1000, maxFrameBytes: v.getUint32(8), window: v.getUint16(12) };
        backoff = 100;
        figures.connections++;
        setState("streaming", "streaming as " + settings.name + " (threshold " + this.welcome.maxAgeMs.toFixed(0) + " ms)");
        break;
      }
      case KIND.TICKET:
        // Kept as sent: the page echoes issued_us and never reads it.
        this.tickets.push({ id: body.slice(0, 4), issued: body.slice(4, 12), arrived: at });
        this.pump();
        break;
      case KIND.VERDICT: {
        this.owed = Math.max(0, this.owed - 1);
        const outcome = v.getUint8(12), reason = v.getUint8(13), age = v.getUint32(14) / 1000;
        if (outcome === 0) { figures.accepted++; figures.lastAgeMs = age; }
        else if (outcome === 1) { figures.stale++; figures.lastAgeMs = age; }
        else { figures.rejected++; figures.lastReject = REASON[reason] || "reason " + reason; }
        break;
      }
      case KIND.RESULT: showResult(v, body, this.sizes); break;
      case KIND.GOODBYE: {
        const code = v.getUint16(0), len = v.getUint16(2);
        const words = new TextDecoder().decode(body.slice(4, 4 + len));
        figures.goodbye = { code, name: GOODBYE[code] || "code " + code, text: words };
        this.over = true;
        if (code === 7) {
          $("token").classList.add("wanted");
          setState("refused", "refused: " + (settings.token ? "wrong token" : "this server needs its token: enter it below") + " (Unauthorized: " + words + ")");
        } else if (code === 2) setState("refused", "the server is full (ServerFull: " + words + "); trying again");
        else if (code === 3) { this.stopRetrying = true; setState("error", "UnsupportedVersion: " + words); }
        else setState(code === 1 ? "reconnecting" : "error", figures.goodbye.name + ": " + words);
        this.refused = code === 7 || code === 2;
        this.ws.close();
        break;
      }
      default:
        return this.fail("the server sent a message this page does not expect (kind " + kind + ")");
    }
  }

  send(bytes) {
    for (let at = 0; at < bytes.length; at += CHUNK) this.ws.send(bytes.subarray(at, at + CHUNK));
  }

  /** Answers the oldest ticket with the newest camera frame, when both are there. */
  async pump() {
    if (this.over || !this.welcome || this.sending || !this.tickets.length || !fresh || video.readyState < 2) return;
    this.sending = true;
    const { captured } = fresh;
    fresh = null;
    try {
      const { jpeg, w, h } = await encode();
      if (this.over) return;
      if (jpeg.length > this.welcome.maxFrameBytes) {
        setState("error", "a frame of " + jpeg.length + " bytes is over the server's limit: choose a smaller size or quality");
        return;
      }
      const ticket = this.tickets.shift();
      const id = ++this.frameId;
      const body = new Uint8Array(37 + jpeg.length);
      const v = new DataView(body.buffer);
      v.setBigUint64(0, BigInt(id));
      v.setUint8(8, 1); // JPEG
      v.setUint16(9, w);
      v.setUint16(11, h);
      const now = performance.now();
      v.setUint32(13, us(now - captured));
      v.setUint32(17, us(now - ticket.arrived));
      v.setUint32(21, jpeg.length);
      body.set(jpeg, 25);
      body.set(ticket.id, 25 + jpeg.length);
      body.set(ticket.issued, 29 + jpeg.length);
      this.send(message(KIND.FRAME, body));
      this.owed++;
      figures.sent++;
      this.sizes.set(id, [w, h, captured]);
      if (this.sizes.size > 256) this.sizes.delete(this.sizes.keys().next().value);
    } catch (e) {
      setState("error", "cannot take a frame: " + e.message);
    } finally {
      this.sending = false;
    }
    if (fresh) this.pump();
  }

  refuse(why) {
    this.over = true;
    this.refused = true;
    this.send(message(KIND.GOODBYE, goodbyeBody(7, why)));
    setState("refused", why);
    this.ws.close();
  }

  fail(why) {
    if (this.over) return;
    this.over = true;
    setState("error", why);
    if (this.ws.readyState === WebSocket.OPEN) this.send(message(KIND.GOODBYE, goodbyeBody(4, why)));
    this.ws.close();
  }

  /** Says goodbye and closes, without reconnecting (the tab hidden, new settings). */
  stop() {
    this.stopped = true;
    this.over = true;
    if (this.ws.readyState === WebSocket.OPEN) this.send(message(KIND.GOODBYE, goodbyeBody(1, "the page stopped")));
    this.ws.close();
  }

  ended() {
    clearInterval(this.watchdog);
    if (link === this) link = null;
    if (this.stopped || this.stopRetrying) return;
    if (!this.over) setState("reconnecting", "connection lost; reconnecting…");
    const wait = this.refused ? Math.max(REFUSED_BACKOFF_MS, backoff) : backoff;
    backoff = Math.min(backoff * 2, MAX_BACKOFF_MS);
    clearTimeout(retry);
    retry = setTimeout(connect, wait);
  }
}

function goodbyeBody(code, why) {
  const words = text.encode(why).slice(0, 1024);
  const head = new Uint8Array(4);
  const v = new DataView(head.buffer);
  v.setUint16(0, code);
  v.setUint16(2, words.length);
  return concat(head, words);
}

// ---- results ----

/** Boxes in a result, in frame pixels: `box: [x, y, w, h]`, or `boxes` as a list of
 * `[x, y, w, h]` or `{box: [x, y, w, h], label, score}` (or `{x, y, w, h, label, score}`). */
function boxesOf(value) {
  if (!value || typeof value !== "object") return [];
  const one = (b) => {
    if (Array.isArray(b) && b.length === 4 && b.every(Number.isFinite)) return { box: b };
    if (b && Array.isArray(b.box)) return one(b.box) && { ...b, box: b.box };
    if (b && [b.x, b.y, b.w, b.h].every(Number.isFinite)) return { box: [b.x, b.y, b.w, b.h], label: b.label, score: b.score };
    return null;
  };
  const list = Array.isArray(value.boxes) ? value.boxes : value.box ? [value.box] : [];
  return list.map(one).filter(Boolean);
}

function showResult(v, body, sizes) {
  const frameId = Number(v.getBigUint64(0));
  const status = v.getUint8(8), processingMs = v.getUint32(13) / 1000, kind = v.getUint8(17), len = v.getUint32(18);
  const bytes = body.slice(22, 22 + len);
  figures.results++;
  const size = sizes.get(frameId);
  const took = size ? " · capture→result " + (performance.now() - size[2]).toFixed(0) + " ms" : "";
  let shown, value = null;
  if (status === 1) shown = "skipped (a newer frame replaced it)";
  else if (status === 2) shown = "failed: " + new TextDecoder().decode(bytes);
  else if (kind === 1) {
    const words = new TextDecoder().decode(bytes);
    try { value = JSON.parse(words); } catch { value = null; }
    shown = words;
  } else if (kind === 3) shown = new TextDecoder().decode(bytes);
  else if (kind === 2) shown = "an image of " + len + " bytes";
  else shown = "(no output)";
  if (status === 1) return; // a skip says nothing new about the picture
  figures.lastResult = shown;
  $("result").textContent = "result for frame " + frameId + " (" + processingMs.toFixed(1) + " ms" + took + "): " + shown;
  drawBoxes(value ? boxesOf(value) : [], size);
}

function drawBoxes(boxes, size) {
  const r = overlay.getBoundingClientRect();
  overlay.width = Math.max(1, Math.round(r.width));
  overlay.height = Math.max(1, Math.round(r.height));
  const g = overlay.getContext("2d");
  g.clearRect(0, 0, overlay.width, overlay.height);
  overlay.dataset.boxes = String(boxes.length);
  figures.boxes = boxes.length;
  if (!boxes.length || !size) return;
  // The video is shown contained in the element: map frame pixels onto it.
  const scale = Math.min(overlay.width / size[0], overlay.height / size[1]);
  const dx = (overlay.width - size[0] * scale) / 2, dy = (overlay.height - size[1] * scale) / 2;
  g.lineWidth = 3;
  g.font = "14px system-ui, sans-serif";
  for (const b of boxes) {
    const [x, y, w, h] = b.box;
    g.strokeStyle = "#ff0";
    g.strokeRect(dx + x * scale, dy + y * scale, w * scale, h * scale);
    const label = [b.label, Number.isFinite(b.score) ? b.score.toFixed(2) : null].filter((s) => s != null).join(" ");
    if (label) { g.fillStyle = "#ff0"; g.fillText(label, dx + x * scale + 4, dy + y * scale + 16); }
  }
}

// ---- the page ----

function connect() {
  clearTimeout(retry);
  if (link || document.hidden || !media) return;
  link = new Link();
}

async function start() {
  if (document.hidden) return;
  try {
    if (!media) {
      setState("starting", "opening the camera…");
      await openCamera();
    }
    connect();
  } catch (e) {
    const why = e.name === "NotAllowedError" ? "the camera was not allowed: allow it for this page and reload"
      : e.name === "NotFoundError" ? "this device has no camera" : e.message;
    setState("error", why);
  }
}

function stop(words) {
  clearTimeout(retry);
  if (link) link.stop();
  link = null;
  closeCamera();
  setState("paused", words);
}

// A hidden tab is not a camera: give the camera and the server's place back.
document.addEventListener("visibilitychange", () => {
  if (document.hidden) stop("paused while the tab is hidden: the camera is released");
  else start();
});
window.addEventListener("pagehide", () => { if (link) link.stop(); });

setInterval(() => {
  const now = performance.now();
  const last = figures.tick || { at: now, sent: 0, accepted: 0 };
  const secs = Math.max(0.001, (now - last.at) / 1000);
  $("fps-sent").textContent = ((figures.sent - last.sent) / secs).toFixed(1);
  $("fps-accepted").textContent = ((figures.accepted - last.accepted) / secs).toFixed(1);
  figures.tick = { at: now, sent: figures.sent, accepted: figures.accepted };
  $("age").textContent = figures.lastAgeMs == null ? "-" : figures.lastAgeMs.toFixed(1);
  $("stale").textContent = figures.stale;
  $("rejected").textContent = figures.rejected + (figures.lastReject ? " (" + figures.lastReject + ")" : "");
}, 1000);

for (const [id, key] of [["name", "name"], ["facing", "facing"], ["size", "size"], ["quality", "quality"], ["token", "token"]]) {
  $(id).value = settings[key];
}
$("settings").addEventListener("submit", (e) => {
  e.preventDefault();
  const camera = $("facing").value !== settings.facing || $("size").value !== settings.size;
  settings.name = $("name").value.trim() || "browser-camera";
  settings.facing = $("facing").value;
  settings.size = $("size").value;
  settings.quality = Number($("quality").value);
  settings.token = $("token").value;
  for (const key of Object.keys(settings)) store.set(key, String(settings[key]));
  $("token").classList.remove("wanted");
  if (link) link.stop();
  link = null;
  if (camera) closeCamera();
  start();
});

start();
