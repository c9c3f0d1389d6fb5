// @ts-check
// The landing page: library and recent tracks, a URL field, the player and
// the code to embed the current track.

import { ApiError, fetchJson } from "./api.js";
import "./ztream-player.js";
import { formatTime, placeholderArt } from "./format.js";
import { componentSnippet, iframeSnippet, oembedUrl, trackUrl, widgetSnippet } from "./snippets.js";

const $ = (sel) => document.querySelector(sel);
const publicUrl = (/** @type {HTMLMetaElement | null} */ (document.querySelector('meta[name="ztream-public-url"]'))?.content || location.origin).replace(/\/+$/, "");
const player = $("#main-player");
const PLAY_ICON = '<svg viewBox="0 0 24 24" aria-hidden="true"><path d="M8 5.14v13.72a1 1 0 0 0 1.5.86l11-6.86a1 1 0 0 0 0-1.72l-11-6.86A1 1 0 0 0 8 5.14z"/></svg>';
const PAUSE_ICON = '<svg viewBox="0 0 24 24" aria-hidden="true"><path d="M7 5h3.5v14H7zM13.5 5H17v14h-3.5z"/></svg>';

let tracks = [];
let current = null;

player.hidden = true;

function setStatus(el, text, isError = false) {
  el.textContent = text;
  el.classList.toggle("error", isError);
}

function api(path, options = {}) {
  return fetchJson(`${publicUrl}${path}`, {
    ...options,
    headers: { Accept: "application/json", ...(options.body ? { "Content-Type": "application/json" } : {}) },
  });
}

function renderTracks() {
  const list = $("#tracks");
  const playing = Boolean(current) && !player.paused;
  list.replaceChildren(
    ...tracks.map((t) => {
      const li = document.createElement("li");
      li.dataset.id = t.id;
      const isCurrent = current?.id === t.id;
      if (isCurrent) li.setAttribute("aria-current", "true");
      const name = t.title || t.id;
      const b = document.createElement("button");
      b.className = "p";
      b.type = "button";
      // The playing row's button pauses it (and says so); any other plays its track.
      const pauses = isCurrent && playing;
      b.innerHTML = pauses ? PAUSE_ICON : PLAY_ICON;
      b.dataset.state = pauses ? "playing" : "paused";
      b.setAttribute("aria-label", `${pauses ? "Pause" : "Play"} ${name}`);
      b.addEventListener("click", () => (pauses ? player.pause() : isCurrent ? player.play().catch(() => {}) : playTrack(t)));
      const title = document.createElement("span");
      title.className = "t";
      title.textContent = t.artist ? `${t.artist} — ${t.title}` : name;
      const source = document.createElement("span");
      source.className = "s";
      source.textContent = t.source;
      const d = document.createElement("span");
      d.className = "d";
      // Unknown until transcoded once: a dash keeps the column (and the rows) aligned.
      d.textContent = Number.isFinite(t.duration) ? formatTime(t.duration) : "–:––";
      // The artwork only of tracks transcoded once (duration known): asking
      // for another's would start its transcode just to draw a list. The
      // others get the placeholder in the same box, so the rows line up.
      const art = document.createElement("span");
      art.className = "thumb";
      art.setAttribute("aria-hidden", "true");
      const look = placeholderArt(t.title, t.artist);
      art.style.background = look.background;
      art.textContent = look.initials;
      if (t.artwork_url && Number.isFinite(t.duration)) {
        const img = document.createElement("img");
        img.src = t.artwork_url;
        img.alt = "";
        img.width = 36;
        img.height = 36;
        img.loading = "lazy";
        art.append(img);
      }
      li.append(b, art, title, source, d);
      return li;
    }),
  );
  setStatus($("#lib-status"), tracks.length ? "" : "No tracks yet: paste a link above.");
}

async function loadTracks() {
  try {
    const body = await api("/v1/tracks");
    tracks = Array.isArray(body?.tracks) ? body.tracks : [];
    renderTracks();
  } catch (err) {
    setStatus($("#lib-status"), `Could not load the tracks: ${err.message}`, true);
  }
}

function renderEmbed(track) {
  const embed = $("#embed");
  embed.hidden = false;
  $("#code-iframe code").textContent = iframeSnippet(publicUrl, track.id, track.title);
  $("#code-component code").textContent = componentSnippet(publicUrl, track.id);
  $("#code-widget code").textContent = widgetSnippet(publicUrl, track.id, track.title);
  const link = $("#oembed-link");
  link.href = oembedUrl(publicUrl, track.id);
  link.textContent = oembedUrl(publicUrl, track.id);
}

function playTrack(track, { autoplay = true } = {}) {
  current = track;
  $("#empty-player").hidden = true;
  player.hidden = false;
  $("#startup").textContent = "";
  // No title-override: the player shows the track's own title and artist
  // (apart), and the file's tags once the first transcode has read them.
  player.removeAttribute("title-override");
  player.src = trackUrl(publicUrl, track.id);
  if (autoplay) player.play().catch(() => {});
  renderEmbed(track);
  renderTracks();
  history.replaceState(null, "", `#${encodeURIComponent(track.id)}`);
}

/**
 * What to tell the person who pasted a link that failed: the gateway's reason
 * and, where a configuration key would fix it, that key.
 * @param {unknown} err
 */
function addFailure(err) {
  if (err instanceof ApiError) {
    const reason = err.detail || err.message;
    return err.setting && !reason.includes(err.setting) ? `${reason} (setting: ${err.setting})` : reason;
  }
  return err instanceof Error ? err.message : String(err);
}

// Registering a link proves nothing (a 404 or an HTML page registers too):
// the manifest answers once the first chunk exists, or with the reason, so
// "Added" is said, and the track listed here, only after it answered.
$("#add-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const input = $("#url");
  const status = $("#add-status");
  const url = input.value.trim();
  if (!/^https?:\/\//i.test(url)) {
    setStatus(status, "Enter an http(s) URL.", true);
    input.focus();
    return;
  }
  const button = $("#add-button");
  button.disabled = true;
  setStatus(status, "Fetching…");
  try {
    const track = await api("/v1/tracks", { method: "POST", body: JSON.stringify({ url }) });
    setStatus(status, `Checking “${track.title || track.id}”…`);
    await api(`/v1/tracks/${encodeURIComponent(track.id)}/manifest`);
    setStatus(status, `Added “${track.title || track.id}”.`);
    if (!tracks.some((t) => t.id === track.id)) tracks = [...tracks, track];
    playTrack(track);
  } catch (err) {
    setStatus(status, `Cannot play this link: ${addFailure(err)}`, true);
  } finally {
    button.disabled = false;
  }
});

$("#refresh").addEventListener("click", loadTracks);

// tabs (WAI-ARIA tabs pattern)
const tabs = [.../** @type {NodeListOf<HTMLElement>} */ (document.querySelectorAll('[role="tab"]'))];
function selectTab(tab) {
  for (const t of tabs) {
    const on = t === tab;
    t.setAttribute("aria-selected", String(on));
    t.tabIndex = on ? 0 : -1;
    document.getElementById(t.getAttribute("aria-controls")).hidden = !on;
  }
  tab.focus();
}
for (const tab of tabs) {
  tab.addEventListener("click", () => selectTab(tab));
  tab.addEventListener("keydown", (e) => {
    const i = tabs.indexOf(tab);
    if (e.key === "ArrowRight") selectTab(tabs[(i + 1) % tabs.length]);
    else if (e.key === "ArrowLeft") selectTab(tabs[(i - 1 + tabs.length) % tabs.length]);
  });
}
for (const copy of document.querySelectorAll(".copy")) {
  copy.addEventListener("click", async () => {
    const text = copy.parentElement.querySelector("code").textContent;
    try {
      await navigator.clipboard.writeText(text);
      copy.textContent = "Copied";
    } catch {
      const range = document.createRange();
      range.selectNodeContents(copy.parentElement.querySelector("code"));
      getSelection().removeAllRanges();
      getSelection().addRange(range);
      copy.textContent = "Selected";
    }
    setTimeout(() => (copy.textContent = "Copy"), 1500);
  });
}

player.addEventListener("startup", (e) => {
  $("#startup").textContent = `started in ${Math.round(e.detail.seconds * 1000)} ms`;
});
for (const name of ["play", "pause", "ended"]) player.addEventListener(name, () => renderTracks());
// The first transcode has read the file's tags: the list shows them too.
player.addEventListener("trackinfo", (e) => {
  const t = tracks.find((x) => x.id === current?.id);
  const info = /** @type {CustomEvent} */ (e).detail?.track;
  if (t && info) {
    Object.assign(t, { title: info.title, artist: info.artist, duration: info.duration });
    if (current) Object.assign(current, { title: info.title, artist: info.artist });
    renderTracks();
  }
});
player.addEventListener("ready", (e) => {
  const t = tracks.find((x) => x.id === current?.id);
  if (t && e.detail.track?.duration != null && t.duration == null) {
    t.duration = e.detail.track.duration;
    renderTracks();
  }
});

await loadTracks();
const wanted = decodeURIComponent(location.hash.slice(1));
let initial = tracks.find((t) => t.id === wanted);
// A link added here a moment ago is not listed until its transcode completes:
// the page's own #id still finds it.
if (!initial && /^[A-Za-z0-9_-]{1,128}$/.test(wanted)) initial = await api(`/v1/tracks/${wanted}`).catch(() => null);
if (initial) playTrack(initial, { autoplay: false });
