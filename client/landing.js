// @ts-check
// The landing page: library and recent tracks, a URL field, the player and
// the code to embed the current track.

import { fetchJson } from "./api.js";
import "./ztream-player.js";
import { formatTime } from "./format.js";
import { componentSnippet, iframeSnippet, oembedUrl, trackUrl, widgetSnippet } from "./snippets.js";

const $ = (sel) => document.querySelector(sel);
const publicUrl = (/** @type {HTMLMetaElement | null} */ (document.querySelector('meta[name="ztream-public-url"]'))?.content || location.origin).replace(/\/+$/, "");
const player = $("#main-player");
const PLAY_ICON = '<svg viewBox="0 0 24 24" aria-hidden="true"><path d="M8 5.14v13.72a1 1 0 0 0 1.5.86l11-6.86a1 1 0 0 0 0-1.72l-11-6.86A1 1 0 0 0 8 5.14z"/></svg>';

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
  list.replaceChildren(
    ...tracks.map((t) => {
      const li = document.createElement("li");
      li.dataset.id = t.id;
      if (current?.id === t.id) li.setAttribute("aria-current", "true");
      const b = document.createElement("button");
      b.className = "p";
      b.type = "button";
      b.innerHTML = PLAY_ICON;
      b.setAttribute("aria-label", `Play ${t.title || t.id}`);
      b.addEventListener("click", () => playTrack(t));
      const title = document.createElement("span");
      title.className = "t";
      title.textContent = t.artist ? `${t.artist} — ${t.title}` : t.title || t.id;
      const source = document.createElement("span");
      source.className = "s";
      source.textContent = t.source;
      const d = document.createElement("span");
      d.className = "d";
      d.textContent = Number.isFinite(t.duration) ? formatTime(t.duration) : "";
      li.append(b);
      // The artwork only of tracks transcoded once (duration known): asking
      // for another's would start its transcode just to draw a list.
      if (t.artwork_url && Number.isFinite(t.duration)) {
        const art = document.createElement("img");
        art.src = t.artwork_url;
        art.alt = "";
        art.width = 32;
        art.height = 32;
        art.loading = "lazy";
        art.style.borderRadius = "4px";
        art.style.objectFit = "cover";
        li.append(art);
      }
      li.append(title, source, d);
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
  player.setAttribute("title-override", track.artist ? `${track.artist} — ${track.title}` : track.title || "");
  player.src = trackUrl(publicUrl, track.id);
  if (autoplay) player.play().catch(() => {});
  renderEmbed(track);
  renderTracks();
  history.replaceState(null, "", `#${encodeURIComponent(track.id)}`);
}

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
    setStatus(status, `Added “${track.title || track.id}”.`);
    if (!tracks.some((t) => t.id === track.id)) tracks = [...tracks, track];
    playTrack(track);
  } catch (err) {
    setStatus(status, err.message, true);
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
player.addEventListener("ready", (e) => {
  const t = tracks.find((x) => x.id === current?.id);
  if (t && e.detail.track?.duration != null && t.duration == null) {
    t.duration = e.detail.track.duration;
    renderTracks();
  }
});

await loadTracks();
const wanted = decodeURIComponent(location.hash.slice(1));
const initial = tracks.find((t) => t.id === wanted);
if (initial) playTrack(initial, { autoplay: false });
