// What a VM's delete says, in the VM list's toast: for a delete made in the list, and for one made on the
// VM's details page, which then leaves for the list (the page is gone: it hands the words to the list
// through the tab's sessionStorage, and the list says them once, as if the delete had been made there).

import { t } from "./i18n.js";

const HANDED_OVER = "limen.vm-deleted";

/** "Deleted web-1 and 2 disk volumes.": `result` is the DELETE's answer (its deleted_volumes). */
export function deletedText(name, result) {
  const volumes = result && Array.isArray(result.deleted_volumes) ? result.deleted_volumes.length : 0;
  if (!volumes) return t("list.deleted", { name });
  return t(volumes > 1 ? "list.deleted_with_volumes" : "list.deleted_with_volume", { name, count: volumes });
}

/** Keeps `text` for the next VM list this tab opens. A storage the browser refuses loses only the words. */
export function handToList(text, storage = globalThis.sessionStorage) {
  try {
    storage.setItem(HANDED_OVER, text);
  } catch {
    // private modes and full storage: the delete happened all the same
  }
}

/** The words a details page handed over, once (null when none). */
export function takeHandedOver(storage = globalThis.sessionStorage) {
  try {
    const text = storage.getItem(HANDED_OVER);
    storage.removeItem(HANDED_OVER);
    return text;
  } catch {
    return null;
  }
}
