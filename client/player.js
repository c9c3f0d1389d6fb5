// @ts-check
// Player core: the Media Source I/O shell around the pure scheduler.
//
// Theory of operation
// -------------------
// `load(trackUrl)` reads the track and its manifest (from the persistent
// cache when it holds a complete one, else from the gateway, falling back to
// the cache when the gateway cannot be reached), opens a MediaSource with one
// SourceBuffer for `audio/webm; codecs="opus"`, appends the init segment and
// then, on every tick or event, asks the scheduler which chunks to fetch and
// from where, fetches them, appends them in arrival order (WebM clusters carry
// their own timecodes) and tells the scheduler what is buffered.
//
// - mediaSource.duration comes from the manifest (WebM from ffmpeg's live mode
//   has no Duration), growing with a live transcode.
// - A seek maps the time to a chunk through the manifest's `start`s (the
//   scheduler's window begins with the chunk holding the playhead).
// - QuotaExceededError: played ranges (and, failing that, far-ahead ranges)
//   are removed and the append is tried again.
// - A live transcode (`complete: false`) is followed by re-reading the
//   manifest every second and by asking the server for the live edge.
// - When every chunk up to the end is buffered, endOfStream() leads the
//   element to `ended`.
// - A live track (the manifest says `live`: a radio station, docs/live.md)
//   plays at the edge: live.js (and live-timeline.js, live-edge.js) say how;
//   the hooks here are marked "live".
// - The rendition (WebM/Opus, Opus or AAC in fMP4) is the first MSE takes
//   (rendition.js); its URLs carry `?rendition=` unless it is the default.
//   Where MSE takes none, the element gets `<audio src=.../stream>` of the
//   first rendition the element can play.
// - The media path (media-path.js): ManagedMediaSource where the page has
//   one that takes the rendition, else MediaSource, else `<audio
//   src=.../stream>`; `mode` says which ("managed-mse", "mse", "stream").
//   With ManagedMediaSource the element gets `disableRemotePlayback` (else
//   it never opens), no new fetch starts between `endstreaming` and
//   `startstreaming` (unless the buffer runs nearly dry while playing), and
//   ranges the browser removes itself (`bufferedchange`) are forgotten by
//   the scheduler, which fetches them again when the playhead needs them.
//   If the element refuses the ManagedMediaSource before anything played,
//   the session starts again on a plain MediaSource (`mediapath` event).
// - Start-up time: from the first `play` to the first `playing` after a
//   load, in seconds (`startupSeconds`, and a `startup` event).
//
// Peers plug in through `player.peers`: an object with
// `fetch(peerId, index, {signal}) -> Promise<ArrayBuffer>`; the scheduler is
// told about peers with `player.scheduler.setPeer(...)`. Chunks from peers are
// checked against the manifest's SHA-256 before they are appended or cached
// (a mismatch dispatches `badchunk` {index, peer}). For the P2P side
// (transport.js) the player also dispatches `session` {trackId, manifest}
// once the scheduler of a load exists (before its first request), `chunk`
// {index, source, peer, bytes, data} for every chunk obtained (server, cache
// or verified peer), and `unload` {trackId, next} (`next`: the id of the
// track `load` is loading in its place, else null); `kick()` makes it
// schedule at once.

import { ApiError, fetchJson } from "./api.js";
import { RENDITIONS, pickRendition, renditionQuery } from "./rendition.js";
import { within } from "./deadline.js";
import { chooseMediaPath, mayFetch } from "./media-path.js";
import { CACHE, SERVER, Scheduler, chunksInRanges, prefetchIndices, rangesToArray } from "./scheduler.js";
import { HAVE_POLL_SPACING, LiveFollower, deltaAfter, heardPastEdge, isLiveManifest, liveStarted, mergeLiveManifest } from "./live.js";

/**
 * @typedef {import("./scheduler.js").Request} Request
 * @typedef {{index: number | "init", data: ArrayBuffer, epoch?: number}} QueueItem a chunk (or the init segment, of a live `epoch`) to append
 * @typedef {{
 *   trackUrl: string, trackId: string, query: string, abort: AbortController, track: any, manifest: any,
 *   scheduler: Scheduler | null, mode: import("./media-path.js").MediaPathMode | null, mediaSource: MediaSource | null,
 *   sourceBuffer: SourceBuffer | null, objectUrl: string | null, queue: QueueItem[],
 *   controllers: Map<number, AbortController>, prefetch: Map<number, Promise<ArrayBuffer>>,
 *   timer: ReturnType<typeof setInterval> | null, pollTimer: ReturnType<typeof setTimeout> | null,
 *   polling: boolean, ended: boolean, closed: boolean, failed: boolean, appending?: QueueItem | null,
 *   streaming?: boolean, attaching?: Promise<void>, supersede?: () => void, opened?: boolean,
 *   lastPoll?: number, heard?: number,
 *   live?: LiveFollower | null, liveEpoch?: number | null, liveInitLoading?: number | null,
 * }} Session one load: `track` and `manifest` are the gateway's JSON; `query` selects the rendition
 */

export const MIME = 'audio/webm; codecs="opus"';

// How long a load waits for a live station's first chunk (an ingest that
// starts connects to the upstream and starts ffmpeg first).
const LIVE_START_WAIT_MS = 30_000;

// How long a load waits on the persistent cache (its open, a manifest, the
// init segment) before it goes on without it: the cache may never answer
// (WebKit, a page in the back/forward cache holding a transaction).
const CACHE_WAIT_MS = 2000;

/** Whether this page can play `mime` through a Media Source (managed or not). */
export function mseSupported(mime = MIME) {
  return chooseMediaPath(globalThis, mime).mode !== "stream";
}

const now = () => performance.now() / 1000;

// A track and its manifest are always revalidated: a live transcode's keep growing.
/**
 * @param {typeof fetch} fetchImpl
 * @param {string} url
 * @param {AbortSignal | undefined} signal
 * @returns {Promise<any>}
 */
function readJson(fetchImpl, url, signal) {
  return fetchJson(url, { signal, cache: "no-cache" }, fetchImpl);
}

/**
 * @param {typeof fetch} fetchImpl
 * @param {string} url
 * @param {AbortSignal | undefined} signal
 * @returns {Promise<ArrayBuffer>}
 */
async function fetchBytes(fetchImpl, url, signal) {
  const response = await fetchImpl(url, { signal });
  if (!response.ok) throw new ApiError(response.status);
  return response.arrayBuffer();
}

/**
 * @param {ArrayBuffer} buffer
 * @returns {string}
 */
function hex(buffer) {
  return [...new Uint8Array(buffer)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * @param {ArrayBuffer} data
 * @returns {Promise<string>}
 */
async function sha256(data) {
  return hex(await crypto.subtle.digest("SHA-256", data));
}

/**
 * @param {EventTarget} target
 * @param {string} name
 * @returns {Promise<Event>}
 */
function once(target, name) {
  return new Promise((resolve) => target.addEventListener(name, resolve, { once: true }));
}

export class PlayerCore extends EventTarget {
  /**
   * @param {HTMLMediaElement} audio the element to play into
   * @param {{cache?: any, settings?: object, fetchImpl?: typeof fetch | null, tickSeconds?: number, pollSeconds?: number}} [options]
   *   cache: a ChunkCache (or a promise of one, or null)
   *   settings: scheduler settings (bufferAhead, emergencyAhead, ...)
   *   tickSeconds, pollSeconds: how often to schedule and to re-read a live manifest
   */
  constructor(audio, { cache = null, settings = {}, fetchImpl = null, tickSeconds = 0.25, pollSeconds = 1 } = {}) {
    super();
    this.audio = audio;
    this.cachePromise = Promise.resolve(cache);
    /** @type {any} a ChunkCache (cache.js), once cachePromise resolved */
    this.cache = null;
    this.settings = settings;
    this.fetchImpl = fetchImpl ?? ((/** @type {Parameters<typeof fetch>} */ ...args) => fetch(...args));
    this.tickSeconds = tickSeconds;
    this.pollSeconds = pollSeconds;
    /** @type {{fetch(peerId: string, index: number, options?: {signal?: AbortSignal}): Promise<ArrayBuffer>} | null} */
    this.peers = null;
    /** @type {Session | null} */
    this.session = null;
    // livePeerBytes: the part of peerBytes that was live chunks (stats.p2p_live_down_bytes)
    /** @type {{httpBytes: number, cacheBytes: number, peerBytes: number, livePeerBytes: number, stalls: number, liveLatencySeconds?: number | null}} */
    this.stats = { httpBytes: 0, cacheBytes: 0, peerBytes: 0, livePeerBytes: 0, stalls: 0 };
    this.stalled = false; // a stall counted and playback not yet resumed (a live track then catches up: live.js)
    /** @type {number | null} */
    this.startupSeconds = null;
    /** @type {number | null} */
    this.playStartedAt = null;
    this.onAudio = this.onAudio.bind(this);
    this.onMediaError = this.onMediaError.bind(this);
    for (const name of ["play", "playing", "waiting", "seeking", "timeupdate", "pause", "ended"]) {
      audio.addEventListener(name, this.onAudio);
    }
    audio.addEventListener("error", this.onMediaError);
  }

  // ---- public ------------------------------------------------------------

  get track() {
    return this.session?.track ?? null;
  }

  get manifest() {
    return this.session?.manifest ?? null;
  }

  get mode() {
    return this.session?.mode ?? null;
  }

  get scheduler() {
    return this.session?.scheduler ?? null;
  }

  /** Best known duration in seconds (NaN while unknown). */
  get duration() {
    const s = this.session;
    if (!s) return NaN;
    const m = s.manifest;
    if (s.live || isLiveManifest(m)) return Infinity; // live: no end to seek to
    if (m?.complete && Number.isFinite(m.duration)) return m.duration;
    const known = s.scheduler ? s.scheduler.knownEnd() : 0;
    // A first transcode's manifest says the length expected from the input's
    // probe (`expected_duration`, an estimate) before the track has one.
    const declared = s.track?.duration ?? m?.duration ?? m?.expected_duration;
    if (Number.isFinite(declared) && declared > 0) return Math.max(declared, known);
    if (known > 0) return known;
    const d = this.audio.duration;
    return Number.isFinite(d) ? d : NaN;
  }

  /** True once the element failed to play the current track (a media error). */
  get failed() {
    return Boolean(this.session?.failed);
  }

  /** True while the manifest is not complete (the transcode still runs). */
  get live() {
    return Boolean(this.session?.manifest && !this.session.manifest.complete);
  }

  /**
   * A live track's state, or null for a track: `{state: "starting" | "live" |
   * "reconnecting", title, station, latency}` (latency: seconds behind the
   * gateway's receipt of the audio, null until known).
   * @returns {import("./live.js").LiveInfo | null}
   */
  get liveInfo() {
    return this.session?.live?.info() ?? null;
  }

  /** Buffered time ranges as [[start, end], ...]. */
  get bufferedRanges() {
    try {
      return rangesToArray(this.audio.buffered);
    } catch {
      return [];
    }
  }

  /**
   * Load a track by its URL (`{public_url}/v1/tracks/{id}`). Resolves with
   * `{track, manifest}` once playable; rejects (and dispatches `error`) when
   * neither the gateway nor the cache can provide the track.
   * @param {string | URL} trackUrl
   * @returns {Promise<{track: any, manifest: any}>}
   */
  async load(trackUrl) {
    trackUrl = String(trackUrl).replace(/\/+$/, "");
    const trackId = decodeURIComponent(trackUrl.split("/").pop());
    this.unload({ next: trackId });
    /** @type {Session} */
    const session = {
      trackUrl,
      trackId,
      query: "",
      abort: new AbortController(),
      track: null,
      manifest: null,
      scheduler: null,
      mode: null,
      mediaSource: null,
      sourceBuffer: null,
      objectUrl: null,
      queue: [],
      controllers: new Map(),
      prefetch: new Map(),
      timer: null,
      pollTimer: null,
      polling: false,
      ended: false,
      closed: false,
      failed: false,
    };
    this.session = session;
    this.startupSeconds = null;
    this.playStartedAt = null;
    try {
      await this.open(session);
      return { track: session.track, manifest: session.manifest };
    } catch (err) {
      if (session.closed) throw err;
      this.fail(err);
      throw err;
    }
  }

  play() {
    this.markPlayRequested();
    return this.audio.play();
  }

  /** Start the start-up clock now (a play asked for before the track is loaded). */
  markPlayRequested() {
    if (this.startupSeconds === null && this.playStartedAt === null) this.playStartedAt = now();
  }

  pause() {
    this.audio.pause();
  }

  /**
   * Seek to `seconds`, clamped to the track.
   * @param {number} seconds
   */
  seek(seconds) {
    const d = this.duration;
    let t = Math.max(0, Number(seconds) || 0);
    if (this.session?.live) t = this.session.live.clampSeek(t); // live: never into the future
    else if (Number.isFinite(d)) t = Math.min(t, Math.max(0, d - 0.05));
    this.audio.currentTime = t;
  }

  /** Schedule now (peers appeared or went, a wait ended) rather than at the next tick. */
  kick() {
    const s = this.session;
    if (s && !s.closed && s.timer !== null) this.tick(s); // once open() has set everything up
  }

  /**
   * Stop everything for the current track and release the element; `next`: the track loaded in its place (load).
   * @param {{next?: string | null}} [how]
   */
  unload({ next = null } = {}) {
    const s = this.session;
    if (!s) return;
    s.closed = true;
    this.emit("unload", { trackId: s.trackId, next });
    s.abort.abort();
    for (const c of s.controllers.values()) c.abort();
    clearInterval(s.timer);
    clearTimeout(s.pollTimer);
    if (s.objectUrl) URL.revokeObjectURL(s.objectUrl);
    if (s.live) this.audio.playbackRate = 1;
    this.session = null;
    this.audio.removeAttribute("src");
    try {
      this.audio.load();
    } catch {
      /* nothing loaded */
    }
  }

  destroy() {
    this.unload();
    for (const name of ["play", "playing", "waiting", "seeking", "timeupdate", "pause", "ended"]) {
      this.audio.removeEventListener(name, this.onAudio);
    }
    this.audio.removeEventListener("error", this.onMediaError);
  }

  // ---- loading -----------------------------------------------------------

  /**
   * @param {Session} s
   */
  async open(s) {
    this.cache = await within(this.cachePromise, CACHE_WAIT_MS, null);
    const signal = s.abort.signal;
    const picked = pickRendition(mseSupported);
    const useMse = picked !== null;
    const canPlay = (/** @type {string} */ mime) => typeof this.audio.canPlayType === "function" && this.audio.canPlayType(mime) !== "";
    const rendition = picked ?? pickRendition(canPlay) ?? RENDITIONS[0];
    s.query = renditionQuery(rendition.name);
    let cached = this.cache ? await within(this.cache.getManifest(s.trackId), CACHE_WAIT_MS, null) : null;
    if (cached?.manifest?.mime && cached.manifest.mime !== rendition.mime) cached = null; // another rendition's
    let early = null;
    if (this.wholeTrackCached(s.trackId, cached?.manifest)) {
      // Every byte of a complete manifest is here: play from the cache at
      // once (the gateway may even be down), and refresh the track's metadata
      // in the background. A partly cached track takes the network path, so
      // that chunks of two renditions are never mixed if the gateway's
      // rendition changed meanwhile.
      s.track = cached.track;
      s.manifest = cached.manifest;
      readJson(this.fetchImpl, s.trackUrl, signal)
        .then((track) => {
          if (!s.closed) s.track = track;
        })
        .catch(() => {});
    } else {
      // Ask for the init segment and the first chunk together with the
      // manifest: a cold start then costs one round trip, not three.
      if (useMse && !cached) {
        early = {
          init: fetchBytes(this.fetchImpl, `${s.trackUrl}/init${s.query}`, signal),
          first: fetchBytes(this.fetchImpl, `${s.trackUrl}/chunks/0${s.query}`, signal),
        };
        early.init.catch(() => {});
        early.first.catch(() => {});
      }
      try {
        [s.track, s.manifest] = await Promise.all([
          readJson(this.fetchImpl, s.trackUrl, signal),
          readJson(this.fetchImpl, `${s.trackUrl}/manifest${s.query}`, signal),
        ]);
      } catch (err) {
        if (s.closed) throw err;
        if (!cached) throw err instanceof ApiError ? err : new ApiError(0, "network_error", String(err?.message || err));
        // gateway unreachable: an incomplete cached manifest is still worth a try
        s.track = cached.track;
        s.manifest = cached.manifest;
        early = null;
      }
      if (s.manifest.complete) this.cache?.putManifest(s.trackId, { track: s.track, manifest: s.manifest });
    }
    if (s.closed) return;
    if (isLiveManifest(s.manifest) && !liveStarted(s.manifest)) {
      // live: this listener started the station's ingest; its first chunk is seconds away
      early = null; // its init request may have come too early (404)
      await this.waitForLiveStart(s);
      if (s.closed) return;
    }
    this.emit("loaded", { track: s.track, manifest: s.manifest });

    const path = chooseMediaPath(globalThis, s.manifest.mime || MIME);
    if (path.mode === "stream") {
      s.mode = "stream";
      this.audio.src = `${s.trackUrl}/stream${s.query}`;
      this.emit("durationchange", { duration: this.duration });
      return;
    }
    s.mode = path.mode;
    if (isLiveManifest(s.manifest)) {
      // live: the follower places the window on the player's timeline
      s.live = new LiveFollower(s.manifest, this.settings);
      s.scheduler = s.live.scheduler;
      const change = s.live.read(s.manifest, now(), Date.now() / 1000);
      if (change) this.emit("live", { ...s.live.info(), changed: change.changed });
    } else {
      s.scheduler = new Scheduler(this.settings);
      s.scheduler.setManifest(s.manifest);
    }
    if (this.cache && !s.live) s.scheduler.setCached(this.cache.indices(s.trackId, s.manifest.rendition));
    s.scheduler.seek(this.audio.currentTime || 0);
    if (early && !s.live) s.prefetch.set(0, early.first);
    this.emit("session", { trackId: s.trackId, manifest: s.manifest });

    s.attaching = this.attach(s, path, early?.init);
    // a fallback to another Media Source replaces the attaching under way
    for (let done = null; done !== s.attaching; ) {
      done = s.attaching;
      await done;
    }
    s.opened = true;
  }

  /**
   * Give the element a Media Source of `path`'s class, its SourceBuffer and
   * the init segment, then start scheduling.
   * @param {Session} s
   * @param {import("./media-path.js").MediaPath} path
   * @param {Promise<ArrayBuffer> | undefined} earlyInit
   */
  async attach(s, path, earlyInit) {
    s.mode = path.mode;
    const ms = new path.MediaSource();
    s.mediaSource = ms;
    if (path.mode === "managed-mse") this.followManagedSource(s);
    s.objectUrl = URL.createObjectURL(ms);
    const opened = once(ms, "sourceopen");
    /** @type {Promise<void>} */
    const superseded = new Promise((resolve) => {
      s.supersede = resolve;
    });
    this.audio.src = s.objectUrl;
    // The init segment loads while the source opens, and the SourceBuffer is
    // made only once it is here: a chunk fetched meanwhile (after a fallback,
    // requests restart at once) waits in the queue behind it, never reaching a
    // SourceBuffer first ("Found Cluster element before Info").
    const initLoad = this.loadInit(s, earlyInit);
    initLoad.catch(() => {}); // superseded or closed: nobody awaits it
    await Promise.race([opened, superseded]);
    if (s.closed || s.failed || s.mediaSource !== ms) return;
    const init = await initLoad;
    if (s.closed || s.failed || s.mediaSource !== ms) return;
    const sb = ms.addSourceBuffer(s.manifest.mime || MIME);
    s.sourceBuffer = sb;
    if (s.live) sb.mode = "sequence"; // live: each chunk goes where the follower placed it
    sb.addEventListener("updateend", () => {
      if (s.sourceBuffer === sb) this.onUpdateEnd(s);
    });
    sb.addEventListener("error", () => {
      if (s.sourceBuffer === sb) this.failMedia(s);
    });
    // A ManagedSourceBuffer's own removals (memory pressure): forget them, fetch again when needed.
    sb.addEventListener("bufferedchange", () => {
      if (s.closed || s.failed || s.sourceBuffer !== sb || sb.updating) return;
      this.reconcile(s);
      this.tick(s);
    });
    this.updateDuration(s);
    s.queue.unshift({ index: "init", data: init, epoch: s.live ? s.live.initEpoch(s.manifest) : undefined });
    // live: start exactly the target behind the edge, the time the load took included
    if (s.live && !this.audio.currentTime) this.audio.currentTime = s.live.startPosition(Date.now() / 1000);
    this.pump(s);
    clearInterval(s.timer);
    s.timer = setInterval(() => this.tick(s), this.tickSeconds * 1000);
    if (!s.manifest.complete) this.schedulePoll(s, 0);
    this.tick(s);
  }

  /**
   * The element refused a ManagedMediaSource before anything played
   * (WebKitGTK, now and then on a reload in the same tab: "source not
   * supported" before the first append, where a MediaSource plays): start
   * the session again on a plain MediaSource, once, if the page has one that
   * takes the type. False when that does not apply.
   * @param {Session} s
   * @returns {boolean}
   */
  fallBackFromManaged(s) {
    if (s.mode !== "managed-mse" || s.closed || this.audio.currentTime > 0) return false;
    const plain = chooseMediaPath({ MediaSource: globalThis.MediaSource }, s.manifest.mime || MIME);
    if (plain.mode !== "mse") return false;
    clearInterval(s.timer);
    s.timer = null;
    for (const c of s.controllers.values()) c.abort();
    s.controllers.clear();
    s.queue.length = 0;
    s.appending = null;
    s.sourceBuffer = null;
    if (s.objectUrl) URL.revokeObjectURL(s.objectUrl);
    s.objectUrl = null;
    s.scheduler.setBuffered(new Set());
    s.scheduler.inflight.clear(); // the aborted requests are not failures to back off from
    // A play asked for and not started yet: the failed load rejected it; ask again.
    const resume = this.playStartedAt !== null && this.startupSeconds === null;
    this.emit("mediapath", { mode: plain.mode, from: s.mode });
    s.supersede?.();
    s.attaching = this.attach(s, plain, undefined);
    s.attaching.then(
      () => {
        if (resume && !s.closed && !s.failed && this.audio.paused) this.audio.play().catch(() => {});
      },
      (err) => {
        if (!s.closed && s.opened) this.fail(err); // else load() rejects and says so
      },
    );
    return true;
  }

  /**
   * ManagedMediaSource: remote playback off (it never opens otherwise), and
   * fetching only while the browser says it wants data.
   * @param {Session} s
   */
  followManagedSource(s) {
    this.audio.disableRemotePlayback = true;
    s.mediaSource.addEventListener("startstreaming", () => {
      s.streaming = true;
      this.tick(s);
    });
    s.mediaSource.addEventListener("endstreaming", () => {
      s.streaming = false;
    });
  }

  /**
   * @param {string} trackId
   * @param {any} manifest
   * @returns {boolean}
   */
  wholeTrackCached(trackId, manifest) {
    if (!this.cache || !manifest?.complete) return false;
    const r = manifest.rendition;
    return this.cache.has(trackId, r, "init") && manifest.chunks.every((/** @type {{index: number}} */ c) => this.cache.has(trackId, r, c.index));
  }

  /**
   * @param {Session} s
   * @param {Promise<ArrayBuffer> | undefined} earlyInit
   * @returns {Promise<ArrayBuffer>}
   */
  async loadInit(s, earlyInit) {
    const rendition = s.manifest.rendition;
    if (this.cache && !s.live) {
      const data = await within(this.cache.get(s.trackId, rendition, "init"), CACHE_WAIT_MS, null);
      if (data) return data;
    }
    const data = await (earlyInit ?? fetchBytes(this.fetchImpl, `${s.trackUrl}/init${s.query}`, s.abort.signal));
    this.stats.httpBytes += data.byteLength;
    const expected = s.manifest.init?.sha256;
    if (expected && (await sha256(data)) !== expected) {
      throw new ApiError(0, "bad_init", "the server's init segment does not match the manifest");
    }
    if (!s.live) this.cache?.put(s.trackId, rendition, "init", data.slice(0));
    return data;
  }

  // ---- scheduling --------------------------------------------------------

  /**
   * @param {Session} s
   */
  tick(s) {
    if (s.closed || s.failed || !s.scheduler) return;
    const t = now();
    const playhead = this.audio.currentTime;
    for (const req of s.scheduler.expired({ now: t, playhead })) s.controllers.get(req.index)?.abort();
    if (s.live) this.paceLive(s, playhead);
    if (this.mayFetchNow(s, playhead)) {
      for (const req of s.scheduler.next({ now: t, playhead })) this.startRequest(s, req);
    }
    this.maybeEnd(s);
  }

  /**
   * @param {Session} s
   * @param {number} playhead
   * @returns {boolean}
   */
  mayFetchNow(s, playhead) {
    if (s.mode !== "managed-mse") return true;
    return mayFetch({
      managed: true,
      streaming: s.streaming,
      playing: !this.audio.paused,
      ahead: s.scheduler.bufferedAhead(playhead),
      emergencyAhead: s.scheduler.settings.emergencyAhead,
    });
  }

  /**
   * @param {Session} s
   * @param {Request} req
   */
  startRequest(s, req) {
    const controller = new AbortController();
    s.controllers.set(req.index, controller);
    const signal = AbortSignal.any ? AbortSignal.any([controller.signal, s.abort.signal]) : controller.signal;
    this.fetchChunk(s, req, signal).then(
      (data) => {
        if (s.controllers.get(req.index) === controller) s.controllers.delete(req.index);
        if (s.closed || s.scheduler.inflight.get(req.index) !== req) return;
        s.scheduler.received(req.index);
        const source = req.source === SERVER || req.source === CACHE ? req.source : "peer";
        const peer = source === "peer" ? req.source : null;
        this.emit("chunk", { index: req.index, source, peer, bytes: data.byteLength, data });
        s.queue.push({ index: req.index, data });
        this.pump(s);
        if (req.live) this.schedulePoll(s, 0);
      },
      (err) => {
        if (s.controllers.get(req.index) === controller) s.controllers.delete(req.index);
        if (s.closed) return;
        if (s.scheduler.inflight.get(req.index) === req) s.scheduler.failed(req.index, { now: now() });
        if (req.live || err?.status === 404) this.schedulePoll(s, 0);
        if (err?.name !== "AbortError") this.emit("chunkerror", { index: req.index, source: req.source, error: String(err?.message || err) });
        setTimeout(() => this.tick(s), 50);
      },
    );
  }

  /**
   * @param {Session} s
   * @param {Request} req
   * @param {AbortSignal} signal
   * @returns {Promise<ArrayBuffer>}
   */
  async fetchChunk(s, req, signal) {
    const rendition = s.manifest.rendition;
    if (req.source === CACHE) {
      const data = await this.cache?.get(s.trackId, rendition, req.index);
      if (!data) throw new ApiError(404, "cache_miss", "not in the cache");
      this.stats.cacheBytes += data.byteLength;
      return data;
    }
    let data;
    if (req.source === SERVER) {
      const early = s.prefetch.get(req.index);
      s.prefetch.delete(req.index);
      data = await (early ?? fetchBytes(this.fetchImpl, `${s.trackUrl}/chunks/${req.index}${s.query}`, signal));
      this.stats.httpBytes += data.byteLength;
      // The server's bytes are checked too when the manifest has their hash
      // (a chunk past a live manifest's end has none yet): a bad byte from a
      // broken store or a meddling proxy never reaches the cache or peers.
      const expected = s.manifest.chunks.find((/** @type {{index: number}} */ c) => c.index === req.index)?.sha256;
      if (expected && (await sha256(data)) !== expected) {
        this.emit("badchunk", { index: req.index, peer: null });
        throw new ApiError(0, "bad_chunk", "the server's chunk does not match the manifest");
      }
    } else {
      if (!this.peers) throw new ApiError(0, "no_peers", "no peer transport");
      data = await this.peers.fetch(req.source, req.index, { signal });
      const expected = s.manifest.chunks.find((/** @type {{index: number}} */ c) => c.index === req.index)?.sha256;
      if (!expected || (await sha256(data)) !== expected) {
        this.emit("badchunk", { index: req.index, peer: req.source });
        throw new ApiError(0, "bad_chunk", "hash mismatch");
      }
      this.stats.peerBytes += data.byteLength;
      if (s.live) this.stats.livePeerBytes += data.byteLength;
    }
    if (this.cache && !s.live) {
      this.cache.put(s.trackId, rendition, req.index, data.slice(0)).then((/** @type {boolean} */ ok) => {
        if (ok && !s.closed) s.scheduler.addCached(req.index);
      });
    }
    return data;
  }

  // ---- appending ---------------------------------------------------------

  /**
   * @param {Session} s
   */
  pump(s) {
    const sb = s.sourceBuffer;
    if (s.closed || s.failed || !sb || sb.updating || s.queue.length === 0) return;
    if (s.mediaSource.readyState === "closed") return;
    if (s.live && !this.placeLive(s)) return;
    const item = s.queue[0];
    try {
      sb.appendBuffer(item.data);
      if (s.live && item.index === "init") s.liveEpoch = item.epoch ?? null;
      s.appending = item;
      s.queue.shift();
    } catch (err) {
      if (err?.name === "QuotaExceededError") {
        this.makeRoom(s);
      } else if (this.audio.error || s.mediaSource.readyState !== "open") {
        // After a media error every append throws InvalidStateError: retrying
        // the chunk (from the cache, again and again) only spins. Stop.
        this.failMedia(s);
      } else {
        s.queue.shift();
        if (item.index !== "init") s.scheduler.evicted(item.index);
        this.emit("chunkerror", { index: item.index, source: "append", error: String(err?.message || err) });
      }
    }
  }

  /**
   * Remove played audio (then far-ahead audio) so that appends fit again.
   * @param {Session} s
   */
  makeRoom(s) {
    const sb = s.sourceBuffer;
    const t = this.audio.currentTime;
    const ranges = rangesToArray(sb.buffered);
    const behind = t - 5;
    if (ranges.length && ranges[0][0] < behind) {
      sb.remove(0, behind);
      return;
    }
    const ahead = t + Math.max(8, (s.scheduler.settings.bufferAhead || 30) / 2);
    if (ranges.length && ranges[ranges.length - 1][1] > ahead) {
      sb.remove(ahead, Infinity);
      return;
    }
    setTimeout(() => this.pump(s), 500); // nothing to remove: wait for playback
  }

  /**
   * @param {Session} s
   */
  onUpdateEnd(s) {
    if (s.closed || !s.sourceBuffer) return;
    // `updating` turns false before `updateend` is dispatched: a chunk that
    // arrived in between may already be appending, and is still `appending`
    if (!s.sourceBuffer.updating) s.appending = null;
    this.reconcile(s);
    this.updateDuration(s);
    this.emit("progress", { buffered: this.bufferedRanges });
    if (s.queue.length) this.pump(s);
    else this.tick(s);
  }

  /**
   * Make the scheduler's buffered set agree with SourceBuffer.buffered.
   * @param {Session} s
   */
  reconcile(s) {
    const sched = s.scheduler;
    if (!s.sourceBuffer) return; // the init segment still loading (attach): nothing buffered
    const inRanges = chunksInRanges(sched.chunks, rangesToArray(s.sourceBuffer.buffered));
    for (const item of s.queue) if (item.index !== "init") inRanges.add(item.index);
    if (s.appending && s.appending.index !== "init" && s.sourceBuffer.updating) inRanges.add(s.appending.index);
    // chunks past the manifest (the live edge) are kept until the manifest lists them
    for (const i of sched.buffered) if (!sched.byIndex.has(i)) inRanges.add(i);
    sched.setBuffered(inRanges);
  }

  /**
   * @param {Session} s
   */
  updateDuration(s) {
    const ms = s.mediaSource;
    if (!ms || ms.readyState !== "open" || !s.sourceBuffer || s.sourceBuffer.updating) return;
    if (s.live) {
      this.liveSeekable(s);
      return;
    }
    let target = this.duration;
    if (!Number.isFinite(target) || target <= 0) return;
    const ranges = rangesToArray(s.sourceBuffer.buffered);
    if (ranges.length) target = Math.max(target, ranges[ranges.length - 1][1]);
    if (Math.abs(ms.duration - target) > 1e-3 || Number.isNaN(ms.duration)) {
      try {
        ms.duration = target;
        this.emit("durationchange", { duration: this.duration });
      } catch {
        /* a buffered frame lies past it; the next updateend tries again */
      }
    }
  }

  /**
   * @param {Session} s
   */
  maybeEnd(s) {
    const ms = s.mediaSource;
    if (!ms || ms.readyState !== "open" || !s.sourceBuffer || s.sourceBuffer.updating || s.queue.length) return;
    if (!s.scheduler.bufferedToEnd(this.audio.currentTime)) return;
    try {
      ms.endOfStream();
    } catch {
      /* raced with an append */
    }
  }

  // ---- live manifest -----------------------------------------------------

  /**
   * @param {Session} s
   * @param {number} [delaySeconds]
   */
  schedulePoll(s, delaySeconds = s.live ? s.live.pollDelay() : this.pollSeconds) {
    if (s.closed || s.manifest.complete || s.polling) return;
    clearTimeout(s.pollTimer);
    s.pollTimer = setTimeout(() => this.poll(s), delaySeconds * 1000);
  }

  /**
   * @param {Session} s
   */
  async poll(s) {
    if (s.live) return this.pollLive(s);
    if (s.closed || s.manifest.complete || s.polling) return;
    s.polling = true;
    try {
      const manifest = await readJson(this.fetchImpl, `${s.trackUrl}/manifest${s.query}`, s.abort.signal);
      if (s.closed) return;
      if (manifest.rendition !== s.manifest.rendition) return; // another encoding: ignore
      s.manifest = manifest;
      s.scheduler.setManifest(manifest);
      this.reconcile(s);
      this.updateDuration(s);
      if (manifest.complete) {
        this.cache?.putManifest(s.trackId, { track: s.track, manifest });
        readJson(this.fetchImpl, s.trackUrl, s.abort.signal)
          .then((track) => {
            if (!s.closed) s.track = track;
          })
          .catch(() => {});
      }
      this.emit("manifest", { manifest });
      this.tick(s);
    } catch {
      /* gateway away for a moment: try again */
    } finally {
      s.polling = false;
      if (!s.closed && !s.manifest.complete) this.schedulePoll(s);
    }
  }

  // ---- live (live.js decides; this is its shell) --------------------------

  /**
   * @param {Session} s
   */
  async pollLive(s) {
    if (s.closed || s.polling || !s.live) return;
    s.polling = true;
    s.lastPoll = now();
    try {
      // a delta: only the chunks past the newest held (docs/live.md), merged into the window held
      const after = deltaAfter(s.manifest);
      const query = after === null ? s.query : `${s.query ? `${s.query}&` : "?"}after=${after}`;
      const answer = await readJson(this.fetchImpl, `${s.trackUrl}/manifest${query}`, s.abort.signal);
      if (s.closed) return;
      if (answer.rendition !== s.manifest.rendition || !isLiveManifest(answer)) return; // another encoding: ignore
      const manifest = mergeLiveManifest(s.manifest, answer);
      s.manifest = manifest;
      const change = s.live.read(manifest, now(), Date.now() / 1000);
      this.reconcile(s);
      if (change) this.emit("live", { ...s.live.info(), changed: change.changed });
      this.emit("manifest", { manifest });
      this.pump(s);
      this.tick(s);
    } catch {
      if (!s.closed) s.live.readFailed(); // gateway away for a moment: again, backed off
    } finally {
      s.polling = false;
      // a neighbour announced a chunk this read did not list yet: read again soon
      const edge = s.manifest?.edge;
      const heardMore = s.heard !== undefined && typeof edge === "number" && s.heard > edge;
      s.heard = undefined; // once per announcement: a neighbour announcing what never comes costs one read
      if (!s.closed) this.schedulePoll(s, heardMore ? HAVE_POLL_SPACING : undefined);
    }
  }

  /**
   * A neighbour's HAVE (the P2P transport): a live chunk past the newest
   * listed is read from the manifest now (at most every HAVE_POLL_SPACING).
   * @param {Iterable<number>} have
   */
  neighbourHave(have) {
    const s = this.session;
    if (!s || s.closed || !s.live || !s.manifest) return;
    const heard = heardPastEdge(have, s.manifest.edge);
    if (heard === null) return;
    s.heard = Math.max(s.heard ?? heard, heard);
    if (!s.polling) this.schedulePoll(s, Math.max(0, (s.lastPoll ?? -Infinity) + HAVE_POLL_SPACING - now()));
  }

  /**
   * Read the manifest of a live track whose ingest is starting until it has
   * an init segment and a chunk (every `chunk_seconds`, for at most
   * LIVE_START_WAIT_MS); throws when it never comes.
   * @param {Session} s
   */
  async waitForLiveStart(s) {
    const step = Math.min(5, Math.max(0.25, Number(s.manifest.chunk_seconds) || 1)) * 1000;
    const deadline = Date.now() + LIVE_START_WAIT_MS;
    while (!liveStarted(s.manifest)) {
      if (Date.now() > deadline) throw new ApiError(504, "live_not_started", "the station sent no audio in time");
      await new Promise((resolve) => setTimeout(resolve, step));
      if (s.closed) return;
      s.manifest = await readJson(this.fetchImpl, `${s.trackUrl}/manifest${s.query}`, s.abort.signal);
    }
  }

  /**
   * Make `s.queue[0]` a live item that can be appended now, with the
   * SourceBuffer's `timestampOffset` set to where it goes; false when none
   * can be yet (its chunk not placed: a live edge chunk before the manifest
   * lists it; or its epoch's init segment still to come).
   * @param {Session} s
   * @returns {boolean}
   */
  placeLive(s) {
    const last = s.live.timeline.last;
    for (let k = 0; k < s.queue.length; k++) {
      const item = s.queue[k];
      if (item.index === "init") {
        s.queue.unshift(...s.queue.splice(k, 1));
        return true;
      }
      const at = s.live.placement(item.index);
      if (!at) {
        if (last !== null && item.index <= last) {
          // left the window (or came before the chunk joined at): never played
          s.queue.splice(k--, 1);
          s.scheduler.evicted(item.index);
        }
        continue;
      }
      if (at.epoch !== s.liveEpoch) {
        this.loadLiveInit(s, at.epoch);
        return false;
      }
      s.queue.unshift(...s.queue.splice(k, 1));
      s.sourceBuffer.timestampOffset = at.start;
      return true;
    }
    return false;
  }

  /**
   * Fetch the init segment of a new live epoch (the source came back in
   * another format) and put it first in the queue.
   * @param {Session} s
   * @param {number} epoch
   */
  loadLiveInit(s, epoch) {
    if (s.liveInitLoading === epoch) return;
    s.liveInitLoading = epoch;
    const url = `${s.trackUrl}/init${s.query ? `${s.query}&` : "?"}epoch=${epoch}`;
    fetchBytes(this.fetchImpl, url, s.abort.signal).then(
      (data) => {
        s.liveInitLoading = null;
        if (s.closed) return;
        this.stats.httpBytes += data.byteLength;
        s.queue.unshift({ index: "init", data, epoch });
        this.pump(s);
      },
      () => {
        s.liveInitLoading = null; // the next pump asks again
        if (!s.closed) setTimeout(() => this.pump(s), 1000);
      },
    );
  }

  /**
   * Keep the distance to the edge (rate or jump) and note the latency.
   * @param {Session} s
   * @param {number} playhead
   */
  paceLive(s, playhead) {
    const playing = !this.audio.paused && this.startupSeconds !== null;
    const pace = s.live.pace(playhead, Date.now() / 1000, playing);
    this.stats.liveLatencySeconds = s.live.latency;
    if ("seekTo" in pace) {
      this.emit("livejump", { from: playhead, to: pace.seekTo, latency: s.live.latency });
      this.audio.currentTime = pace.seekTo;
    }
    try {
      if (this.audio.playbackRate !== pace.rate) this.audio.playbackRate = pace.rate;
    } catch {
      /* a rate this browser refuses (0 on an engine that takes no hold): it plays on at the old one */
    }
  }

  /**
   * A live Media Source has no end: duration +Infinity and, where the page
   * has it, the window as the seekable range.
   * @param {Session} s
   */
  liveSeekable(s) {
    const ms = s.mediaSource;
    try {
      if (ms.duration !== Infinity) ms.duration = Infinity;
      const first = s.live.timeline.placed.values().next().value;
      if (first && typeof ms.setLiveSeekableRange === "function") ms.setLiveSeekableRange(first.start, Math.max(first.start, s.live.timeline.end));
    } catch {
      /* an append raced with it: the next updateend sets it */
    }
  }

  // ---- element events ----------------------------------------------------

  /**
   * @param {Event} event
   */
  onAudio(event) {
    const s = this.session;
    switch (event.type) {
      case "play":
        if (this.startupSeconds === null && this.playStartedAt === null) this.playStartedAt = now();
        break;
      case "playing":
        if (this.startupSeconds === null && this.playStartedAt !== null) {
          this.startupSeconds = now() - this.playStartedAt;
          this.emit("startup", { seconds: this.startupSeconds });
        }
        if (this.stalled) s?.live?.resumed(Date.now() / 1000);
        this.stalled = false;
        break;
      case "waiting":
        // Firefox fires `waiting` just before `ended`: at the end of a stream
        // that was ended, running dry is the end, not a stall.
        if (this.startupSeconds !== null && !this.audio.seeking && !this.atEnd(s)) {
          this.stats.stalls += 1;
          this.stalled = true;
        }
        if (s) this.tick(s);
        break;
      case "seeking":
        if (s?.scheduler) {
          for (const req of s.scheduler.seek(this.audio.currentTime)) s.controllers.get(req.index)?.abort();
          this.tick(s);
        }
        break;
      case "timeupdate":
        break;
      default:
        break;
    }
  }

  /**
   * @param {Session | null} s
   * @returns {boolean}
   */
  atEnd(s) {
    if (!s) return false;
    if (s.mediaSource?.readyState === "ended") return true;
    const d = this.duration;
    return Boolean(s.manifest?.complete) && Number.isFinite(d) && this.audio.currentTime >= d - 0.25;
  }

  onMediaError() {
    const s = this.session;
    if (s && !s.closed && !s.failed) this.failMedia(s);
  }

  /**
   * The element cannot play this session any more: stop everything, once, and say so.
   * @param {Session} s
   */
  failMedia(s) {
    if (s.failed) return;
    if (this.fallBackFromManaged(s)) return;
    s.failed = true;
    clearInterval(s.timer);
    clearTimeout(s.pollTimer);
    s.queue.length = 0;
    for (const c of s.controllers.values()) c.abort();
    s.controllers.clear();
    try {
      this.audio.pause();
    } catch {
      /* already stopped */
    }
    const detail = this.audio.error?.message || "the browser could not play this track";
    this.fail(new ApiError(0, "media_error", detail));
  }

  /**
   * @param {any} err an ApiError, or whatever was thrown
   */
  fail(err) {
    const setting = err?.setting || undefined;
    this.emit("error", { error: err?.code || "error", detail: String(err?.message || err), status: err?.status ?? 0, setting });
  }

  /**
   * @param {string} type
   * @param {unknown} detail
   */
  emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }
}

/**
 * Fetch the start of a track ahead of time (a playlist's next track): its
 * manifest, init segment and the chunks of its first `seconds`, into the
 * persistent cache (or, without one, into the browser's HTTP cache, since
 * complete chunks are immutable). Errors are swallowed: this is a hint.
 * `onManifest(trackId, manifest)` is called once the manifest is known (the
 * cache's or the server's), before the chunks are fetched: the P2P side asks
 * its neighbours about the track from it.
 * @param {string | URL} trackUrl
 * @param {{cache?: any, seconds?: number, fetchImpl?: typeof fetch | null, signal?: AbortSignal, onManifest?: ((trackId: string, manifest: any) => void) | null}} [options]
 * @returns {Promise<boolean>}
 */
export async function prefetchTrack(trackUrl, { cache = null, seconds = 4, fetchImpl = null, signal = undefined, onManifest = null } = {}) {
  const get = fetchImpl ?? ((/** @type {Parameters<typeof fetch>} */ ...args) => fetch(...args));
  trackUrl = String(trackUrl).replace(/\/+$/, "");
  const trackId = decodeURIComponent(trackUrl.split("/").pop());
  const rendition = pickRendition(mseSupported) ?? RENDITIONS[0];
  const query = renditionQuery(rendition.name);
  /** @type {(manifest: any) => void} */
  const known = (manifest) => {
    try {
      onManifest?.(trackId, manifest);
    } catch {
      /* a hint too */
    }
  };
  try {
    if (cache) {
      const cached = await cache.getManifest(trackId);
      if (cached?.manifest?.complete && (!cached.manifest.mime || cached.manifest.mime === rendition.mime)) {
        const want = prefetchIndices(cached.manifest, seconds);
        const r = cached.manifest.rendition;
        if (cache.has(trackId, r, "init") && want.every((i) => cache.has(trackId, r, i))) {
          known(cached.manifest);
          return true;
        }
      }
    }
    const [track, manifest] = await Promise.all([
      readJson(get, trackUrl, signal),
      readJson(get, `${trackUrl}/manifest${query}`, signal),
    ]);
    known(manifest);
    if (cache) await cache.putManifest(trackId, { track, manifest });
    let indices = prefetchIndices(manifest, seconds);
    if (indices.length === 0) indices = [0]; // live transcode: the server waits for chunk 0
    /** @type {Array<[number | "init", string]>} */
    const parts = [["init", `${trackUrl}/init${query}`], ...indices.map((i) => /** @type {[number, string]} */ ([i, `${trackUrl}/chunks/${i}${query}`]))];
    await Promise.all(
      parts.map(async ([index, url]) => {
        if (cache?.has(trackId, manifest.rendition, index)) return;
        const data = await fetchBytes(get, url, signal);
        if (cache) await cache.put(trackId, manifest.rendition, index, data);
      }),
    );
    return true;
  } catch {
    return false;
  }
}

// ---- loudness normalisation and the waveform: pure, for <ztream-player> --------

/**
 * The linear gain that brings a track to `target` LUFS (the `normalize`
 * attribute), from the manifest's `loudness_lufs` and `true_peak_db`:
 * target − loudness in dB, clamped so the true peak stays at or below
 * −1 dBTP, and at most 0 dB: the gain is applied as the element's volume,
 * which cannot amplify (a GainNode could, but routing the element through an
 * AudioContext silences it wherever autoplay policy suspends the context).
 * 1 when the target or the loudness is unknown. The chunks are untouched.
 * @param {any} manifest
 * @param {unknown} target the `normalize` attribute
 * @returns {number}
 */
export function normalizeGain(manifest, target) {
  const t = Number(target);
  const loudness = manifest?.loudness_lufs;
  if (target === null || target === undefined || target === "" || !Number.isFinite(t) || !Number.isFinite(loudness)) return 1;
  let db = t - loudness;
  const peak = manifest.true_peak_db;
  if (Number.isFinite(peak)) db = Math.min(db, -1 - peak);
  db = Math.min(0, Math.max(-60, db));
  return 10 ** (db / 20);
}

/**
 * Bars to draw for a waveform `{peaks, duration}` on a bar of `bars` slots
 * spanning `total` seconds: [{x0, x1 (0..1 of the width), peak (0..1)}].
 * While the transcode runs the peaks cover only `duration` < total seconds,
 * so they fill only that part of the bar.
 * @param {any} wave
 * @param {number} total
 * @param {number} bars
 * @returns {Array<{x0: number, x1: number, peak: number}>}
 */
export function waveformBars(wave, total, bars) {
  const peaks = wave?.peaks;
  if (!Array.isArray(peaks) || peaks.length === 0 || !(bars > 0)) return [];
  const covered = Number.isFinite(wave.duration) && wave.duration > 0 ? wave.duration : total;
  const span = Number.isFinite(total) && total > 0 ? Math.min(1, covered / total) : 1;
  const count = Math.max(1, Math.min(peaks.length, Math.round(bars * span)));
  const out = [];
  for (let i = 0; i < count; i++) {
    const a = Math.floor((i * peaks.length) / count);
    const b = Math.max(a + 1, Math.floor(((i + 1) * peaks.length) / count));
    let peak = 0;
    for (let j = a; j < b; j++) peak = Math.max(peak, Number(peaks[j]) || 0);
    out.push({ x0: (i / count) * span, x1: ((i + 1) / count) * span, peak: Math.min(1, peak) });
  }
  return out;
}
