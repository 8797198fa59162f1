/*
 * Live progress for /batches/<id>/.
 *
 * The page is complete as rendered by the server; this keeps it current. Messages on the socket are
 * full snapshots, so every message (or poll) simply re-renders: nothing depends on having seen the
 * previous one. On a dropped socket it reconnects with exponential backoff and polls the status API
 * every 2 s meanwhile; when the socket cannot be opened at all, polling carries on alone. A socket
 * that opens but stays silent while the batch runs (the server sends at least every 2 s) is treated
 * as dropped after SILENCE_MS, so a proxy that swallows frames cannot freeze the page.
 *
 * The charts start from the progress history the server rendered into the page and gain a point with
 * every snapshot; the table under them and the one-line summary beside them carry the same numbers.
 */
(function () {
  "use strict";

  var root = document.getElementById("batch-live");
  var initial = document.getElementById("batch-snapshot");
  if (!root || !initial) {
    return;
  }
  var charts = window.LeadgenCharts;
  var usd = charts ? charts.usd : function (value) {
    return "$" + value;
  };

  var FINISHED = ["completed", "completed_with_errors", "cancelled", "failed"];
  var LABELS = {
    draft: "Draft",
    queued: "Queued",
    running: "Running",
    paused: "Paused",
    cancelling: "Cancelling",
    completed: "Completed",
    completed_with_errors: "Completed with errors",
    cancelled: "Cancelled",
    failed: "Failed",
  };
  var POLL_MS = 2000;
  var SILENCE_MS = 5000;
  var BACKOFF_START_MS = 500;
  var BACKOFF_MAX_MS = 15000;
  var ROWS_MIN_INTERVAL_MS = 2000;
  var RECENT_LIMIT = 20;
  var CHART_POINTS_MAX = 300;

  var state = {
    snapshot: JSON.parse(initial.textContent),
    socket: null,
    socketOpen: false,
    attempts: 0,
    reconnectTimer: null,
    silenceTimer: null,
    pollTimer: null,
    rowsTimer: null,
    rowsFetchedAt: 0,
    announced: "",
    stopped: false,
  };

  function $(id) {
    return document.getElementById(id);
  }

  function setText(id, value) {
    var node = $(id);
    if (node && node.textContent !== String(value)) {
      node.textContent = String(value);
    }
  }

  function isFinished(snapshot) {
    return FINISHED.indexOf(snapshot.status) !== -1;
  }

  function setConnection(kind, text) {
    var node = $("batch-connection");
    if (node) {
      node.dataset.state = kind;
      node.textContent = text;
    }
  }

  function render(snapshot) {
    state.snapshot = snapshot;
    var done = snapshot.total - snapshot.pending - snapshot.processing;
    var percent = snapshot.progress_percent;

    var status = $("batch-status");
    status.dataset.status = snapshot.status;
    setText("batch-status", LABELS[snapshot.status] || snapshot.status);

    var bar = $("batch-progress");
    bar.setAttribute("aria-valuenow", String(percent));
    bar.setAttribute(
      "aria-valuetext",
      done + " of " + snapshot.total + " leads done (" + percent + "%)"
    );
    bar.firstElementChild.style.width = percent + "%";
    setText("batch-progress-text", percent + "%");

    ["total", "pending", "processing", "succeeded", "failed", "skipped", "cancelled"].forEach(function (key) {
      setText("count-" + key, snapshot[key]);
    });
    setText("cost-actual", usd(snapshot.actual_cost_usd));
    setText("cost-estimated", usd(snapshot.estimated_cost_usd));
    setText("cost-budget", snapshot.budget_usd ? usd(snapshot.budget_usd) : "none");
    setText(
      "throughput",
      snapshot.throughput_per_minute === null ? "\u2014" : snapshot.throughput_per_minute + " leads/min"
    );
    setText("eta", snapshot.eta_text);
    $("eta").dataset.state = snapshot.eta_state;
    setText("stop-reason", snapshot.stop_reason || "\u2014");
    setText("stop-detail", snapshot.stop_detail || "\u2014");
    Object.keys(snapshot.providers || {}).forEach(function (name) {
      var node = $("provider-" + name);
      if (node) {
        node.dataset.state = snapshot.providers[name];
        setText("provider-" + name, snapshot.providers[name]);
      }
    });
    var hint = $("stop-hint");
    if (hint) {
      hint.hidden = snapshot.stop_reason !== "provider_unavailable";
    }

    var forms = {
      "pause-form": ["queued", "running"],
      "resume-form": ["paused"],
      "cancel-form": ["queued", "running", "paused"],
    };
    Object.keys(forms).forEach(function (id) {
      var form = $(id);
      if (form) {
        form.hidden = forms[id].indexOf(snapshot.status) === -1;
      }
    });
    var retryForm = $("retry-form");
    if (retryForm) {
      retryForm.hidden = !(isFinished(snapshot) && snapshot.failed > 0);
    }

    announce(snapshot, done);
    (snapshot.recent || []).slice().reverse().forEach(updateRow);
    history.add(snapshot);
  }

  function announce(snapshot, done) {
    // Screen readers hear the status and each tenth of the way, not every tick.
    var step = snapshot.total ? Math.floor((done * 10) / snapshot.total) : 10;
    var key = snapshot.status + ":" + step;
    if (key === state.announced) {
      return;
    }
    state.announced = key;
    setText(
      "batch-announcer",
      done + " of " + snapshot.total + " leads done; status " + (LABELS[snapshot.status] || snapshot.status).toLowerCase() + "."
    );
  }

  function cell(row, field) {
    return row.querySelector('[data-field="' + field + '"]');
  }

  function updateRow(lead) {
    var row = document.querySelector('#lead-rows tr[data-lead-id="' + lead.lead_id + '"]');
    if (!row) {
      return;
    }
    row.dataset.status = lead.status;
    var badge = document.createElement("span");
    badge.className = "lead-status lead-status-" + lead.status;
    badge.textContent = lead.status;
    var statusCell = cell(row, "status");
    if (statusCell.textContent !== lead.status) {
      statusCell.replaceChildren(badge);
    }
    cell(row, "attempts").textContent = String(lead.attempts);
    cell(row, "error").textContent =
      lead.error ||
      (lead.warnings || [])
        .map(function (warning) {
          return warning.provider + ": " + warning.message;
        })
        .join("; ");
    cell(row, "duration_ms").textContent = lead.duration_ms === null ? "" : lead.duration_ms + " ms";
    cell(row, "cost_usd").textContent = usd(lead.cost_usd);
    var reportCell = cell(row, "report_url");
    // Links to the reports only for those who may read them (reports.view_report).
    if (lead.report_url && root.dataset.reportLinks === "on") {
      var link = reportCell.querySelector("a");
      if (!link || link.getAttribute("href") !== lead.report_url) {
        link = document.createElement("a");
        link.href = lead.report_url;
        link.textContent = "Report";
        reportCell.replaceChildren(link);
      }
    } else {
      reportCell.replaceChildren();
    }
  }

  function renderFailures(failures) {
    var body = document.querySelector("#failure-groups tbody");
    var rows = failures.map(function (failure) {
      var tr = document.createElement("tr");
      var what = document.createElement("td");
      var code = document.createElement("code");
      code.textContent = failure.error_code || "error";
      what.append(code, " " + (failure.error || ""));
      var count = document.createElement("td");
      count.className = "num";
      count.textContent = String(failure.count);
      tr.append(what, count);
      return tr;
    });
    if (!rows.length) {
      var tr = document.createElement("tr");
      tr.className = "empty";
      var td = document.createElement("td");
      td.colSpan = 2;
      td.textContent = "No failures.";
      tr.append(td);
      rows.push(tr);
    }
    body.replaceChildren.apply(body, rows);
  }

  function fetchRows() {
    state.rowsFetchedAt = Date.now();
    fetch(root.dataset.rowsUrl, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) {
        return response.ok ? response.json() : null;
      })
      .then(function (data) {
        if (data) {
          data.rows.forEach(updateRow);
          renderFailures(data.failures);
        }
      })
      .catch(function () {});
  }

  function refreshRowsSoon(now) {
    // `recent` covers the last 20 changes; when more happened, or for a full resync, re-read the page
    // of rows on show (throttled; a trailing call makes sure the final state is fetched).
    var wait = ROWS_MIN_INTERVAL_MS - (Date.now() - state.rowsFetchedAt);
    if (now || wait <= 0) {
      clearTimeout(state.rowsTimer);
      state.rowsTimer = null;
      fetchRows();
    } else if (!state.rowsTimer) {
      state.rowsTimer = setTimeout(function () {
        state.rowsTimer = null;
        fetchRows();
      }, wait);
    }
  }

  function apply(kind, snapshot) {
    var previous = state.snapshot;
    render(snapshot);
    var manyChanges = (snapshot.recent || []).length >= RECENT_LIMIT;
    var failuresChanged = previous.failed !== snapshot.failed;
    if (kind === "snapshot" || kind === "finished") {
      refreshRowsSoon(true);
    } else if (manyChanges || failuresChanged) {
      refreshRowsSoon(false);
    }
  }

  function poll() {
    fetch(root.dataset.statusUrl, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) {
        return response.ok ? response.json() : null;
      })
      .then(function (snapshot) {
        if (snapshot && !state.socketOpen) {
          apply(isFinished(snapshot) ? "finished" : "progress", snapshot);
          setConnection("polling", "updating every 2 s");
        }
      })
      .catch(function () {});
  }

  function startPolling() {
    if (!state.pollTimer) {
      state.pollTimer = setInterval(poll, POLL_MS);
      poll();
    }
  }

  function stopPolling() {
    clearInterval(state.pollTimer);
    state.pollTimer = null;
  }

  function scheduleReconnect() {
    if (state.reconnectTimer || state.stopped) {
      return;
    }
    var delay = Math.min(BACKOFF_MAX_MS, BACKOFF_START_MS * Math.pow(2, state.attempts));
    delay = delay / 2 + Math.random() * (delay / 2);
    state.attempts += 1;
    state.reconnectTimer = setTimeout(function () {
      state.reconnectTimer = null;
      connect();
    }, delay);
  }

  function watchSilence(socket) {
    clearTimeout(state.silenceTimer);
    state.silenceTimer = null;
    if (isFinished(state.snapshot)) {
      return; // after the terminal message the server only speaks when the batch changes again
    }
    state.silenceTimer = setTimeout(function () {
      if (state.socket === socket) {
        socket.close();
      }
    }, SILENCE_MS);
  }

  function connect() {
    var scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
    var socket;
    try {
      socket = new WebSocket(scheme + window.location.host + root.dataset.wsUrl);
    } catch (error) {
      startPolling();
      scheduleReconnect();
      return;
    }
    state.socket = socket;
    socket.onopen = function () {
      watchSilence(socket);
    };
    socket.onmessage = function (event) {
      // Live only once data flows: an open but silent socket keeps the polling (and the backoff) going.
      if (!state.socketOpen) {
        state.socketOpen = true;
        state.attempts = 0;
        stopPolling();
        setConnection("live", "live");
      }
      var message = JSON.parse(event.data);
      apply(message.type, message.batch);
      watchSilence(socket);
    };
    socket.onclose = function (event) {
      clearTimeout(state.silenceTimer);
      if (state.socket !== socket) {
        return; // a socket given up on for silence: its successor is already in charge
      }
      state.socketOpen = false;
      state.socket = null;
      if (event.code === 4003 || event.code === 4004) {
        state.stopped = true;
        setConnection("closed", "not live (no access)");
        return;
      }
      setConnection("reconnecting", "reconnecting\u2026");
      startPolling();
      scheduleReconnect();
    };
  }

  /*
   * Progress over time: the server's history, then one point per snapshot (x in minutes since the
   * start, by the server's clock: the page learns the offset from the history's `server_now`).
   */
  var history = (function () {
    var source = document.getElementById("batch-history");
    var progressCanvas = $("progress-chart");
    var costCanvas = $("cost-chart");
    var table = document.querySelector("#history-table tbody");
    var data = source ? JSON.parse(source.textContent) : { points: [] };
    var clockOffset = data.server_now ? Date.now() - Date.parse(data.server_now) : 0;
    var estimate = Number(data.estimated_cost_usd || 0);
    var progress = null;
    var cost = null;
    var lastX = -1;
    var finishedDrawn = false;

    if (charts && progressCanvas && costCanvas) {
      progress = charts.timeline(
        progressCanvas,
        [
          { label: "Succeeded", color: "#2e7d32" },
          { label: "Failed", color: "#c62828" },
          { label: "In flight", color: "#1f5f8b" },
        ],
        "count"
      );
      cost = charts.timeline(
        costCanvas,
        [
          { label: "Actual cost", color: "#6a1b9a" },
          { label: "Estimate", color: "#555555", dashed: true },
        ],
        "usd"
      );
    }

    function addPoint(x, succeeded, failed, processing, actual) {
      if (x <= lastX) {
        return false;
      }
      lastX = x;
      if (progress) {
        progress.append(x, [succeeded, failed, processing]);
        cost.append(x, [Number(actual), estimate]);
      }
      if (table) {
        var row = document.createElement("tr");
        [charts ? charts.clock(x) : x.toFixed(1), succeeded, failed, processing, usd(actual)].forEach(function (value, index) {
          var node = document.createElement(index === 0 ? "th" : "td");
          if (index === 0) {
            node.scope = "row";
          } else {
            node.className = "num";
          }
          node.textContent = String(value);
          row.append(node);
        });
        table.append(row);
        while (table.rows.length > CHART_POINTS_MAX) {
          table.deleteRow(0);
        }
      }
      return true;
    }

    function redraw() {
      if (progress) {
        progress.thin(CHART_POINTS_MAX);
        cost.thin(CHART_POINTS_MAX);
        progress.update();
        cost.update();
      }
    }

    function summarize(snapshot) {
      var minutes = lastX < 0 ? 0 : lastX;
      setText(
        "history-summary",
        snapshot.succeeded + " succeeded, " + snapshot.failed + " failed and " + snapshot.processing +
          " in flight after " + (charts ? charts.clock(minutes) : minutes.toFixed(1)) + " (min:s); spent " +
          usd(snapshot.actual_cost_usd) +
          " of an estimated " + usd(snapshot.estimated_cost_usd) + "."
      );
    }

    if (table) {
      table.replaceChildren();
    }
    (data.points || []).forEach(function (point) {
      addPoint(point.elapsed_seconds / 60, point.succeeded, point.failed, point.processing, point.actual_cost_usd);
    });
    redraw();

    return {
      add: function (snapshot) {
        if (!snapshot.started_at || finishedDrawn) {
          return;
        }
        estimate = Number(snapshot.estimated_cost_usd);
        var end = snapshot.finished_at ? Date.parse(snapshot.finished_at) : Date.now() - clockOffset;
        var x = (end - Date.parse(snapshot.started_at)) / 60000;
        if (addPoint(x, snapshot.succeeded, snapshot.failed, snapshot.processing, snapshot.actual_cost_usd)) {
          redraw();
        }
        finishedDrawn = isFinished(snapshot);
        summarize(snapshot);
      },
    };
  })();

  window.addEventListener("pagehide", function () {
    state.stopped = true;
    if (state.socket) {
      state.socket.close();
    }
  });

  connect();
})();
