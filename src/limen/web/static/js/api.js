// The REST API as the pages use it: JSON in, JSON out, and every failure as an ApiError with the
// server's fields (error, code, details, message, field) — or limen-side ones when there is no answer.

const DEFAULT_TIMEOUT_MS = 30000;

export class ApiError extends Error {
  constructor(status, body) {
    super(`${body.code}: ${body.details || body.error}`);
    this.status = status;
    this.error = body.error;
    this.code = body.code;
    this.details = body.details || "";
    this.userMessage = body.message || "";
    this.field = body.field || null;
  }

  /** The seed's fields, for errorBox(). */
  get body() {
    return { error: this.error, code: this.code, details: this.details, message: this.userMessage };
  }
}

export async function api(method, path, body = undefined, { timeoutMs = DEFAULT_TIMEOUT_MS } = {}) {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), timeoutMs);
  let response;
  let text;
  try {
    response = await fetch(path, {
      method,
      headers: body === undefined ? { Accept: "application/json" }
        : { Accept: "application/json", "Content-Type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: controller.signal,
    });
    text = await response.text();
  } catch (exc) {
    const timedOut = controller.signal.aborted;
    throw new ApiError(0, {
      error: timedOut ? "limen did not answer" : "Cannot reach limen",
      code: timedOut ? "REQUEST_TIMEOUT" : "NETWORK_ERROR",
      details: timedOut ? `${method} ${path}: no answer within ${timeoutMs / 1000} s` : `${method} ${path}: ${exc}`,
      message: "Check that limen runs and that this computer can reach it, then retry.",
    });
  } finally {
    clearTimeout(timer);
  }
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!response.ok) {
    if (data && typeof data === "object" && data.code) throw new ApiError(response.status, data);
    throw new ApiError(response.status, {
      error: `HTTP ${response.status}`,
      code: `HTTP_${response.status}`,
      details: `${method} ${path}: ${(text || "").slice(0, 500)}`,
      message: "Retry; if it persists, see the limen log.",
    });
  }
  return data;
}

let errorCodes = null;

/** The server's table of error codes (title, message, close_code), fetched once; {} when unavailable. */
export async function loadErrorCodes() {
  if (errorCodes === null) {
    try {
      errorCodes = await api("GET", "/api/error-codes", undefined, { timeoutMs: 5000 });
    } catch {
      return {};
    }
  }
  return errorCodes;
}
