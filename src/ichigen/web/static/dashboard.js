/* ichigen: the sales dashboard's charts, drawn with Chart.js from the page's JSON endpoint. */
(function () {
  "use strict";

  var PALETTE = ["#2f6fd6", "#21a179", "#e0a10b", "#c2410c", "#7c3aed", "#0e7490", "#be185d"];

  function number(value) {
    var parsed = parseFloat(value);
    return isNaN(parsed) ? null : parsed;
  }

  function formatters(locale, currency) {
    var money;
    try {
      money = new Intl.NumberFormat(locale, {
        style: "currency",
        currency: currency,
        notation: "compact",
        maximumFractionDigits: 1,
      });
    } catch (err) {
      money = new Intl.NumberFormat(locale, { notation: "compact" });
    }
    var percent = new Intl.NumberFormat(locale, { maximumFractionDigits: 1 });
    return {
      money: function (value) {
        return money.format(value);
      },
      percent: function (value) {
        return percent.format(value) + " %";
      },
    };
  }

  function bar(canvas, labels, datasets, options) {
    return new window.Chart(canvas, {
      type: "bar",
      data: { labels: labels, datasets: datasets },
      options: options,
    });
  }

  function moneyAxis(format, stacked) {
    return {
      stacked: !!stacked,
      beginAtZero: true,
      ticks: {
        callback: function (value) {
          return format.money(value);
        },
      },
    };
  }

  function moneyTooltip(format) {
    return {
      callbacks: {
        label: function (item) {
          return item.dataset.label + ": " + format.money(item.raw);
        },
      },
    };
  }

  function pipelineChart(data, labels, format) {
    var stages = data.pipeline_by_stage.stages;
    bar(
      document.getElementById("chart-pipeline"),
      stages.map(function (s) {
        return s.name;
      }),
      [
        {
          label: labels.amount,
          data: stages.map(function (s) {
            return number(s.amount);
          }),
          backgroundColor: PALETTE[0],
        },
      ],
      {
        plugins: {
          legend: { display: false },
          tooltip: {
            callbacks: {
              label: function (item) {
                var stage = stages[item.dataIndex];
                return format.money(item.raw) + " (" + labels.deals + ": " + stage.count + ")";
              },
            },
          },
        },
        scales: { y: moneyAxis(format) },
      }
    );
  }

  function quotaChart(data, labels, format) {
    var rows = data.forecast_vs_quota;
    var series = [
      ["won", labels.won, PALETTE[1]],
      ["weighted", labels.weighted, PALETTE[0]],
      ["quota", labels.quota, "#9aa3ad"],
    ];
    bar(
      document.getElementById("chart-quota"),
      rows.map(function (r) {
        return r.name;
      }),
      series.map(function (s) {
        return {
          label: s[1],
          backgroundColor: s[2],
          data: rows.map(function (r) {
            return number(r[s[0]]);
          }),
        };
      }),
      { plugins: { tooltip: moneyTooltip(format) }, scales: { y: moneyAxis(format) } }
    );
  }

  function trendChart(data, labels, format) {
    var months = data.win_rate_trend;
    new window.Chart(document.getElementById("chart-trend"), {
      type: "line",
      data: {
        labels: months.map(function (m) {
          return m.month;
        }),
        datasets: [
          ["win_rate", labels.win_rate, PALETTE[0]],
          ["win_rate_by_amount", labels.win_rate_by_amount, PALETTE[2]],
        ].map(function (s) {
          return {
            label: s[1],
            borderColor: s[2],
            backgroundColor: s[2],
            spanGaps: true,
            cubicInterpolationMode: "monotone",
            data: months.map(function (m) {
              return number(m[s[0]]);
            }),
          };
        }),
      },
      options: {
        plugins: {
          tooltip: {
            callbacks: {
              label: function (item) {
                return item.dataset.label + ": " + format.percent(item.raw);
              },
            },
          },
        },
        scales: {
          y: {
            min: 0,
            max: 100,
            ticks: {
              callback: function (value) {
                return format.percent(value);
              },
            },
          },
        },
      },
    });
  }

  function activityChart(data, labels) {
    var rows = data.activity_per_rep;
    bar(
      document.getElementById("chart-activity"),
      rows.map(function (r) {
        return r.name;
      }),
      data.activity_kinds.map(function (kind, index) {
        return {
          label: labels.kinds[kind] || kind,
          backgroundColor: PALETTE[index % PALETTE.length],
          data: rows.map(function (r) {
            return r.counts[kind] || 0;
          }),
        };
      }),
      {
        scales: {
          x: { stacked: true },
          y: { stacked: true, beginAtZero: true, ticks: { precision: 0 } },
        },
      }
    );
  }

  function draw(root, data) {
    var labels = JSON.parse(root.getAttribute("data-labels"));
    var format = formatters(root.getAttribute("data-locale"), data.currency);
    pipelineChart(data, labels, format);
    quotaChart(data, labels, format);
    trendChart(data, labels, format);
    activityChart(data, labels);
    var empty =
      data.pipeline_by_stage.stages.length === 0 &&
      data.forecast_vs_quota.length === 0 &&
      data.activity_per_rep.length === 0;
    root.setAttribute("data-drawn", "true");
    if (empty) {
      document.getElementById("chart-status").textContent = labels.empty;
    }
  }

  function start() {
    var root = document.getElementById("dashboard-charts");
    if (!root || !window.Chart) {
      return;
    }
    var status = document.getElementById("chart-status");
    var labels = JSON.parse(root.getAttribute("data-labels"));
    fetch(root.getAttribute("data-src"), {
      credentials: "same-origin",
      headers: { Accept: "application/json" },
    })
      .then(function (response) {
        if (!response.ok) {
          return response.json().then(
            function (problem) {
              throw new Error(problem.detail || labels.failed);
            },
            function () {
              throw new Error(labels.failed);
            }
          );
        }
        return response.json();
      })
      .then(function (data) {
        draw(root, data);
      })
      .catch(function (err) {
        status.textContent = labels.failed + " " + (err && err.message ? err.message : "");
        root.setAttribute("data-drawn", "failed");
      });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
