// Progressive enhancement only: every page works without JavaScript.
(function () {
  "use strict";

  function setupDropzone(zone) {
    var input = zone.querySelector("[data-file-input]");
    var nameOut = zone.querySelector("[data-file-name]");
    var preview = zone.querySelector("[data-preview]");
    if (!input) return;

    function show(files) {
      if (!files || !files.length) { nameOut.textContent = ""; preview.hidden = true; return; }
      var file = files[0];
      nameOut.textContent = "Selected: " + file.name + " (" + Math.max(1, Math.round(file.size / 1024)) + " KB)";
      if (/^image\/(jpeg|png|webp|gif|bmp)$/.test(file.type)) {
        var url = URL.createObjectURL(file);
        preview.onload = function () { URL.revokeObjectURL(url); };
        preview.src = url;
        preview.hidden = false;
      } else {
        preview.hidden = true;
      }
    }

    input.addEventListener("change", function () { show(input.files); });
    ["dragenter", "dragover"].forEach(function (type) {
      zone.addEventListener(type, function (event) {
        event.preventDefault();
        zone.classList.add("dragging");
      });
    });
    ["dragleave", "dragend", "drop"].forEach(function (type) {
      zone.addEventListener(type, function () { zone.classList.remove("dragging"); });
    });
    zone.addEventListener("drop", function (event) {
      event.preventDefault();
      if (event.dataTransfer && event.dataTransfer.files.length) {
        input.files = event.dataTransfer.files;
        show(input.files);
      }
    });
  }

  function setupSubmit(form) {
    var button = form.querySelector("[data-submit]");
    form.addEventListener("submit", function () {
      if (button) { button.disabled = true; button.textContent = "Grading…"; button.setAttribute("aria-busy", "true"); }
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-dropzone]").forEach(setupDropzone);
    document.querySelectorAll("[data-upload-form]").forEach(setupSubmit);
  });
})();
