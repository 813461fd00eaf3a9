// A tab list the keyboard can move through as WAI-ARIA's tabs pattern says: Left and Right go to the
// previous and next tab (round), Home and End to the first and last; the tab reached is selected. Only the
// selected tab is in the Tab order (a roving tabindex), so Tab leaves the list for what follows it (the
// console's toolbar) in one press.

/** The index of the tab `key` moves to from tab `index` of `count`, or null for a key the list leaves alone. */
export function tabKeyTarget(key, index, count) {
  if (key === "ArrowRight") return (index + 1) % count;
  if (key === "ArrowLeft") return (index - 1 + count) % count;
  if (key === "Home") return 0;
  if (key === "End") return count - 1;
  return null;
}

/** Marks `selected` (one of `tabs`) as the selected tab and the only one Tab reaches. */
export function markSelected(tabs, selected) {
  for (const tab of tabs) {
    tab.setAttribute("aria-selected", String(tab === selected));
    tab.tabIndex = tab === selected ? 0 : -1;
  }
}

/** Arrow keys, Home and End on `tabs` focus the tab they reach and select it with `select(tab)`. */
export function wireTabKeys(tabs, select) {
  tabs.forEach((tab, index) => {
    tab.addEventListener("keydown", (event) => {
      if (event.altKey || event.ctrlKey || event.metaKey || event.shiftKey) return;
      const target = tabKeyTarget(event.key, index, tabs.length);
      if (target === null) return;
      event.preventDefault();
      tabs[target].focus();
      select(tabs[target]);
    });
  });
}
