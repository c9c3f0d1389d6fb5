// @ts-check
// The code a site owner pastes to embed a track. Pure string builders.

/**
 * @param {unknown} text
 * @returns {string}
 */
export function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g, (c) => /** @type {Record<string, string>} */ ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

/** @type {(publicUrl: string) => string} */
const base = (publicUrl) => String(publicUrl).replace(/\/+$/, "");

/**
 * @param {string} publicUrl
 * @param {string} id
 */
export function embedUrl(publicUrl, id) {
  return `${base(publicUrl)}/embed/${encodeURIComponent(id)}`;
}

/**
 * @param {string} publicUrl
 * @param {string} id
 */
export function trackUrl(publicUrl, id) {
  return `${base(publicUrl)}/v1/tracks/${encodeURIComponent(id)}`;
}

/**
 * @param {string} publicUrl
 * @param {string} id
 */
export function oembedUrl(publicUrl, id) {
  return `${base(publicUrl)}/oembed?url=${encodeURIComponent(embedUrl(publicUrl, id))}&format=json`;
}

/**
 * The iframe, as the oEmbed answer gives it.
 * @param {string} publicUrl
 * @param {string} id
 * @param {string} [title]
 * @param {{width?: string | number, height?: string | number}} [size]
 */
export function iframeSnippet(publicUrl, id, title = "", { width = "100%", height = 166 } = {}) {
  return (
    `<iframe width="${escapeHtml(width)}" height="${escapeHtml(height)}" ` +
    `src="${escapeHtml(embedUrl(publicUrl, id))}" title="${escapeHtml(title || "Ztream player")}" ` +
    `frameborder="0" scrolling="no" allow="autoplay" style="border:0"></iframe>`
  );
}

/**
 * @param {string} publicUrl
 * @param {string} id
 */
export function componentSnippet(publicUrl, id) {
  return (
    `<script type="module" src="${escapeHtml(base(publicUrl))}/client/ztream-player.js"></script>\n` +
    `<ztream-player src="${escapeHtml(trackUrl(publicUrl, id))}"></ztream-player>`
  );
}

/**
 * @param {string} publicUrl
 * @param {string} id
 * @param {string} [title]
 */
export function widgetSnippet(publicUrl, id, title = "") {
  return (
    `${iframeSnippet(publicUrl, id, title)}\n` +
    `<script type="module">\n` +
    `  import { Widget } from "${base(publicUrl)}/client/widget.js";\n` +
    `  const widget = new Widget(document.querySelector("iframe"));\n` +
    `  widget.bind(Widget.Events.READY, () => widget.play());\n` +
    `  widget.bind(Widget.Events.PLAY_PROGRESS, (e) => console.log(e.currentPosition));\n` +
    `</script>`
  );
}
