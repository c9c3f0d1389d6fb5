// @ts-check
// Listeners' consent and limits: whether this listener uploads, and how fast.
// Pure: no DOM, no storage, no clock (`now` is an argument).
// peer/upload.py is its Python twin; tests/vectors/upload/cases.json pins both.
//
// Theory of operation
// -------------------
// Three parties may forbid uploading; the strictest wins, and only the
// listener can lift a rule meant for the listener's own good:
//
//   operator   p2p.upload, told in the welcome (`welcome.upload`): "on",
//              "opt-in" or "off"; absent (an older gateway): "on"
//   embed      the page's `data-upload` attribute (`/embed/{id}?upload=`,
//              `/player/?upload=`): it can only be stricter than the operator
//   listener   "share" (said yes: the prompt, or "Share anyway") or "stop"
//              (pressed "Stop sharing"), remembered by the player; null: said nothing
//
// plus the connection: on a metered or save-data connection
// (`navigator.connection.saveData`, `type == "cellular"` where the browser
// exposes it) a listener uploads only after saying "share".
//
// `decideUpload` answers {share, ask, canShare, reason}:
//   share     upload now (announce what is held, serve neighbours' requests)
//   ask       show the opt-in prompt (the operator or the embed said "opt-in"
//             and the listener has not answered)
//   canShare  the listener may turn sharing on (false when "off" rules it out)
//   reason    why: "operator" | "embed" (an "off"), "listener" (the
//             listener's own choice), "metered", "opt-in" (waiting for an
//             answer), "on" (the default: sharing)
//
// A listener who does not share still downloads from peers: only announcing
// and serving stop (client/p2p.js, `setUpload`).
//
// `UploadBudget` is the upload cap (p2p.upload_kbps, `welcome.limits.upload_kbps`):
// a token bucket in bytes, refilled at the cap, holding at most `burstSeconds`
// of it. A chunk may start being served while the bucket is not empty; what it
// sends is then taken, possibly into debt, and the next chunk waits until the
// debt is paid back. So over any `w` seconds at most rate × (w + burstSeconds)
// bytes plus one chunk leave: whole chunks, since a requester verifies whole
// chunks, never pieces paced one by one.

/** The policies, least strict first. */
export const POLICIES = Object.freeze(/** @type {const} */ (["on", "opt-in", "off"]));

/** @typedef {"on" | "opt-in" | "off"} Policy */
/** @typedef {"share" | "stop" | null} Choice */
/**
 * @typedef {{share: boolean, ask: boolean, canShare: boolean,
 *   reason: "operator" | "embed" | "listener" | "metered" | "opt-in" | "on"}} Decision
 */

/** How many seconds of the cap the budget holds at most (the burst a chunk may take at once). */
export const UPLOAD_BURST_SECONDS = 2;

/**
 * A policy as said by the operator or the page: null when not said (absent or
 * empty), else the policy; any other value (a newer gateway's, a typo) reads
 * as the strictest, "off".
 * @param {unknown} value
 * @returns {Policy | null}
 */
export function policyOf(value) {
  if (value === undefined || value === null || value === "") return null;
  return POLICIES.includes(/** @type {any} */ (value)) ? /** @type {Policy} */ (value) : "off";
}

/**
 * The stricter of two policies (null: not said, "on").
 * @param {Policy | null} a
 * @param {Policy | null} b
 * @returns {Policy}
 */
export function stricter(a, b) {
  const ia = POLICIES.indexOf(a ?? "on");
  const ib = POLICIES.indexOf(b ?? "on");
  return POLICIES[Math.max(ia, ib)];
}

/**
 * Whether a connection is metered or asks to save data: `navigator.connection`
 * (Network Information API; Chromium has it, Firefox and Safari do not).
 * @param {unknown} connection
 * @returns {boolean}
 */
export function metered(connection) {
  if (!connection || typeof connection !== "object") return false;
  const c = /** @type {{saveData?: unknown, type?: unknown}} */ (connection);
  return c.saveData === true || c.type === "cellular";
}

/**
 * Whether this listener uploads now, and whether to ask.
 * @param {{operator?: unknown, embed?: unknown, metered?: boolean, choice?: Choice}} facts
 * @returns {Decision}
 */
export function decideUpload({ operator = null, embed = null, metered: isMetered = false, choice = null }) {
  const byOperator = policyOf(operator);
  const byEmbed = policyOf(embed);
  const policy = stricter(byOperator, byEmbed);
  if (policy === "off") {
    return { share: false, ask: false, canShare: false, reason: byOperator === "off" ? "operator" : "embed" };
  }
  if (choice === "stop") return { share: false, ask: false, canShare: true, reason: "listener" };
  if (choice === "share") return { share: true, ask: false, canShare: true, reason: "listener" };
  if (isMetered) return { share: false, ask: policy === "opt-in", canShare: true, reason: "metered" };
  if (policy === "opt-in") return { share: false, ask: true, canShare: true, reason: "opt-in" };
  return { share: true, ask: false, canShare: true, reason: "on" };
}

/**
 * The cap to keep: the stricter of two (kbit/s, 0 or less: none).
 * @param {number} a
 * @param {number} b
 * @returns {number}
 */
export function stricterCap(a, b) {
  if (!(a > 0)) return b > 0 ? b : 0;
  if (!(b > 0)) return a;
  return Math.min(a, b);
}

/** The upload cap: a token bucket of bytes (see the theory above). */
export class UploadBudget {
  /**
   * @param {number} kbps the cap in kbit/s (0: none)
   * @param {number} [burstSeconds]
   */
  constructor(kbps, burstSeconds = UPLOAD_BURST_SECONDS) {
    this.burstSeconds = burstSeconds;
    this.kbps = 0;
    this.rate = 0; // bytes a second
    this.capacity = 0;
    this.tokens = 0;
    /** @type {number | null} */
    this.at = null; // when `tokens` was last brought up to date
    this.setCap(kbps);
  }

  /**
   * A new cap (the welcome's): the bucket starts full at it.
   * @param {number} kbps
   */
  setCap(kbps) {
    this.kbps = kbps > 0 ? kbps : 0;
    this.rate = this.kbps * 125; // 1000 / 8
    this.capacity = this.rate * this.burstSeconds;
    this.tokens = this.capacity;
    this.at = null;
  }

  /** @param {number} now */
  refill(now) {
    if (this.at !== null && now > this.at) this.tokens = Math.min(this.capacity, this.tokens + (now - this.at) * this.rate);
    if (this.at === null || now > this.at) this.at = now;
  }

  /**
   * Whether a chunk may start being served now.
   * @param {number} now
   * @returns {boolean}
   */
  canStart(now) {
    if (this.kbps === 0) return true;
    this.refill(now);
    return this.tokens > 0;
  }

  /**
   * `bytes` were sent now.
   * @param {number} bytes
   * @param {number} now
   */
  spend(bytes, now) {
    if (this.kbps === 0) return;
    this.refill(now);
    this.tokens -= bytes;
  }

  /**
   * When (same clock) the next chunk may start: `now` if it may now.
   * @param {number} now
   * @returns {number}
   */
  readyAt(now) {
    if (this.canStart(now)) return now;
    return now + -this.tokens / this.rate;
  }
}

/**
 * Bytes for people: "0 B", "950 B", "12 kB", "1.2 MB", "3.4 GB" (SI, as file managers show them).
 * @param {number} bytes
 * @returns {string}
 */
export function formatBytes(bytes) {
  const n = Math.max(0, Math.floor(Number(bytes) || 0));
  if (n < 1000) return `${n} B`;
  const units = ["kB", "MB", "GB", "TB"];
  let v = n / 1000;
  let u = 0;
  while (v >= 1000 && u < units.length - 1) {
    v /= 1000;
    u += 1;
  }
  return `${v < 10 ? v.toFixed(1) : Math.round(v)} ${units[u]}`;
}

/**
 * @typedef {{mode: "hidden" | "prompt" | "sharing" | "stopped", text: string, action: "share" | "stop" | null, actionLabel: string}} ShareView
 */

/**
 * What the player shows of its sharing: nothing (no decision yet, or "off"
 * rules it out), the opt-in prompt, what it shares and a way to stop, or
 * that it does not share and a way to start.
 * @param {Decision | null} decision
 * @param {{upBytes?: number, kbps?: number | null}} [facts] bytes uploaded so far, the cap
 * @returns {ShareView}
 */
export function shareView(decision, { upBytes = 0, kbps = null } = {}) {
  if (!decision || !decision.canShare) return { mode: "hidden", text: "", action: null, actionLabel: "" };
  if (decision.ask) {
    const cap = kbps && kbps > 0 ? `up to ${kbps} kbit/s of your upload` : "some of your upload";
    const note = decision.reason === "metered" ? " (You seem to be on a metered connection.)" : "";
    return {
      mode: "prompt",
      text: `Share this audio with other listeners? It uses ${cap}, and they see your IP address.${note}`,
      action: "share",
      actionLabel: "Share",
    };
  }
  if (decision.share) return { mode: "sharing", text: `Sharing: ${formatBytes(upBytes)} sent`, action: "stop", actionLabel: "Stop sharing" };
  const why = decision.reason === "metered" ? " (metered connection)" : "";
  return { mode: "stopped", text: `Not sharing${why}`, action: "share", actionLabel: "Share" };
}
