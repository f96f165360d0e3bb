/* 家长学校管理平台: the console's only script (plain JS, no build step). Draws the charts whose data the
   page carries in data-chart attributes, and gives scripts a fetch that sends the session's CSRF token. */
(function () {
  "use strict";

  var csrfToken = (document.querySelector('meta[name="csrf-token"]') || {}).content || "";

  /* Every request a script makes to the console carries the CSRF token the server checks on writes. */
  window.consoleFetch = function (url, options) {
    options = options || {};
    options.credentials = "same-origin";
    options.headers = Object.assign({ "X-CSRF-Token": csrfToken }, options.headers || {});
    return fetch(url, options);
  };

  window.consoleCharts = {};

  function eveningChart(el) {
    var data = JSON.parse(el.dataset.chart);
    var chart = echarts.init(el, null, { renderer: "canvas" });
    chart.setOption({
      animation: false,
      grid: { left: 48, right: 24, top: 36, bottom: 64 },
      tooltip: { trigger: "axis" },
      xAxis: { type: "category", data: data.schools, axisLabel: { interval: 0, rotate: data.schools.length > 8 ? 30 : 0 } },
      yAxis: { type: "value", name: "已举办次数", minInterval: 1, max: function (v) { return Math.max(v.max, data.required) + 1; } },
      series: [{
        name: "已举办",
        type: "bar",
        barMaxWidth: 48,
        data: data.held.map(function (held) {
          return { value: held, itemStyle: { color: held < data.required ? "#c62828" : "#1d5fbf" } };
        }),
        label: { show: true, position: "top" },
        markLine: {
          symbol: "none",
          lineStyle: { color: "#e69500", type: "dashed", width: 2 },
          label: { position: "insideEndTop", formatter: "要求 " + data.required + " 次" },
          data: [{ yAxis: data.required }]
        }
      }]
    });
    window.addEventListener("resize", function () { chart.resize(); });
    return chart;
  }

  function completionChart(el) {
    var data = JSON.parse(el.dataset.chart);
    var chart = echarts.init(el, null, { renderer: "canvas" });
    chart.setOption({
      animation: false,
      grid: { left: 56, right: 24, top: 36, bottom: 64 },
      tooltip: { trigger: "axis", valueFormatter: function (v) { return v + "%"; } },
      xAxis: { type: "category", data: data.schools, axisLabel: { interval: 0, rotate: data.schools.length > 8 ? 30 : 0 } },
      yAxis: { type: "value", name: "完成率 %", min: 0, max: 100 },
      series: [{
        name: "学时完成率",
        type: "bar",
        barMaxWidth: 48,
        itemStyle: { color: "#2e7d32" },
        label: { show: true, position: "top", formatter: "{c}%" },
        data: data.completion.map(function (share) { return Math.round(share * 1000) / 10; })
      }]
    });
    window.addEventListener("resize", function () { chart.resize(); });
    return chart;
  }

  /* The check-in screen: the rotating code as a QR image and the count, refreshed every second (a code
     lives 30 s, so the screen always shows a good one; a new check-in shows within about a second). */
  function checkinScreen(el) {
    var qr = document.getElementById("qr");
    var status = document.getElementById("checkin-status");
    function refresh() {
      consoleFetch(el.dataset.state).then(function (response) {
        return response.json().then(function (body) { return { ok: response.ok, body: body }; });
      }).then(function (answer) {
        if (!answer.ok) {
          status.textContent = answer.body.detail || "暂时无法签到";
          qr.hidden = true;
          el.classList.add("closed");
          return;
        }
        var state = answer.body;
        if (qr.dataset.token !== state.token) {
          qr.src = state.qr;
          qr.dataset.token = state.token;
        }
        qr.hidden = false;
        el.classList.remove("closed");
        document.getElementById("present").textContent = state.present;
        document.getElementById("confirmed").textContent = state.confirmed;
        status.textContent = "二维码每 30 秒自动更换，请勿拍照转发";
      }).catch(function () {
        status.textContent = "网络连接中断，正在重试……";
      });
    }
    refresh();
    window.setInterval(refresh, Number(el.dataset.pollMs) || 1000);
  }

  document.addEventListener("DOMContentLoaded", function () {
    var checkin = document.getElementById("checkin");
    if (checkin) { checkinScreen(checkin); }
    if (!window.echarts) { return; }
    var evening = document.getElementById("chart-evening");
    if (evening) { window.consoleCharts.evening = eveningChart(evening); }
    var completion = document.getElementById("chart-completion");
    if (completion) { window.consoleCharts.completion = completionChart(completion); }
  });
})();
