// @ts-check
// The admin page: sign in with the admin token, see live figures with a small
// self-updating chart, edit the sources, see and search the tracks (state,
// last error), reload the config file, purge a track.
// Same-origin only: every request goes to this page's own gateway.

import { ApiError, fetchJson } from "./api.js";

const TOKEN_KEY = "ztream-admin-token";
const POLL_MS = 2000;
const SAMPLES = 90; // three minutes of 2 s samples
const CHART = { width: 600, top: 10, bottom: 150 };

const $ = (sel) => document.querySelector(sel);

// -- pure helpers -----------------------------------------------------------------

/** 1536 → "1.5 KiB". */
export function formatBytes(n) {
  if (!Number.isFinite(n) || n < 0) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i += 1;
  }
  return `${i === 0 ? n : n.toFixed(1)} ${units[i]}`;
}

/** 0.8123 → "81.2 %"; null → "–". */
export function formatShare(x) {
  return Number.isFinite(x) ? `${(x * 100).toFixed(1)} %` : "–";
}

/**
 * The peers' share of the bytes between two stats answers; with no bytes
 * moved, the previous share (or the all-time one) carries on.
 */
export function intervalShare(prev, next, carried) {
  if (prev) {
    const dPeer = next.peer_bytes - prev.peer_bytes;
    const dServer = next.server_bytes - prev.server_bytes;
    if (dPeer >= 0 && dServer >= 0 && dPeer + dServer > 0) return dPeer / (dPeer + dServer);
  }
  return Number.isFinite(carried) ? carried : Number.isFinite(next.offload) ? next.offload : 0;
}

/** SVG polyline points for values in [0, max], newest at the right edge. */
export function chartPoints(values, max, { width, top, bottom } = CHART, capacity = SAMPLES) {
  const step = width / Math.max(capacity - 1, 1);
  const x0 = width - (values.length - 1) * step;
  return values
    .map((v, i) => {
      const y = bottom - (Math.min(Math.max(v, 0), max) / max) * (bottom - top);
      return `${(x0 + i * step).toFixed(1)},${y.toFixed(1)}`;
    })
    .join(" ");
}

// -- talking to the gateway --------------------------------------------------------

let token = sessionStorage.getItem(TOKEN_KEY) || "";

/**
 * @param {string} path
 * @param {{method?: string, body?: unknown}} [options] `body` is sent as JSON
 */
async function api(path, { method = "GET", body } = {}) {
  const headers = { Accept: "application/json", Authorization: `Bearer ${token}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  return fetchJson(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    cache: "no-store",
    credentials: "omit",
  });
}

function setStatus(el, text, kind = "") {
  el.textContent = text;
  el.classList.toggle("error", kind === "error");
  el.classList.toggle("ok", kind === "ok");
}

// -- signing in and out -------------------------------------------------------------

let pollTimer = null;

function showDashboard(on) {
  $("#signin").hidden = on;
  $("#dashboard").hidden = !on;
  $("#signout").hidden = !on;
  if (on && pollTimer === null) {
    pollStats();
    pollTimer = setInterval(pollStats, POLL_MS);
  } else if (!on && pollTimer !== null) {
    clearInterval(pollTimer);
    pollTimer = null;
  }
}

function signOut(message = "", kind = "") {
  token = "";
  sessionStorage.removeItem(TOKEN_KEY);
  showDashboard(false);
  setStatus($("#signin-status"), message, kind);
  $("#token").focus();
}

function handleAuthError(err) {
  if (err instanceof ApiError && [401, 403, 404, 429].includes(err.status)) {
    signOut(err.status === 403 ? "Wrong token." : err.message, "error");
    return true;
  }
  return false;
}

async function signIn(candidate) {
  token = candidate;
  const sources = await api("/v1/admin/sources");
  sessionStorage.setItem(TOKEN_KEY, token);
  renderSources(sources);
  setStatus($("#signin-status"), "");
  showDashboard(true);
  loadTracks();
}

$("#signin-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const value = $("#token").value.trim();
  if (!value) return;
  const button = $("#signin-button");
  button.disabled = true;
  setStatus($("#signin-status"), "Signing in…");
  try {
    await signIn(value);
    $("#token").value = "";
  } catch (err) {
    if (!handleAuthError(err)) signOut(err.message, "error");
  } finally {
    button.disabled = false;
  }
});

$("#signout").addEventListener("click", () => signOut("Signed out."));

// -- live figures and the chart -----------------------------------------------------

const samples = { offload: [], peers: [] };
let lastStats = null;

function push(list, value) {
  list.push(value);
  if (list.length > SAMPLES) list.shift();
}

function drawChart() {
  const peersMax = Math.max(1, ...samples.peers);
  $("#peers-max").textContent = String(peersMax);
  $("#line-offload").setAttribute("points", chartPoints(samples.offload, 1));
  $("#line-peers").setAttribute("points", chartPoints(samples.peers, peersMax));
}

function renderStats(stats) {
  $("#fig-offload").textContent = formatShare(stats.offload);
  $("#fig-peers").textContent = String(stats.peers_connected);
  $("#fig-cache").textContent = formatBytes(stats.cache_bytes);
  $("#fig-transcodes").textContent = `${stats.transcodes_running} / ${stats.transcodes_total}`;
  $("#fig-tracks").textContent = String(stats.tracks);
  $("#fig-bytes").textContent = `${formatBytes(stats.server_bytes)} / ${formatBytes(stats.peer_bytes)}`;
  const p2p = stats.p2p;
  if (p2p) {
    const c = p2p.connections;
    $("#fig-connected").textContent = `${c.host} / ${c.srflx} / ${c.prflx} / ${c.relay} / ${c.unknown ?? 0}`;
    $("#fig-failed").textContent = `${c.failed} / ${c.timeout}`;
    $("#fig-alone").textContent = `${p2p.without_neighbours} of ${stats.peers_connected}`;
    $("#fig-relay").textContent = formatBytes(p2p.relay_bytes);
    const s = p2p.peer_bytes_by_scope;
    if (s) {
      const known = s.same_lan + s.same_network + s.other;
      const near = known > 0 ? formatShare((s.same_lan + s.same_network) / known) : "–";
      $("#fig-scope").textContent = `${near} (${[s.same_lan, s.same_network, s.other, s.unknown].map(formatBytes).join(" / ")})`;
    }
    $("#fig-stun").textContent = `${p2p.stun.ok} / ${p2p.stun.ignored} / ${p2p.stun.rate_limited}`;
  }
  const carried = samples.offload.at(-1);
  push(samples.offload, intervalShare(lastStats, stats, carried));
  push(samples.peers, stats.peers_connected);
  lastStats = stats;
  drawChart();
  $("#stats-status").textContent = `at ${new Date(stats.time * 1000).toLocaleTimeString()}`;
}

let polling = false;

async function pollStats() {
  if (polling || !token) return;
  polling = true;
  try {
    renderStats(await api("/v1/admin/stats"));
  } catch (err) {
    if (!handleAuthError(err)) $("#stats-status").textContent = `stats unavailable: ${err.message}`;
  } finally {
    polling = false;
  }
}

// -- sources ------------------------------------------------------------------------

let hosts = [];
let secretSet = false;

function renderHosts() {
  const list = $("#hosts");
  if (hosts.length === 0) {
    const li = document.createElement("li");
    li.className = "none";
    li.textContent = "any public host";
    list.replaceChildren(li);
    return;
  }
  list.replaceChildren(
    ...hosts.map((host, i) => {
      const li = document.createElement("li");
      li.dataset.host = host;
      const name = document.createElement("span");
      name.textContent = host;
      const remove = document.createElement("button");
      remove.type = "button";
      remove.textContent = "×";
      remove.setAttribute("aria-label", `Remove ${host}`);
      remove.addEventListener("click", () => {
        hosts.splice(i, 1);
        renderHosts();
      });
      li.append(name, remove);
      return li;
    }),
  );
}

function renderSources(s) {
  hosts = [...s.url.allow_hosts];
  renderHosts();
  $("#url-max-bytes").value = s.url.max_bytes;
  $("#url-max-duration").value = s.url.max_duration_seconds;
  $("#url-connect-timeout").value = s.url.connect_timeout;
  $("#url-read-timeout").value = s.url.read_timeout;
  $("#local-dirs").value = s.local.dirs.join("\n");
  $("#sc-client-id").value = s.soundcloud.client_id;
  secretSet = Boolean(s.soundcloud.client_secret?.set);
  const secret = $("#sc-client-secret");
  secret.value = "";
  secret.placeholder = secretSet ? "set (hidden)" : "not set";
  $("#sc-clear-secret").checked = false;
  $("#sc-clear-secret").disabled = !secretSet;
  $("#sc-api-base").value = s.soundcloud.api_base;
  $("#sc-auth-base").value = s.soundcloud.auth_base;
  $("#saved-to").textContent = s.saved_to;
}

function addHost() {
  const input = $("#host-new");
  const host = input.value.trim();
  if (!host) return;
  if (!hosts.includes(host)) hosts.push(host);
  input.value = "";
  renderHosts();
}

$("#host-add").addEventListener("click", addHost);
$("#host-new").addEventListener("keydown", (e) => {
  if (e.key === "Enter") {
    e.preventDefault();
    addHost();
  }
});

function numberField(sel) {
  const raw = $(sel).value.trim();
  return raw === "" ? undefined : Number(raw);
}

function sourcesBody() {
  const url = { allow_hosts: hosts };
  for (const [key, sel] of [
    ["max_bytes", "#url-max-bytes"],
    ["max_duration_seconds", "#url-max-duration"],
    ["connect_timeout", "#url-connect-timeout"],
    ["read_timeout", "#url-read-timeout"],
  ]) {
    const value = numberField(sel);
    if (value !== undefined) url[key] = value;
  }
  const dirs = $("#local-dirs").value.split("\n").map((d) => d.trim()).filter(Boolean);
  const soundcloud = {
    client_id: $("#sc-client-id").value.trim(),
    api_base: $("#sc-api-base").value.trim(),
    auth_base: $("#sc-auth-base").value.trim(),
  };
  const secret = $("#sc-client-secret").value;
  if (secret) soundcloud.client_secret = secret;
  else if ($("#sc-clear-secret").checked) soundcloud.client_secret = "";
  return { url, local: { dirs }, soundcloud };
}

$("#sources-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  if ($("#host-new").value.trim()) addHost();
  const status = $("#sources-status");
  const button = $("#save");
  button.disabled = true;
  setStatus(status, "Saving…");
  try {
    const answer = await api("/v1/admin/sources", { method: "PUT", body: sourcesBody() });
    renderSources(answer);
    const changed = answer.changed?.length ? `changed ${answer.changed.join(", ")}` : "nothing changed";
    setStatus(status, `Saved and applied: ${changed}.`, "ok");
  } catch (err) {
    if (!handleAuthError(err)) setStatus(status, err.message, "error");
  } finally {
    button.disabled = false;
  }
});

$("#try-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const url = $("#try-url").value.trim();
  const status = $("#try-status");
  if (!/^https?:\/\//i.test(url)) {
    setStatus(status, "Enter an http(s) URL.", "error");
    return;
  }
  setStatus(status, "Trying…");
  try {
    const body = await fetchJson("/v1/tracks", {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify({ url }),
      credentials: "omit",
    });
    setStatus(status, `Accepted: track ${body.id} (“${body.title}”).`, "ok");
    $("#try-status").dataset.trackId = body.id;
    loadTracks();
  } catch (err) {
    if (err instanceof ApiError) setStatus(status, `Refused (${err.status} ${err.code}): ${err.detail}`, "error");
    else setStatus(status, err.message, "error");
  }
});

// -- the track list ------------------------------------------------------------------

const STATE_NAMES = { ready: "ready", transcoding: "transcoding", failed: "failed", never_played: "never played" };
let tracksTimer = null;

/** A track's last error as a person reads it: the reason, then the setting that would fix it. */
export function errorText(error) {
  if (!error) return "";
  const detail = error.detail || error.error;
  return error.setting && !detail.includes(error.setting) ? `${detail} (setting: ${error.setting})` : detail;
}

function trackRow(t) {
  const tr = document.createElement("tr");
  tr.dataset.id = t.id;
  tr.dataset.state = t.state;
  const what = document.createElement("td");
  const title = document.createElement("strong");
  title.textContent = t.artist ? `${t.artist} — ${t.title}` : t.title;
  const id = document.createElement("span");
  id.className = "id";
  id.textContent = t.listed ? t.id : `${t.id} · not listed`;
  const where = document.createElement("span");
  where.className = "where";
  where.textContent = t.locator;
  what.append(title, id, where);
  if (t.error) {
    const err = document.createElement("span");
    err.className = "err";
    err.textContent = errorText(t.error);
    what.append(err);
  }
  const source = document.createElement("td");
  source.textContent = t.source;
  const state = document.createElement("td");
  const badge = document.createElement("span");
  badge.className = `state ${t.state}`;
  badge.textContent = STATE_NAMES[t.state] || t.state;
  state.append(badge);
  const actions = document.createElement("td");
  const purge = document.createElement("button");
  purge.type = "button";
  purge.className = "ghost";
  purge.textContent = "Purge";
  purge.setAttribute("aria-label", `Purge ${t.title}`);
  purge.addEventListener("click", () => purgeTrack(t.id, $("#tracks-status")));
  actions.append(purge);
  tr.append(what, source, state, actions);
  return tr;
}

async function loadTracks() {
  const params = new URLSearchParams();
  const q = $("#tracks-q").value.trim();
  const state = $("#tracks-state").value;
  if (q) params.set("q", q);
  if (state) params.set("state", state);
  const query = params.toString();
  try {
    const answer = await api(`/v1/admin/tracks${query ? `?${query}` : ""}`);
    $("#tracks-rows").replaceChildren(...answer.tracks.map(trackRow));
    const s = answer.states;
    const shown = answer.tracks.length < answer.matching ? `, first ${answer.tracks.length} shown` : "";
    const matching = q || state || shown ? ` · ${answer.matching} matching${shown}` : "";
    $("#tracks-count").textContent =
      `${answer.registered} registered, ${answer.listed} listed · ${s.ready} ready, ${s.transcoding} transcoding, ` +
      `${s.failed} failed, ${s.never_played} never played${matching}`;
  } catch (err) {
    if (!handleAuthError(err)) setStatus($("#tracks-status"), err.message, "error");
  }
}

$("#tracks-form").addEventListener("submit", (e) => {
  e.preventDefault();
  loadTracks();
});
$("#tracks-q").addEventListener("input", () => {
  clearTimeout(tracksTimer);
  tracksTimer = setTimeout(loadTracks, 250);
});
$("#tracks-state").addEventListener("change", loadTracks);

async function purgeTrack(id, status) {
  try {
    await api(`/v1/admin/tracks/${encodeURIComponent(id)}`, { method: "DELETE" });
    setStatus(status, `Purged ${id}.`, "ok");
    loadTracks();
    pollStats();
    return true;
  } catch (err) {
    if (!handleAuthError(err)) setStatus(status, err.message, "error");
    return false;
  }
}

// -- maintenance ---------------------------------------------------------------------

$("#reload").addEventListener("click", async () => {
  const status = $("#reload-status");
  setStatus(status, "Reloading…");
  try {
    const answer = await api("/v1/admin/reload", { method: "POST" });
    const parts = [answer.changed.length ? `changed ${answer.changed.join(", ")}` : "no live change"];
    if (answer.restart_required.length) parts.push(`restart required for ${answer.restart_required.join(", ")}`);
    setStatus(status, `Reloaded: ${parts.join("; ")}.`, "ok");
    renderSources(await api("/v1/admin/sources"));
  } catch (err) {
    if (!handleAuthError(err)) setStatus(status, err.message, "error");
  }
});

$("#purge-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const id = $("#purge-id").value.trim();
  const status = $("#purge-status");
  if (!id) return;
  if (await purgeTrack(id, status)) $("#purge-id").value = "";
});

// -- start ------------------------------------------------------------------------------

if (token) {
  signIn(token).catch((err) => {
    if (!handleAuthError(err)) signOut(err.message, "error");
  });
} else {
  $("#token").focus();
}
