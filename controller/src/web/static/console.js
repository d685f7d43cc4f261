// Progressive behaviour only: every page works without it.
"use strict";
document.addEventListener("submit", (e) => {
  const b = e.submitter;
  const q = b && b.dataset ? b.dataset.confirm : null;
  if (q && !window.confirm(q)) {
    e.preventDefault();
  }
});

// Live parts: an element with data-events is replaced by each server-sent fragment (rendered
// and escaped by the server) until the stream's `end` event.
for (const el of document.querySelectorAll("[data-events]")) {
  const source = new EventSource(el.dataset.events);
  source.onmessage = (e) => { el.innerHTML = e.data; };
  source.addEventListener("end", (e) => { el.innerHTML = e.data; source.close(); });
}

// Log follow: new lines (rows rendered and escaped by the server) appended as they come.
const followButton = document.getElementById("follow");
if (followButton) {
  followButton.addEventListener("click", () => {
    const table = document.getElementById(followButton.dataset.target);
    const body = table.querySelector("tbody");
    const source = new EventSource(table.dataset.follow);
    source.addEventListener("entry", (e) => {
      body.insertAdjacentHTML("beforeend", e.data);
      while (body.rows.length > 2000) { body.deleteRow(0); }
    });
    // The session ended: the server's notice after the rows, and no reconnecting.
    source.addEventListener("end", (e) => {
      table.insertAdjacentHTML("afterend", e.data);
      source.close();
      followButton.textContent = "Follow ended";
    });
    followButton.disabled = true;
    followButton.textContent = "Following…";
  });
}
