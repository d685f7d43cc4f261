// Progressive behaviour only: every page works without it.
"use strict";
document.addEventListener("submit", (e) => {
  const b = e.submitter;
  const q = b && b.dataset ? b.dataset.confirm : null;
  if (q && !window.confirm(q)) {
    e.preventDefault();
  }
});
