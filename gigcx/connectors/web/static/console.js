/* The local expert console: the queue, one handoff's conversation, and the expert's actions.
 *
 * It shows what the server says, as an expert would say it: the handoff's real state and who
 * holds it, only the buttons that can work for that state and this expert, times in the
 * viewer's own time zone, and the bot's Markdown rendered. Every piece of text reaches the page
 * through text nodes (never innerHTML), so a message can never become markup or script.
 */
(function () {
  "use strict";

  var REFRESH_MS = 2000;
  var current = null; // the id of the handoff shown
  var shown = null; // its data, as last loaded
  var shownMessages = ""; // which messages are on screen, to re-render only when they change
  var shownNotes = "";
  var polling = null;
  var busy = false; // an action is on its way: no second click meanwhile
  // What this expert last did to a handoff that leaves it waiting again (release, move to
  // staff): the server only knows "waiting", the expert wants to see that their step worked.
  var outcomes = {};

  function el(id) { return document.getElementById(id); }
  function text(tag, value) {
    var node = document.createElement(tag);
    node.textContent = value;
    return node;
  }

  function call(method, path, body) {
    return fetch(path, {
      method: method,
      headers: { "Content-Type": "application/json", "X-Console-Token": el("token").value },
      body: body ? JSON.stringify(body) : undefined,
    }).then(function (response) {
      return response.json().catch(function () { return {}; }).then(function (data) {
        if (!response.ok) {
          var error = new Error(data.detail || "HTTP " + response.status);
          error.status = response.status;
          throw error;
        }
        return data;
      });
    });
  }

  function me() { return { expert_id: el("expert").value.trim(), name: el("name").value.trim() || null }; }

  // ------------------------------------------------------------------ errors

  // An action's error stays until the expert dismisses it or acts again: the refresh every
  // 2 s must not wipe what they have not read yet.
  function showError(error) {
    el("error-text").textContent = error.message || String(error);
    el("error").hidden = false;
    // A wrong token is not sent again every 2 s: wrong ones are limited per minute.
    if (error.status === 401 || error.status === 429) stopPolling();
  }
  function clearError() {
    el("error-text").textContent = "";
    el("error").hidden = true;
  }
  el("dismiss").addEventListener("click", clearError);

  // A failed refresh is a different thing: it says so until a refresh works again.
  function refreshFailed(error) {
    if (error.status === 401 || error.status === 429) { showError(error); return; }
    el("connection").textContent = "Could not refresh (" + error.message + "); trying again.";
    el("connection").hidden = false;
  }
  function refreshWorked() { el("connection").hidden = true; }

  function startPolling() {
    if (!polling) polling = setInterval(refresh, REFRESH_MS);
  }
  function stopPolling() { clearInterval(polling); polling = null; }

  // ------------------------------------------------------------------ times

  /** A Date from the API's ISO string; one without an offset is UTC (as the server stores). */
  function parseTime(iso) {
    if (!iso) return null;
    var zoned = /(Z|[+-]\d\d:?\d\d)$/i.test(iso) ? iso : iso + "Z";
    var moment = new Date(zoned);
    return isNaN(moment.getTime()) ? null : moment;
  }

  /** The time of day in the viewer's zone, with the date when it is not today. */
  function clock(moment) {
    var today = new Date();
    var sameDay = moment.toDateString() === today.toDateString();
    var time = moment.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    return sameDay ? time : moment.toLocaleDateString([], { day: "numeric", month: "short" }) + " " + time;
  }

  function age(moment) {
    var minutes = Math.floor((Date.now() - moment.getTime()) / 60000);
    if (minutes < 1) return "just now";
    if (minutes < 60) return minutes + " min ago";
    var hours = Math.floor(minutes / 60);
    if (hours < 24) return hours + " h " + (minutes % 60) + " min ago";
    var days = Math.floor(hours / 24);
    return days + (days === 1 ? " day ago" : " days ago");
  }

  function timeElement(iso) {
    var moment = parseTime(iso);
    if (!moment) return null;
    var node = text("time", clock(moment));
    node.setAttribute("datetime", moment.toISOString());
    node.title = moment.toLocaleString();
    return node;
  }

  // ------------------------------------------------------------------ Markdown, safely

  // A small subset of Markdown: **bold**, __bold__, *italics*, _italics_, `code`,
  // [links](https://...) and bare http(s) links, - and 1. lists, # headings (as bold), line
  // breaks and paragraphs. Built from text nodes and a few fixed elements, so nothing in a
  // message is ever parsed as HTML; a link is made only for an http(s) address.
  var INLINE = [
    "\\*\\*(.+?)\\*\\*", // 1: bold
    "__(.+?)__", // 2: bold
    "`([^`]+)`", // 3: code
    "\\[([^\\]]+)\\]\\(([^()\\s]+)\\)", // 4, 5: a link with its label
    "(https?:\\/\\/[^\\s<>()]*[^\\s<>().,;:!?'\"])", // 6: a bare link
    "(?<![\\w*])\\*(?![\\s*])(.+?)(?<![\\s*])\\*(?![\\w*])", // 7: italics
    "(?<![\\w_])_(?![\\s_])(.+?)(?<![\\s_])_(?![\\w_])", // 8: italics, not snake_case
  ].join("|");

  function safeUrl(address) {
    try {
      var url = new URL(address);
      return url.protocol === "http:" || url.protocol === "https:" ? url.href : null;
    } catch (notAUrl) {
      return null;
    }
  }

  function link(parent, label, address) {
    var url = safeUrl(address);
    if (!url) {
      parent.appendChild(document.createTextNode(label === address ? address : label + " (" + address + ")"));
      return;
    }
    var anchor = text("a", label);
    anchor.href = url;
    anchor.target = "_blank";
    anchor.rel = "noopener noreferrer";
    parent.appendChild(anchor);
  }

  function inline(parent, source) {
    var pattern = new RegExp(INLINE, "g");
    var at = 0;
    var match;
    while ((match = pattern.exec(source)) !== null) {
      if (match.index > at) parent.appendChild(document.createTextNode(source.slice(at, match.index)));
      if (match[1] !== undefined || match[2] !== undefined) {
        var strong = document.createElement("strong");
        inline(strong, match[1] !== undefined ? match[1] : match[2]);
        parent.appendChild(strong);
      } else if (match[3] !== undefined) {
        parent.appendChild(text("code", match[3]));
      } else if (match[4] !== undefined) {
        link(parent, match[4], match[5]);
      } else if (match[6] !== undefined) {
        link(parent, match[6], match[6]);
      } else {
        var em = document.createElement("em");
        inline(em, match[7] !== undefined ? match[7] : match[8]);
        parent.appendChild(em);
      }
      at = pattern.lastIndex;
    }
    if (at < source.length) parent.appendChild(document.createTextNode(source.slice(at)));
  }

  function markdown(source) {
    var fragment = document.createDocumentFragment();
    var paragraph = null;
    var list = null;
    source.replace(/\r\n?/g, "\n").split("\n").forEach(function (line) {
      var bullet = /^\s*[-*•]\s+(.*)$/.exec(line);
      var numbered = /^\s*(\d{1,9})[.)]\s+(.*)$/.exec(line);
      var heading = /^\s*#{1,6}\s+(.*)$/.exec(line);
      if (!line.trim()) { paragraph = null; list = null; return; }
      if (bullet || numbered) {
        var kind = bullet ? "UL" : "OL";
        if (!list || list.nodeName !== kind) {
          list = document.createElement(kind);
          if (numbered && numbered[1] !== "1") list.start = Number(numbered[1]);
          fragment.appendChild(list);
        }
        paragraph = null;
        var item = document.createElement("li");
        inline(item, bullet ? bullet[1] : numbered[2]);
        list.appendChild(item);
        return;
      }
      list = null;
      if (heading) {
        var title = document.createElement("p");
        var strong = document.createElement("strong");
        inline(strong, heading[1]);
        title.appendChild(strong);
        fragment.appendChild(title);
        paragraph = null;
        return;
      }
      if (paragraph) paragraph.appendChild(document.createElement("br"));
      else { paragraph = document.createElement("p"); fragment.appendChild(paragraph); }
      inline(paragraph, line);
    });
    return fragment;
  }

  // ------------------------------------------------------------------ what a handoff is now

  function holder(handoff) { return handoff.assignee_name || handoff.assignee || "someone"; }

  function waitingFor(handoff) { return handoff.route === "staff" ? "staff" : "a gig expert"; }

  /** The state as one line: who has it, or what happened to it. */
  function stateLabel(handoff, viewer) {
    if (handoff.state === "assigned") {
      return handoff.assignee === viewer ? "Claimed by you (" + holder(handoff) + ")" : "Claimed by " + holder(handoff);
    }
    if (handoff.state === "resolved") return "Resolved by " + holder(handoff);
    if (handoff.state === "returned") return "Handed back to the bot by " + holder(handoff);
    if (handoff.state === "waiting") {
      var done = outcomes[handoff.id];
      if (done && done.offers === handoff.offers) {
        return (done.action === "move_to_staff" ? "Moved to staff" : "Released") + " — waiting for " + waitingFor(handoff);
      }
      return (handoff.offers > 1 ? "Offered again — waiting for " : "Waiting for ") + waitingFor(handoff);
    }
    return handoff.state;
  }

  /** Which buttons can work for this state and this expert, and a word on why not. */
  function allowed(handoff, viewer) {
    var mine = handoff.state === "assigned" && handoff.assignee === viewer;
    var can = {
      claim: handoff.state === "waiting",
      reply: mine,
      note: true,
      resolve: mine,
      handback: mine,
      release: mine,
      move_to_staff: mine && handoff.route !== "staff",
    };
    var hint = "";
    if (handoff.state === "waiting") hint = "Claim it to reply to the customer.";
    else if (handoff.state === "assigned" && !mine) {
      hint = "Claimed by " + holder(handoff) + ": only they can reply, resolve, release or hand it back. You can keep an internal note.";
    } else if (handoff.state === "resolved") hint = "Resolved: nothing more to do. You can still keep an internal note.";
    else if (handoff.state === "returned") hint = "The bot answers this customer again. You can still keep an internal note.";
    return { can: can, hint: hint };
  }

  function renderButtons() {
    var rules = shown ? allowed(shown, me().expert_id) : null;
    document.querySelectorAll("[data-action]").forEach(function (button) {
      var action = button.getAttribute("data-action");
      button.disabled = busy || !rules || !rules.can[action];
    });
    el("reply").disabled = !rules || !(rules.can.reply || rules.can.note);
    el("hint").textContent = rules ? rules.hint : "";
  }

  function whenLine(handoff) {
    var parts = [];
    var created = parseTime(handoff.created_at);
    if (created) parts.push("Asked for help " + age(created) + " (" + clock(created) + ")");
    var claimed = parseTime(handoff.claimed_at);
    if (claimed && handoff.state === "assigned") parts.push("claimed " + clock(claimed));
    var closed = parseTime(handoff.closed_at);
    if (closed) parts.push("closed " + clock(closed));
    return parts.join(" · ");
  }

  // ------------------------------------------------------------------ loading

  function loadQueue() {
    return call("GET", "/v1/console/handoffs").then(function (handoffs) {
      startPolling();
      var viewer = me().expert_id;
      var queue = el("queue");
      queue.replaceChildren();
      handoffs.forEach(function (handoff) {
        var item = document.createElement("li");
        var button = document.createElement("button");
        button.type = "button";
        button.setAttribute("aria-current", String(handoff.id === current));
        button.appendChild(text("strong", stateLabel(handoff, viewer)));
        var created = parseTime(handoff.created_at);
        var meta = handoff.reason_label + " · " + handoff.route_label;
        if (created) meta = age(created) + " · " + meta;
        button.appendChild(text("span", meta)).className = "when";
        button.appendChild(text("span", handoff.summary));
        button.addEventListener("click", function () {
          current = handoff.id;
          shown = null;
          shownMessages = "";
          loadDetail();
          loadQueue();
        });
        item.appendChild(button);
        queue.appendChild(item);
      });
      if (!handoffs.length) queue.appendChild(text("li", "Nothing waiting."));
    });
  }

  function renderMessages(handoff) {
    var key = handoff.id + ":" + handoff.messages.map(function (m) { return m.seq; }).join(",");
    if (key === shownMessages) return;
    var box = el("messages");
    var atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 40;
    var fresh = shownMessages.split(":")[0] !== handoff.id;
    shownMessages = key;
    box.replaceChildren();
    handoff.messages.forEach(function (message) {
      var line = document.createElement("div");
      line.className = "line " + message.author;
      line.setAttribute("data-seq", String(message.seq));
      line.appendChild(text("span", message.author)).className = "who";
      var time = timeElement(message.created_at);
      if (time) line.appendChild(time);
      var body = document.createElement("div");
      body.className = "body";
      // Only the bot's text (from the brand's knowledge) is rendered as Markdown. A customer's
      // "[https://brand/account](https://evil)" stays as typed, so it cannot pass for a
      // trusted link, and an expert sees their text as the customer does.
      body.appendChild(message.author === "bot" ? markdown(message.text) : text("p", message.text));
      line.appendChild(body);
      box.appendChild(line);
    });
    // Follow new messages, unless the expert has scrolled up to read.
    if (fresh || atBottom) box.scrollTop = box.scrollHeight;
  }

  function renderNotes(handoff) {
    var key = JSON.stringify([handoff.packet.expert_notes || [], handoff.internal_notes]);
    if (key === shownNotes) return;
    shownNotes = key;
    var notes = el("notes");
    notes.replaceChildren();
    (handoff.packet.expert_notes || []).forEach(function (note) {
      notes.appendChild(text("li", note.title + " › " + note.section + ": " + note.snippet));
    });
    if (!notes.children.length) notes.appendChild(text("li", "None matched."));
    var internal = el("internal-notes");
    internal.replaceChildren();
    handoff.internal_notes.forEach(function (note) {
      var item = text("li", note.author + ": " + note.text);
      var time = timeElement(note.created_at);
      if (time) { item.appendChild(document.createTextNode(" ")); item.appendChild(time); }
      internal.appendChild(item);
    });
    if (!internal.children.length) internal.appendChild(text("li", "None yet."));
  }

  function render() {
    if (!shown) return;
    var handoff = shown;
    var viewer = me().expert_id;
    el("detail").hidden = false;
    el("detail-title").textContent = "Handoff " + handoff.id;
    el("state").textContent = stateLabel(handoff, viewer);
    el("state").setAttribute("data-state", handoff.state);
    el("facts").textContent = whenLine(handoff) + " · " + handoff.reason_label + " · " + handoff.route_label;
    el("summary").textContent = handoff.summary;
    var tags = el("tags");
    tags.replaceChildren();
    handoff.tags.forEach(function (tag) { tags.appendChild(text("span", tag)).className = "tag"; });
    renderMessages(handoff);
    renderNotes(handoff);
    renderButtons();
  }

  function loadDetail() {
    if (!current) return Promise.resolve();
    var wanted = current;
    return call("GET", "/v1/console/handoffs/" + wanted).then(function (handoff) {
      if (wanted !== current) return; // another one was picked meanwhile
      shown = handoff;
      render();
    });
  }

  function refresh() {
    return Promise.all([loadQueue(), loadDetail()]).then(refreshWorked, refreshFailed);
  }

  // ------------------------------------------------------------------ actions

  function act(action) {
    if (!shown || busy) return;
    clearError();
    var handoff = shown;
    var viewer = me();
    var writes = action === "reply" || action === "note";
    var body = { expert_id: viewer.expert_id };
    if (writes) body.text = el("reply").value;
    if (action === "claim") body.name = viewer.name;
    busy = true;
    renderButtons();
    call("POST", "/v1/console/handoffs/" + handoff.id + "/" + action, body)
      .then(function (result) {
        if (writes) el("reply").value = "";
        if (action === "release" || action === "move_to_staff") {
          outcomes[handoff.id] = { action: action, offers: result.offers };
        }
      })
      .catch(showError)
      .then(function () {
        busy = false;
        return refresh();
      });
  }

  document.querySelectorAll("[data-action]").forEach(function (button) {
    button.addEventListener("click", function () { act(button.getAttribute("data-action")); });
  });

  // Another expert id is another viewer: other buttons make sense.
  el("expert").addEventListener("input", function () { render(); });

  el("signin").addEventListener("submit", function (event) {
    event.preventDefault();
    clearError();
    loadQueue().then(refreshWorked, showError);
  });
})();
