// @ts-check
// A bounded wait: the player never waits on a store that may not answer
// (IndexedDB in a browser that keeps an older page's transaction open).

/**
 * `promise`, or `fallback` when it has not settled within `ms` (or rejects);
 * `late(value)` gets the value of a promise that resolved after the fallback
 * was returned (to close what it opened). No I/O apart from the timer.
 * @template T
 * @param {Promise<T>} promise
 * @param {number} ms
 * @param {T} fallback
 * @param {(value: T) => void} [late]
 * @returns {Promise<T>}
 */
export function within(promise, ms, fallback, late = () => {}) {
  return new Promise((resolve) => {
    let settled = false;
    const timer = setTimeout(() => {
      settled = true;
      resolve(fallback);
    }, ms);
    promise.then(
      (value) => {
        clearTimeout(timer);
        if (settled) late(value);
        else resolve(value);
        settled = true;
      },
      () => {
        clearTimeout(timer);
        if (!settled) resolve(fallback);
        settled = true;
      },
    );
  });
}

