// The running clock under each code: the node's time when the page was made, advanced by
// the phone's own clock since (a phone set to the wrong time still shows the node's time).
// China Standard Time (UTC+8), the time on the gate's screen. No inline script: this file
// is served by the node itself.
(function () {
  "use strict";
  function pad(n) { return (n < 10 ? "0" : "") + n; }
  function show(ms) {
    var d = new Date(ms + 8 * 3600 * 1000);
    return d.getUTCFullYear() + "-" + pad(d.getUTCMonth() + 1) + "-" + pad(d.getUTCDate()) +
      " " + pad(d.getUTCHours()) + ":" + pad(d.getUTCMinutes()) + ":" + pad(d.getUTCSeconds());
  }
  var base = null;
  function tick() {
    var clocks = document.querySelectorAll("[data-server-ms]");
    for (var i = 0; i < clocks.length; i++) {
      var el = clocks[i];
      var server = Number(el.getAttribute("data-server-ms"));
      if (!el.hasAttribute("data-loaded-ms")) {
        el.setAttribute("data-loaded-ms", String(Date.now()));
      }
      var loaded = Number(el.getAttribute("data-loaded-ms"));
      el.textContent = show(server + (Date.now() - loaded));
    }
  }
  tick();
  setInterval(tick, 1000);
  document.addEventListener("htmx:afterSwap", tick);
})();
