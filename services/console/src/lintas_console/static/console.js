// Lintas console: progressive enhancement only; every page works without this file.
// - forms marked data-draft are kept in localStorage while typed (a dropped connection or
//   a closed laptop loses nothing) and restored on the next visit;
// - a page marked data-draft-done (the case was created) or data-clear-drafts (signed
//   out) forgets the drafts;
// - a submit button marked data-once cannot send its form twice.
(function () {
  "use strict";
  var PREFIX = "lintas-draft:";

  function clearDrafts() {
    try {
      for (var i = localStorage.length - 1; i >= 0; i--) {
        var key = localStorage.key(i);
        if (key && key.indexOf(PREFIX) === 0) { localStorage.removeItem(key); }
      }
    } catch (e) { /* storage unavailable: nothing kept, nothing to clear */ }
  }

  function fields(form) {
    return Array.prototype.filter.call(form.elements, function (el) {
      return el.name && el.name !== "csrf_token" && !el.hasAttribute("data-no-draft") &&
        el.type !== "submit" && el.type !== "button" && el.type !== "password";
    });
  }

  function save(form) {
    var data = {};
    fields(form).forEach(function (el) {
      if (el.type === "checkbox") {
        data[el.name] = data[el.name] || [];
        if (el.checked) { data[el.name].push(el.value); }
      } else {
        data[el.name] = el.value;
      }
    });
    try { localStorage.setItem(PREFIX + form.getAttribute("data-draft"), JSON.stringify(data)); } catch (e) { /* full or blocked */ }
  }

  function restore(form) {
    var raw = null;
    try { raw = localStorage.getItem(PREFIX + form.getAttribute("data-draft")); } catch (e) { return; }
    if (!raw) { return; }
    var data;
    try { data = JSON.parse(raw); } catch (e) { return; }
    fields(form).forEach(function (el) {
      if (!(el.name in data)) { return; }
      if (el.type === "checkbox") {
        el.checked = data[el.name].indexOf(el.value) !== -1;
      } else if (el.value === "" || el.defaultValue === el.value) {
        el.value = data[el.name];
      }
    });
    var note = document.createElement("p");
    note.className = "notice";
    note.setAttribute("role", "status");
    note.textContent = document.documentElement.lang === "id"
      ? "Draf yang tersimpan di peramban ini dipulihkan."
      : "The draft kept in this browser was restored.";
    form.parentNode.insertBefore(note, form);
  }

  document.addEventListener("DOMContentLoaded", function () {
    if (document.querySelector("[data-clear-drafts]")) { clearDrafts(); }
    var done = document.querySelector("[data-draft-done]");
    if (done) {
      try { localStorage.removeItem(PREFIX + done.getAttribute("data-draft-done")); } catch (e) { /* ignore */ }
    }
    Array.prototype.forEach.call(document.querySelectorAll("form[data-draft]"), function (form) {
      // A form shown again with the server's errors already holds what was typed.
      if (!document.querySelector(".error-box")) { restore(form); }
      form.addEventListener("input", function () { save(form); });
      form.addEventListener("change", function () { save(form); });
    });
    Array.prototype.forEach.call(document.querySelectorAll("form[data-sign-out]"), function (form) {
      form.addEventListener("submit", clearDrafts);
    });
    Array.prototype.forEach.call(document.querySelectorAll("button[data-once]"), function (button) {
      button.form.addEventListener("submit", function (event) {
        if (event.submitter !== button) { return; }
        if (button.getAttribute("data-sent")) { event.preventDefault(); return; }
        button.setAttribute("data-sent", "1");
        // Disabled after this tick, so the button's own name/value is still sent.
        setTimeout(function () { button.disabled = true; }, 0);
      });
    });
  });
})();
