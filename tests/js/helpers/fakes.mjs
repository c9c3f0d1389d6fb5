// Fakes shared by the client/transport.js tests: a WebSocket the test drives
// by hand and a player that emits "session" like client/player.js does.
// Not a *.test.mjs file, so node --test does not run it on its own.
import { Scheduler } from "../../../client/scheduler.js";

export class FakeWS {
  static all = [];
  constructor(url) {
    this.url = url;
    this.readyState = 0;
    this.sent = [];
    FakeWS.all.push(this);
  }
  send(text) {
    this.sent.push(JSON.parse(text));
  }
  close() {
    this.readyState = 3;
  }
  // test side
  open() {
    this.readyState = 1;
    this.onopen?.();
  }
  receive(msg) {
    this.onmessage?.({ data: JSON.stringify(msg) });
  }
  drop() {
    this.readyState = 3;
    this.onclose?.({ code: 1006 });
  }
  take(type) {
    const out = this.sent.filter((m) => !type || m.type === type);
    this.sent = this.sent.filter((m) => type && m.type !== type);
    return out;
  }
}

export class FakePlayer extends EventTarget {
  constructor() {
    super();
    this.stats = { httpBytes: 0, cacheBytes: 0, peerBytes: 0, stalls: 0 };
    this.scheduler = null;
    this.manifest = null;
    this.cache = null;
    this.peers = null;
    this.kicks = 0;
  }
  kick() {
    this.kicks += 1;
  }
  start(n = 10) {
    const chunks = [...Array(n).keys()].map((index) => ({ index, start: index * 2, duration: 2, sha256: "x" }));
    this.manifest = { id: "trk", rendition: "r1", complete: true, chunks };
    this.scheduler = new Scheduler();
    this.scheduler.setManifest(this.manifest);
    this.dispatchEvent(new CustomEvent("session", { detail: { trackId: "trk", manifest: this.manifest } }));
  }
  emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }
}
