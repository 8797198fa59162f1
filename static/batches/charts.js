/*
 * Charts of the staff pages, drawn with the vendored Chart.js (static/vendor/chartjs) from numbers the
 * server put in the page. Every chart has a table of the same numbers next to it for screen readers
 * and for reading exact values; the canvas itself is an image with a label that points to that table.
 *
 * Markup: <canvas data-chart="bar|line" data-chart-data="<id of a json_script>" data-chart-unit="usd|percent|count">
 * with the json {"labels": [...], "series": [{"label": ..., "values": [...]}]}.
 */
(function () {
  "use strict";

  var COLORS = ["#1f5f8b", "#b3541e", "#2e7d32", "#6a1b9a", "#c62828", "#455a64"];

  /* "$1,234.5678" from a decimal string or number: the same shape as the server's `usd` filter. */
  function usd(value) {
    if (value === null || value === undefined || value === "") {
      return "\u2014";
    }
    var text = String(value);
    var negative = text.charAt(0) === "-";
    if (negative) {
      text = text.slice(1);
    }
    var parts = text.split(".");
    if (parts[1] && parts[1].length > 4) {
      parts = Number(text).toFixed(4).split("."); // the server sends 4 places; this is for computed sums
    }
    var fraction = ((parts[1] || "") + "0000").slice(0, 4);
    var whole = parts[0].replace(/\B(?=(\d{3})+(?!\d))/g, ",");
    return (negative ? "-$" : "$") + whole + "." + fraction;
  }

  function formatter(unit) {
    if (unit === "usd") {
      return function (value) {
        return usd(Number(value).toFixed(4));
      };
    }
    if (unit === "percent") {
      return function (value) {
        if (value === null) {
          return "\u2014";
        }
        var number = Number(value);
        return number.toFixed(number !== 0 && Math.abs(number) < 1 ? 2 : 1) + "%";
      };
    }
    return function (value) {
      return String(value);
    };
  }

  /* Minutes as "m:ss" ("0:05", "12:30"). */
  function clock(minutes) {
    var seconds = Math.max(0, Math.round(Number(minutes) * 60));
    var rest = seconds % 60;
    return Math.floor(seconds / 60) + ":" + (rest < 10 ? "0" : "") + rest;
  }

  function numbers(values) {
    return values.map(function (value) {
      return value === null || value === undefined ? null : Number(value);
    });
  }

  function baseOptions(unit) {
    var format = formatter(unit);
    return {
      responsive: true,
      maintainAspectRatio: false,
      animation: false,
      plugins: {
        legend: { display: true, position: "bottom" },
        tooltip: {
          callbacks: {
            label: function (context) {
              return context.dataset.label + ": " + format(context.parsed.y);
            },
          },
        },
      },
      scales: {
        y: { beginAtZero: true, ticks: { callback: format } },
      },
    };
  }

  /* A bar or line chart of labelled values. */
  function draw(canvas, kind, data, unit) {
    if (typeof window.Chart !== "function") {
      return null;
    }
    var chart = new window.Chart(canvas, {
      type: kind,
      data: {
        labels: data.labels,
        datasets: data.series.map(function (series, index) {
          return {
            label: series.label,
            data: numbers(series.values),
            backgroundColor: COLORS[index % COLORS.length],
            borderColor: COLORS[index % COLORS.length],
            spanGaps: true,
          };
        }),
      },
      options: baseOptions(unit),
    });
    canvas.dataset.rendered = "true";
    canvas.dataset.points = String(data.labels.length);
    return chart;
  }

  /*
   * A chart over time (x: minutes since the start) whose lines grow: `series` is
   * [{label, color, dashed}], points are appended with `append(x, [y...])`.
   */
  function timeline(canvas, series, unit) {
    if (typeof window.Chart !== "function") {
      return null;
    }
    var format = formatter(unit);
    var options = baseOptions(unit);
    options.parsing = false;
    options.normalized = true;
    options.scales.x = {
      type: "linear",
      min: 0,
      title: { display: true, text: "time since the start (min:s)" },
      ticks: { callback: clock },
    };
    options.plugins.tooltip.callbacks.title = function (items) {
      return items.length ? clock(items[0].parsed.x) : "";
    };
    options.plugins.tooltip.callbacks.label = function (context) {
      return context.dataset.label + ": " + format(context.parsed.y);
    };
    var chart = new window.Chart(canvas, {
      type: "line",
      data: {
        datasets: series.map(function (line) {
          return {
            label: line.label,
            data: [],
            borderColor: line.color,
            backgroundColor: line.color,
            borderDash: line.dashed ? [6, 4] : [],
            pointRadius: 0,
            borderWidth: 2,
            stepped: line.stepped || false,
          };
        }),
      },
      options: options,
    });
    canvas.dataset.rendered = "true";
    canvas.dataset.points = "0";
    return {
      chart: chart,
      append: function (x, values) {
        chart.data.datasets.forEach(function (dataset, index) {
          dataset.data.push({ x: x, y: values[index] });
        });
      },
      thin: function (limit) {
        // Long runs keep every other point of their older half, so a chart never holds more than `limit`.
        var data = chart.data.datasets[0].data;
        if (data.length <= limit) {
          return;
        }
        var half = Math.floor(data.length / 2);
        chart.data.datasets.forEach(function (dataset) {
          var older = dataset.data.slice(0, half).filter(function (_, index) {
            return index % 2 === 0;
          });
          dataset.data = older.concat(dataset.data.slice(half));
        });
      },
      points: function () {
        return chart.data.datasets[0].data.length;
      },
      update: function () {
        chart.update("none");
        canvas.dataset.points = String(chart.data.datasets[0].data.length);
      },
    };
  }

  function drawAll() {
    var canvases = document.querySelectorAll("canvas[data-chart]");
    Array.prototype.forEach.call(canvases, function (canvas) {
      var source = document.getElementById(canvas.dataset.chartData);
      if (source) {
        draw(canvas, canvas.dataset.chart, JSON.parse(source.textContent), canvas.dataset.chartUnit);
      }
    });
  }

  window.LeadgenCharts = { usd: usd, clock: clock, draw: draw, timeline: timeline, formatter: formatter };

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", drawAll);
  } else {
    drawAll();
  }
})();
