// Copy buttons, and the callback relay's submit: the only script of the pages (CSP: script-src 'self').
document.addEventListener("DOMContentLoaded", () => {
  for (const button of document.querySelectorAll("button[data-copy]")) {
    button.addEventListener("click", async () => {
      const field = document.getElementById(button.dataset.copy);
      field.select();
      try { await navigator.clipboard.writeText(field.value); } catch (e) { document.execCommand("copy"); }
      button.textContent = "Copied";
    });
  }
  const relay = document.querySelector("form[data-autosubmit]");
  if (relay) relay.submit();
});
