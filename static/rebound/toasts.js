// Toasts: the server asks for one with an HX-Trigger header {"toast": {level, message}}.
(function () {
  function show(level, message) {
    var box = document.getElementById("toasts");
    if (!box) return;
    var toast = document.createElement("div");
    toast.className = "toast toast-" + level;
    toast.setAttribute("role", "status");
    toast.textContent = message;
    box.appendChild(toast);
    setTimeout(function () { toast.remove(); }, 6000);
  }
  document.addEventListener("toast", function (event) {
    show(event.detail.level || "info", event.detail.message || "");
  });
  document.addEventListener("htmx:responseError", function (event) {
    // A refusal that says why (a 429 with its own toast) needs no second, vaguer one.
    var trigger = event.detail.xhr && event.detail.xhr.getResponseHeader("HX-Trigger");
    if (trigger && trigger.indexOf("toast") !== -1) return;
    show("error", "Something went wrong. Please try again.");
  });
  document.addEventListener("htmx:sendError", function () {
    show("error", "Could not reach Rebound. Check your connection and try again.");
  });
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("#toasts .toast").forEach(function (toast) {
      setTimeout(function () { toast.remove(); }, 6000);
    });
  });
})();
