// Follows a running deploy: polls /deploys/{id}.json and swaps in the live
// part of the page the server rendered, until the deploy is final.
(function () {
  "use strict";
  var live = document.getElementById("live");
  if (!live || live.dataset.final === "true") return;
  var url = location.pathname.replace(/\/$/, "") + ".json";
  var last = "";
  var delay = 1500;
  function poll() {
    fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin", cache: "no-store" })
      .then(function (r) {
        if (r.status === 401) { location.reload(); throw new Error("signed out"); }
        if (!r.ok) throw new Error("HTTP " + r.status);
        return r.json();
      })
      .then(function (d) {
        if (d.html !== last) { live.innerHTML = d.html; last = d.html; }
        live.dataset.final = String(d.final);
        delay = 1500;
        if (!d.final) setTimeout(poll, delay);
      })
      .catch(function () { delay = Math.min(delay * 2, 15000); setTimeout(poll, delay); });
  }
  setTimeout(poll, delay);
})();
