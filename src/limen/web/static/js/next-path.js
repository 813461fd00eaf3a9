// Where the sign-in page goes once signed in: the `next` it was given, when that is a page of this site.
// The browser's own URL parser decides, not string prefixes: it drops tabs and new lines and reads `\` as
// `/`, so "/\t/evil.example" is "//evil.example" (another site) to it whatever the string starts with.
// Pure: tested in web/tests/next-path.test.mjs.

/** ``value`` as a path of ``origin`` (with its query and fragment), or "/" for anything that leaves it. */
export function safeNext(value, origin) {
  if (typeof value !== "string" || !value.startsWith("/")) return "/";
  let url;
  try {
    url = new URL(value, origin);
  } catch {
    return "/";
  }
  if (url.origin !== new URL(origin).origin || url.pathname.startsWith("/login")) return "/";
  return `${url.pathname}${url.search}${url.hash}`;
}
