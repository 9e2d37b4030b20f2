// The inspector's only script: new requests appear in the list as they are recorded
// (server-sent events from /_inspector/events), and EXPLAIN buttons fetch a plan.
// Every text is set with textContent, never parsed as HTML.
(function () {
  "use strict";
  var prefix = "/_inspector";
  function ms(us) { return (us / 1000).toFixed(3) + " ms"; }
  function cell(row, text, className) {
    var td = document.createElement("td");
    if (className) { td.className = className; }
    if (text !== null) { td.textContent = text; }
    row.appendChild(td);
    return td;
  }
  function badge(parent, className, text, title) {
    var span = document.createElement("span");
    span.className = "badge " + className;
    span.textContent = text;
    span.title = title;
    parent.appendChild(span);
    parent.appendChild(document.createTextNode(" "));
  }
  var list = document.getElementById("requests");
  if (list && window.EventSource) {
    var events = new EventSource(prefix + "/events");
    events.addEventListener("request", function (event) {
      var r = JSON.parse(event.data);
      if (list.querySelector('tr[data-id="' + r.id + '"]')) { return; }
      var row = document.createElement("tr");
      row.className = "request fresh";
      row.dataset.id = String(r.id);
      row.dataset.nPlusOne = String(r.n_plus_one > 0);
      cell(row, String(r.id), "num");
      cell(row, r.started_at.substring(11, 23), null);
      cell(row, r.method, "method");
      var link = document.createElement("a");
      link.href = prefix + "/r/" + r.id;
      link.textContent = r.path;
      cell(row, null, "path").appendChild(link);
      var status = r.status >= 500 ? "s5" : r.status >= 400 ? "s4" : "s2";
      cell(row, String(r.status), "status " + status);
      cell(row, String(r.statement_count), "num");
      cell(row, ms(r.database_time_us), "num");
      cell(row, ms(r.duration_us), "num");
      var findings = cell(row, null, null);
      if (r.n_plus_one > 0) { badge(findings, "n-plus-one", "N+1", "An N+1: one statement per row"); }
      if (r.duplicates > 0) { badge(findings, "duplicate", "duplicate", "The same statement with the same values, run again"); }
      list.insertBefore(row, list.firstChild);
      var empty = document.getElementById("empty");
      if (empty) { empty.remove(); }
    });
  }
  document.querySelectorAll("button.explain-button").forEach(function (button) {
    button.addEventListener("click", function () {
      var out = button.parentElement.querySelector("pre.plan");
      out.hidden = false;
      out.textContent = "…";
      fetch(button.dataset.url, { method: "POST" })
        .then(function (response) { return response.json(); })
        .then(function (body) {
          if (body.plan) {
            var text = body.plan.join("\n");
            if (body.bound_as_null.length) {
              text += "\n\n(parameters " + body.bound_as_null.join(", ") + " were redacted and bound as NULL)";
            }
            out.textContent = text;
          } else {
            out.textContent = body.detail || JSON.stringify(body);
          }
        })
        .catch(function (error) { out.textContent = String(error); });
    });
  });
})();
