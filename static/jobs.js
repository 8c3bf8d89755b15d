// The jobs page: refresh each active job's row from its JSON once a second until it ends.
(function () {
  "use strict";
  var ACTIVE = ["queued", "running"];
  var UNITS = ["B", "KB", "MB", "GB", "TB", "PB"];

  function humanSize(bytes) {  // the same as formatting.human_size
    var size = bytes, unit = 0;
    while (size >= 1024 && unit < UNITS.length - 1) { size /= 1024; unit += 1; }
    return unit === 0 ? size + " B" : size.toFixed(1) + " " + UNITS[unit];
  }

  function setText(row, field, text) {
    var cell = row.querySelector('[data-field="' + field + '"]');
    if (cell) { cell.textContent = text; }
    return cell;
  }

  function show(row, job) {
    var status = setText(row, "status", job.status);
    status.className = "status " + job.status;
    setText(row, "phase", job.phase);
    setText(row, "bytes_done", humanSize(job.bytes_done));
    setText(row, "elapsed", job.elapsed_seconds === null ? "—" : job.elapsed_seconds.toFixed(1) + " s");
    setText(row, "result", job.error || job.result || "");
    if (job.backup_url) {
      var link = document.createElement("a");
      link.href = job.backup_url;
      link.textContent = job.backup_filename;
      row.querySelector('[data-field="backup"]').replaceChildren(link);
    }
  }

  function poll(row) {
    fetch(row.dataset.poll, {headers: {Accept: "application/json"}, credentials: "same-origin"})
      .then(function (response) {
        if (!response.ok) { throw new Error("HTTP " + response.status); }
        return response.json();
      })
      .then(function (job) {
        show(row, job);
        if (ACTIVE.indexOf(job.status) >= 0) { setTimeout(function () { poll(row); }, 1000); }
      })
      .catch(function () { setTimeout(function () { poll(row); }, 5000); });
  }

  document.querySelectorAll("tr[data-poll]").forEach(poll);
})();
