// @ts-check
// Persistent chunk cache in IndexedDB, with a size cap and LRU eviction.
//
// Stores (database "ztream", version 1):
//   chunks    key "<track>/<rendition>/<index>" (index "init" for the init
//             segment) -> ArrayBuffer
//   meta      key as above -> {key, track, rendition, index, size, lastUsed}
//             (kept apart from the bytes so that opening the cache reads
//             only the small records; index "lastUsed" orders evictions)
//   manifests key track id -> {id, track, manifest, savedAt}
//
// A complete manifest is kept with its track, so that a track played once
// replays with the gateway down. Chunks are keyed by track and rendition (a
// rendition id names one exact way to encode, shared by all tracks), so a
// chunk stays valid for as long as it is kept. The size cap counts chunk bytes; when a put would
// pass it, the least recently used chunks go first (`planEviction`, pure).

import { within } from "./deadline.js";

const DB_NAME = "ztream";
const DB_VERSION = 1;
export const DEFAULT_MAX_BYTES = 200 * 1024 * 1024;

export const chunkKey = (track, rendition, index) => `${track}/${rendition}/${index}`;

/**
 * Which entries to evict so that `incoming` more bytes fit under `maxBytes`:
 * least recently used first, never those in `keep`. Pure.
 * @param {Iterable<{key: string, size: number, lastUsed: number}>} entries
 * @returns {string[]} keys to delete
 */
export function planEviction(entries, { maxBytes, incoming = 0, keep = new Set() }) {
  const list = [...entries];
  let total = list.reduce((n, e) => n + e.size, 0) + incoming;
  if (total <= maxBytes) return [];
  const out = [];
  list.sort((a, b) => a.lastUsed - b.lastUsed || (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  for (const e of list) {
    if (total <= maxBytes) break;
    if (keep.has(e.key)) continue;
    out.push(e.key);
    total -= e.size;
  }
  return out;
}

function promisify(request) {
  return new Promise((resolve, reject) => {
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}

function done(tx) {
  return new Promise((resolve, reject) => {
    tx.oncomplete = () => resolve(undefined);
    tx.onerror = () => reject(tx.error);
    tx.onabort = () => reject(tx.error ?? new DOMException("transaction aborted", "AbortError"));
  });
}

/** How long opening the cache may take before the player goes on without it (ms). */
export const OPEN_TIMEOUT_MS = 1500;

/**
 * Open the database and read the chunks' records: `{db, records}`.
 * @param {IDBFactory} idb
 * @param {string} name
 */
async function openDatabase(idb, name) {
  const request = idb.open(name, DB_VERSION);
  request.onupgradeneeded = () => {
    const db = request.result;
    if (!db.objectStoreNames.contains("chunks")) db.createObjectStore("chunks");
    if (!db.objectStoreNames.contains("meta")) {
      db.createObjectStore("meta", { keyPath: "key" }).createIndex("lastUsed", "lastUsed");
    }
    if (!db.objectStoreNames.contains("manifests")) db.createObjectStore("manifests", { keyPath: "id" });
  };
  const db = await promisify(request);
  try {
    const tx = db.transaction("meta", "readonly");
    const records = await promisify(tx.objectStore("meta").getAll());
    db.onversionchange = () => db.close();
    return { db, records };
  } catch (err) {
    db.close();
    throw err;
  }
}

export class ChunkCache {
  /**
   * Open (or create) the cache; resolves to null where IndexedDB is missing
   * or refused (private modes, sandboxed frames), or does not answer within
   * `timeoutMs` (WebKit: a page kept in the back/forward cache that still
   * held a transaction left the next page's open pending for good), so
   * callers simply go without a persistent cache. A database that opens
   * after the deadline is closed again.
   * @param {{name?: string, maxBytes?: number, timeoutMs?: number, idb?: IDBFactory | null}} [options]
   *   idb: the IndexedDB factory (globalThis.indexedDB)
   */
  static async open({ name = DB_NAME, maxBytes = DEFAULT_MAX_BYTES, timeoutMs = OPEN_TIMEOUT_MS, idb = null } = {}) {
    const factory = idb ?? (typeof indexedDB === "undefined" ? null : indexedDB);
    if (!factory) return null;
    let opening;
    try {
      opening = openDatabase(factory, name);
    } catch {
      return null;
    }
    const opened = await within(opening, timeoutMs, null, (late) => late?.db.close());
    if (!opened) return null;
    const cache = new ChunkCache(opened.db, maxBytes, { name, idb: factory, timeoutMs });
    for (const m of opened.records) cache.meta.set(m.key, m);
    return cache;
  }

  /**
   * @param {IDBDatabase} db
   * @param {number} maxBytes
   * @param {{name?: string, idb?: IDBFactory | null, timeoutMs?: number}} [reopen] how to open it again after suspend()
   */
  constructor(db, maxBytes, { name = DB_NAME, idb = null, timeoutMs = OPEN_TIMEOUT_MS } = {}) {
    /** @type {IDBDatabase | null} null while suspended: every call then answers "not cached" */
    this.db = db;
    this.reopen = { name, idb, timeoutMs };
    /** @type {Promise<boolean> | null} */
    this.resuming = null;
    this.maxBytes = maxBytes;
    this.meta = new Map(); // key -> {key, rendition, index, size, lastUsed}
    this.clock = Date.now();
  }

  tick() {
    // strictly increasing, so that LRU order is exact within one session
    this.clock = Math.max(this.clock + 1, Date.now());
    return this.clock;
  }

  /** Bytes of chunks held. */
  get bytes() {
    let n = 0;
    for (const m of this.meta.values()) n += m.size;
    return n;
  }

  /** Indices of the chunks held for a track's rendition (numbers only, no "init"). */
  indices(track, rendition) {
    const out = [];
    for (const m of this.meta.values()) {
      if (m.track === track && m.rendition === rendition && typeof m.index === "number") out.push(m.index);
    }
    return out.sort((a, b) => a - b);
  }

  has(track, rendition, index) {
    return this.meta.has(chunkKey(track, rendition, index));
  }

  /** The bytes of a chunk (or of "init"), or null; marks it used. */
  async get(track, rendition, index) {
    const key = chunkKey(track, rendition, index);
    const m = this.meta.get(key);
    if (!m || !this.db) return null;
    try {
      const tx = this.db.transaction(["chunks", "meta"], "readwrite");
      const data = await promisify(tx.objectStore("chunks").get(key));
      if (data == null) {
        tx.objectStore("meta").delete(key);
        this.meta.delete(key);
        await done(tx);
        return null;
      }
      const touched = { ...m, lastUsed: this.tick() };
      tx.objectStore("meta").put(touched);
      this.meta.set(key, touched);
      await done(tx);
      return data;
    } catch {
      return null;
    }
  }

  /** Keep a chunk (or "init"); evicts least recently used chunks past the cap. */
  async put(track, rendition, index, data) {
    const key = chunkKey(track, rendition, index);
    const size = data.byteLength;
    if (size > this.maxBytes || !this.db) return false;
    const others = [...this.meta.values()].filter((m) => m.key !== key);
    const victims = planEviction(others, { maxBytes: this.maxBytes, incoming: size });
    const record = { key, track, rendition, index, size, lastUsed: this.tick() };
    try {
      const tx = this.db.transaction(["chunks", "meta"], "readwrite");
      for (const v of victims) {
        tx.objectStore("chunks").delete(v);
        tx.objectStore("meta").delete(v);
      }
      tx.objectStore("chunks").put(data, key);
      tx.objectStore("meta").put(record);
      await done(tx);
      for (const v of victims) this.meta.delete(v);
      this.meta.set(key, record);
      return true;
    } catch {
      return false;
    }
  }

  /** The cached `{track, manifest}` of a track id, or null. */
  async getManifest(trackId) {
    if (!this.db) return null;
    try {
      const tx = this.db.transaction("manifests", "readonly");
      const rec = await promisify(tx.objectStore("manifests").get(trackId));
      return rec ? { track: rec.track, manifest: rec.manifest } : null;
    } catch {
      return null;
    }
  }

  /** Keep a track's manifest (complete ones only are worth a replay). */
  async putManifest(trackId, { track, manifest }) {
    if (!this.db) return false;
    try {
      const tx = this.db.transaction("manifests", "readwrite");
      tx.objectStore("manifests").put({ id: trackId, track, manifest, savedAt: Date.now() });
      await done(tx);
      return true;
    } catch {
      return false;
    }
  }

  /** Forget everything. */
  async clear() {
    if (!this.db) return;
    const tx = this.db.transaction(["chunks", "meta", "manifests"], "readwrite");
    for (const s of ["chunks", "meta", "manifests"]) tx.objectStore(s).clear();
    await done(tx);
    this.meta.clear();
  }

  close() {
    this.db?.close();
    this.db = null;
  }

  /**
   * The page is hidden (pagehide): close the database, so that a page kept
   * in the back/forward cache holds no connection or transaction that the
   * next page's open would wait behind. Until resume() every read misses
   * and every write is refused.
   */
  suspend() {
    this.resuming = null;
    this.close();
  }

  /**
   * The page is shown again from the back/forward cache (pageshow): open the
   * database again (bounded like open()) and re-read what it holds, which
   * another page may have changed meanwhile. Resolves true once open.
   * @returns {Promise<boolean>}
   */
  resume() {
    if (this.db) return Promise.resolve(true);
    if (this.resuming) return this.resuming;
    const { name, idb, timeoutMs } = this.reopen;
    const factory = idb ?? (typeof indexedDB === "undefined" ? null : indexedDB);
    if (!factory) return Promise.resolve(false);
    const attempt = (async () => {
      let opening;
      try {
        opening = openDatabase(factory, name);
      } catch {
        return false;
      }
      const opened = await within(opening, timeoutMs, null, (late) => late?.db.close());
      if (!opened || this.resuming !== attempt) {
        if (opened) opened.db.close();
        return false;
      }
      this.db = opened.db;
      this.meta.clear();
      for (const m of opened.records) this.meta.set(m.key, m);
      this.resuming = null;
      return true;
    })();
    this.resuming = attempt;
    return attempt;
  }
}

/** @type {Promise<ChunkCache | null> | null} */
let shared = null;

/**
 * One cache per page, opened on first use (null where IndexedDB is
 * unavailable or did not answer in time). It is closed when the page is
 * hidden and opened again when the page comes back from the back/forward
 * cache.
 */
export function sharedCache(options) {
  if (!shared) {
    shared = ChunkCache.open(options);
    globalThis.addEventListener?.("pagehide", () => {
      shared?.then((cache) => cache?.suspend());
    });
    globalThis.addEventListener?.("pageshow", (event) => {
      if (/** @type {PageTransitionEvent} */ (event).persisted) shared?.then((cache) => cache?.resume());
    });
  }
  return shared;
}
