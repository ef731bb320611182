/* ichigen: the little the UI needs beyond HTML and htmx. */
(function () {
  "use strict";

  // Tell the server the browser's time zone so times show in local time.
  try {
    var zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
    if (zone && document.cookie.indexOf("ichigen_tz=" + zone) === -1) {
      document.cookie = "ichigen_tz=" + zone + "; path=/; max-age=31536000; samesite=lax";
    }
  } catch (err) {
    /* older browsers: times stay in UTC */
  }

  // Close the account menu when clicking elsewhere or pressing Escape.
  document.addEventListener("click", function (event) {
    document.querySelectorAll("details.user-menu[open]").forEach(function (menu) {
      if (!menu.contains(event.target)) {
        menu.removeAttribute("open");
      }
    });
  });
  document.addEventListener("keydown", function (event) {
    if (event.key === "Escape") {
      document.querySelectorAll("details.user-menu[open]").forEach(function (menu) {
        menu.removeAttribute("open");
        menu.querySelector("summary").focus();
      });
    }
  });

  // Copy buttons: <button data-copy="#field" data-copied="Copied"> copies the field's value.
  document.addEventListener("click", function (event) {
    var button = event.target.closest ? event.target.closest("[data-copy]") : null;
    if (!button) {
      return;
    }
    var field = document.querySelector(button.getAttribute("data-copy"));
    if (!field) {
      return;
    }
    var copied = function () {
      button.textContent = button.getAttribute("data-copied") || button.textContent;
    };
    field.select();
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(field.value).then(copied, function () {
        document.execCommand("copy");
        copied();
      });
    } else {
      document.execCommand("copy");
      copied();
    }
  });
})();
