// The ACE console's progressive enhancement: every page works without it.
(function () {
  "use strict";
  // a form that changes what agents read asks first, and cannot be sent twice
  document.querySelectorAll("form[data-confirm]").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      if (!window.confirm(form.getAttribute("data-confirm"))) { event.preventDefault(); }
    });
  });
  document.querySelectorAll("form[method=post]").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      if (event.defaultPrevented) { return; }
      form.querySelectorAll("button[type=submit]").forEach(function (b) { b.disabled = true; });
    });
  });
  // approving part of a change turns the unchecked versions down: then the reason is required
  var approve = document.getElementById("approve");
  var reason = document.getElementById("approve-reason");
  var keeps = document.querySelectorAll("input[name=keep][form=approve]");
  if (approve && reason && keeps.length) {
    var needReason = function () {
      reason.required = Array.prototype.some.call(keeps, function (k) { return !k.checked; });
    };
    keeps.forEach(function (k) { k.addEventListener("change", needReason); });
    needReason();
  }
  // filter the bullets of this page as you type (the search button asks the server for every page)
  var filter = document.querySelector("input[data-filter]");
  if (filter) {
    var table = document.getElementById(filter.getAttribute("data-filter"));
    filter.addEventListener("input", function () {
      var needle = filter.value.trim().toLowerCase();
      table.querySelectorAll("tr.bullet").forEach(function (row) {
        row.classList.toggle("hide", needle !== "" && row.textContent.toLowerCase().indexOf(needle) < 0);
      });
    });
  }
  // copy the prompt an agent reads
  document.querySelectorAll("button[data-copy]").forEach(function (button) {
    var source = document.getElementById(button.getAttribute("data-copy"));
    if (!source || !navigator.clipboard) { return; }
    button.hidden = false;
    button.addEventListener("click", function () {
      navigator.clipboard.writeText(source.textContent).then(function () { button.textContent = "Copied"; });
    });
  });
  // a queue with work in progress refreshes itself
  var live = document.querySelector("[data-refresh]");
  if (live) {
    window.setTimeout(function () { window.location.reload(); }, 1000 * Number(live.getAttribute("data-refresh")));
  }
})();
