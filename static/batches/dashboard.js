/*
 * The dashboard's running batches stay current: each row polls its batch's status API every few
 * seconds (the same snapshot the live page shows) until the batch finishes.
 */
(function () {
  "use strict";

  var POLL_MS = 3000;
  var FINISHED = ["completed", "completed_with_errors", "cancelled", "failed"];
  var usd = window.LeadgenCharts ? window.LeadgenCharts.usd : String;
  var rows = document.querySelectorAll("#running-batches tr[data-status-url]");

  function field(row, name) {
    return row.querySelector('[data-field="' + name + '"]');
  }

  function render(row, snapshot) {
    var done = snapshot.total - snapshot.pending - snapshot.processing;
    var bar = field(row, "progress");
    bar.setAttribute("aria-valuenow", String(snapshot.progress_percent));
    bar.setAttribute("aria-valuetext", done + " of " + snapshot.total + " leads done");
    bar.firstElementChild.style.width = snapshot.progress_percent + "%";
    field(row, "progress-text").textContent = done + " of " + snapshot.total;
    field(row, "actual").textContent = usd(snapshot.actual_cost_usd);
    field(row, "eta").textContent = snapshot.eta_text;
    var label = snapshot.status.replace(/_/g, " ");
    field(row, "status").textContent = label.charAt(0).toUpperCase() + label.slice(1);
    row.dataset.status = snapshot.status;
  }

  function poll(row) {
    fetch(row.dataset.statusUrl, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) {
        return response.ok ? response.json() : null;
      })
      .then(function (snapshot) {
        if (!snapshot) {
          return;
        }
        render(row, snapshot);
        if (FINISHED.indexOf(snapshot.status) === -1) {
          setTimeout(poll, POLL_MS, row);
        }
      })
      .catch(function () {
        setTimeout(poll, POLL_MS * 2, row);
      });
  }

  Array.prototype.forEach.call(rows, poll);
})();
