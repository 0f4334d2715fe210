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
  // Copy buttons (the verifier key): the text of the element named by data-copy.
  for (const button of document.querySelectorAll("button[data-copy]")) {
    button.addEventListener("click", async () => {
      const source = document.querySelector(button.dataset.copy);
      if (!source) return;
      const text = source.textContent.trim();
      try {
        await navigator.clipboard.writeText(text);
      } catch {
        // No clipboard API (plain http): select the text so that Ctrl-C copies it.
        const range = document.createRange();
        range.selectNodeContents(source);
        const selection = window.getSelection();
        selection.removeAllRanges();
        selection.addRange(range);
        return;
      }
      const label = button.textContent;
      button.textContent = button.dataset.copied || label;
      setTimeout(() => { button.textContent = label; }, 2000);
    });
  }
});
