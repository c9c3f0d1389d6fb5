// @ts-check
// The reader of the gateway's JSON error contract (docs/http.md, "Errors"):
// a failed answer has the status of the error table and the body
// `{"error": "<code>", "detail": "<human text>"}`; `error` is the contract,
// `detail` is for people. 503 `overloaded`/`storage_unavailable`/
// `soundcloud_rate_limited` and 429 `rate_limited` also say in `Retry-After`
// how many whole seconds until a retry can succeed.
//
// `fetchJson` fetches and reads a JSON answer, or rejects with an `ApiError`
// carrying that contract; the pages (landing.js, admin.js) and the player core
// (player.js) all go through it. A failed fetch (network, abort) rejects with
// the fetch's own error.

/** A failed answer of the gateway, or a failure the player reports the same way. */
export class ApiError extends Error {
  /**
   * @param {number} status the HTTP status; 0 when there was no HTTP answer
   * @param {string} [code] the contract's code; `http_<status>` when the answer had none
   * @param {string} [detail] the contract's human text; the message is `HTTP <status>` without it
   * @param {number | null} [retryAfter] whole seconds from `Retry-After`, else null
   */
  constructor(status, code, detail, retryAfter = null) {
    super(detail || `HTTP ${status}`);
    /** @type {number} */
    this.status = status;
    /** @type {string} */
    this.code = code || `http_${status}`;
    /** @type {string} */
    this.detail = detail || "";
    /** @type {number | null} */
    this.retryAfter = retryAfter;
  }
}

/**
 * `Retry-After` as whole seconds (the only form the gateway sends), else null.
 * @param {string | null} value
 * @returns {number | null}
 */
export function retryAfterSeconds(value) {
  const text = value?.trim() ?? "";
  return /^\d+$/.test(text) ? Number(text) : null;
}

/**
 * The `ApiError` of a failed answer: its status, and the code and detail of
 * its JSON body when it has one (`http_<status>` and `HTTP <status>` else).
 * @param {Response} response
 * @returns {Promise<ApiError>}
 */
export async function errorOf(response) {
  /** @type {unknown} */
  let body = null;
  try {
    body = await response.json();
  } catch {
    /* empty or not JSON */
  }
  const fields = body !== null && typeof body === "object" ? /** @type {Record<string, unknown>} */ (body) : {};
  const code = typeof fields.error === "string" ? fields.error : undefined;
  const detail = typeof fields.detail === "string" ? fields.detail : undefined;
  return new ApiError(response.status, code, detail, retryAfterSeconds(response.headers.get("Retry-After")));
}

/**
 * Fetch `url` and read its JSON body.
 * @param {string | URL} url
 * @param {RequestInit} [init] passed to fetch as is
 * @param {typeof fetch} [fetchImpl] the fetch to use (tests, or a page's own)
 * @returns {Promise<any>} the parsed body, null when the answer has none
 * @throws {ApiError} when the answer is not 2xx; a SyntaxError when a 2xx body is not JSON
 */
export async function fetchJson(url, init = {}, fetchImpl = undefined) {
  const response = await (fetchImpl ?? fetch)(url, init);
  if (!response.ok) throw await errorOf(response);
  const text = await response.text();
  return text === "" ? null : JSON.parse(text);
}
