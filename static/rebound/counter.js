// Live character counters: a textarea with data-counter="ID" updates the element ID with
// "n / max" as the user types (also after htmx swaps in a new form).
(function () {
  function update(field) {
    var out = document.getElementById(field.dataset.counter);
    if (out) out.textContent = field.value.length + " / " + field.maxLength;
  }
  document.addEventListener("input", function (event) {
    if (event.target.dataset && event.target.dataset.counter) update(event.target);
  });
  function all() { document.querySelectorAll("[data-counter]").forEach(update); }
  document.addEventListener("DOMContentLoaded", all);
  document.addEventListener("htmx:afterSwap", all);
})();
