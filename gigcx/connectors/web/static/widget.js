/* gigcx chat widget: one <script> tag, no dependencies, no build step.
 *
 *   <script src="https://HOST/widget.js" data-brand="kestrel" data-key="PUBLIC-KEY" defer></script>
 *
 * Optional, for signed-in customers (the hash is computed by the brand's backend):
 *   data-user-id, data-user-hash, data-user-name, data-user-email, data-user-plan
 *
 * Everything lives in a shadow DOM, so the page's CSS cannot reach it and its CSS cannot reach
 * the page. Every message is rendered as text (textContent), never as HTML.
 */
(function () {
  "use strict";

  var script = document.currentScript;
  if (!script || window.__gigcxWidget) return;
  window.__gigcxWidget = true;

  var brand = script.getAttribute("data-brand");
  var key = script.getAttribute("data-key");
  var base = new URL(script.src, location.href).origin;
  var user = {
    id: script.getAttribute("data-user-id"),
    hash: script.getAttribute("data-user-hash"),
    name: script.getAttribute("data-user-name"),
    email: script.getAttribute("data-user-email"),
    plan: script.getAttribute("data-user-plan"),
  };
  var storageKey = "gigcx:" + brand + ":" + (user.id || "anonymous");

  var state = {
    config: null,
    conversation: null, // {id, token}
    lastSeq: 0, // every message up to this one is shown: the socket resumes after it
    messages: {}, // seq -> element
    drafts: {}, // draft_id -> element
    socket: null,
    retry: 0,
    closing: false,
    convState: "bot",
    agent: null, // who holds the conversation while it is assigned: {name, role}
    contactLeft: false,
    seen: 0, // the newest message the customer has had in front of them (the panel open)
    unread: 0,
  };

  // ------------------------------------------------------------------ DOM

  // A custom element, reset inline: the page's `div {...}` rules and inherited fonts and
  // colours stop at its edge.
  var host = document.createElement("gigcx-widget");
  host.setAttribute("data-gigcx", "");
  host.style.cssText = "all: initial";
  var root = host.attachShadow({ mode: "open" });
  root.innerHTML =
    '<style>' +
    ':host{all:initial}' +
    '*{box-sizing:border-box;font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif}' +
    '.launcher{position:fixed;right:16px;bottom:16px;z-index:2147483000;border:0;border-radius:999px;' +
    'padding:12px 18px;color:#fff;background:var(--brand);font-size:15px;font-weight:600;cursor:pointer;' +
    'box-shadow:0 4px 14px rgba(0,0,0,.25)}' +
    '.badge{display:inline-block;min-width:20px;margin-left:8px;padding:1px 6px;border-radius:999px;' +
    'background:#fff;color:#b42318;font-size:12px;line-height:18px;text-align:center}' +
    '.badge[hidden]{display:none}' +
    '.launcher:focus-visible,button:focus-visible,textarea:focus-visible,a:focus-visible{outline:3px solid #ffbf47;outline-offset:2px}' +
    '.panel{position:fixed;right:16px;bottom:76px;z-index:2147483000;width:min(380px,calc(100vw - 16px));' +
    'height:min(600px,calc(100vh - 96px));display:flex;flex-direction:column;background:#fff;color:#1b1f24;' +
    'border-radius:14px;box-shadow:0 8px 30px rgba(0,0,0,.3);overflow:hidden;font-size:14px}' +
    '.panel[hidden]{display:none}' +
    '@media (max-width:480px){.panel{right:8px;left:8px;bottom:70px;width:auto;height:calc(100vh - 86px)}}' +
    'header{display:flex;align-items:center;justify-content:space-between;padding:12px 14px;color:#fff;background:var(--brand)}' +
    'header h2{margin:0;font-size:16px}' +
    'header button{background:transparent;border:0;color:#fff;font-size:22px;line-height:1;cursor:pointer;padding:2px 6px}' +
    '.banner{padding:8px 14px;background:#fff7d6;border-bottom:1px solid #eadca0;font-size:13px}' +
    '.banner[hidden]{display:none}' +
    '.log{flex:1;overflow-y:auto;padding:12px;display:flex;flex-direction:column;gap:8px;background:#f6f7f9}' +
    '.msg{max-width:85%;padding:8px 11px;border-radius:12px;white-space:pre-wrap;word-wrap:break-word;line-height:1.4}' +
    '.msg p{margin:0 0 6px}.msg p:last-child{margin:0}' +
    '.customer{align-self:flex-end;background:var(--brand);color:#fff}' +
    '.bot,.expert,.staff,.system{align-self:flex-start;background:#fff;border:1px solid #dde1e6}' +
    '.who{display:block;font-size:11px;color:#57606a;margin-bottom:3px}' +
    '.sources{margin:6px 0 0;padding:0;list-style:none;font-size:12px}' +
    '.sources a{color:var(--brand)}' +
    '.draft{opacity:.75}' +
    '.rate{display:flex;align-items:center;flex-wrap:wrap;gap:4px;margin-top:6px;padding-top:6px;border-top:1px solid #eef0f3;white-space:normal;font-size:12px;color:#57606a}' +
    '.rate button{display:inline-flex;align-items:center;border:1px solid #c9ced6;border-radius:999px;padding:2px 7px;background:#fff;color:#57606a;cursor:pointer}' +
    '.rate button[aria-pressed=true]{background:var(--brand);border-color:var(--brand);color:#fff}' +
    '.rate-note{margin-left:4px}.rate-note.failed{color:#b42318}' +
    '.quick{display:flex;flex-wrap:wrap;gap:6px;align-self:flex-start;max-width:95%}' +
    '.quick button{border:1px solid var(--brand);border-radius:999px;padding:5px 12px;background:#fff;color:var(--brand);font-size:13px;cursor:pointer}' +
    '.msg.notice{align-self:center;max-width:95%;background:transparent;border:0;color:#57606a;font-size:12px;text-align:center;padding:2px 8px}' +
    '.typing{padding:0 14px 6px;font-size:12px;color:#57606a;background:#f6f7f9}' +
    '.typing[hidden]{display:none}' +
    '.csat{padding:10px 14px;border-top:1px solid #dde1e6;background:#fff}' +
    '.csat[hidden]{display:none}' +
    '.csat fieldset{border:0;margin:0;padding:0}' +
    '.csat legend{font-weight:600;margin-bottom:6px}' +
    '.stars{display:flex;gap:6px;margin-bottom:6px}' +
    '.stars button{flex:1;padding:6px 0;border:1px solid #c9ced6;border-radius:8px;background:#fff;cursor:pointer}' +
    '.stars button[aria-pressed=true]{background:var(--brand);color:#fff;border-color:var(--brand)}' +
    'form.compose{display:flex;gap:8px;padding:10px;border-top:1px solid #dde1e6;background:#fff}' +
    'textarea{flex:1;resize:none;min-height:40px;max-height:120px;padding:9px;border:1px solid #c9ced6;border-radius:10px;font-size:14px}' +
    '.send,.person,.csat .submit{border:0;border-radius:10px;padding:0 14px;background:var(--brand);color:#fff;font-weight:600;cursor:pointer}' +
    '.actions{display:flex;justify-content:flex-end;padding:6px 10px 0;background:#fff}' +
    '.person{padding:6px 10px;background:#fff;color:var(--brand);border:1px solid var(--brand)}' +
    '.person[hidden]{display:none}' +
    '.error{color:#b42318;font-size:12px;padding:0 12px 6px;background:#fff}' +
    '.contact{padding:8px 12px;background:#fff;border-top:1px solid #dde1e6;font-size:13px}' +
    '.contact[hidden]{display:none}' +
    '.contact .row{display:flex;gap:6px;margin-top:4px}' +
    '.contact input{flex:1;padding:7px;border:1px solid #c9ced6;border-radius:8px}' +
    '.contact button{border:0;border-radius:8px;padding:0 12px;background:var(--brand);color:#fff}' +
    '.error:empty{display:none}' +
    '.sr-only{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0)}' +
    '</style>' +
    '<button class="launcher" type="button" aria-expanded="false" aria-controls="gigcx-panel">' +
    '<span class="label">Chat with us</span><span class="badge" aria-hidden="true" hidden></span></button>' +
    '<div class="sr-only announce" aria-live="polite"></div>' +
    '<section class="panel" id="gigcx-panel" role="dialog" aria-modal="false" aria-labelledby="gigcx-title" hidden>' +
    '  <header><h2 id="gigcx-title">Support</h2><button class="close" type="button" aria-label="Close chat">×</button></header>' +
    '  <div class="banner" role="status" hidden></div>' +
    '  <div class="log" role="log" aria-live="polite" aria-relevant="additions" tabindex="0" aria-label="Conversation"></div>' +
    '  <div class="typing" aria-live="polite" hidden></div>' +
    '  <div class="csat" hidden><fieldset><legend>How did we do?</legend>' +
    '    <div class="stars" role="group" aria-label="Rating from 1 to 5"></div>' +
    '    <label class="sr-only" for="gigcx-comment">Comment (optional)</label>' +
    '    <textarea id="gigcx-comment" placeholder="Anything to add? (optional)"></textarea>' +
    '    <button class="submit" type="button" style="margin-top:6px;padding:8px 14px">Send rating</button>' +
    '  </fieldset><p class="thanks" hidden>Thank you for your rating!</p></div>' +
    '  <form class="contact" hidden><label for="gigcx-email">Your e-mail for a reply</label>' +
    '    <div class="row"><input id="gigcx-email" type="email" autocomplete="email" required>' +
    '    <button type="submit">Send</button></div></form>' +
    '  <div class="actions"><button class="person" type="button">Talk to a person</button></div>' +
    '  <div class="error" role="alert"></div>' +
    '  <form class="compose"><label class="sr-only" for="gigcx-input">Your message</label>' +
    '    <textarea id="gigcx-input" rows="1" maxlength="4000" placeholder="Ask a question…"></textarea>' +
    '    <button class="send" type="submit">Send</button></form>' +
    '</section>';

  var $ = function (selector) { return root.querySelector(selector); };
  var launcher = $(".launcher"), panel = $(".panel"), log = $(".log"), banner = $(".banner");
  var typing = $(".typing"), input = $("#gigcx-input"), form = $(".compose"), errorBox = $(".error");
  var personButton = $(".person"), csat = $(".csat"), stars = $(".stars");
  var contact = $(".contact"), badge = $(".badge"), announce = $(".announce");
  var rating = 0;

  // ------------------------------------------------------------------ HTTP

  function api(method, path, body) {
    var headers = { "Content-Type": "application/json" };
    if (state.conversation) headers.Authorization = "Bearer " + state.conversation.token;
    return fetch(base + path, {
      method: method,
      headers: headers,
      body: body === undefined ? undefined : JSON.stringify(body),
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

  function showError(message) { errorBox.textContent = message || ""; }

  // ------------------------------------------------------------------ rendering

  function appendText(parent, text) {
    // Paragraphs on blank lines; **bold** as <strong>. Built from text nodes only.
    text.split(/\n\s*\n/).forEach(function (paragraph) {
      var p = document.createElement("p");
      paragraph.split(/(\*\*[^*]+\*\*)/).forEach(function (part) {
        if (/^\*\*[^*]+\*\*$/.test(part)) {
          var strong = document.createElement("strong");
          strong.textContent = part.slice(2, -2);
          p.appendChild(strong);
        } else if (part) {
          p.appendChild(document.createTextNode(part.replace(/^#{1,6} /gm, "")));
        }
      });
      parent.appendChild(p);
    });
  }

  var AUTHOR_LABEL = { bot: "Assistant", expert: "Product expert", staff: "Support team", system: "" };

  function renderMessage(message) {
    if (state.messages[message.seq]) return; // already shown: never twice
    var item = document.createElement("div");
    item.className = "msg " + message.author;
    item.setAttribute("data-seq", String(message.seq));
    if (message.author !== "customer" && AUTHOR_LABEL[message.author]) {
      var who = document.createElement("span");
      who.className = "who";
      who.textContent = AUTHOR_LABEL[message.author];
      item.appendChild(who);
    }
    appendText(item, message.text);
    if (message.citations && message.citations.length) {
      var list = document.createElement("ul");
      list.className = "sources";
      list.setAttribute("aria-label", "Sources");
      message.citations.forEach(function (source) {
        var li = document.createElement("li");
        li.appendChild(document.createTextNode("Source: "));
        if (source.url && /^https?:\/\//.test(source.url)) {
          var link = document.createElement("a");
          link.href = source.url;
          link.target = "_blank";
          link.rel = "noopener noreferrer";
          link.textContent = source.title;
          li.appendChild(link);
        } else {
          li.appendChild(document.createTextNode(source.title));
        }
        list.appendChild(li);
      });
      item.appendChild(list);
    }
    if (message.author === "bot" && message.rateable) item.appendChild(rateRow(message));
    // Keep sequence order even if an event arrives early.
    var next = null;
    Object.keys(state.messages).forEach(function (seq) {
      if (Number(seq) > message.seq && (!next || Number(seq) < Number(next.getAttribute("data-seq")))) {
        next = state.messages[seq];
      }
    });
    log.insertBefore(item, next);
    state.messages[message.seq] = item;
    if (message.author === "bot" && message.quick_replies && message.quick_replies.length) {
      item.quickReplies = quickReplies(message.quick_replies);
      log.insertBefore(item.quickReplies, item.nextSibling);
    }
    pruneQuickReplies();
    // A reply to a POST can arrive before an earlier message the socket has not delivered
    // yet: only advance over an unbroken run, so a reconnect fetches what is missing.
    while (state.messages[state.lastSeq + 1]) state.lastSeq += 1;
    if (panel.hidden) {
      if (message.author !== "customer" && message.seq > state.seen) countUnread();
    } else {
      markSeen(message.seq);
    }
    scrollToNewest();
  }

  function scrollToNewest() { log.scrollTop = log.scrollHeight; }

  // Buttons the bot offers under its reply; clicking one sends its title, as if typed.
  function quickReplies(titles) {
    var row = document.createElement("div");
    row.className = "quick";
    row.setAttribute("role", "group");
    row.setAttribute("aria-label", "Suggested replies");
    titles.forEach(function (title) {
      var button = document.createElement("button");
      button.type = "button";
      button.textContent = title;
      button.addEventListener("click", function () {
        row.remove();
        send(title);
      });
      row.appendChild(button);
    });
    return row;
  }

  // "Helpful?" with a thumbs up and down under a bot answer. A click shows the vote at once
  // and sends it; the vote can be changed; a failed request puts back the vote the server has.
  function rateRow(message) {
    var row = document.createElement("div");
    row.className = "rate";
    row.setAttribute("role", "group");
    row.setAttribute("aria-label", "Was this answer helpful?");
    var label = document.createElement("span");
    label.textContent = "Helpful?";
    label.setAttribute("aria-hidden", "true"); // the group's name says it
    row.appendChild(label);
    var saved = message.rating === true || message.rating === false ? message.rating : null;
    var latest = 0; // only the newest click's answer changes what is shown
    var buttons = {};
    var note = document.createElement("span");
    note.className = "rate-note";
    note.setAttribute("aria-live", "polite");

    function press(value) {
      buttons.up.setAttribute("aria-pressed", String(value === true));
      buttons.down.setAttribute("aria-pressed", String(value === false));
    }

    function showNote(text, failed) {
      note.textContent = text;
      note.className = failed ? "rate-note failed" : "rate-note";
    }

    function vote(helpful) {
      if (!state.conversation) return;
      var attempt = ++latest;
      press(helpful);
      showNote("", false);
      api("PUT", "/v1/conversations/" + state.conversation.id + "/messages/" + message.seq + "/rating",
        { helpful: helpful }).then(
        function () {
          saved = helpful; // what a newer click that fails falls back to
          if (attempt !== latest) return;
          showNote("Thanks!", false);
        },
        function () {
          if (attempt !== latest) return;
          press(saved);
          showNote("Couldn't save your rating. Try again.", true);
        }
      );
    }

    [["up", true, "Helpful"], ["down", false, "Not helpful"]].forEach(
      function (spec) {
        var button = document.createElement("button");
        button.type = "button";
        button.appendChild(thumb(spec[1]));
        button.setAttribute("aria-label", spec[2]);
        button.addEventListener("click", function () { vote(spec[1]); });
        buttons[spec[0]] = button;
        row.appendChild(button);
      }
    );
    row.appendChild(note);
    press(saved);
    return row;
  }

  // A thumb drawn in SVG, not the 👍 emoji: a computer without an emoji font shows a box.
  var SVG = "http://www.w3.org/2000/svg";
  function thumb(up) {
    var svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("viewBox", "0 0 24 24");
    svg.setAttribute("width", "16");
    svg.setAttribute("height", "16");
    svg.setAttribute("aria-hidden", "true");
    svg.setAttribute("focusable", "false");
    var shape = document.createElementNS(SVG, "path");
    shape.setAttribute("d", "M3 11h4v10H3zM7 11l4-8c1.6 0 2.6 1.3 2.2 2.8L12.4 9H19a2 2 0 0 1 2 " +
      "2.3l-1.3 7.5A2 2 0 0 1 17.7 21H7");
    shape.setAttribute("fill", "none");
    shape.setAttribute("stroke", "currentColor");
    shape.setAttribute("stroke-width", "1.8");
    shape.setAttribute("stroke-linejoin", "round");
    if (!up) shape.setAttribute("transform", "matrix(1 0 0 -1 0 24)"); // the same hand, down
    svg.appendChild(shape);
    return svg;
  }

  // Only the newest message's buttons stay: an answer makes older ones moot.
  function pruneQuickReplies() {
    var newest = Math.max.apply(null, Object.keys(state.messages).map(Number));
    Object.keys(state.messages).forEach(function (seq) {
      var item = state.messages[seq];
      if (item.quickReplies && Number(seq) !== newest) {
        item.quickReplies.remove();
        item.quickReplies = null;
      }
    });
  }

  // ------------------------------------------------------------------ unread

  // A reply that arrives while the panel is closed is counted on the launcher (and said once,
  // politely, to a screen reader); opening the panel clears it. `seen` is kept with the
  // conversation, so a reload counts only what the customer has not had in front of them.
  function countUnread() {
    state.unread += 1;
    showUnread();
  }

  function showUnread() {
    var count = state.unread;
    badge.textContent = count ? String(count) : "";
    badge.hidden = !count;
    launcher.setAttribute("aria-label", count
      ? "Chat with us, " + count + (count === 1 ? " unread message" : " unread messages")
      : "Chat with us");
    if (count) announce.textContent = count === 1 ? "1 new message in the chat" : count + " new messages in the chat";
  }

  function markSeen(seq) {
    if (seq <= state.seen) return;
    state.seen = seq;
    saveConversation();
    sendReadReceipt();
  }

  // The server is told what the customer has had in front of them (the panel open, the page
  // visible), so a reply they have read is not e-mailed to them too. One request at a time.
  var receipt = { busy: false, again: false };
  function sendReadReceipt() {
    if (!state.conversation || panel.hidden || document.visibilityState === "hidden") return;
    if (receipt.busy) { receipt.again = true; return; }
    receipt.busy = true;
    var seq = Math.min(state.seen, state.lastSeq);
    api("POST", "/v1/conversations/" + state.conversation.id + "/read", { seq: seq })
      .catch(function () { /* a later receipt says the same and more */ })
      .then(function () {
        receipt.busy = false;
        if (receipt.again) { receipt.again = false; sendReadReceipt(); }
      });
  }

  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState === "visible" && !panel.hidden) {
      markSeen(state.lastSeq);
      sendReadReceipt();
    }
  });

  function clearUnread() {
    markSeen(state.lastSeq);
    if (!state.unread) return;
    state.unread = 0;
    showUnread();
    announce.textContent = "";
  }

  function renderDraft(event) {
    var item = state.drafts[event.draft_id];
    if (!item) {
      item = document.createElement("div");
      item.className = "msg bot draft";
      item.setAttribute("aria-hidden", "true"); // announced once, when the message is final
      state.drafts[event.draft_id] = item;
      log.appendChild(item);
    }
    item.textContent = event.text;
    scrollToNewest();
  }

  function dropDraft(draftId) {
    var item = draftId && state.drafts[draftId];
    if (item) { item.remove(); delete state.drafts[draftId]; }
  }

  function renderState(event) {
    if (event.state === "resolved" && state.convState !== "resolved") resetRating();
    if (event.state === "assigned" && event.agent) state.agent = event.agent;
    else if (event.state !== "assigned") state.agent = null;
    state.convState = event.state;
    var minutes = state.config ? state.config.expert_wait_minutes : 5;
    var text = "";
    if (event.state === "waiting") {
      var who = event.route === "staff" ? "our support team" : "a product expert";
      text = "Waiting for " + who + " — usually under " + minutes + " minutes";
    } else if (event.state === "assigned" && event.agent) {
      text = event.agent.name
        ? event.agent.name + ", " + event.agent.role + ", joined"
        : "A " + event.agent.role + " joined";
    } else if (event.state === "resolved") {
      text = "Resolved";
    }
    banner.textContent = text;
    banner.hidden = !text;
    personButton.hidden = event.state !== "bot";
    // Nobody available: offer to answer by e-mail (until someone joins or it is left).
    contact.hidden = !(event.state === "waiting" && event.nobody_available && !state.contactLeft);
    csat.hidden = event.state !== "resolved";
    if (event.state === "resolved") sendReadReceipt(); // the resolution is seen if open
    if (event.state !== "bot") typing.hidden = true;
    scrollToNewest(); // the rating box, a banner or a form took room from the log
  }

  function renderTyping(event) {
    if (event.author === "bot" && state.convState !== "bot") return;
    typing.textContent = event.active ? (AUTHOR_LABEL[event.author] || "Someone") + " is typing…" : "";
    typing.hidden = !event.active;
  }

  function handle(event) {
    if (event.type === "message.created") {
      dropDraft(event.draft_id);
      renderMessage(event.message);
      saveConversation();
    } else if (event.type === "message.draft") {
      renderDraft(event);
    } else if (event.type === "conversation.state") {
      renderState(event);
    } else if (event.type === "typing") {
      renderTyping(event);
    }
  }

  // ------------------------------------------------------------------ conversation

  function saveConversation() {
    if (!state.conversation) return;
    try {
      // Another tab of this conversation may have shown more: never save less than it did.
      var stored = loadConversation();
      var seen = stored && stored.id === state.conversation.id
        ? Math.max(Number(stored.seen) || 0, state.seen) : state.seen;
      var saved = { id: state.conversation.id, token: state.conversation.token, seen: seen };
      localStorage.setItem(storageKey, JSON.stringify(saved));
    } catch (ignored) { /* private mode: the conversation lasts for this page only */ }
  }

  function loadConversation() {
    try {
      var saved = JSON.parse(localStorage.getItem(storageKey) || "null");
      if (saved && saved.id && saved.token) return saved;
    } catch (ignored) { /* unreadable: start a new one */ }
    return null;
  }

  function ensureConversation() {
    if (state.conversation) return Promise.resolve(state.conversation);
    // Another tab may have started one since this page loaded: join it, not a second one.
    var started = loadConversation();
    if (started) {
      return restore(started).then(function () {
        return state.conversation || ensureConversation();
      });
    }
    var attributes = {};
    ["name", "email", "plan"].forEach(function (field) { if (user[field]) attributes[field] = user[field]; });
    attributes.page = location.pathname.slice(0, 200);  // attribute values are limited in length
    var body = { widget_key: key, attributes: attributes };
    if (user.id) { body.user_id = user.id; body.user_hash = user.hash; }
    return api("POST", "/v1/brands/" + encodeURIComponent(brand) + "/conversations", body).then(
      function (created) {
        state.conversation = { id: created.conversation_id, token: created.token };
        saveConversation();
        connect();
        return state.conversation;
      }
    );
  }

  function restore(saved) {
    state.conversation = { id: saved.id, token: saved.token };
    // A conversation saved before unread counts were kept: what it holds counts as seen.
    var countedBefore = saved.seen !== undefined;
    state.seen = countedBefore ? Number(saved.seen) || 0 : Number.MAX_SAFE_INTEGER;
    return api("GET", "/v1/conversations/" + saved.id + "/messages?after=0").then(
      function (data) {
        data.messages.forEach(renderMessage);
        if (!countedBefore) {
          state.seen = state.lastSeq;
          saveConversation();
        }
        connect();
      },
      function (error) {
        if (error.status === 401 || error.status === 404) {
          state.conversation = null; // gone or not ours: start afresh on the next message
          try { localStorage.removeItem(storageKey); } catch (ignored) { /* nothing to clean */ }
        } else {
          connect();
        }
      }
    );
  }

  // ------------------------------------------------------------------ live updates

  function connect() {
    if (!state.conversation || state.socket) return;
    var url = base.replace(/^http/, "ws") + "/v1/conversations/" + state.conversation.id +
      "/ws?after=" + state.lastSeq;
    // The token goes as a subprotocol, never in the URL: URLs end up in server logs.
    var socket = new WebSocket(url, ["gigcx.v1", "token." + state.conversation.token]);
    state.socket = socket;
    socket.onopen = function () { state.retry = 0; showError(""); };
    socket.onmessage = function (message) {
      try { handle(JSON.parse(message.data)); } catch (ignored) { /* not ours */ }
    };
    socket.onclose = function (event) {
      state.socket = null;
      if (event.code === 4401 || event.code === 4404) {
        showError("This conversation has ended. Send a message to start a new one.");
        state.conversation = null;
        try { localStorage.removeItem(storageKey); } catch (ignored) { /* nothing to clean */ }
        return;
      }
      // Back off: 0.5 s, 1 s, 2 s ... up to 15 s, then resume after the last message seen.
      var delay = Math.min(15000, 500 * Math.pow(2, state.retry++));
      setTimeout(connect, delay);
    };
  }

  // ------------------------------------------------------------------ actions

  function send(text) {
    showError("");
    return ensureConversation()
      .then(function (conversation) {
        return api("POST", "/v1/conversations/" + conversation.id + "/messages", { text: text });
      })
      .then(function (turn) {
        // The socket usually delivers these first; rendering is idempotent by sequence number.
        renderMessage(turn.message);
        turn.replies.forEach(renderMessage);
        saveConversation();
      })
      .catch(function (error) {
        showError(error.message);
        input.value = input.value || text;
      });
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var text = input.value.trim();
    if (!text) return;
    input.value = "";
    send(text);
  });

  input.addEventListener("keydown", function (event) {
    if (event.key === "Enter" && !event.shiftKey) {
      event.preventDefault();
      form.requestSubmit ? form.requestSubmit() : form.dispatchEvent(new Event("submit"));
    }
  });

  personButton.addEventListener("click", function () {
    showError("");
    ensureConversation()
      .then(function (conversation) {
        return api("POST", "/v1/conversations/" + conversation.id + "/handoff");
      })
      .then(function (result) {
        result.replies.forEach(renderMessage);
        // The socket's state event carries more (route, who is available); don't undo it.
        if (result.state !== state.convState) renderState({ state: result.state });
        input.focus();
      })
      .catch(function (error) { showError(error.message); });
  });

  for (var score = 1; score <= 5; score++) {
    (function (value) {
      var star = document.createElement("button");
      star.type = "button";
      star.textContent = String(value);
      star.setAttribute("aria-pressed", "false");
      star.setAttribute("aria-label", value + " out of 5");
      star.addEventListener("click", function () {
        rating = value;
        showError("");
        Array.prototype.forEach.call(stars.children, function (other, index) {
          other.setAttribute("aria-pressed", String(index + 1 === value));
        });
      });
      stars.appendChild(star);
    })(score);
  }

  contact.addEventListener("submit", function (event) {
    event.preventDefault();
    api("POST", "/v1/conversations/" + state.conversation.id + "/contact", {
      email: $("#gigcx-email").value.trim(),
    }).then(
      function (message) {
        state.contactLeft = true;
        contact.hidden = true;
        renderMessage(message);
      },
      function (error) { showError(error.message); }
    );
  });

  function showRated() {
    showError("");
    $(".csat fieldset").hidden = true;
    $(".csat .thanks").hidden = false;
    scrollToNewest();
  }

  // A new resolution (the conversation came back and was resolved again) is rated afresh.
  function resetRating() {
    rating = 0;
    $("#gigcx-comment").value = "";
    Array.prototype.forEach.call(stars.children, function (star) {
      star.setAttribute("aria-pressed", "false");
    });
    $(".csat fieldset").hidden = false;
    $(".csat .thanks").hidden = true;
  }

  $(".csat .submit").addEventListener("click", function () {
    if (!rating) { showError("Choose a rating from 1 to 5 first."); return; }
    api("POST", "/v1/conversations/" + state.conversation.id + "/csat", {
      score: rating,
      comment: $("#gigcx-comment").value,
    }).then(
      function () {
        showRated();
      },
      function (error) {
        // Rated already (in another tab, or before a reload): nothing is wrong.
        if (error.status === 409 && /already been rated/.test(error.message)) showRated();
        else showError(error.message);
      }
    );
  });

  // ------------------------------------------------------------------ open / close

  function open() {
    panel.hidden = false;
    launcher.setAttribute("aria-expanded", "true");
    // Messages restored or received while the panel was hidden could not scroll it.
    scrollToNewest();
    clearUnread();
    sendReadReceipt();
    input.focus();
  }

  function close() {
    panel.hidden = true;
    launcher.setAttribute("aria-expanded", "false");
    launcher.focus();
  }

  launcher.addEventListener("click", function () { panel.hidden ? open() : close(); });
  $(".close").addEventListener("click", close);
  panel.addEventListener("keydown", function (event) { if (event.key === "Escape") close(); });

  // ------------------------------------------------------------------ start

  function start(config) {
    state.config = config;
    host.style.setProperty("--brand", config.color);
    $("#gigcx-title").textContent = config.title;
    var greeting = document.createElement("div");
    greeting.className = "msg bot";
    appendText(greeting, config.greeting);
    log.appendChild(greeting);
    document.body.appendChild(host);
    var link = linkFromEmail();
    if (link) { resumeFromEmail(link); return; }
    var saved = loadConversation();
    if (saved) restore(saved);
  }

  // A link in an e-mail opens the brand's page with #gigcx-resume=<signed link>: the fragment
  // never reaches a server. It is traded for a token of this browser's own, then removed.
  function linkFromEmail() {
    var found = /[#&]gigcx-resume=([A-Za-z0-9_.-]+)/.exec(location.hash);
    if (!found) return null;
    try { history.replaceState(null, "", location.pathname + location.search); } catch (ignored) { /* old browser */ }
    return found[1];
  }

  function resumeFromEmail(link) {
    api("POST", "/email/resume", { link: link }).then(
      function (resumed) {
        var saved = { id: resumed.conversation_id, token: resumed.token, seen: 0 };
        try { localStorage.setItem(storageKey, JSON.stringify(saved)); } catch (ignored) { /* this page only */ }
        return restore(saved).then(open);
      },
      function (error) {
        open();
        showError(error.message);
        var saved = loadConversation();
        if (saved) restore(saved);
      }
    );
  }

  function boot() {
    api("GET", "/v1/brands/" + encodeURIComponent(brand) + "/widget?key=" + encodeURIComponent(key))
      .then(start)
      .catch(function (error) {
        if (window.console) console.error("gigcx widget: " + error.message);
      });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", boot);
  else boot();

  window.gigcx = { open: open, close: close };
})();
