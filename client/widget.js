// @ts-check
// Widget API: drive an embedded Ztream player (an <iframe src=".../embed/{id}">)
// from the host page, in the manner of SoundCloud's widget API.
//
//   import { Widget } from "{public_url}/client/widget.js";
//   const w = new Widget(document.querySelector("iframe"));
//   w.bind(Widget.Events.READY, () => w.play());
//   w.bind(Widget.Events.PLAY_PROGRESS, ({ currentPosition }) => ...);
//
// Methods: play(), pause(), toggle(), seekTo(ms), setVolume(0..100),
// getPosition(cb), getDuration(cb) (0 for a live track, as SoundCloud's for a
// stream), getVolume(cb), isPaused(cb), getLiveState(cb) ({state: "starting" |
// "live" | "reconnecting", title, station, latencySeconds} for a live track,
// null otherwise), bind(event, cb), unbind(event), destroy().
// Events: READY ({duration, title, id, live}), PLAY, PAUSE, FINISH, SEEK,
// PLAY_PROGRESS ({currentPosition, relativePosition, loadedProgress},
// positions in ms), ERROR ({error, detail}); for a live track LIVE_CHANGE
// ({state, title, station}) and TITLE_CHANGE ({title, station}: the
// now-playing title changed).
// Names may be given as Widget.Events.X, "X" or the value ("playProgress").
//
// Messages are accepted only from the iframe's own window and from the
// origin of its src; commands are posted to that origin only. Commands given
// before READY are queued and sent once the player is ready.

import { EVENTS, command, eventName, originOf, parseFromEmbed } from "./widget-protocol.js";

const HELLO_EVERY_MS = 250;
const HELLO_FOR_MS = 60_000;

export class Widget {
  static Events = EVENTS;

  /** @param {HTMLIFrameElement | string} iframe the element, or its id */
  constructor(iframe) {
    if (typeof iframe === "string") iframe = /** @type {HTMLIFrameElement} */ (document.getElementById(iframe));
    if (!iframe || iframe.tagName !== "IFRAME") throw new TypeError("Widget needs an <iframe> element or its id");
    this.iframe = iframe;
    this.origin = originOf(iframe.getAttribute("src") || iframe.src, location.href);
    if (!this.origin) throw new TypeError("the iframe has no http(s) src");
    this.listeners = new Map(); // event -> [callbacks]
    this.pending = new Map(); // reply id -> callback
    this.queue = [];
    this.nextId = 1;
    this.isReady = false;
    this.destroyed = false;
    this.onMessage = this.onMessage.bind(this);
    this.onLoad = this.onLoad.bind(this);
    window.addEventListener("message", this.onMessage);
    iframe.addEventListener("load", this.onLoad);
    this.greet();
  }

  // ---- commands ----------------------------------------------------------

  play() {
    this.send("play");
  }
  pause() {
    this.send("pause");
  }
  toggle() {
    this.send("toggle");
  }
  /** @param {number} ms position in milliseconds */
  seekTo(ms) {
    this.send("seekTo", Number(ms));
  }
  /** @param {number} volume 0..100 */
  setVolume(volume) {
    this.send("setVolume", Number(volume));
  }
  getPosition(callback) {
    this.ask("getPosition", callback);
  }
  getDuration(callback) {
    this.ask("getDuration", callback);
  }

  /** @param {(value: any) => void} callback */
  getLiveState(callback) {
    this.ask("getLiveState", callback);
  }
  getVolume(callback) {
    this.ask("getVolume", callback);
  }
  isPaused(callback) {
    this.ask("isPaused", callback);
  }

  /** Call `callback(data)` on each `event`. */
  bind(name, callback) {
    const ev = eventName(name);
    if (!ev) throw new TypeError(`unknown widget event: ${name}`);
    if (typeof callback !== "function") throw new TypeError("bind needs a callback");
    if (!this.listeners.has(ev)) this.listeners.set(ev, []);
    this.listeners.get(ev).push(callback);
    if (ev === EVENTS.READY && this.isReady) queueMicrotask(() => callback(this.readyData));
    return this;
  }

  /** Remove every callback bound to `event`. */
  unbind(name) {
    const ev = eventName(name);
    if (ev) this.listeners.delete(ev);
    return this;
  }

  /** Stop listening; the widget is unusable afterwards. */
  destroy() {
    this.destroyed = true;
    clearInterval(this.helloTimer);
    window.removeEventListener("message", this.onMessage);
    this.iframe.removeEventListener("load", this.onLoad);
    this.listeners.clear();
    this.pending.clear();
    this.queue = [];
  }

  // ---- internals ---------------------------------------------------------

  post(message) {
    const target = this.iframe.contentWindow;
    if (target && this.frameLoaded()) target.postMessage(message, this.origin);
  }

  /**
   * Whether the iframe shows a document of the expected origin, so that a
   * message posted now is not dropped (with a console error) on the
   * about:blank that precedes it. A cross-origin document cannot be read:
   * that is the embed page of another origin.
   */
  frameLoaded() {
    try {
      const here = this.iframe.contentWindow.location;
      return here.origin === this.origin;
    } catch {
      return true;
    }
  }

  send(method, value) {
    if (this.destroyed) return;
    const msg = command(method, value);
    if (this.isReady) this.post(msg);
    else this.queue.push(msg);
  }

  ask(method, callback) {
    if (typeof callback !== "function") throw new TypeError(`${method} needs a callback`);
    if (this.destroyed) return;
    const id = this.nextId++;
    this.pending.set(id, callback);
    const msg = command(method, undefined, id);
    if (this.isReady) this.post(msg);
    else this.queue.push(msg);
  }

  /** Say hello until the embed answers READY (it may not have loaded yet). */
  greet() {
    clearInterval(this.helloTimer);
    const started = Date.now();
    const hello = () => {
      if (this.isReady || this.destroyed || Date.now() - started > HELLO_FOR_MS) {
        clearInterval(this.helloTimer);
        return;
      }
      this.post(command("hello"));
    };
    hello();
    this.helloTimer = setInterval(hello, HELLO_EVERY_MS);
  }

  onLoad() {
    // the iframe (re)loaded: a new embed page, a new handshake
    this.isReady = false;
    this.greet();
  }

  onMessage(e) {
    if (this.destroyed || e.source !== this.iframe.contentWindow || e.origin !== this.origin) return;
    const msg = parseFromEmbed(e.data);
    if (!msg) return;
    if (msg.kind === "reply") {
      const callback = this.pending.get(msg.id);
      this.pending.delete(msg.id);
      if (callback) callback(msg.value);
      return;
    }
    if (msg.event === EVENTS.READY) {
      if (this.isReady) return; // answers to repeated hellos
      this.isReady = true;
      this.readyData = msg.data;
      clearInterval(this.helloTimer);
      const queued = this.queue;
      this.queue = [];
      for (const m of queued) this.post(m);
    } else if (msg.event === EVENTS.ERROR && !this.isReady) {
      clearInterval(this.helloTimer);
    }
    for (const callback of [...(this.listeners.get(msg.event) ?? [])]) {
      try {
        callback(msg.data);
      } catch (err) {
        setTimeout(() => {
          throw err;
        });
      }
    }
  }
}

export default Widget;
