// @ts-check
// <ztream-player>: the embeddable audio player, a custom element.
//
//   <script type="module" src="{public_url}/client/ztream-player.js"></script>
//   <ztream-player src="{public_url}/v1/tracks/{id}"></ztream-player>
//
//   <ztream-player>                       (a playlist)
//     <ztream-track src="{public_url}/v1/tracks/{a}"></ztream-track>
//     <ztream-track src="{public_url}/v1/tracks/{b}"></ztream-track>
//   </ztream-player>
//
// Attributes: src, autoplay, preload ("auto" | "none"), title-override
// ("title" would show the browser's tooltip), buffer-ahead and
// emergency-ahead (seconds; the scheduler's 30 s target and 4 s threshold),
// p2p ("off": no peer-to-peer; "relay": through TURN only, so no peer learns
// this listener's address; on by default where WebRTC, WebSocket and
// WebCrypto are available), normalize (a target loudness in LUFS, e.g. "-14":
// the element's volume is scaled by the manifest's loudness, see
// normalizeGain in player.js; off by default), peer-stats (show a small "from peers: N%"
// readout; off by default, and so in embeds), data-upload ("on" | "opt-in" |
// "off": whether this listener uploads to other listeners; only stricter
// than the gateway's p2p.upload; see share-control.js, which shows the opt-in
// prompt, the bytes shared and a Stop sharing button), data-test-corrupt (TEST ONLY:
// this player seeds corrupted chunks; so does `window.__ztreamTest = {corrupt:
// true}`). Properties and methods: play(),
// pause(), toggle(), seek(seconds), next(), previous(), select(index),
// currentTime, duration, paused, volume (0..1), muted, buffering, track,
// tracks, index, startupSeconds, stats, p2p (a summary of the P2P side, or
// null), peerShare (0..1 of the network bytes that came from peers). Events
// (bubbling, composed): ready,
// play, pause, playing, waiting, timeupdate, seeking, seeked, ended (each
// track), finish (the last track), trackchange, startup ({seconds}),
// progress, volumechange, durationchange, error ({error, detail}), chunk
// ({index, source: "server" | "cache" | "peer", peer, bytes}), badchunk
// ({index, peer}: a chunk from a peer failed its SHA-256 check), waveform
// ({length, complete}: the waveform loaded or grew; not for one with no peaks yet), autoplayblocked (the
// browser refused to start playing without a gesture: the play button is
// highlighted, attribute `needs-play`, until the listener presses it),
// livechange ({state, title, station}: a live track's state, now-playing
// title or station name changed), titlechange ({title, station}: a live
// track's now-playing title changed).
//
// A live track (a radio station, docs/live.md) plays at the live edge: the
// badge says LIVE, there is no seek bar nor times (attribute `live-stream`),
// the title is what the station says is playing and the second line its
// name, and the status says "Reconnecting…" while the station's source is
// away. `liveInfo` is {state, title, station, latency} (null for a track);
// `duration` is Infinity.
//
// Media Session: the player that played last owns the page's
// navigator.mediaSession: title, artist and artwork for lock screens and
// notifications; play, pause, seek (to, back, forward) and, in a playlist,
// next/previous from headsets and lock screens (media-session.js).
//
// The seek bar is the track's waveform (GET {track}.waveform_url) once it
// loads, drawn on a canvas: played part in the accent colour, buffered part
// darker than the unbuffered rest; it appears, and grows, while the
// transcode still runs. Hovering shows the time under the pointer.
//
// Theming: CSS custom properties on the element or any ancestor:
//   --ztream-accent, --ztream-accent-fg, --ztream-bg, --ztream-fg,
//   --ztream-muted, --ztream-rail, --ztream-buffered, --ztream-radius,
//   --ztream-font, --ztream-border
// and ::part(root | play-button | title | seek | time | volume | playlist).

import { sharedCache } from "./cache.js";
import { formatTime, rangeFractions, scalePeaks, seekKey, spokenTime } from "./format.js";
import { positionState, seekTarget, sessionActions, sessionMetadata } from "./media-session.js";
import { controlUrl } from "./p2p.js";
import { PlayerCore, normalizeGain, prefetchTrack, waveformBars } from "./player.js";
import { shouldPrefetchNext } from "./scheduler.js";
import { ShareControl } from "./share-control.js";
import { P2PAgent, p2pSupported } from "./transport.js";

const STYLE = `
:host {
  --_accent: var(--ztream-accent, #ff5a1f);
  --_accent-fg: var(--ztream-accent-fg, #ffffff);
  --_bg: var(--ztream-bg, #ffffff);
  --_fg: var(--ztream-fg, #1d1d1f);
  --_muted: var(--ztream-muted, #6e6e73);
  --_rail: var(--ztream-rail, rgba(127, 127, 127, 0.22));
  --_buffered: var(--ztream-buffered, rgba(127, 127, 127, 0.42));
  --_radius: var(--ztream-radius, 10px);
  --_border: var(--ztream-border, 1px solid rgba(127, 127, 127, 0.25));
  display: block;
  box-sizing: border-box;
  min-width: 220px;
  font: 14px/1.35 var(--ztream-font, system-ui, -apple-system, "Segoe UI", Roboto, sans-serif);
  color: var(--_fg);
  contain: content;
}
:host([hidden]) { display: none; }
:host([live-stream]) .seek, :host([live-stream]) .time { display: none; }
* { box-sizing: border-box; }
.root {
  display: grid;
  grid-template-columns: auto 1fr;
  gap: 6px 14px;
  align-items: center;
  padding: 14px 16px;
  background: var(--_bg);
  border: var(--_border);
  border-radius: var(--_radius);
  height: 100%;
  container-type: inline-size;
}
button {
  font: inherit;
  color: inherit;
  background: none;
  border: 0;
  padding: 0;
  cursor: pointer;
}
button:focus-visible, .seek:focus-visible, input:focus-visible, .playlist button:focus-visible {
  outline: 2px solid var(--_accent);
  outline-offset: 2px;
}
.play {
  grid-row: span 2;
  position: relative;
  width: 52px;
  height: 52px;
  border-radius: 50%;
  background: var(--_accent);
  color: var(--_accent-fg);
  display: grid;
  place-items: center;
  transition: transform 0.12s ease, filter 0.12s ease;
}
.play:hover { filter: brightness(1.08); }
.play:active { transform: scale(0.95); }
.play svg { width: 24px; height: 24px; fill: currentColor; }
.play .icon-pause, :host([playing]) .play .icon-play { display: none; }
:host([playing]) .play .icon-pause { display: block; }
/* autoplay refused: the button to press, unmistakably */
:host([needs-play]) .play { box-shadow: 0 0 0 4px var(--_bg), 0 0 0 7px var(--_accent); }
/* Phones and narrow frames (from 320 px): every control a 44 px touch
   target (:host makes these win over the rules below) */
@media (pointer: coarse), (max-width: 480px) {
  :host .mute { width: 44px; height: 44px; }
  :host .seek { height: 44px; }
  :host .playlist button { min-height: 44px; align-items: center; }
}
/* Too narrow for the seek bar beside the button (a player in a card on a
   320 px phone): the controls take a row of their own */
@container (max-width: 300px) {
  :host .play { grid-row: auto; }
  :host .controls { grid-column: 1 / -1; }
}
.spinner {
  position: absolute;
  inset: -4px;
  border-radius: 50%;
  border: 3px solid transparent;
  border-top-color: var(--_accent);
  opacity: 0;
  transition: opacity 0.2s;
  pointer-events: none;
}
:host([buffering]) .spinner { opacity: 1; animation: spin 0.9s linear infinite; }
@keyframes spin { to { transform: rotate(360deg); } }
@media (prefers-reduced-motion: reduce) { :host([buffering]) .spinner { animation-duration: 3s; } }
.head {
  display: flex;
  align-items: baseline;
  gap: 8px;
  min-width: 0;
}
.titles { min-width: 0; flex: 1; }
.artist {
  display: block;
  color: var(--_muted);
  font-size: 12px;
  white-space: nowrap;
  overflow: hidden;
  text-overflow: ellipsis;
}
.artist:empty { display: none; }
.title {
  display: block;
  font-weight: 600;
  font-size: 15px;
  white-space: nowrap;
  overflow: hidden;
  text-overflow: ellipsis;
}
.badge {
  font-size: 10px;
  font-weight: 700;
  letter-spacing: 0.06em;
  text-transform: uppercase;
  color: var(--_accent);
  border: 1px solid currentColor;
  border-radius: 4px;
  padding: 0 4px;
}
.badge[hidden] { display: none; }
.status {
  color: var(--_muted);
  font-size: 12px;
  white-space: nowrap;
}
.status.error { color: #d70022; }
.peers {
  color: var(--_muted);
  font-size: 11px;
  font-variant-numeric: tabular-nums;
  white-space: nowrap;
}
.peers[hidden] { display: none; }
.controls {
  display: flex;
  align-items: center;
  gap: 10px;
  min-width: 0;
}
.time {
  font-variant-numeric: tabular-nums;
  font-size: 12px;
  color: var(--_muted);
  min-width: 3.2em;
}
.time.total { text-align: right; }
.seek {
  position: relative;
  flex: 1;
  height: 22px;
  cursor: pointer;
  touch-action: none;
  border-radius: 4px;
}
.rail, .buffered, .progress {
  position: absolute;
  top: 50%;
  height: 4px;
  margin-top: -2px;
  border-radius: 2px;
}
.rail { left: 0; right: 0; background: var(--_rail); }
.buffered { background: var(--_buffered); }
.progress { left: 0; background: var(--_accent); width: 0; }
.wave {
  position: absolute;
  inset: 0;
  width: 100%;
  height: 100%;
  display: none;
}
.seek.has-wave { height: 44px; }
.seek.has-wave .wave { display: block; }
.seek.has-wave .rail, .seek.has-wave .buffered-layer, .seek.has-wave .progress { display: none; }
.seek.has-wave .thumb { width: 2px; height: 100%; top: 0; margin: 0 0 0 -1px; border-radius: 1px; box-shadow: none; }
.hover-time {
  position: absolute;
  bottom: calc(100% + 4px);
  transform: translateX(-50%);
  padding: 1px 5px;
  border-radius: 4px;
  background: var(--_fg);
  color: var(--_bg);
  font-size: 11px;
  font-variant-numeric: tabular-nums;
  pointer-events: none;
  white-space: nowrap;
}
.hover-time[hidden] { display: none; }
.thumb {
  position: absolute;
  top: 50%;
  width: 12px;
  height: 12px;
  margin: -6px 0 0 -6px;
  border-radius: 50%;
  background: var(--_accent);
  box-shadow: 0 0 0 3px var(--_bg);
  transform: scale(0);
  transition: transform 0.12s ease;
}
.seek:hover .thumb, .seek:focus-visible .thumb, .seek.dragging .thumb { transform: scale(1); }
.volume-box { display: flex; align-items: center; gap: 6px; }
.mute { width: 24px; height: 24px; display: grid; place-items: center; color: var(--_muted); }
.mute:hover { color: var(--_fg); }
.mute svg { width: 20px; height: 20px; fill: currentColor; }
.mute .icon-muted, :host([muted]) .mute .icon-sound { display: none; }
:host([muted]) .mute .icon-muted { display: block; }
.volume {
  width: 72px;
  accent-color: var(--_accent);
  cursor: pointer;
}
@container (max-width: 380px) { .volume { display: none; } }
.playlist {
  grid-column: 1 / -1;
  list-style: none;
  margin: 8px 0 0;
  padding: 6px 0 0;
  border-top: var(--_border);
  max-height: 220px;
  overflow: auto;
}
.playlist[hidden] { display: none; }
.playlist button {
  display: flex;
  width: 100%;
  gap: 10px;
  padding: 6px 8px;
  border-radius: 6px;
  text-align: left;
}
.playlist button:hover { background: var(--_rail); }
.playlist .n { color: var(--_muted); font-variant-numeric: tabular-nums; min-width: 1.5em; }
.playlist .t { flex: 1; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.playlist .d { color: var(--_muted); font-variant-numeric: tabular-nums; }
.playlist [aria-current="true"] { color: var(--_accent); font-weight: 600; }
.sr-only {
  position: absolute;
  width: 1px;
  height: 1px;
  overflow: hidden;
  clip: rect(0 0 0 0);
  white-space: nowrap;
}
`;

const ICONS = {
  play: '<svg class="icon-play" viewBox="0 0 24 24" aria-hidden="true"><path d="M8 5.14v13.72a1 1 0 0 0 1.5.86l11-6.86a1 1 0 0 0 0-1.72l-11-6.86A1 1 0 0 0 8 5.14z"/></svg>',
  pause: '<svg class="icon-pause" viewBox="0 0 24 24" aria-hidden="true"><rect x="6" y="5" width="4" height="14" rx="1"/><rect x="14" y="5" width="4" height="14" rx="1"/></svg>',
  sound: '<svg class="icon-sound" viewBox="0 0 24 24" aria-hidden="true"><path d="M4 9v6h4l5 4V5L8 9H4zm12.5 3a4.5 4.5 0 0 0-2.5-4v8a4.5 4.5 0 0 0 2.5-4zM14 3.2v2.1a7 7 0 0 1 0 13.4v2.1a9 9 0 0 0 0-17.6z"/></svg>',
  muted: '<svg class="icon-muted" viewBox="0 0 24 24" aria-hidden="true"><path d="M4 9v6h4l5 4V5L8 9H4zm15.6 3 2.1-2.1-1.4-1.4-2.1 2.1-2.1-2.1-1.4 1.4 2.1 2.1-2.1 2.1 1.4 1.4 2.1-2.1 2.1 2.1 1.4-1.4z"/></svg>',
};

const TEMPLATE = `
<div class="root" part="root">
  <button class="play" part="play-button" type="button" aria-label="Play">
    ${ICONS.play}${ICONS.pause}<span class="spinner" aria-hidden="true"></span>
  </button>
  <div class="head">
    <div class="titles">
      <span class="artist" part="artist"></span>
      <span class="title" part="title">Loading…</span>
    </div>
    <span class="badge" hidden>live</span>
    <span class="status" role="status" aria-live="polite"></span>
    <span class="peers" part="peers" hidden></span>
  </div>
  <div class="controls">
    <span class="time elapsed" part="time" aria-hidden="true">0:00</span>
    <div class="seek" part="seek" role="slider" tabindex="0" aria-label="Seek"
         aria-valuemin="0" aria-valuemax="0" aria-valuenow="0" aria-valuetext="0 seconds">
      <canvas class="wave" aria-hidden="true"></canvas>
      <div class="rail"></div>
      <div class="buffered-layer"></div>
      <div class="progress"></div>
      <div class="thumb"></div>
      <span class="hover-time" aria-hidden="true" hidden></span>
    </div>
    <span class="time total" part="time" aria-hidden="true">--:--</span>
    <div class="volume-box">
      <button class="mute" type="button" aria-label="Mute" aria-pressed="false">${ICONS.sound}${ICONS.muted}</button>
      <input class="volume" part="volume" type="range" min="0" max="100" step="1" value="100" aria-label="Volume">
    </div>
  </div>
  <ol class="playlist" part="playlist" aria-label="Playlist" hidden></ol>
  <audio preload="auto"></audio>
</div>
`;

const VOLUME_KEY = "ztream-volume";

/** @type {ZtreamPlayer | null} the player the page's Media Session controls: the last one that played */
let sessionOwner = null;

function readStoredVolume() {
  try {
    const v = Number(localStorage.getItem(VOLUME_KEY));
    return localStorage.getItem(VOLUME_KEY) !== null && Number.isFinite(v) ? Math.min(1, Math.max(0, v)) : null;
  } catch {
    return null;
  }
}

function storeVolume(v) {
  try {
    localStorage.setItem(VOLUME_KEY, String(v));
  } catch {
    /* storage refused */
  }
}

/** One entry of a playlist: <ztream-track src="..." title-override="..."> */
export class ZtreamTrack extends HTMLElement {
  static get observedAttributes() {
    return ["src"];
  }
  connectedCallback() {
    this.hidden = true;
  }
  attributeChangedCallback() {
    /** @type {ZtreamPlayer | null} */ (this.closest("ztream-player"))?.refreshTracks?.();
  }
}

export class ZtreamPlayer extends HTMLElement {
  static get observedAttributes() {
    return ["src", "peer-stats", "normalize"];
  }

  constructor() {
    super();
    const root = this.attachShadow({ mode: "open" });
    root.innerHTML = `<style>${STYLE}</style>${TEMPLATE}`;
    const $ = (sel) => root.querySelector(sel);
    this.ui = {
      root: $(".root"),
      play: $(".play"),
      title: $(".title"),
      artist: $(".artist"),
      badge: $(".badge"),
      status: $(".status"),
      peers: $(".peers"),
      elapsed: $(".elapsed"),
      total: $(".total"),
      seek: $(".seek"),
      bufferedLayer: $(".buffered-layer"),
      progress: $(".progress"),
      thumb: $(".thumb"),
      wave: $(".wave"),
      hoverTime: $(".hover-time"),
      mute: $(".mute"),
      volume: $(".volume"),
      playlist: $(".playlist"),
    };
    this.audio = $("audio");
    this.core = new PlayerCore(this.audio, { cache: sharedCache() });
    this.tracks = [];
    this.index = 0;
    this.loading = null;
    this.wantPlay = false;
    this.pendingSeek = null;
    this.dragging = null;
    this.prefetched = new Set();
    // The next tracks' {track, rendition}, learnt when they are prefetched,
    // and the one whose holders the current track asked its neighbours about.
    this.ahead = new Map(); // src -> {track, rendition}
    this.lookedAhead = null;
    this.raf = 0;
    this.ready = false;
    this.errorState = null;
    this.agent = null;
    this.share = new ShareControl(this, root); // the opt-in prompt, bytes shared, stop/start
    // The listener's volume; the element's is this times the normalisation gain.
    this.userVolume = 1;
    this.gain = 1;
    this.wave = null; // {peaks, duration, complete} of the current track
    this.waveTimer = 0;
    this.waveSrc = null;
    this.wire();
  }

  // ---- lifecycle -----------------------------------------------------------

  connectedCallback() {
    if (this.connectedOnce) return;
    this.connectedOnce = true;
    const stored = readStoredVolume();
    if (stored !== null) this.userVolume = stored;
    this.applyVolume();
    this.syncVolume();
    this.refreshTracks();
    this.childObserver = new MutationObserver(() => this.refreshTracks());
    this.childObserver.observe(this, { childList: true });
  }

  disconnectedCallback() {
    // moved elsewhere in the document: keep playing; removed for good: stop
    queueMicrotask(() => {
      if (!this.isConnected) {
        this.core.unload();
        this.loading = null;
        this.tracks = [];
        this.childObserver?.disconnect();
        this.agent?.destroy();
        this.agent = null;
        this.share.attach(null);
        this.releaseMediaSession();
        this.setWave(null, null);
        cancelAnimationFrame(this.raf);
        this.raf = 0;
        this.connectedOnce = false;
      }
    });
  }

  attributeChangedCallback(name, oldValue, newValue) {
    if (name === "src" && this.connectedOnce && oldValue !== newValue) this.refreshTracks(true);
    if (name === "peer-stats") this.renderPeers();
    if (name === "normalize") this.applyVolume();
  }

  /** Re-read the track list from `src` and <ztream-track> children. */
  refreshTracks(force = false) {
    const children = [...this.querySelectorAll(":scope > ztream-track")];
    const list = children.length
      ? children.map((el) => ({ src: el.getAttribute("src"), title: el.getAttribute("title-override") || el.getAttribute("data-title") || "" }))
      : this.getAttribute("src")
        ? [{ src: this.getAttribute("src"), title: this.getAttribute("title-override") || "" }]
        : [];
    const valid = list.filter((t) => t.src);
    const same = valid.length === this.tracks.length && valid.every((t, i) => t.src === this.tracks[i].src);
    if (same && !force) return;
    const current = this.tracks[this.index]?.src;
    this.tracks = valid.map((t) => ({ ...t, meta: null }));
    this.renderPlaylist();
    if (sessionOwner === this) this.claimMediaSession();
    if (valid.length === 0) return;
    const keep = valid.findIndex((t) => t.src === current);
    if (keep >= 0 && !force) {
      this.index = keep;
      return;
    }
    this.select(0, { play: this.hasAttribute("autoplay") || this.wantPlay, preload: this.getAttribute("preload") !== "none" });
    if (this.tracks.length > 1) this.loadPlaylistMeta();
  }

  // ---- public API ------------------------------------------------------------

  get src() {
    return this.getAttribute("src") ?? "";
  }
  set src(value) {
    this.setAttribute("src", value);
  }
  get paused() {
    return this.audio.paused;
  }
  get currentTime() {
    return this.audio.currentTime;
  }
  set currentTime(t) {
    this.seek(t);
  }
  get duration() {
    return this.core.duration;
  }
  get volume() {
    return this.userVolume;
  }
  set volume(v) {
    this.userVolume = Math.min(1, Math.max(0, Number(v) || 0));
    this.applyVolume();
    if (this.userVolume > 0) this.audio.muted = false;
    this.syncVolume();
  }
  /** The normalisation gain applied now (linear, <= 1; 1 without `normalize` or loudness). */
  get normalizationGain() {
    return this.gain;
  }
  /** The waveform of the current track as last loaded ({version, length, peaks, duration, complete}), or null. */
  get waveform() {
    return this.wave;
  }
  get muted() {
    return this.audio.muted;
  }
  set muted(m) {
    this.audio.muted = Boolean(m);
  }
  get buffering() {
    return this.hasAttribute("buffering");
  }
  get track() {
    return this.core.track;
  }
  get manifest() {
    return this.core.manifest;
  }
  get startupSeconds() {
    return this.core.startupSeconds;
  }
  /** The core's byte counts and stalls, and `rendition`: the id of the rendition playing (null before a load). */
  get stats() {
    return { ...this.core.stats, rendition: this.core.manifest?.rendition ?? null };
  }
  get live() {
    return this.core.live;
  }
  /** A live track's {state, title, station, latency}, or null for a track. */
  get liveInfo() {
    return this.core.liveInfo;
  }
  /** The P2P side: {peerId, neighbours, held, banned, upBytes, verifyFailures, ...}, or null when off. */
  get p2p() {
    return this.agent ? this.agent.info() : null;
  }
  /** Share (0..1) of the audio bytes fetched over the network that came from peers. */
  get peerShare() {
    const { peerBytes, httpBytes } = this.core.stats;
    return peerBytes + httpBytes > 0 ? peerBytes / (peerBytes + httpBytes) : 0;
  }
  get bufferedRanges() {
    return this.core.bufferedRanges;
  }
  /** The media path (media-path.js): "managed-mse", "mse" or "stream" (the <audio src=.../stream> fallback); null before a load. */
  get mode() {
    return this.core.mode;
  }

  async play() {
    this.wantPlay = true;
    this.core.markPlayRequested();
    this.setBuffering();
    // After a media error the session is dead: play means try again, afresh.
    if (!this.loading || this.core.failed) this.select(this.index, { play: true });
    const loading = this.loading;
    try {
      await loading;
      if (!this.wantPlay || this.loading !== loading) return;
      await this.audio.play();
    } catch (err) {
      // A play() that a newer track's load interrupted (AbortError) speaks
      // for the old track: the new selection's wish to play stands.
      if (this.loading !== loading) return;
      this.wantPlay = false;
      this.setBuffering();
      if (err?.name === "NotAllowedError") {
        this.autoplayRefused();
        return;
      }
      if (err?.name === "AbortError") return;
      throw err;
    }
  }

  pause() {
    this.wantPlay = false;
    this.audio.pause();
    this.setBuffering();
  }

  toggle() {
    if (this.audio.paused && !this.wantPlay) return this.play();
    this.pause();
    return Promise.resolve();
  }

  /** Seek to `seconds`; before the track is loaded, the seek waits for it (as SoundCloud's widget does). */
  seek(seconds) {
    if (!this.ready) {
      this.pendingSeek = Math.max(0, Number(seconds) || 0);
      return;
    }
    this.core.seek(seconds);
    this.renderTime();
  }

  next() {
    if (this.index + 1 < this.tracks.length) this.select(this.index + 1, { play: true });
  }

  previous() {
    if (this.audio.currentTime > 3 || this.index === 0) this.seek(0);
    else this.select(this.index - 1, { play: true });
  }

  /** Load track `index` of the playlist (and play it if asked). */
  select(index, { play = false, preload = true } = {}) {
    if (index < 0 || index >= this.tracks.length) return;
    const changed = index !== this.index || !this.loading;
    this.index = index;
    if (changed) this.lookedAhead = null; // a new session: new neighbours to ask
    this.ready = false;
    this.errorState = null;
    this.wantPlay = play;
    this.pendingSeek = null;
    const entry = this.tracks[index];
    this.ui.title.textContent = entry.meta?.title || entry.title || "Loading…";
    this.ui.artist.textContent = entry.meta?.artist || "";
    this.setStatus("");
    this.renderPlaylist();
    this.setWave(null, null);
    if (!preload && !play) {
      this.loading = null;
      this.core.unload();
      return;
    }
    if (play) this.core.markPlayRequested();
    this.core.settings = this.schedulerSettings();
    this.setupP2P(entry.src);
    const loading = this.core.load(entry.src).then(
      ({ track }) => {
        if (this.loading !== loading) return;
        entry.meta = track;
        this.ready = true;
        this.ui.title.textContent = entry.title || track.title || "Untitled";
        this.ui.artist.textContent = track.artist || "";
        this.renderLive();
        this.renderPlaylist();
        this.renderTime();
        this.applyVolume();
        this.loadWaveform(entry.src, track);
        if (this.pendingSeek !== null) {
          this.core.seek(this.pendingSeek);
          this.pendingSeek = null;
        }
        this.updateMediaSession();
        this.fire("ready", { track, duration: this.duration, index });
        if (this.wantPlay) {
          this.audio.play().catch((err) => {
            if (this.loading !== loading) return; // interrupted by the next track's load
            this.wantPlay = false;
            this.setBuffering();
            if (err?.name === "NotAllowedError") this.autoplayRefused();
          });
        }
      },
      (err) => {
        if (this.loading !== loading) return;
        this.wantPlay = false;
        this.setBuffering();
      },
    );
    this.loading = loading;
    if (changed) this.fire("trackchange", { index, src: entry.src });
    this.setBuffering();
  }

  /** Start (or keep, or stop) the P2P agent for the gateway that serves `src`. */
  setupP2P(src) {
    let url = null;
    if (this.getAttribute("p2p") !== "off" && p2pSupported()) {
      try {
        url = controlUrl(src, document.baseURI);
      } catch {
        url = null;
      }
    }
    if (this.agent && this.agent.url === url) return;
    this.agent?.destroy();
    this.agent = null;
    this.share.attach(null);
    if (!url) return;
    const corrupt = this.hasAttribute("data-test-corrupt") || globalThis.__ztreamTest?.corrupt === true;
    this.agent = new P2PAgent(this.core, {
      url,
      relay: this.getAttribute("p2p") === "relay",
      settings: corrupt ? { corrupt: true } : {},
      decideUpload: (operator) => this.share.decide(operator),
    });
    this.share.attach(this.agent);
  }

  /** Scheduler settings from attributes: buffer-ahead="30" emergency-ahead="4" (seconds). */
  schedulerSettings() {
    const out = {};
    for (const [attr, key] of [["buffer-ahead", "bufferAhead"], ["emergency-ahead", "emergencyAhead"]]) {
      const v = Number(this.getAttribute(attr));
      if (this.hasAttribute(attr) && Number.isFinite(v) && v > 0) out[key] = v;
    }
    if (out.emergencyAhead !== undefined) out.recoverAhead = Math.max(out.emergencyAhead * 2, out.emergencyAhead + 1);
    return out;
  }

  // ---- wiring ----------------------------------------------------------------

  wire() {
    const { ui, audio, core } = this;
    ui.play.addEventListener("click", () => this.toggle());
    ui.mute.addEventListener("click", () => {
      audio.muted = !audio.muted;
      if (!audio.muted && this.userVolume === 0) this.volume = 0.5;
    });
    ui.volume.addEventListener("input", () => {
      this.volume = Number(ui.volume.value) / 100;
    });

    // seek slider: pointer
    ui.seek.addEventListener("pointerdown", (e) => {
      if (e.button !== 0 || !this.ready) return;
      ui.seek.setPointerCapture(e.pointerId);
      ui.seek.classList.add("dragging");
      this.dragging = this.positionFromPointer(e);
      this.renderTime();
      e.preventDefault();
    });
    ui.seek.addEventListener("pointermove", (e) => {
      this.renderHover(e);
      if (this.dragging === null) return;
      this.dragging = this.positionFromPointer(e);
      this.renderTime();
    });
    ui.seek.addEventListener("pointerleave", () => {
      ui.hoverTime.hidden = true;
    });
    if (typeof ResizeObserver === "function") new ResizeObserver(() => this.drawWave()).observe(ui.seek);
    const endDrag = (e, commit) => {
      if (this.dragging === null) return;
      const t = this.positionFromPointer(e);
      this.dragging = null;
      ui.seek.classList.remove("dragging");
      if (commit) this.seek(t);
      this.renderTime();
    };
    ui.seek.addEventListener("pointerup", (e) => endDrag(e, true));
    ui.seek.addEventListener("pointercancel", (e) => endDrag(e, false));

    // seek slider: keyboard (WAI-ARIA slider pattern)
    ui.seek.addEventListener("keydown", (e) => {
      if (!this.ready) return;
      const t = seekKey(e.key, { position: audio.currentTime, duration: this.duration });
      if (t === null) return;
      e.preventDefault();
      this.seek(t);
    });

    // player-wide shortcuts: k / space (outside buttons) toggle, m mutes
    this.shadowRoot.addEventListener("keydown", (event) => {
      const e = /** @type {KeyboardEvent} */ (event);
      if (e.altKey || e.ctrlKey || e.metaKey) return;
      const target = e.composedPath()[0];
      const onControl = target instanceof HTMLButtonElement || target instanceof HTMLInputElement;
      if (e.key === "k" || (e.key === " " && !onControl)) {
        e.preventDefault();
        this.toggle();
      } else if (e.key === "m") {
        e.preventDefault();
        audio.muted = !audio.muted;
      }
    });

    // element -> state, interface and events
    const forward = ["play", "pause", "playing", "waiting", "seeking", "seeked", "volumechange"];
    for (const name of forward) {
      audio.addEventListener(name, () => {
        this.onAudioState(name);
        this.fire(name, { currentTime: audio.currentTime, duration: this.duration });
      });
    }
    audio.addEventListener("timeupdate", () => {
      this.renderTime();
      this.maybePrefetchNext();
      this.fire("timeupdate", { currentTime: audio.currentTime, duration: this.duration });
    });
    audio.addEventListener("canplay", () => this.setBuffering());
    audio.addEventListener("ended", () => this.onEnded());
    // The element's own errors reach us as the core's `error` (PlayerCore.failMedia).
    // the core's events are CustomEvents: their `detail` is the news
    /** @type {(e: Event) => any} */
    const detailOf = (e) => /** @type {CustomEvent} */ (e).detail;
    core.addEventListener("startup", (e) => this.fire("startup", detailOf(e)));
    core.addEventListener("chunk", (e) => {
      const { index, source, peer, bytes } = detailOf(e);
      this.fire("chunk", { index, source, peer, bytes });
      this.renderPeers();
    });
    core.addEventListener("badchunk", (e) => this.fire("badchunk", { index: detailOf(e).index, peer: detailOf(e).peer }));
    core.addEventListener("progress", () => this.renderBuffered());
    core.addEventListener("durationchange", () => {
      this.renderTime();
      this.updatePositionState();
      const entry = this.tracks[this.index];
      const d = this.duration;
      if (entry?.meta && !core.live && Number.isFinite(d) && entry.meta.duration !== d) {
        entry.meta = { ...entry.meta, duration: d };
        this.renderPlaylist();
      }
      this.fire("durationchange", { duration: this.duration });
    });
    core.addEventListener("manifest", () => {
      this.ui.badge.hidden = !core.live;
      this.applyVolume();
      this.renderTime();
    });
    core.addEventListener("loaded", () => {
      this.ui.badge.hidden = !core.live;
      this.applyVolume();
    });
    core.addEventListener("error", (e) => this.showError(detailOf(e).error, detailOf(e).detail, detailOf(e).setting));
    core.addEventListener("live", (e) => {
      const { state, title, station, changed } = detailOf(e);
      this.renderLive();
      this.updateMediaSession();
      this.fire("livechange", { state, title, station });
      if (changed.includes("title")) this.fire("titlechange", { title, station });
    });
  }

  /** A live track: LIVE, no seek bar, the now-playing title over the station's name, "Reconnecting…". */
  renderLive() {
    const info = this.core.liveInfo;
    this.toggleAttribute("live-stream", Boolean(info));
    if (!info) return;
    const entry = this.tracks[this.index];
    this.ui.badge.hidden = false;
    const name = info.station || entry?.title || entry?.meta?.title || "";
    this.ui.title.textContent = info.title || name || "Live";
    this.ui.artist.textContent = info.title ? name : "";
    const reconnecting = "Reconnecting…";
    if (info.state === "reconnecting" && !this.errorState) this.setStatus(reconnecting);
    else if (this.ui.status.textContent === reconnecting) this.setStatus("");
  }

  onAudioState(name) {
    const { audio } = this;
    if (name === "play" || name === "playing") this.errorState = null;
    if (name === "play") {
      this.toggleAttribute("needs-play", false);
      this.claimMediaSession();
    } else if (name === "pause" || name === "seeked" || name === "playing") {
      this.updateMediaSession();
    }
    this.toggleAttribute("playing", !audio.paused);
    this.ui.play.setAttribute("aria-label", audio.paused ? "Play" : "Pause");
    if (name === "volumechange") this.syncVolume();
    // An error stays shown (as an alert) until the listener plays again.
    if ((name === "playing" || name === "pause") && !this.errorState) this.setStatus("");
    this.setBuffering(name === "waiting" || (name === "seeking" && !audio.paused));
    if (!audio.paused) this.startFrames();
  }

  onEnded() {
    this.toggleAttribute("playing", false);
    this.ui.play.setAttribute("aria-label", "Play");
    this.renderTime();
    const index = this.index;
    this.fire("ended", { index });
    if (index + 1 < this.tracks.length) {
      this.select(index + 1, { play: true });
    } else {
      this.wantPlay = false;
      this.setBuffering();
      this.fire("finish", { index });
    }
  }

  showError(code, detail, setting) {
    this.errorState = { code, detail };
    this.wantPlay = false;
    this.setBuffering();
    // A setting would fix it: say which (the detail names it), for whoever runs the gateway.
    const message = setting ? `Cannot play this track: ${detail}` : code === "track_not_found" ? "Track not found" : code === "network_error" ? "Offline: this track is not cached" : "Cannot play this track";
    this.setStatus(message, true);
    if (!this.ready) this.ui.title.textContent = this.tracks[this.index]?.title || "Unavailable";
    this.fire("error", setting ? { error: code, detail, setting } : { error: code, detail });
  }

  /** The browser would not start playing without a gesture: say so, and point at the button. */
  autoplayRefused() {
    this.toggleAttribute("needs-play", true);
    this.setStatus("Press play to listen");
    this.fire("autoplayblocked", { index: this.index });
  }

  // ---- Media Session: lock screens, notifications, headsets ---------------------

  /** This player started playing: the page's Media Session now controls it. */
  claimMediaSession() {
    const ms = globalThis.navigator?.mediaSession;
    if (!ms) return;
    sessionOwner = this;
    const { on, off } = sessionActions({ tracks: this.tracks.length });
    for (const action of on) this.setSessionAction(ms, action, (details) => this.onSessionAction(action, details ?? {}));
    for (const action of off) this.setSessionAction(ms, action, null);
    this.updateMediaSession();
  }

  /**
   * @param {MediaSession} ms
   * @param {string} action
   * @param {MediaSessionActionHandler | null} handler
   */
  setSessionAction(ms, action, handler) {
    try {
      ms.setActionHandler(/** @type {MediaSessionAction} */ (action), handler);
    } catch {
      /* an action this browser does not know */
    }
  }

  /**
   * @param {string} action
   * @param {MediaSessionActionDetails | {}} details
   */
  onSessionAction(action, details) {
    if (action === "play") this.play().catch(() => {});
    else if (action === "pause") this.pause();
    else if (action === "nexttrack") this.next();
    else if (action === "previoustrack") this.previous();
    else {
      const t = seekTarget(action, details, { position: this.audio.currentTime, duration: this.duration });
      if (t !== null) this.seek(t);
    }
  }

  /** Title, artist and artwork, the playback state and the position, if this player owns the session. */
  updateMediaSession() {
    const ms = globalThis.navigator?.mediaSession;
    if (!ms || sessionOwner !== this) return;
    const entry = this.tracks[this.index];
    const live = this.core.liveInfo;
    // a live track: what the station plays now, by the station
    const meta = live?.title
      ? sessionMetadata({ ...(entry?.meta ?? this.core.track), title: live.title, artist: live.station ?? "" })
      : sessionMetadata(entry?.meta ?? this.core.track, entry?.title);
    const key = JSON.stringify(meta);
    if (key !== this.sessionMetaKey && typeof MediaMetadata === "function") {
      this.sessionMetaKey = key;
      try {
        ms.metadata = new MediaMetadata(meta);
      } catch {
        /* an artwork URL it does not take */
      }
    }
    ms.playbackState = this.audio.paused ? "paused" : "playing";
    this.updatePositionState();
  }

  updatePositionState() {
    const ms = globalThis.navigator?.mediaSession;
    if (!ms || sessionOwner !== this || typeof ms.setPositionState !== "function") return;
    const state = positionState({ duration: this.duration, position: this.audio.currentTime, rate: this.audio.playbackRate });
    try {
      ms.setPositionState(state ?? undefined);
    } catch {
      /* a position the browser disagrees with: the next update fixes it */
    }
  }

  /** Removed from the page: leave the Media Session to nobody. */
  releaseMediaSession() {
    const ms = globalThis.navigator?.mediaSession;
    if (!ms || sessionOwner !== this) return;
    sessionOwner = null;
    const { on, off } = sessionActions({ tracks: 2 });
    for (const action of [...on, ...off]) this.setSessionAction(ms, action, null);
    ms.metadata = null;
    ms.playbackState = "none";
    this.sessionMetaKey = null;
  }

  // ---- rendering ---------------------------------------------------------------

  setStatus(text, isError = false) {
    this.ui.status.textContent = text;
    this.ui.status.classList.toggle("error", isError);
    this.ui.status.setAttribute("role", isError ? "alert" : "status");
  }

  setBuffering(force = false) {
    const { audio } = this;
    const waitingForData = this.wantPlay && (!this.ready || audio.readyState < 3);
    const on = !this.errorState && (force || waitingForData) && (this.wantPlay || !audio.paused);
    this.toggleAttribute("buffering", on);
    this.ui.play.setAttribute("aria-busy", on ? "true" : "false");
    if (on && !this.ui.status.textContent) this.setStatus("Buffering…");
    if (!on && this.ui.status.textContent === "Buffering…") this.setStatus("");
  }

  syncVolume() {
    const { audio, ui } = this;
    const pct = Math.round((audio.muted ? 0 : this.userVolume) * 100);
    ui.volume.value = String(pct);
    ui.volume.setAttribute("aria-valuetext", `${pct}%`);
    ui.mute.setAttribute("aria-pressed", audio.muted ? "true" : "false");
    ui.mute.setAttribute("aria-label", audio.muted ? "Unmute" : "Mute");
    this.toggleAttribute("muted", audio.muted || this.userVolume === 0);
    if (!audio.muted) storeVolume(this.userVolume);
  }

  positionFromPointer(e) {
    const rect = this.ui.seek.getBoundingClientRect();
    const f = rect.width > 0 ? Math.min(1, Math.max(0, (e.clientX - rect.left) / rect.width)) : 0;
    const d = this.duration;
    return Number.isFinite(d) ? f * d : 0;
  }

  renderTime() {
    const { ui, audio } = this;
    const d = this.duration;
    const t = this.dragging ?? audio.currentTime;
    const f = Number.isFinite(d) && d > 0 ? Math.min(1, t / d) : 0;
    ui.progress.style.width = `${f * 100}%`;
    ui.thumb.style.left = `${f * 100}%`;
    ui.elapsed.textContent = formatTime(t);
    ui.total.textContent = formatTime(d);
    ui.seek.setAttribute("aria-valuemax", String(Number.isFinite(d) ? Math.round(d) : 0));
    ui.seek.setAttribute("aria-valuenow", String(Math.round(t)));
    ui.seek.setAttribute("aria-valuetext", `${spokenTime(t)} of ${spokenTime(d)}`);
    this.drawWave();
  }

  // ---- loudness and waveform: the `normalize` gain, the seek bar's peaks -----------

  /** The element's volume: the listener's, times the gain `normalize` asks for. */
  applyVolume() {
    const target = this.getAttribute("normalize");
    this.gain = target === null ? 1 : normalizeGain(this.core.manifest, target);
    const v = Math.min(1, Math.max(0, this.userVolume * this.gain));
    if (Math.abs(this.audio.volume - v) > 1e-6) this.audio.volume = v;
  }

  setWave(wave, src) {
    clearTimeout(this.waveTimer);
    this.waveTimer = 0;
    this.wave = wave;
    this.waveSrc = src;
    this.ui.seek.classList.toggle("has-wave", Boolean(wave?.peaks?.length));
    this.drawWave();
  }

  /** Fetch the waveform; while the transcode runs, again every 1.5 s until it is complete. */
  async loadWaveform(src, track) {
    if (track?.live === true) {
      this.setWave(null, src); // a live track has no waveform: no seek bar to draw it on
      return;
    }
    let url;
    try {
      url = new URL(track?.waveform_url || `${src}/waveform`, src).href;
    } catch {
      return;
    }
    this.setWave(null, src);
    const attempt = async (tries) => {
      if (this.waveSrc !== src || !this.isConnected) return;
      let wave = null;
      try {
        const r = await fetch(url);
        if (r.ok) wave = await r.json();
      } catch {
        wave = null; // the plain bar stays; try again while it may still come
      }
      if (this.waveSrc !== src) return;
      if (wave && Array.isArray(wave.peaks)) {
        this.wave = wave;
        this.ui.seek.classList.toggle("has-wave", wave.peaks.length > 0);
        this.drawWave();
        // an answer with no peaks yet (the first chunk is out, its analysis not) is nothing to tell
        if (wave.length > 0 || wave.complete === true) this.fire("waveform", { length: wave.length, complete: wave.complete === true });
        if (wave.complete === true) {
          // The transcode has ended: {track} now has the file's tags (title, artist).
          if (!Number.isFinite(track?.duration)) this.refreshMeta(src);
          return;
        }
      }
      if (tries > 0) this.waveTimer = setTimeout(() => attempt(tries - 1), 1500);
    };
    attempt(400);
  }

  /** Read {track} again (its tags arrive when the transcode ends) and show its title and artist. */
  async refreshMeta(src) {
    let track;
    try {
      const r = await fetch(src);
      if (!r.ok) return;
      track = await r.json();
    } catch {
      return;
    }
    const entry = this.tracks[this.index];
    if (!entry || entry.src !== src || this.waveSrc !== src) return;
    entry.meta = { ...entry.meta, ...track };
    this.ui.title.textContent = entry.title || track.title || "Untitled";
    this.ui.artist.textContent = track.artist || "";
    this.renderLive();
    this.renderPlaylist();
    this.updateMediaSession();
    this.fire("trackinfo", { track });
  }

  drawWave() {
    const canvas = this.ui.wave;
    const wave = this.wave;
    if (!wave?.peaks?.length) return;
    const rect = canvas.getBoundingClientRect();
    if (rect.width <= 0 || rect.height <= 0) return;
    const ratio = globalThis.devicePixelRatio || 1;
    const w = Math.round(rect.width * ratio);
    const h = Math.round(rect.height * ratio);
    if (canvas.width !== w || canvas.height !== h) {
      canvas.width = w;
      canvas.height = h;
    }
    const ctx = canvas.getContext("2d");
    if (!ctx) return;
    const style = getComputedStyle(this.ui.seek);
    const colour = (name, fallback) => style.getPropertyValue(name).trim() || fallback;
    const played = colour("--_accent", "#ff5a1f");
    const buffered = colour("--_buffered", "rgba(127,127,127,0.42)");
    const rest = colour("--_rail", "rgba(127,127,127,0.22)");
    const d = this.duration;
    const total = Number.isFinite(d) && d > 0 ? Math.max(d, wave.duration || 0) : wave.duration;
    const t = this.dragging ?? this.audio.currentTime;
    const playedTo = Number.isFinite(total) && total > 0 ? t / total : 0;
    const ranges = rangeFractions(this.core.bufferedRanges, total).map((p) => [p.left, p.left + p.width]);
    const step = 3 * ratio; // a 2 px bar and a 1 px gap
    // Scaled as /player/ draws it: the loudest peak fills the bar (a quiet track is not a flat line).
    const bars = waveformBars({ ...wave, peaks: scalePeaks(wave.peaks) }, total, Math.max(1, Math.floor(w / step)));
    ctx.clearRect(0, 0, w, h);
    const mid = h / 2;
    for (const bar of bars) {
      const x = bar.x0 * w;
      const centre = (bar.x0 + bar.x1) / 2;
      ctx.fillStyle = centre <= playedTo ? played : ranges.some(([a, b]) => centre >= a && centre <= b) ? buffered : rest;
      const half = Math.max(ratio, bar.peak * (mid - ratio));
      ctx.fillRect(x, mid - half, Math.max(ratio, (bar.x1 - bar.x0) * w - ratio), half * 2);
    }
  }

  renderHover(e) {
    const d = this.duration;
    const tip = this.ui.hoverTime;
    if (!this.ready || !Number.isFinite(d) || d <= 0) {
      tip.hidden = true;
      return;
    }
    const rect = this.ui.seek.getBoundingClientRect();
    const f = rect.width > 0 ? Math.min(1, Math.max(0, (e.clientX - rect.left) / rect.width)) : 0;
    tip.textContent = formatTime(f * d);
    tip.style.left = `${f * 100}%`;
    tip.hidden = false;
  }

  /** The "from peers: N%" readout (attribute peer-stats). */
  renderPeers() {
    const el = this.ui.peers;
    const on = this.hasAttribute("peer-stats");
    el.hidden = !on;
    if (!on) return;
    const { peerBytes, httpBytes } = this.core.stats;
    const text = peerBytes + httpBytes > 0 ? `from peers: ${Math.round(this.peerShare * 100)}%` : "from peers: –";
    if (el.textContent !== text) el.textContent = text;
  }

  renderBuffered() {
    const layer = this.ui.bufferedLayer;
    const parts = rangeFractions(this.core.bufferedRanges, this.duration);
    while (layer.children.length > parts.length) layer.lastChild.remove();
    while (layer.children.length < parts.length) {
      const el = document.createElement("div");
      el.className = "buffered";
      layer.append(el);
    }
    parts.forEach((p, i) => {
      layer.children[i].style.left = `${p.left * 100}%`;
      layer.children[i].style.width = `${p.width * 100}%`;
    });
    this.drawWave();
  }

  startFrames() {
    if (this.raf) return;
    const frame = () => {
      this.raf = 0;
      if (this.audio.paused || !this.isConnected) return;
      this.renderTime();
      this.raf = requestAnimationFrame(frame);
    };
    this.raf = requestAnimationFrame(frame);
  }

  renderPlaylist() {
    const list = this.ui.playlist;
    list.hidden = this.tracks.length < 2;
    if (list.hidden) return;
    list.replaceChildren(
      ...this.tracks.map((t, i) => {
        const li = document.createElement("li");
        const b = document.createElement("button");
        b.type = "button";
        const title = t.meta?.title || t.title || `Track ${i + 1}`;
        b.innerHTML = '<span class="n"></span><span class="t"></span><span class="d"></span>';
        b.querySelector(".n").textContent = String(i + 1);
        b.querySelector(".t").textContent = title;
        b.querySelector(".d").textContent = Number.isFinite(t.meta?.duration) ? formatTime(t.meta.duration) : "";
        b.setAttribute("aria-label", `Play ${title}`);
        if (i === this.index) b.setAttribute("aria-current", "true");
        b.addEventListener("click", () => this.select(i, { play: true }));
        li.append(b);
        return li;
      }),
    );
  }

  async loadPlaylistMeta() {
    await Promise.all(
      this.tracks.map(async (t) => {
        if (t.meta) return;
        try {
          const r = await fetch(t.src);
          if (r.ok) t.meta = await r.json();
        } catch {
          /* shown without metadata */
        }
      }),
    );
    this.renderPlaylist();
  }

  /**
   * Near the end of a track, fetch the start of the next one, and ask the
   * neighbours who holds it (P2PAgent.lookupAhead) once its manifest is
   * known: the next session starts from their answers (docs/wire.md
   * "Overlay"). The asking is tried again on every timeupdate until a
   * neighbour could be asked (none may be open, or each was asked lately).
   */
  maybePrefetchNext() {
    const next = this.tracks[this.index + 1];
    if (!next) return;
    if (!shouldPrefetchNext({ position: this.audio.currentTime, duration: this.duration, lead: 10 })) return;
    this.lookAhead();
    if (this.prefetched.has(next.src)) return;
    this.prefetched.add(next.src);
    const onManifest = (track, manifest) => {
      if (typeof manifest?.rendition !== "string") return;
      this.ahead.set(next.src, { track, rendition: manifest.rendition });
      this.lookAhead();
    };
    sharedCache().then((cache) =>
      prefetchTrack(next.src, { cache, onManifest }).then((ok) => this.fire("prefetch", { src: next.src, ok })),
    );
  }

  /** Ask the neighbours about the next track, once per track played, if its manifest is known. */
  lookAhead() {
    const next = this.tracks[this.index + 1];
    const known = next && this.ahead.get(next.src);
    if (!known || !this.agent || this.lookedAhead === next.src) return;
    let url = null;
    try {
      url = controlUrl(next.src, document.baseURI);
    } catch {
      url = null;
    }
    // a track of another gateway: these neighbours cannot know its holders
    if (url !== this.agent.url) return;
    if (this.agent.lookupAhead(known.track, known.rendition) > 0) this.lookedAhead = next.src;
  }

  fire(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail, bubbles: true, composed: true }));
  }
}

if (!customElements.get("ztream-track")) customElements.define("ztream-track", ZtreamTrack);
if (!customElements.get("ztream-player")) customElements.define("ztream-player", ZtreamPlayer);
