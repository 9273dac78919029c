/* The "Hỏi đáp" panel (templates/answers/_panel.html): asks with fetch and shows
 * the answer as the server streams it (server-sent events over a POST:
 * `token` events append text, the one `final` event replaces it all with the
 * answer as it stays, citations and vote included). Without fetch streams the
 * form posts as usual and the server renders the whole page. No inline code,
 * nothing from another host (CSP-friendly); the messages come from the
 * form's data attributes, translated by the template. */
(function () {
  "use strict";

  function start() {
    var form = document.getElementById("answer-form");
    if (!form || !window.fetch || !window.ReadableStream || !window.TextDecoder) return;
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      ask(form);
    });
  }

  function status(text, className) {
    var p = document.createElement("p");
    p.className = className;
    p.setAttribute("role", className.indexOf("error") >= 0 ? "alert" : "status");
    p.textContent = text;
    return p;
  }

  function ask(form) {
    var out = document.getElementById("answer");
    var button = form.querySelector("button[type=submit]");
    var box = document.createElement("div");
    box.className = "answer answer-streaming";
    var text = document.createElement("div");
    text.className = "answer-text";
    var waiting = status(form.dataset.waiting || "…", "muted answer-waiting");
    box.appendChild(text);
    box.appendChild(waiting);
    out.replaceChildren(box);
    button.disabled = true;
    var finished = false;

    function show(html) {
      out.innerHTML = html; // rendered by the portal (escaped there)
      if (window.htmx) window.htmx.process(out); // the vote buttons post through htmx
      finished = true;
    }

    function broken() {
      // the stream ended before the answer did: keep no half answer on the page
      out.replaceChildren(status(form.dataset.broken || "!", "error answer-error"));
    }

    function handle(block) {
      var name = "message", data = "";
      block.split("\n").forEach(function (line) {
        if (line.indexOf("event:") === 0) name = line.slice(6).trim();
        else if (line.indexOf("data:") === 0) data += line.slice(5).trim();
      });
      if (!data) return;
      var payload = JSON.parse(data);
      if (name === "token") {
        text.appendChild(document.createTextNode(payload.text));
      } else if (name === "final") {
        show(payload.html);
      }
    }

    fetch(form.action, {
      method: "POST",
      body: new FormData(form),
      credentials: "same-origin",
      headers: {"Accept": "text/event-stream", "HX-Request": "true"}
    }).then(function (response) {
      var type = response.headers.get("Content-Type") || "";
      if (!response.ok || type.indexOf("text/event-stream") !== 0) {
        return response.text().then(show); // a message in place of the answer (400, 429, 503)
      }
      var reader = response.body.getReader();
      var decoder = new TextDecoder();
      var buffer = "";
      function pump() {
        return reader.read().then(function (chunk) {
          if (chunk.done) {
            buffer += decoder.decode();
            if (buffer.trim()) handle(buffer);
            if (!finished) broken();
            return;
          }
          buffer += decoder.decode(chunk.value, {stream: true});
          var blocks = buffer.split("\n\n");
          buffer = blocks.pop();
          blocks.forEach(handle);
          return pump();
        });
      }
      return pump();
    }).catch(function () {
      if (!finished) broken();
    }).then(function () {
      button.disabled = false;
    });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
