// tacline console: live panels and the IMEI digit check. The pages work
// without this file; it only refreshes [data-live] panels and helps typing.
"use strict";

(function () {
  // Live panels: reload the fragment every data-every seconds.
  document.querySelectorAll("[data-live]").forEach(function (el) {
    var every = Math.max(2, parseInt(el.getAttribute("data-every"), 10) || 5) * 1000;
    var url = el.getAttribute("data-live");
    function tick() {
      // Not while the page is hidden, nor under a keyboard user's focus
      // (replacing the panel would lose it).
      if (document.hidden || el.contains(document.activeElement)) {
        setTimeout(tick, every);
        return;
      }
      fetch(url, { credentials: "same-origin", cache: "no-store" })
        .then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); })
        .then(function (html) { el.innerHTML = html; el.removeAttribute("aria-busy"); })
        .catch(function () { el.setAttribute("aria-busy", "true"); })
        .finally(function () { setTimeout(tick, every); });
    }
    setTimeout(tick, every);
  });

  // IMEI check digit as the person types (the server checks again).
  var form = document.querySelector("form.check");
  if (!form) { return; }
  var input = form.querySelector("input[name=imei]");
  var live = form.querySelector(".live");
  function luhnOK(d) {
    var sum = 0;
    for (var i = 0; i < 15; i++) {
      var n = d.charCodeAt(i) - 48;
      if (i % 2 === 1) { n *= 2; if (n > 9) { n -= 9; } }
      sum += n;
    }
    return sum % 10 === 0;
  }
  function check() {
    var d = input.value.replace(/[\s-]/g, "");
    var msg = "", bad = false;
    if (d === "") {
      msg = "";
    } else if (!/^[0-9]*$/.test(d) || d.length > 15) {
      msg = form.getAttribute("data-msg-digits").replace("%d", String(d.length)); bad = true;
    } else if (d.length < 15) {
      msg = form.getAttribute("data-msg-digits").replace("%d", String(d.length));
    } else if (!luhnOK(d)) {
      msg = form.getAttribute("data-msg-checkdigit"); bad = true;
    } else {
      msg = form.getAttribute("data-msg-ok");
    }
    live.textContent = msg;
    if (bad) { input.setAttribute("aria-invalid", "true"); } else { input.removeAttribute("aria-invalid"); }
  }
  input.addEventListener("input", check);
})();
