// The console in its own window: the size such a window needs to show the VM's screen at 1:1 under the
// thin toolbar, and the pop-out's address. Pure; tested in web/tests/console-popout.test.mjs.

/** The VM screen size assumed before noVNC has reported one (a VGA console). */
export const DEFAULT_SCREEN = Object.freeze({ width: 1024, height: 768 });
/** The thin toolbar's height before the pop-out has measured its own (it corrects itself once open). */
export const THIN_BAR_PX = 36;
const MIN_WINDOW = Object.freeze({ width: 400, height: 300 });

/** The pop-out's address: the same console page, told to be a pop-out. */
export function popoutUrl(vmId) {
  return `/vms/${encodeURIComponent(vmId)}/console?popout=1`;
}

/** One window per VM: opening it again reuses (and focuses) the window already open. */
export function popoutWindowName(vmId) {
  return `limen-console-${vmId.replace(/[^A-Za-z0-9_-]/g, "_")}`;
}

/**
 * The inner size a window needs for the VM's screen (`screen`, as noVNC draws it: its canvas's width and
 * height) plus the toolbar (`barHeight`), no larger than the room the display offers (`available`) and
 * no smaller than a usable window. An unknown screen size (0 or missing) counts as DEFAULT_SCREEN.
 */
export function popoutSize(screen, barHeight, available) {
  const width = screen && screen.width > 0 ? screen.width : DEFAULT_SCREEN.width;
  const height = screen && screen.height > 0 ? screen.height : DEFAULT_SCREEN.height;
  const clamp = (value, low, high) => Math.round(Math.max(low, Math.min(value, high > 0 ? high : value)));
  return {
    width: clamp(width, MIN_WINDOW.width, available && available.width),
    height: clamp(height + Math.max(0, barHeight), MIN_WINDOW.height, available && available.height),
  };
}

/** The feature string of `window.open` for a pop-out of that inner size. */
export function popoutFeatures(size) {
  return `popup=yes,width=${size.width},height=${size.height}`;
}

/** The VM's screen size as noVNC draws it (its canvas: the framebuffer's width and height), or null. */
export function screenSize(screenElement) {
  const canvas = screenElement.querySelector("canvas");
  if (!canvas || !canvas.width || !canvas.height) return null;
  return { width: canvas.width, height: canvas.height };
}

// When a just-fitted window is checked again: a window still taking its first size (or a window manager)
// can land it a few pixels off. Only in these first moments, so a person's own resize is never fought.
const FIT_CHECKS_MS = [150, 400, 900, 1800];

/**
 * Resizes this window (a pop-out: browsers let a window opened by script resize itself) so its inner
 * size shows the VM's screen at 1:1 under the bar, and checks again a few times in the next moments.
 * Returns the size asked for, or null with no screen yet.
 */
export function fitWindowToScreen(win, screenElement, bar) {
  const size = screenSize(screenElement);
  if (!size) return null;
  const correct = () => {
    const target = popoutSize(size, bar.offsetHeight,
                              { width: win.screen.availWidth, height: win.screen.availHeight });
    // Absolute sizes (the window's frame added), not resizeBy: a check that runs before the last resize
    // has landed asks for the same size again instead of adding the difference twice.
    if (target.width !== win.innerWidth || target.height !== win.innerHeight) {
      win.resizeTo(target.width + win.outerWidth - win.innerWidth, target.height + win.outerHeight - win.innerHeight);
    }
    return target;
  };
  for (const ms of FIT_CHECKS_MS) win.setTimeout(correct, ms);
  return correct();
}

/** Calls `onResize` whenever noVNC resizes its canvas (the guest changed its screen mode). */
export function watchScreenSize(screenElement, onResize) {
  const observer = new MutationObserver(() => onResize());
  observer.observe(screenElement, { subtree: true, childList: true, attributes: true, attributeFilter: ["width", "height"] });
  return observer;
}
