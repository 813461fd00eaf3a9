// A classic script, run in every page's <head> before the page's modules: a form here is sent by its page's
// script (fetch), never by the browser. A submit the browser sent itself reloaded the page with what was typed
// in the address bar (a password too, on the sign-in page) and in the server's log, and lost it from the form.
// That happened when a form's button was pressed before the page's module had wired the form: modules run after
// the page is parsed, and some pages wire their forms only after a first request (who is signed in).
// So no form but a dialog's is ever sent by the browser; a submit that comes before its page took the form is
// held, and dom.js's takeForm() sends it once the form is wired.
"use strict";
document.addEventListener("submit", (event) => {
  const form = event.target;
  if (!(form instanceof HTMLFormElement) || form.method === "dialog") return;
  event.preventDefault();
  if (form.dataset.taken !== "true") form.dataset.heldSubmit = event.submitter ? event.submitter.id : "";
}, true);
