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

/* The deal board: drag a card to another column (or to another place in its own) to move the
   deal. The move goes to the server with the page's CSRF token; the answer is the board as it
   now is, or a small form for the fields the stage still needs (the card returns to where it
   was until the form is sent). */
(function () {
  "use strict";

  var dragged = null;
  var home = null;

  function csrfToken() {
    try {
      return JSON.parse(document.body.getAttribute("hx-headers") || "{}")["X-CSRF-Token"] || "";
    } catch (err) {
      return "";
    }
  }

  function board() {
    return document.getElementById("board");
  }

  function dialog() {
    return document.getElementById("move-dialog");
  }

  function announce(text) {
    var status = document.getElementById("board-status");
    if (status) {
      status.textContent = text;
    }
  }

  function showDialog(html) {
    var panel = document.getElementById("move-panel");
    var box = dialog();
    if (!panel || !box) {
      return;
    }
    panel.innerHTML = html;
    if (window.htmx) {
      window.htmx.process(panel);
    }
    if (!box.open) {
      box.showModal();
    }
    var first = panel.querySelector("input:not([type=hidden]), select, textarea, button");
    if (first) {
      first.focus();
    }
  }

  function closeDialog() {
    var box = dialog();
    if (box && box.open) {
      box.close();
    }
  }

  function swapBoard(html) {
    var current = board();
    if (!current) {
      return;
    }
    var holder = document.createElement("div");
    holder.innerHTML = html.trim();
    var fresh = holder.firstElementChild;
    if (!fresh) {
      return;
    }
    current.replaceWith(fresh);
    if (window.htmx) {
      window.htmx.process(fresh);
    }
  }

  function reloadBoard() {
    var current = board();
    if (!current) {
      return;
    }
    var url = "/pipelines/" + current.getAttribute("data-pipeline-id") + "/board";
    var owner = current.getAttribute("data-owner");
    fetch(url + (owner ? "?owner=" + encodeURIComponent(owner) : ""), {
      headers: { "HX-Request": "true", "HX-Target": "board" },
      credentials: "same-origin"
    }).then(function (response) {
      return response.ok ? response.text().then(swapBoard) : null;
    });
  }

  function send(dealId, body, undo) {
    body.set("csrf_token", csrfToken());
    var current = board();
    if (current) {
      body.set("owner", current.getAttribute("data-owner") || "");
    }
    return fetch("/deals/" + encodeURIComponent(dealId) + "/move", {
      method: "POST",
      body: body,
      headers: { "X-CSRF-Token": csrfToken(), "X-Board": "1" },
      credentials: "same-origin"
    }).then(function (response) {
      return response.text().then(function (html) {
        if (response.ok) {
          closeDialog();
          swapBoard(html);
          announce(document.documentElement.lang === "ja" ? "移動しました" : "Moved");
        } else {
          undo();
          if (response.status === 422 || response.status === 409) {
            showDialog(html);
          } else {
            showDialog("<p role=\"alert\">" + response.status + " " + response.statusText +
              "</p><button type=\"button\" class=\"button\" data-close-dialog>OK</button>");
          }
        }
      });
    }).catch(undo);
  }

  function position(card) {
    var value = card ? parseFloat(card.getAttribute("data-position")) : NaN;
    return isNaN(value) ? null : value;
  }

  function placeFor(list, y) {
    var cards = list.querySelectorAll(".board-card:not(.dragging)");
    for (var i = 0; i < cards.length; i += 1) {
      var box = cards[i].getBoundingClientRect();
      if (y < box.top + box.height / 2) {
        return cards[i];
      }
    }
    return null;
  }

  document.addEventListener("dragstart", function (event) {
    var card = event.target.closest ? event.target.closest(".board-card[draggable=true]") : null;
    if (!card) {
      return;
    }
    dragged = card;
    home = { list: card.parentNode, next: card.nextElementSibling };
    card.classList.add("dragging");
    event.dataTransfer.effectAllowed = "move";
    event.dataTransfer.setData("text/plain", card.getAttribute("data-deal-id"));
  });

  document.addEventListener("dragend", function () {
    if (dragged) {
      dragged.classList.remove("dragging");
    }
    dragged = null;
    document.querySelectorAll(".board-column.drop-target").forEach(function (column) {
      column.classList.remove("drop-target");
    });
  });

  document.addEventListener("dragover", function (event) {
    var column = dragged && event.target.closest ? event.target.closest(".board-column") : null;
    if (!column) {
      return;
    }
    event.preventDefault();
    event.dataTransfer.dropEffect = "move";
    document.querySelectorAll(".board-column.drop-target").forEach(function (other) {
      if (other !== column) {
        other.classList.remove("drop-target");
      }
    });
    column.classList.add("drop-target");
  });

  document.addEventListener("drop", function (event) {
    var column = dragged && event.target.closest ? event.target.closest(".board-column") : null;
    if (!column) {
      return;
    }
    event.preventDefault();
    column.classList.remove("drop-target");
    var card = dragged;
    var list = column.querySelector(".board-cards");
    var before = placeFor(list, event.clientY);
    if (card.parentNode === list && (before === card.nextElementSibling || before === card)) {
      return;
    }
    list.insertBefore(card, before);
    var previous = position(card.previousElementSibling);
    var next = position(card.nextElementSibling);
    var place = "";
    if (previous !== null && next !== null) {
      place = String((previous + next) / 2);
    } else if (next !== null) {
      place = String(next - 1);
    } else if (previous !== null) {
      place = String(previous + 1);
    }
    var body = new FormData();
    body.set("stage_id", column.getAttribute("data-stage-id"));
    body.set("board_position", place);
    body.set("version", card.getAttribute("data-version") || "");
    var origin = home;
    send(card.getAttribute("data-deal-id"), body, function () {
      origin.list.insertBefore(card, origin.next);
    });
  });

  // The form the server sends for a stage's missing fields is sent the same way.
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!form.classList || !form.classList.contains("move-form")) {
      return;
    }
    event.preventDefault();
    var dealId = (form.getAttribute("action") || "").split("/")[2];
    send(dealId, new FormData(form), function () {});
  });

  // My day: a task completed in place leaves its section; the section's count follows, and
  // an emptied section says so, as it would after a reload.
  document.addEventListener("htmx:afterSettle", function () {
    document.querySelectorAll(".task-section[data-total]").forEach(function (section) {
      var shown = section.querySelectorAll(".task-list > li").length;
      var gone = Number(section.getAttribute("data-shown")) - shown;
      var total = Math.max(0, Number(section.getAttribute("data-total")) - gone);
      var badge = section.querySelector("h2 .badge");
      if (badge) {
        badge.textContent = String(total);
        if (total === 0) {
          badge.classList.remove("badge-delete");
        }
      }
      if (shown === 0) {
        section.querySelectorAll(".task-list, .task-more").forEach(function (el) {
          el.hidden = true;
        });
        var empty = section.querySelector(".task-empty");
        if (empty) {
          empty.hidden = false;
        }
      }
    });
  });

  document.addEventListener("click", function (event) {
    var button = event.target.closest ? event.target.closest("[data-close-dialog]") : null;
    if (button) {
      var stale = button.closest("dialog") && button.closest("dialog").querySelector(".alert-warning");
      closeDialog();
      if (stale) {
        reloadBoard();
      }
    }
  });
})();
