// The console works without JavaScript; this only adds comfort.
document.addEventListener("DOMContentLoaded", () => {
  // Conversations read from the bottom, like a phone.
  for (const screen of document.querySelectorAll("[data-scroll-end]")) {
    screen.scrollTop = screen.scrollHeight;
  }
  // Ask before irreversible steps.
  for (const form of document.querySelectorAll("form[data-confirm]")) {
    form.addEventListener("submit", (event) => {
      if (!window.confirm(form.dataset.confirm)) event.preventDefault();
    });
  }
});
