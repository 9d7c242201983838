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

  // Ages ("held 3m07s ago") go on counting between changes.
  function pad(n) { return (n < 10 ? "0" : "") + n; }
  function age(s) {
    if (s < 60) return s + "s";
    if (s < 3600) return Math.floor(s / 60) + "m" + pad(s % 60) + "s";
    if (s < 86400) return Math.floor(s / 3600) + "h" + pad(Math.floor(s % 3600 / 60)) + "m";
    return Math.floor(s / 86400) + "d" + pad(Math.floor(s % 86400 / 3600)) + "h";
  }
  setInterval(function () {
    var now = Date.now(), ts = document.querySelectorAll("time[datetime]");
    for (var i = 0; i < ts.length; i++) {
      var t = Date.parse(ts[i].getAttribute("datetime"));
      if (!isNaN(t)) ts[i].textContent = age(Math.max(0, Math.floor((now - t) / 1000))) + " ago";
    }
  }, 1000);

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
