// The console's recording player: asciinema-player (vendored, served beside this file) on
// the element #player. `data-cast` names a recording's asciicast v2 file (playback, with the
// player's seek bar and our speed control); `data-live` an event stream of a live session
// (read-only: the page has no input path). No inline script: the CSP allows only files
// served by the console.
"use strict";
(function () {
  var el = document.getElementById("player");
  if (!el || !window.AsciinemaPlayer) {
    return;
  }
  var speed = document.getElementById("speed");
  var player = null;

  function options(startAt) {
    var opts = { fit: "width", terminalFontSize: "small", controls: true, autoPlay: true };
    if (!el.dataset.live) {
      opts.speed = speed ? parseFloat(speed.value) || 1 : 1;
      if (startAt) {
        opts.startAt = startAt;
      }
    }
    return opts;
  }

  function source() {
    if (el.dataset.live) {
      return { driver: "eventsource", url: el.dataset.live, bufferTime: 0 };
    }
    return el.dataset.cast;
  }

  function start(startAt) {
    player = window.AsciinemaPlayer.create(source(), el, options(startAt));
  }

  start(0);
  if (speed && !el.dataset.live) {
    // The player takes its speed at creation: start again where it was, at the new speed.
    speed.addEventListener("change", function () {
      var old = player;
      Promise.resolve(old.getCurrentTime()).then(function (t) {
        old.dispose();
        el.textContent = "";
        start(t || 0);
      });
    });
  }
})();
