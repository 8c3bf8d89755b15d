// Panels that are slow to compute (storage used) load after the page: each element with
// data-fragment="<url>" is replaced by the HTML that URL answers.
(function () {
  "use strict";
  document.querySelectorAll("[data-fragment]").forEach(function (panel) {
    fetch(panel.dataset.fragment, {credentials: "same-origin"})
      .then(function (response) {
        if (!response.ok) { throw new Error("HTTP " + response.status); }
        return response.text();
      })
      .then(function (html) {
        panel.innerHTML = html;
        panel.removeAttribute("aria-busy");
      })
      .catch(function (error) {
        panel.querySelector("p").textContent = "Could not load this panel (" + error.message + ").";
      });
  });
}());
