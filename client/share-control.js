// @ts-check
// The sharing control of <ztream-player>: the opt-in prompt, what this
// listener shares (bytes sent to other listeners) and a button to stop or
// start. The rules are upload-policy.js's (pure); this module is their DOM.
//
//   const share = new ShareControl(hostElement, shadowRoot);
//   new P2PAgent(core, {..., decideUpload: (op) => share.decide(op)});
//   share.attach(agent);   // null when the agent goes
//
// Who decides, strictest first: the operator (the welcome's `upload`), the
// page (`data-upload` on the element: "on", "opt-in", "off"; it can only be
// stricter), the listener (the prompt's "Share" / "Not now", "Stop sharing",
// "Share": remembered in localStorage under "ztream-upload"), and the
// connection (`navigator.connection`: save-data or cellular shares only after
// the listener says so).
//
// Accessibility: the prompt is a labelled group of real buttons, announced
// once through a polite live region; it takes no focus and blocks nothing
// (playing goes on from the server and from peers meanwhile). Buttons are
// 44 px touch targets on coarse pointers.

import { decideUpload, metered, shareView } from "./upload-policy.js";

export const CHOICE_KEY = "ztream-upload";

const STYLE = `
.share-line { display: inline-flex; align-items: baseline; gap: 6px; color: var(--_muted); font-size: 11px; white-space: nowrap; }
.share-line[hidden], .share-prompt[hidden] { display: none; }
.share-live { position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0); white-space: nowrap; }
.share-line button, .share-prompt button {
  font: inherit; color: var(--_accent); background: none; border: 0; padding: 0; cursor: pointer; text-decoration: underline;
  white-space: nowrap; flex: none;
}
/* While asking, the prompt takes the seek bar's place (the play button stays):
   the player's height does not change, so an iframe of the usual 166 px holds it. */
.root.share-asking .controls { display: none; }
.share-prompt {
  display: flex; align-items: center; gap: 4px 10px; min-width: 0;
  padding: 4px 8px; border: var(--_border); border-radius: 6px; font-size: 11px; line-height: 1.3;
}
.share-prompt p { margin: 0; flex: 1 1 auto; min-width: 0; }
@container (max-width: 300px) { .share-prompt { grid-column: 1 / -1; } }
/* narrow: the line goes under the title rather than squeezing it */
@container (max-width: 460px) { .head:has(.share-line:not([hidden])) { flex-wrap: wrap; row-gap: 0; } .share-line { flex-basis: 100%; } }
.share-prompt .share-yes {
  color: var(--_accent-fg); background: var(--_accent); border-radius: 4px; padding: 4px 12px; text-decoration: none; font-weight: 600;
}
.share-line button:focus-visible, .share-prompt button:focus-visible { outline: 2px solid var(--_accent); outline-offset: 2px; }
@media (pointer: coarse) { .share-line button, .share-prompt button { min-height: 44px; min-width: 44px; } }
`;

/**
 * @param {Storage | null} storage
 * @returns {import("./upload-policy.js").Choice}
 */
export function readChoice(storage) {
  try {
    const v = storage?.getItem(CHOICE_KEY);
    return v === "share" || v === "stop" ? v : null;
  } catch {
    return null;
  }
}

/**
 * @param {Storage | null} storage
 * @param {"share" | "stop"} choice
 */
function storeChoice(storage, choice) {
  try {
    storage?.setItem(CHOICE_KEY, choice);
  } catch {
    /* storage refused: the choice holds for this page */
  }
}

function localStore() {
  try {
    return globalThis.localStorage ?? null;
  } catch {
    return null; // a sandboxed frame may throw on the mere access
  }
}

export class ShareControl {
  /**
   * @param {HTMLElement} host the element whose `data-upload` says the page's policy
   * @param {ShadowRoot} root its shadow root: the line goes into `.head`, the prompt into `.root`
   * @param {{storage?: Storage | null, connection?: unknown}} [options]
   */
  constructor(host, root, { storage = localStore(), connection = /** @type {any} */ (globalThis.navigator)?.connection } = {}) {
    this.host = host;
    this.storage = storage;
    this.connection = connection;
    /** @type {import("./upload-policy.js").Choice} */
    this.choice = readChoice(storage);
    /** @type {{upload: string | null, uploadKbps: number | null} | null} */
    this.operator = null;
    /** @type {import("./upload-policy.js").Decision | null} */
    this.decision = null;
    /** @type {import("./transport.js").P2PAgent | null} */
    this.agent = null;
    /** @type {ReturnType<typeof setInterval> | null} */
    this.timer = null;
    const style = document.createElement("style");
    style.textContent = STYLE;
    root.append(style);
    this.line = document.createElement("span");
    this.line.className = "share-line";
    this.line.setAttribute("part", "share");
    this.line.hidden = true;
    this.lineText = document.createElement("span");
    this.lineButton = document.createElement("button");
    this.lineButton.type = "button";
    this.lineButton.className = "share-toggle";
    this.line.append(this.lineText, this.lineButton);
    root.querySelector(".head")?.append(this.line);
    this.prompt = document.createElement("div");
    this.prompt.className = "share-prompt";
    this.prompt.setAttribute("part", "share-prompt");
    this.prompt.setAttribute("role", "group");
    this.prompt.setAttribute("aria-labelledby", "share-prompt-text");
    this.prompt.hidden = true;
    this.promptText = document.createElement("p");
    this.promptText.id = "share-prompt-text";
    this.yes = document.createElement("button");
    this.yes.type = "button";
    this.yes.className = "share-yes";
    this.yes.textContent = "Share";
    this.no = document.createElement("button");
    this.no.type = "button";
    this.no.className = "share-no";
    this.no.textContent = "Not now";
    this.prompt.append(this.promptText, this.yes, this.no);
    const rootEl = root.querySelector(".root");
    (rootEl ?? root).insertBefore(this.prompt, root.querySelector(".playlist"));
    // announced once when the prompt appears (a live region present from the start)
    this.live = document.createElement("span");
    this.live.className = "share-live";
    this.live.setAttribute("aria-live", "polite");
    (rootEl ?? root).append(this.live);
    this.yes.addEventListener("click", () => this.choose("share"));
    this.no.addEventListener("click", () => this.choose("stop"));
    this.lineButton.addEventListener("click", () => this.choose(this.decision?.share ? "stop" : "share"));
  }

  /**
   * Show the line and the prompt elsewhere: a page that hides the player and
   * draws its own interface around it (/player/), and styles `.share-line`,
   * `.share-prompt` and `.share-live` itself.
   * @param {Element} linePlace
   * @param {Element} promptPlace
   */
  mount(linePlace, promptPlace) {
    linePlace.append(this.line);
    promptPlace.append(this.prompt, this.live);
  }

  /**
   * At each welcome (P2PAgent's decideUpload): whether to upload now.
   * @param {{upload: string | null, uploadKbps: number | null}} operator
   * @returns {boolean}
   */
  decide(operator) {
    this.operator = operator;
    this.update();
    return Boolean(this.decision?.share);
  }

  /**
   * The agent whose uploads this control shows and steers (null: none).
   * @param {import("./transport.js").P2PAgent | null} agent
   */
  attach(agent) {
    this.agent = agent;
    if (!agent) {
      this.operator = null;
      this.decision = null;
    }
    clearInterval(this.timer);
    this.timer = agent ? setInterval(() => this.render(), 1000) : null;
    this.render();
  }

  /**
   * The listener chose: remembered, applied now.
   * @param {"share" | "stop"} choice
   */
  choose(choice) {
    this.choice = choice;
    storeChoice(this.storage, choice);
    const was = this.decision?.share;
    this.update();
    if (this.agent && this.decision && this.decision.share !== was) this.agent.setUpload(this.decision.share);
    // the prompt went away under the pointer: keep the keyboard where the choice is shown
    if (!this.line.hidden) this.lineButton.focus({ preventScroll: true });
  }

  /** The decision again (the page's attribute or the listener's choice changed). */
  update() {
    const page = this.host.getAttribute("data-upload");
    this.decision = this.operator
      ? decideUpload({ operator: this.operator.upload, embed: page, metered: metered(this.connection), choice: this.choice })
      : null;
    this.render();
  }

  render() {
    const info = this.agent && this.decision ? this.agent.info() : null;
    const view = shareView(info ? this.decision : null, { upBytes: info?.upBytes ?? 0, kbps: this.operator?.uploadKbps ?? info?.uploadKbps ?? null });
    const prompting = view.mode === "prompt";
    if (prompting && this.prompt.hidden) this.live.textContent = view.text;
    this.prompt.hidden = !prompting;
    this.prompt.parentElement?.classList.toggle("share-asking", prompting);
    if (prompting && this.promptText.textContent !== view.text) this.promptText.textContent = view.text;
    this.line.hidden = view.mode !== "sharing" && view.mode !== "stopped";
    this.line.dataset.mode = view.mode;
    if (!this.line.hidden) {
      if (this.lineText.textContent !== view.text) this.lineText.textContent = view.text;
      this.lineButton.textContent = view.actionLabel;
      this.lineButton.setAttribute("aria-label", view.action === "stop" ? "Stop sharing with other listeners" : "Share with other listeners");
    }
  }

  destroy() {
    this.attach(null);
  }
}
