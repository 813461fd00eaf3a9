// The API docs page (Swagger UI) in the user's colour scheme, as every other page of limen. Swagger UI has
// dark colours of its own, drawn under <html class="dark-mode">, and leaves setting that class to the page.
// A classic script in <head>, not a module: the class is there before the first paint (no white flash at
// night), and it follows a change of the system's scheme while the page is open.
{
  const darkScheme = window.matchMedia("(prefers-color-scheme: dark)");
  const followScheme = () => document.documentElement.classList.toggle("dark-mode", darkScheme.matches);
  followScheme();
  darkScheme.addEventListener("change", followScheme);
}
