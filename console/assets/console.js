// The console's one script: it keeps the page live. The server says
// "changed" over server-sent events when its watch-fed cache moved; the
// page then fetches the new state once (a burst of changes is one fetch)
// and swaps it in. Without this script the page is a static snapshot.
(function () {
  "use strict";
  if (!window.EventSource || !window.fetch) return;
  var fetching = false, again = false;

  function state() { return document.getElementById("state"); }
  function mark(text, cls) {
    var el = document.getElementById("live");
    if (el) { el.textContent = text; el.className = "live " + cls; }
  }
  var status = ["live", "on"];

  function refresh() {
    if (fetching) { again = true; return; }
    fetching = true;
    fetch("state", {cache: "no-store", credentials: "same-origin"}).then(function (r) {
      if (!r.ok) throw new Error(r.status);
      return r.text();
    }).then(function (html) {
      var old = state();
      if (old) {
        var y = window.scrollY;
        old.outerHTML = html;
        window.scrollTo(0, y);
      }
      mark(status[0], status[1]);
    }).catch(function () {
      mark("reconnecting", "off");
    }).finally(function () {
      fetching = false;
      if (again) { again = false; refresh(); }
    });
  }

  var es = new EventSource("events");
  es.addEventListener("changed", function (e) {
    status = ["live", "on"];
    var cur = state();
    if (cur && cur.getAttribute("data-version") === e.data) { mark("live", "on"); return; }
    refresh();
  });
  es.addEventListener("open", function () { status = ["live", "on"]; mark("live", "on"); });
  es.addEventListener("error", function () { status = ["reconnecting", "off"]; mark("reconnecting", "off"); });
})();
