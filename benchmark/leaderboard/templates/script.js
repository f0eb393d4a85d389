(function () {
  "use strict";
  // click a header to sort its table by the cells' data-v values (numbers numerically, "" last)
  document.querySelectorAll("table.lb th").forEach(function (th) {
    th.addEventListener("click", function () {
      var table = th.closest("table"), body = table.tBodies[0];
      var idx = Array.prototype.indexOf.call(th.parentNode.children, th);
      var asc = th.getAttribute("data-dir") !== "asc";
      table.querySelectorAll("th").forEach(function (h) { h.removeAttribute("data-dir"); });
      th.setAttribute("data-dir", asc ? "asc" : "desc");
      var rows = Array.prototype.slice.call(body.rows);
      rows.sort(function (a, b) {
        var x = a.cells[idx].getAttribute("data-v"), y = b.cells[idx].getAttribute("data-v");
        if (x === "" && y === "") return 0;
        if (x === "") return 1;
        if (y === "") return -1;
        var nx = Number(x), ny = Number(y);
        var c = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : x.localeCompare(y);
        return asc ? c : -c;
      });
      rows.forEach(function (r) { body.appendChild(r); });
    });
  });
  // the filter box hides the rows of every table whose text does not contain all typed words
  var box = document.getElementById("filter");
  if (box) {
    box.addEventListener("input", function () {
      var words = box.value.toLowerCase().split(/\s+/).filter(function (w) { return w; });
      document.querySelectorAll("table.lb tbody tr").forEach(function (tr) {
        var text = tr.textContent.toLowerCase();
        var show = words.every(function (w) { return text.indexOf(w) >= 0; });
        tr.classList.toggle("hidden", !show);
      });
    });
  }
  // suite tabs
  document.querySelectorAll("button.tab").forEach(function (tab) {
    tab.addEventListener("click", function () {
      document.querySelectorAll("button.tab").forEach(function (t) { t.classList.remove("active"); });
      document.querySelectorAll("section.suite").forEach(function (s) { s.classList.remove("active"); });
      tab.classList.add("active");
      document.getElementById(tab.getAttribute("data-tab")).classList.add("active");
    });
  });
})();
